using VolumeBackup.BackupAgent.Repository;
using static VolumeBackup.BackupAgent.Tests.Repository.RepositoryFixture;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.BackupAgent.Tests.Repository;

// gc.lock's fencing: a holder that stalls past its lease (here one second) and loses the lock to another process must
// neither write a manifest nor free a chunk when it wakes, and its release must leave the new holder's lock in place.
// A stall is a hook on the stalled holder's own store: its next call waits, and its heartbeat stops touching the lock,
// as when the whole process is paused.
public sealed class FencedLockTests : IDisposable
{
    static readonly TimeSpan Lease = TimeSpan.FromSeconds(1);

    readonly RepositoryFixture fx = new();
    readonly CancellationTokenSource timeout = new(TimeSpan.FromMinutes(1));
    CancellationToken Ct => timeout.Token;

    public void Dispose()
    {
        timeout.Dispose();
        fx.Dispose();
    }

    string LockFile => Path.Join(fx.ContainerPath, "gc.lock");

    [Fact]
    public async Task A_holder_that_stalled_past_its_lease_writes_no_manifest_and_leaves_the_new_holders_lock()
    {
        var other = RandomBytes(2 * ChunkSize, seed: 81);
        var otherId = Guid.NewGuid();
        await fx.Repository().BackupAsync(Container, otherId, Guid.Empty, null, fx.Volume(other), other.Length, null, Ct);
        var data = RandomBytes(4 * ChunkSize, seed: 82);
        var id = Guid.NewGuid();

        var stalled = new Stall();
        var first = new InterceptingStore(fx.Store) { OnTouch = stalled.Touch };
        var firstLockReads = 0;
        first.BeforeRead = async path =>
        {
            // Its first look at gc.lock is the check right before its manifest: stall there.
            if (path.EndsWith("/gc.lock", StringComparison.Ordinal) && Interlocked.Increment(ref firstLockReads) == 1)
                await stalled.HoldAsync();
        };
        var secondTookIt = false;
        var second = new InterceptingStore(fx.Store)
        {
            AfterCreateExclusive = (path, created) => secondTookIt |= created && path.EndsWith("/gc.lock", StringComparison.Ordinal),
        };
        var secondHolds = new Stall();
        second.BeforeRead = async path =>
        {
            // The second holder, once it took the lock, waits at its own first check while the first one wakes.
            if (path.EndsWith("/gc.lock", StringComparison.Ordinal) && secondTookIt && stalled.IsHeld)
            {
                stalled.Release();
                await secondHolds.HoldAsync();
            }
        };

        var backup = fx.Repository(first, staleAfter: Lease).BackupAsync(Container, id, Guid.Empty, null, fx.Volume(data), data.Length, null, Ct);
        await stalled.Reached.WaitAsync(Ct);
        var delete = fx.Repository(second, staleAfter: Lease).DeleteAsync(Container, otherId, Ct);   // breaks the stale lock, takes it

        var lost = await Assert.ThrowsAsync<LockLostException>(() => backup);

        Assert.Contains("another process holds it now", lost.Message);
        Assert.False(File.Exists(fx.ManifestFile(id)));
        Assert.True(File.Exists(LockFile));                    // the first holder's release left the second holder's lock
        secondHolds.Release();
        var deleted = await delete;                              // and the second holder still passes its own checks
        Assert.True(deleted.ManifestFound);
        Assert.False(File.Exists(fx.ManifestFile(otherId)));
        Assert.False(File.Exists(LockFile));
    }

    [Fact]
    public async Task A_collection_that_stalled_past_its_lease_frees_no_chunk_a_new_backup_relies_on()
    {
        var data = RandomBytes(6 * ChunkSize, seed: 83);
        var doomed = Guid.NewGuid();
        await fx.Repository().BackupAsync(Container, doomed, Guid.Empty, null, fx.Volume(data), data.Length, null, Ct);
        var chunks = fx.ChunkFiles();

        var stalled = new Stall();
        var collector = new InterceptingStore(fx.Store) { OnTouch = stalled.Touch };
        var lockReads = 0;
        collector.BeforeRead = async path =>
        {
            // Its checks: before the manifest's delete, before the generation moves, then before each chunk's delete
            // (several at once). From the first chunk's on, it stalls.
            if (path.EndsWith("/gc.lock", StringComparison.Ordinal) && Interlocked.Increment(ref lockReads) >= 3)
                await stalled.HoldAsync();
        };
        var delete = fx.Repository(collector, staleAfter: Lease).DeleteAsync(Container, doomed, Ct);
        await stalled.Reached.WaitAsync(Ct);

        // Meanwhile a backup of the same data takes the stale lock, finds every chunk on the share and relies on it.
        var id = Guid.NewGuid();
        var summary = await fx.Repository(staleAfter: Lease).BackupAsync(Container, id, Guid.Empty, null, fx.Volume(data), data.Length, null, Ct);
        Assert.Equal(0, summary.ChunksWritten);
        stalled.Release();

        await Assert.ThrowsAsync<LockLostException>(() => delete);
        Assert.Equal(chunks, fx.ChunkFiles());
        var target = fx.EmptyTarget(data.Length);
        await fx.Repository().RestoreAsync(Container, id, target, null, Ct);
        Assert.Equal(data, File.ReadAllBytes(target));
    }

    // A paused holder: its next call waits until released, and its heartbeat does not reach the share meanwhile.
    sealed class Stall
    {
        readonly TaskCompletionSource reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        readonly TaskCompletionSource released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Reached => reached.Task;
        public bool IsHeld => reached.Task.IsCompleted && !released.Task.IsCompleted;

        public async Task HoldAsync()
        {
            reached.TrySetResult();
            await released.Task;
        }

        public void Release() => released.TrySetResult();

        public Task<bool?> Touch(string path) => Task.FromResult<bool?>(IsHeld ? true : null);
    }
}
