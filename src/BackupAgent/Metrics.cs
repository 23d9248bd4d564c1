using System.Diagnostics;
using System.Diagnostics.Metrics;
using MassTransit;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.BackupAgent;

/// <summary>The agent's instruments (OpenTelemetry naming: dotted names, UCUM units, kinds as attributes).</summary>
public static class Metrics
{
    static readonly Meter Meter = new(ServiceDefaultsExtensions.TelemetryName);

    static readonly Counter<long> DeviceRead = Meter.CreateCounter<long>("volumebackup.device.read", "By", "Bytes read from volume devices (holes are not read)");
    static readonly Counter<long> RepositoryWritten = Meter.CreateCounter<long>("volumebackup.repository.written", "By",
        "Bytes of new chunks written to the repository (compressed, as stored)");
    static readonly Counter<long> RepositoryDeduplicated = Meter.CreateCounter<long>("volumebackup.repository.deduplicated", "By",
        "Bytes of data not written because the repository or the backup already held the chunk");
    static readonly Counter<long> Chunks = Meter.CreateCounter<long>("volumebackup.chunks", "{chunk}", "Chunks backed up, by kind (new, reused, zero)");
    static readonly UpDownCounter<long> JobsRunning = Meter.CreateUpDownCounter<long>("volumebackup.jobs.running", "{job}",
        "Jobs this agent is running, by kind (create, restore, delete)");
    static readonly Histogram<double> NfsCallDuration = Meter.CreateHistogram("volumebackup.nfs.call.duration", "s", "Duration of one NFS call (libnfs)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });

    public static void ChunkRead(int bytes) => DeviceRead.Add(bytes);

    public static void NewChunk(int storedBytes)
    {
        RepositoryWritten.Add(storedBytes);
        Chunks.Add(1, Kind("new"));
    }

    public static void ReusedChunk(int plainBytes)
    {
        RepositoryDeduplicated.Add(plainBytes);
        Chunks.Add(1, Kind("reused"));
    }

    public static void ZeroChunk() => Chunks.Add(1, Kind("zero"));

    public static void NfsCall(string operation, long startedTimestamp) =>
        NfsCallDuration.Record(Stopwatch.GetElapsedTime(startedTimestamp).TotalSeconds, new KeyValuePair<string, object?>("volumebackup.nfs.operation", operation));

    static KeyValuePair<string, object?> Kind(string kind) => new("volumebackup.chunk.kind", kind);

    /// <summary>Counts a command's consumer as a running job while it runs (retries included).</summary>
    public sealed class RunningJobFilter<TConsumer>(string kind) : IFilter<ConsumerConsumeContext<TConsumer>> where TConsumer : class
    {
        public async Task Send(ConsumerConsumeContext<TConsumer> context, IPipe<ConsumerConsumeContext<TConsumer>> next)
        {
            var tag = new KeyValuePair<string, object?>("volumebackup.job.kind", kind);
            JobsRunning.Add(1, tag);
            try { await next.Send(context); }
            finally { JobsRunning.Add(-1, tag); }
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("runningJobs");
    }
}
