using System.Collections.Concurrent;
using MassTransit;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent;

/// <summary>The backups this agent is running, so a CancelBackup can stop one of them at once.</summary>
public sealed class RunningJobs(TimeProvider clock)
{
    readonly ConcurrentDictionary<Guid, CancellationTokenSource> jobs = new();
    // Cancels heard before their backup started here (the command may still be queued); kept an hour, which
    // outlasts any queue wait, then forgotten so the set stays small.
    readonly ConcurrentDictionary<Guid, DateTimeOffset> cancelled = new();

    /// <summary>A token that ends with the consumer's or with a cancel for this backup; cancelled already if one was heard.</summary>
    public Lease Start(Guid backupId, CancellationToken ct)
    {
        var source = CancellationTokenSource.CreateLinkedTokenSource(ct);
        jobs[backupId] = source;
        if (cancelled.ContainsKey(backupId)) source.Cancel();
        return new Lease(this, backupId, source);
    }

    public bool Cancel(Guid backupId)
    {
        var now = clock.GetUtcNow();
        cancelled[backupId] = now;
        foreach (var (id, at) in cancelled)
            if (now - at > TimeSpan.FromHours(1)) cancelled.TryRemove(id, out _);
        if (!jobs.TryGetValue(backupId, out var source)) return false;
        source.Cancel();
        return true;
    }

    public sealed class Lease(RunningJobs owner, Guid backupId, CancellationTokenSource source) : IDisposable
    {
        public CancellationToken Token => source.Token;

        public void Dispose()
        {
            owner.jobs.TryRemove(new KeyValuePair<Guid, CancellationTokenSource>(backupId, source));
            source.Dispose();
        }
    }
}

/// <summary>Every agent hears every cancel (a temporary queue of its own); only the one running the backup acts.</summary>
public sealed class CancelBackupConsumer(RunningJobs jobs, ILogger<CancelBackupConsumer> logger) : IConsumer<CancelBackup>
{
    public Task Consume(ConsumeContext<CancelBackup> context)
    {
        if (jobs.Cancel(context.Message.BackupId)) logger.BackupCancelled(context.Message.BackupId);
        return Task.CompletedTask;
    }
}
