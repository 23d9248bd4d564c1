using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;

namespace VolumeBackup.BackupAgent.Repository;

// <container>/gc.lock, created with O_EXCL, so it works across hosts on NFS. It holds its holder (LockOwner) and a
// fencing token, fresh for every acquisition. The holder refreshes its mtime; a waiter that sees the mtime stand still
// for staleAfter (by its own clock, so clock skew does not matter) takes the holder for dead and breaks the lock; a
// waiter on the holder's own host breaks it at once when the holding process is gone (LockOwner).
//
// Fencing. A holder may only stall (a paused VM, a stuck NFS call) past its lease and wake up while another holds the
// lock. So before each step that could hurt the new holder (a manifest written, a chunk or manifest deleted) the holder
// calls EnsureHeldAsync, which reads gc.lock back and compares the token: a holder that lost the lock fails there.
// The share has no compare-and-swap, so a stall between that check and the very next call is not covered; the check
// sits right before each such call to keep that window at one RPC.
// Releasing and breaking remove the lock only by token (CompareAndDeleteAsync), so neither ever removes a lock another
// holder took meanwhile.
sealed class RepositoryLock : IAsyncDisposable
{
    static readonly TimeSpan MaxPoll = TimeSpan.FromMilliseconds(250);

    // A holder writes its line into the lock right after creating it; a lock still empty this long after its last change
    // was left by a holder killed between the two calls, and waiting staleAfter for it would hold up every backup.
    static readonly TimeSpan EmptyLockGrace = TimeSpan.FromSeconds(10);

    readonly IRepositoryStore store;
    readonly string path;
    readonly TimeSpan staleAfter;
    readonly ILogger logger;
    readonly Heartbeat heartbeat;

    RepositoryLock(IRepositoryStore store, string path, string token, DateTimeOffset acquiredAt, TimeSpan staleAfter, ILogger logger)
    {
        this.store = store;
        this.path = path;
        this.staleAfter = staleAfter;
        this.logger = logger;
        Token = token;
        AcquiredAt = acquiredAt;
        heartbeat = new Heartbeat(store, path, staleAfter / 5, logger);
    }

    // The share's clock when the lock was taken.
    public DateTimeOffset AcquiredAt { get; }

    // This acquisition's fencing token.
    public string Token { get; }

