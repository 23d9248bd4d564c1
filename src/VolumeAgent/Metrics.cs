using System.Diagnostics;
using System.Diagnostics.Metrics;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.VolumeAgent;

/// <summary>The VolumeAgent's instruments (OpenTelemetry naming).</summary>
public static class Metrics
{
    static readonly Meter Meter = new(ServiceDefaultsExtensions.TelemetryName);

    static readonly Histogram<double> DevicePreparation = Meter.CreateHistogram("volumebackup.device.preparation.duration", "s",
        "Time to hand out a device: the snapshot and clone (or copy) of a backup's source, or a restore's new volume",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600] });

    /// <param name="purpose">backup or restore</param>
    /// <param name="method">how the device was made (reflink, copy, new...)</param>
    public static void DevicePrepared(string purpose, string method, long startedTimestamp) =>
        DevicePreparation.Record(Stopwatch.GetElapsedTime(startedTimestamp).TotalSeconds,
            new KeyValuePair<string, object?>("volumebackup.device.purpose", purpose), new KeyValuePair<string, object?>("volumebackup.device.method", method));

    static readonly Counter<long> Streamed = Meter.CreateCounter<long>("volumebackup.device.streamed", "By",
        "Device bytes read or written for BackupAgents on other hosts (ReadDevice, WriteDevice); holes are not counted, never being sent");

    /// <param name="direction">read or write</param>
    public static void DeviceStreamed(string direction, long bytes) =>
        Streamed.Add(bytes, new KeyValuePair<string, object?>("volumebackup.device.direction", direction));
}
