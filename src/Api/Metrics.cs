using System.Diagnostics.Metrics;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api;

/// <summary>
/// The Api's instruments (OpenTelemetry naming: dotted names, UCUM units, outcomes as attributes). Outcomes are counted
/// where the backup saga decides them, once per backup; the gauges are read from PostgreSQL by the outbox relay, which
/// queries it anyway, at most every few seconds, so a scrape never touches the database.
/// </summary>
public static class Metrics
{
    public const string Completed = "completed", Failed = "failed";

    static readonly Meter Meter = new(ServiceDefaultsExtensions.TelemetryName);
    static readonly InstrumentAdvice<double> DurationBuckets = new() { HistogramBucketBoundaries = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400] };

    static readonly Counter<long> Backups = Meter.CreateCounter<long>("volumebackup.backups", "{backup}", "Backups finished, by outcome (completed, failed)");
    static readonly Counter<long> Restores = Meter.CreateCounter<long>("volumebackup.restores", "{restore}", "Restores finished, by outcome (completed, failed)");
    static readonly Histogram<double> BackupDuration = Meter.CreateHistogram("volumebackup.backup.duration", "s",
        "From a backup's request to its end (available or error)", advice: DurationBuckets);
    static readonly Histogram<double> RestoreDuration = Meter.CreateHistogram("volumebackup.restore.duration", "s",
        "From a restore's request to its end", advice: DurationBuckets);
    static readonly Counter<long> SagaEvents = Meter.CreateCounter<long>("volumebackup.saga.events", "{event}",
        "Events the backup saga handled, by event and outcome (handled, ignored, faulted)");

    static Backlog backlog = new(0, 0, 0, []);

    static Metrics()
    {
        Meter.CreateObservableGauge("volumebackup.outbox.unsent", () => backlog.OutboxUnsent, "{message}", "Outbox rows not yet sent (parked rows excluded)");
        Meter.CreateObservableGauge("volumebackup.outbox.parked", () => backlog.OutboxParked, "{message}", "Outbox rows that could never be sent, for an operator");
        Meter.CreateObservableGauge("volumebackup.outbox.oldest_unsent.age", () => backlog.OldestUnsentAgeSeconds, "s", "Age of the oldest unsent outbox row (0 when none)");
        Meter.CreateObservableGauge("volumebackup.jobs.queued", () => backlog.QueuedByZone.Select(z =>
            new Measurement<long>(z.Value, new KeyValuePair<string, object?>("volumebackup.zone", z.Key))), "{job}",
            "Backups waiting in a zone's queue for an agent (the zone's agents share it)");
    }

    public static void BackupEnded(string outcome, TimeSpan duration) => Ended(Backups, BackupDuration, outcome, duration);

    public static void RestoreEnded(string outcome, TimeSpan duration) => Ended(Restores, RestoreDuration, outcome, duration);

    static void Ended(Counter<long> counter, Histogram<double> histogram, string outcome, TimeSpan duration)
    {
        var tag = new KeyValuePair<string, object?>("volumebackup.outcome", outcome);
        counter.Add(1, tag);
        histogram.Record(duration.TotalSeconds, tag);
    }

    public static void SagaEvent(string name, string outcome) =>
        SagaEvents.Add(1, new KeyValuePair<string, object?>("volumebackup.event", name), new KeyValuePair<string, object?>("volumebackup.outcome", outcome));

    /// <summary>A zone whose queue emptied reads 0, rather than vanishing from the gauge.</summary>
    public static void Observe(Backlog now)
    {
        foreach (var zone in backlog.QueuedByZone.Keys) now.QueuedByZone.TryAdd(zone, 0);
        backlog = now;
    }
}

/// <summary>What waits: outbox rows, and backups no agent took yet, per zone.</summary>
public sealed record Backlog(long OutboxUnsent, long OutboxParked, double OldestUnsentAgeSeconds, Dictionary<string, long> QueuedByZone);