    public static async Task<RepositoryLock> AcquireAsync(IRepositoryStore store, string path, TimeSpan staleAfter, ILogger logger, CancellationToken ct)
    {
        var token = Guid.NewGuid().ToString("N");
        var content = Encoding.UTF8.GetBytes($"{LockOwner.Current}token {token}\n");
        var delay = TimeSpan.FromMilliseconds(10);
        var emptyAfter = EmptyLockGrace < staleAfter ? EmptyLockGrace : staleAfter;
        StoreEntry? seen = null;
        var seenAt = 0L;
        while (true)
        {
            if (await store.TryCreateExclusiveAsync(path, content, ct))
                return await HeldAsync(store, path, token, staleAfter, logger, ct);
            var current = await store.StatAsync(path, ct);
            if (current is null)
                continue;
            var holder = await HolderAsync(store, path, ct);
            // A CREATE repeated after a lost reply (a server restart loses its duplicate-request cache) fails with
            // EXIST on the lock this very call made.
            if (holder?.Token == token)
                return await HeldAsync(store, path, token, staleAfter, logger, ct);
            if (seen is null || current.Modified != seen.Modified)
            {
                (seen, seenAt) = (current, Stopwatch.GetTimestamp());
                if (holder?.Owner?.IsDeadHere() == true)
                {
                    logger.DeadHolderLockBroken(path, holder.Owner.ProcessId);
                    await CompareAndDeleteAsync(store, path, holder.Token, ct);
                    seen = null;
                    continue;
                }
                logger.LockWaiting(path, holder?.Owner?.ToString().Trim() ?? "unknown");
            }
            else if (Stopwatch.GetElapsedTime(seenAt) > (holder?.Owner is null && holder?.Token is null ? emptyAfter : staleAfter))
            {
                logger.StaleLockBroken(path, seen.Modified);
                // Only the lock that went stale: one another waiter took since is left alone.
                await CompareAndDeleteAsync(store, path, holder?.Token, ct);
                seen = null;
                continue;
            }
            await Task.Delay(delay, ct);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxPoll.Ticks));
        }
    }

    static async Task<RepositoryLock> HeldAsync(IRepositoryStore store, string path, string token, TimeSpan staleAfter, ILogger logger, CancellationToken ct)
    {
        try
        {
            var entry = await store.StatAsync(path, ct) ?? throw new IOException($"The lock {path} on {store.Describe} vanished as it was taken.");
            return new RepositoryLock(store, path, token, entry.Modified, staleAfter, logger);
        }
        catch
        {
            // Taken but never handed out (the job cancelled this instant, say as its broker connection went): given back at
            // once (by token), or every backup of the container would wait staleAfter for a holder that never refreshes it.
            await CompareAndDeleteAsync(store, path, token, CancellationToken.None);
            throw;
        }
    }

    // Throws LockLostException unless gc.lock still holds this acquisition's token.
    public async Task EnsureHeldAsync(CancellationToken ct)
    {
        var holder = await HolderAsync(store, path, ct);
        if (holder?.Token != Token)
        {
            logger.LockLost(path, Token, holder?.Owner?.ToString().Trim() ?? "nobody");
            throw new LockLostException($"The repository lock {path} on {store.Describe} was lost (its holder stalled for longer than {staleAfter} and "
                + $"{(holder is null ? "the lock was broken" : "another process holds it now")}); nothing more is written or deleted under it.");
        }
    }

    // Removes path only if it holds token. A rename is atomic on the server, so the lock is first moved aside and
    // looked at where nobody else can take it; one that turns out to be another holder's is put back.
    static async Task<bool> CompareAndDeleteAsync(IRepositoryStore store, string path, string? token, CancellationToken ct)
    {
        var aside = RepositoryStores.TemporaryOf(path);
        if (!await store.RenameAsync(path, aside, ct))
            return false;
        var content = await store.ReadAllAsync(aside, ct);
        var ours = content is not null && Holder.Parse(Encoding.UTF8.GetString(content)).Token == token;
        // Put back with O_EXCL: if a third process took the free name meanwhile, the displaced holder is fenced off by its check.
        if (!ours && content is not null)
            await store.TryCreateExclusiveAsync(path, content, ct);
        await store.DeleteAsync(aside, ct);
        return ours;
    }

    static async Task<Holder?> HolderAsync(IRepositoryStore store, string path, CancellationToken ct)
    {
        try
        {
            return await store.ReadAllAsync(path, ct) is { } text ? Holder.Parse(Encoding.UTF8.GetString(text)) : null;
        }
        catch (IOException)
        {
            return null;                                   // its new holder is writing it this instant
        }
    }

    public async ValueTask DisposeAsync()
    {
        await heartbeat.DisposeAsync();
        // Released even when the work was cancelled; never another holder's lock.
        if (!await CompareAndDeleteAsync(store, path, Token, CancellationToken.None))
            logger.LockLost(path, Token, "another process, or nobody: it was broken");
    }

    // What gc.lock holds: the owner's line, then "token <token>". A lock of an older version has no token: it is
    // waited for and broken like any other, by its (null) token.
    sealed record Holder(LockOwner? Owner, string? Token)
    {
        public static Holder Parse(string text)
        {
            var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var token = lines.FirstOrDefault(l => l.StartsWith("token ", StringComparison.Ordinal))?["token ".Length..];
            return new Holder(lines.Length > 0 ? LockOwner.Parse(lines[0]) : null, token);
        }
    }
}

// The holder of a lock lost it: it stalled past its lease and another process broke the lock.
public sealed class LockLostException(string message) : IOException(message);

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
