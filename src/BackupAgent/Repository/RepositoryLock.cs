using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;

namespace VolumeBackup.BackupAgent.Repository;

// <container>/gc.lock, created with O_EXCL, so it works across hosts on NFS. The holder refreshes its mtime;
// a waiter that sees the mtime stand still for staleAfter (by its own clock, so clock skew does not matter)
// takes the holder for dead and breaks the lock; a waiter on the holder's own host breaks it at once when the
// holding process is gone (LockOwner). Two waiters breaking the same dead lock at the same moment
// could both get it: the price of having no compare-and-swap on a share, and why staleAfter is long.
sealed class RepositoryLock : IAsyncDisposable
{
    static readonly TimeSpan MaxPoll = TimeSpan.FromMilliseconds(250);

    readonly IRepositoryStore store;
    readonly string path;
    readonly Heartbeat heartbeat;

    RepositoryLock(IRepositoryStore store, string path, DateTimeOffset acquiredAt, TimeSpan staleAfter, ILogger logger)
    {
        this.store = store;
        this.path = path;
        AcquiredAt = acquiredAt;
        heartbeat = new Heartbeat(store, path, staleAfter / 5, logger);
    }

    // The share's clock when the lock was taken.
    public DateTimeOffset AcquiredAt { get; }

    public static async Task<RepositoryLock> AcquireAsync(IRepositoryStore store, string path, TimeSpan staleAfter, ILogger logger, CancellationToken ct)
    {
        var owner = Encoding.UTF8.GetBytes(LockOwner.Current.ToString());
        var delay = TimeSpan.FromMilliseconds(10);
        StoreEntry? seen = null;
        var seenAt = 0L;
        while (true)
        {
            if (await store.TryCreateExclusiveAsync(path, owner, ct))
            {
                try
                {
                    var entry = await store.StatAsync(path, ct) ?? throw new IOException($"The lock {path} on {store.Describe} vanished as it was taken.");
                    return new RepositoryLock(store, path, entry.Modified, staleAfter, logger);
                }
                catch
                {
                    // Taken but never handed out (the job cancelled this instant, say when its broker connection went): given back
                    // at once, or every backup of the container would wait staleAfter for a holder that is alive and never refreshes it.
                    await store.DeleteAsync(path, CancellationToken.None);
                    throw;
                }
            }
            var current = await store.StatAsync(path, ct);
            if (current is null)
                continue;
            if (seen is null || current.Modified != seen.Modified)
            {
                (seen, seenAt) = (current, Stopwatch.GetTimestamp());
                var holder = await HolderAsync(store, path, ct);
                if (holder?.IsDeadHere() == true)
                {
                    logger.DeadHolderLockBroken(path, holder.ProcessId);
                    await store.DeleteAsync(path, ct);
                    seen = null;
                    continue;
                }
                logger.LockWaiting(path, holder?.ToString().Trim() ?? "unknown");
            }
            else if (Stopwatch.GetElapsedTime(seenAt) > staleAfter)
            {
                logger.StaleLockBroken(path, seen.Modified);
                await store.DeleteAsync(path, ct);
                seen = null;
                continue;
            }
            await Task.Delay(delay, ct);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxPoll.Ticks));
        }
    }

    static async Task<LockOwner?> HolderAsync(IRepositoryStore store, string path, CancellationToken ct)
    {
        try
        {
            return await store.ReadAllAsync(path, ct) is { } text ? LockOwner.Parse(Encoding.UTF8.GetString(text)) : null;
        }
        catch (IOException)
        {
            return null;                                   // its new holder is writing it this instant
        }
    }

    public async ValueTask DisposeAsync()
    {
        await heartbeat.DisposeAsync();
        await store.DeleteAsync(path, CancellationToken.None);   // released even when the work was cancelled
    }
}

// Keeps a file's mtime fresh while its owner is alive.
sealed class Heartbeat : IAsyncDisposable
{
    readonly CancellationTokenSource stop = new();
    readonly Task loop;

    public Heartbeat(IRepositoryStore store, string path, TimeSpan interval, ILogger logger) =>
        loop = BeatAsync(store, path, interval, logger, stop.Token);

    static async Task BeatAsync(IRepositoryStore store, string path, TimeSpan interval, ILogger logger, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                try
                {
                    if (!await store.TouchAsync(path, ct))
                        logger.HeartbeatLost(path);
                }
                catch (IOException e)
                {
                    logger.HeartbeatFailed(path, e);   // the next beat may get through; a dead owner is its observers' business
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // stopped by its owner
        }
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        await loop;
        stop.Dispose();
    }
}
