using System.Collections.Concurrent;
using System.Net.ServerSentEvents;
using System.Text.Json;
using System.Threading.Channels;
using MassTransit;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Services;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Dashboard;

/// <summary>
/// The dashboard's live events, fanned out in-process to every open page. It is fed by <see cref="DashboardConsumer"/> with
/// the agents' events and with the Api's own <see cref="BackupNotification"/>s, which the outbox relays only once the saga's
/// transaction committed: a status the page shows is never one a rolled-back step wrote. It also keeps the last hour's
/// throughput, in memory (an Api restart starts the chart afresh; Prometheus keeps the long history).
/// </summary>
public sealed class DashboardFeed(IOptions<JsonOptions> json, TimeProvider clock)
{
    public static readonly TimeSpan Bucket = TimeSpan.FromSeconds(10);
    const int Buckets = 360;                                      // one hour

    readonly ConcurrentDictionary<Channel<SseItem<string>>, byte> pages = new();
    readonly ConcurrentDictionary<Guid, long> bytesDone = new();  // the last progress of each running job: throughput counts deltas
    readonly long[] throughput = new long[Buckets];
    readonly long[] bucketOf = new long[Buckets];
    readonly Lock gate = new();

    /// <summary>A page's stream: events published from now on. A page too slow to read loses its oldest events, never blocks the feed.</summary>
    public Subscription Subscribe()
    {
        var channel = Channel.CreateBounded<SseItem<string>>(new BoundedChannelOptions(1000) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        pages.TryAdd(channel, 0);
        return new Subscription(channel.Reader, () => pages.TryRemove(channel, out _));
    }

    public void Publish<T>(string type, T data)
    {
        var item = new SseItem<string>(Serialize(data), type);
        foreach (var page in pages.Keys) page.Writer.TryWrite(item);
    }

    public string Serialize<T>(T data) => JsonSerializer.Serialize(data, json.Value.SerializerOptions);

    /// <summary>A job read up to <paramref name="done"/> bytes: the bytes since its last report go to the current bucket.</summary>
    public void Read(Guid jobId, long done, bool finished)
    {
        var before = finished ? (bytesDone.TryRemove(jobId, out var last) ? last : 0) : bytesDone.GetValueOrDefault(jobId);
        if (!finished) bytesDone[jobId] = Math.Max(before, done);
        if (done <= before) return;
        var now = clock.GetUtcNow();
        var bucket = now.ToUnixTimeMilliseconds() / (long)Bucket.TotalMilliseconds;
        long total;
        lock (gate)
        {
            var slot = (int)(bucket % Buckets);
            if (bucketOf[slot] != bucket) (bucketOf[slot], throughput[slot]) = (bucket, 0);
            total = throughput[slot] += done - before;
        }
        Publish("throughput", new ThroughputPoint(DateTimeOffset.FromUnixTimeMilliseconds(bucket * (long)Bucket.TotalMilliseconds), total));
    }

    /// <summary>The last hour, oldest first, one point per bucket (empty buckets read 0).</summary>
    public List<ThroughputPoint> LastHour()
    {
        var current = clock.GetUtcNow().ToUnixTimeMilliseconds() / (long)Bucket.TotalMilliseconds;
        lock (gate)
            return Enumerable.Range(0, Buckets).Select(i => current - Buckets + 1 + i).Select(b =>
                new ThroughputPoint(DateTimeOffset.FromUnixTimeMilliseconds(b * (long)Bucket.TotalMilliseconds), bucketOf[b % Buckets] == b ? throughput[b % Buckets] : 0)).ToList();
    }

    public sealed class Subscription(ChannelReader<SseItem<string>> events, Action unsubscribe) : IDisposable
    {
        public ChannelReader<SseItem<string>> Events { get; } = events;
        public void Dispose() => unsubscribe();
    }
}

/// <summary>Bytes read from volumes by backups (and restored by restores) in the bucket starting at <paramref name="At"/>.</summary>
public sealed record ThroughputPoint(DateTimeOffset At, long Bytes);

/// <summary>A change to one backup or restore, as the page merges it into its row (null fields are left as they were).</summary>
public sealed record JobUpdate(
    Guid Id, string? Kind = null, string? Status = null, string? Phase = null, string? Name = null, string? ProjectId = null, string? Zone = null,
    string? Host = null, long? BytesDone = null, long? BytesTotal = null, string? FailReason = null, DateTimeOffset? UpdatedAt = null);

/// <summary>An agent was heard from (its clock is the Api's, as the services table's).</summary>
public sealed record AgentUpdate(string Binary, string Host, string Zone, DateTimeOffset LastHeartbeat, bool Disabled = false);

/// <summary>
/// Feeds <see cref="DashboardFeed"/>. Each Api instance has a temporary queue of its own (every page of every instance sees
/// every event), so it never competes with the saga's and heartbeat consumers for a message; losing the queue with the
/// instance loses nothing, since a page reconnecting starts from a snapshot of the database.
/// </summary>
public sealed class DashboardConsumer(DashboardFeed feed, AppDbContext db, TimeProvider clock) :
    IConsumer<BackupNotification>, IConsumer<BackupTaken>, IConsumer<BackupStarted>, IConsumer<BackupProgressed>, IConsumer<BackupCompleted>,
    IConsumer<RestoreStarted>, IConsumer<RestoreProgressed>, IConsumer<BackupRestored>, IConsumer<AgentHeartbeat>
{
    public async Task Consume(ConsumeContext<BackupNotification> context)
    {
        var n = context.Message;
        if (n.EventType == "backup.createprogress") return;                              // BackupProgressed says it first
        var restore = n.EventType.StartsWith("backup.restore.", StringComparison.Ordinal);
        var error = n.EventType.EndsWith(".error", StringComparison.Ordinal);
        var phase = n.EventType switch
        {
            "backup.create.start" => Phases.Queued,
            "backup.restore.start" => Phases.Queued,
            "backup.delete.start" => Phases.Deleting,
            _ => Phases.Done,
        };
        feed.Publish("job", new JobUpdate(n.BackupId, restore ? Kinds.Restore : Kinds.Backup, n.Status, phase, n.Name, n.ProjectId, n.AvailabilityZone, n.Host,
            FailReason: error ? n.FailReason : null, UpdatedAt: n.Timestamp));
        // The repository changes only when a backup ends or goes: one aggregate read then, never on a timer.
        if (n.EventType is "backup.create.end" or "backup.delete.end")
            feed.Publish("repository", await DashboardApi.RepositoryAsync(db, context.CancellationToken));
    }

    public Task Consume(ConsumeContext<BackupTaken> context)
    {
        var m = context.Message;
        feed.Publish("job", new JobUpdate(m.BackupId, Kinds.Backup, Phase: Phases.Device, Host: m.AgentHost, UpdatedAt: m.TakenAt));
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<BackupStarted> context)
    {
        var m = context.Message;
        feed.Publish("job", new JobUpdate(m.BackupId, Kinds.Backup, Phase: Phases.Reading, Host: m.AgentHost, UpdatedAt: m.StartedAt));
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<BackupProgressed> context)
    {
        var m = context.Message;
        feed.Read(m.BackupId, m.BytesDone, finished: false);
        feed.Publish("job", new JobUpdate(m.BackupId, Phase: m.BytesDone >= m.BytesTotal ? Phases.Manifest : Phases.Reading,
            BytesDone: m.BytesDone, BytesTotal: m.BytesTotal, UpdatedAt: clock.GetUtcNow()));
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<BackupCompleted> context)
    {
        var m = context.Message;
        feed.Read(m.BackupId, m.SizeBytes, finished: true);
        feed.Publish("job", new JobUpdate(m.BackupId, Phase: Phases.Manifest, BytesDone: m.SizeBytes, BytesTotal: m.SizeBytes, UpdatedAt: m.CompletedAt));
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<RestoreStarted> context)
    {
        var m = context.Message;
        feed.Publish("job", new JobUpdate(m.BackupId, Kinds.Restore, Phase: Phases.Restoring, Host: m.AgentHost, UpdatedAt: clock.GetUtcNow()));
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<RestoreProgressed> context)
    {
        var m = context.Message;
        feed.Read(m.RestoreId, m.BytesDone, finished: false);
        feed.Publish("job", new JobUpdate(m.BackupId, Kinds.Restore, Phase: Phases.Restoring, BytesDone: m.BytesDone, BytesTotal: m.BytesTotal,
            UpdatedAt: clock.GetUtcNow()));
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<BackupRestored> context)
    {
        feed.Read(context.Message.RestoreId, context.Message.BytesRestored, finished: true);   // what progress has not counted yet
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<AgentHeartbeat> context)
    {
        var m = context.Message;
        feed.Publish("agent", new AgentUpdate(m.Binary, m.Host, m.Zone, clock.GetUtcNow()));
        return Task.CompletedTask;
    }
}

/// <summary>What a job is doing, as far as events tell: the agents report taking a job, holding its device, its progress and its end.</summary>
public static class Phases
{
    public const string Queued = "queued", Device = "device", Reading = "reading · writing", Manifest = "manifest", Restoring = "restoring", Deleting = "deleting", Done = "done";

    /// <summary>The phase of a backup read from its row, for the snapshot.</summary>
    public static string Of(Backup b) => b.State switch
    {
        nameof(BackupSaga.Restoring) => b.RestoreId is null ? Done : Restoring,
        nameof(BackupSaga.Deleting) => Deleting,
        "Initial" or nameof(BackupSaga.Creating) when b.StartedAt is null => Queued,
        "Initial" or nameof(BackupSaga.Creating) => Reading,
        _ => Done,
    };
}

public static class Kinds
{
    public const string Backup = "backup", Restore = "restore";
}
