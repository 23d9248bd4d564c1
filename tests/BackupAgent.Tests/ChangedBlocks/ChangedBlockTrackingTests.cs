extern alias VolumeAgentHost;

using System.Diagnostics.Metrics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.BackupAgent.Tests.Repository;
using VolumeBackup.TestSupport;
using VolumeAgentHost::VolumeBackup.VolumeAgent;

namespace VolumeBackup.BackupAgent.Tests.ChangedBlocks;

/// <summary>
/// Changed-block tracking end to end below the transport: a real VolumePool on the XFS reflink pool hands out devices
/// and changed ranges, the repository backs them up. Every CBT incremental is checked against a full read of the same
/// device, and every fallback must still give the full read's manifest.
/// </summary>
public sealed partial class ChangedBlockTrackingTests : IDisposable
{
    const long Size = 32L << 20;
    const string Container = RepositoryFixture.Container;

    readonly string folder = TestServices.CreatePoolFolder("cbt");
    readonly RepositoryFixture repository = new();
    readonly BackupRepository backups;
    VolumePool pool;

    public ChangedBlockTrackingTests()
    {
        pool = NewPool();
        backups = repository.Repository();
    }

    public void Dispose()
    {
        repository.Dispose();
        Directory.Delete(folder, recursive: true);
    }

    VolumePool NewPool(long maxBaseBytes = 64L << 30, IMeterFactory? meters = null) =>
        new(Options.Create(new VolumeOptions { PoolPath = folder, MaxBaseBytes = maxBaseBytes }), NullLogger<VolumePool>.Instance, meters);

    [Fact]
    public async Task Fifty_rounds_of_random_writes_give_restores_equal_to_the_volume_and_CBT_manifests_equal_to_full_reads()
    {
        var seed = Environment.TickCount;
        var random = new Random(seed);
        var volumeId = NewVolume();
        var taken = new List<(Guid BackupId, string Sha256)>();
        Guid? parent = null;
        var cbtRounds = 0;
        for (var round = 0; round < 50; round++)
        {
            if (round > 0)
                RandomWrites(random, pool.VolumePath(volumeId));
            var inUse = round % 2 == 0;
            var (backupId, summary) = await BackupAndCompareAsync(volumeId, parent, inUse, $"seed {seed}, round {round}");
            taken.Add((backupId, TestFiles.Sha256(pool.VolumePath(volumeId))));
            if (summary.Cbt)
                cbtRounds++;
            parent = backupId;
            if (round % 5 == 4)
            {
                var (earlier, sha256) = taken[random.Next(taken.Count)];
                var target = repository.EmptyTarget(Size);
                await backups.RestoreAsync(Container, earlier, target, null, CancellationToken.None);
                Assert.True(sha256 == TestFiles.Sha256(target), $"seed {seed}, round {round}: restore of {earlier} differs from the volume at its backup");
            }
        }
        Assert.Equal(49, cbtRounds);                       // every incremental had its parent's device as base
    }

    [Fact]
    public async Task An_incremental_of_one_changed_block_reads_only_its_chunk()
    {
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        Write(pool.VolumePath(volumeId), 5 * RepositoryFixture.ChunkSize + 100, TestFiles.RandomBytes(10, seed: 7));

        var (_, summary) = await BackupAndCompareAsync(volumeId, full, inUse: true);

        Assert.True(summary.Cbt);
        Assert.Equal(RepositoryFixture.ChunkSize, summary.BytesRead);
    }

    [Fact]
    public async Task A_backup_from_a_snapshot_uses_and_becomes_the_base()
    {
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        Write(pool.VolumePath(volumeId), 1 << 20, TestFiles.RandomBytes(3 << 20, seed: 8));
        var snapshotId = Guid.NewGuid();
        pool.CreateSnapshot(snapshotId, volumeId, CancellationToken.None);
        Write(pool.VolumePath(volumeId), 9 << 20, TestFiles.RandomBytes(1 << 20, seed: 9));

        var (fromSnapshot, first) = await BackupAndCompareAsync(volumeId, full, inUse: false, snapshotId: snapshotId);
        var (_, second) = await BackupAndCompareAsync(volumeId, fromSnapshot, inUse: false);

        Assert.True(first.Cbt && second.Cbt);
        Assert.InRange(first.BytesRead, 3 << 20, 4 << 20);
        Assert.InRange(second.BytesRead, 1 << 20, 2 << 20);
    }

    [Fact]
    public async Task A_failed_backup_keeps_the_old_base()
    {
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        var failed = pool.GetBackupDevice(Guid.NewGuid(), volumeId, null, inUse: true, full, CancellationToken.None);
        pool.ReleaseDevice(Path.GetFileName(failed.Path), commit: false);
        Write(pool.VolumePath(volumeId), 0, TestFiles.RandomBytes(4096, seed: 10));

        var (_, summary) = await BackupAndCompareAsync(volumeId, full, inUse: false);

        Assert.True(summary.Cbt);
    }

    [Fact]
    public async Task Without_a_base_after_a_restart_the_incremental_reads_the_whole_device()
    {
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        pool = NewPool();                                   // a restarted agent removes its bases with its other temporaries

        await AssertFullReadAsync(volumeId, full);
    }

    [Fact]
    public async Task A_parent_that_is_not_the_bases_backup_reads_the_whole_device()
    {
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        await BackupAndCompareAsync(volumeId, full, inUse: false);    // the base is now this incremental's device
        Write(pool.VolumePath(volumeId), 3 << 20, TestFiles.RandomBytes(4096, seed: 11));

        await AssertFullReadAsync(volumeId, full);
    }

    [Fact]
    public async Task A_deleted_backup_restored_volume_or_deleted_volume_drops_the_base()
    {
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        Assert.True(pool.DropBackupBase(full));
        await AssertFullReadAsync(volumeId, full);

        var (second, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        var (restorePath, _) = pool.GetRestoreDevice(volumeId, Guid.NewGuid());
        await backups.RestoreAsync(Container, second, restorePath, null, CancellationToken.None);
        pool.ReleaseDevice(Path.GetFileName(restorePath), commit: true);
        Assert.False(File.Exists(pool.BasePath(volumeId)));
        await AssertFullReadAsync(volumeId, second);

        var (third, _) = await BackupAndCompareAsync(volumeId, null, inUse: true);
        Assert.True(File.Exists(pool.BasePath(volumeId)));
        pool.DeleteVolume(volumeId);
        Assert.False(File.Exists(pool.BasePath(volumeId)));
        Assert.False(pool.DropBackupBase(third));
    }

    [Fact]
    public async Task A_base_that_is_not_the_copy_the_parent_read_is_not_trusted()
    {
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        Write(pool.VolumePath(volumeId), 0, TestFiles.RandomBytes(1 << 20, seed: 12));
        var device = pool.GetBackupDevice(Guid.NewGuid(), volumeId, null, inUse: false, full, CancellationToken.None);
        Assert.NotNull(device.Changed);
        var backupId = Guid.NewGuid();

        // As if a second delivery of the parent's command had read another copy: the generations differ.
        var summary = await backups.BackupAsync(Container, backupId, volumeId, full,
            new BackupSource(device.Path, Size, device.Generation, [], "another-generation"), null, CancellationToken.None);

        Assert.False(summary.Cbt);
        await AssertSameChunksAsync(backupId, await FullReadAsync(volumeId, full, device.Path), "generation mismatch");
        pool.ReleaseDevice(Path.GetFileName(device.Path), commit: false);
    }

    [Fact]
    public async Task Past_the_bound_on_base_space_the_oldest_base_is_dropped()
    {
        pool = NewPool(maxBaseBytes: 512 << 10);
        var volumeId = NewVolume();
        var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: false);
        Write(pool.VolumePath(volumeId), 0, TestFiles.RandomBytes(1 << 20, seed: 13));   // the base alone now holds the old 1 MiB

        await AssertFullReadAsync(volumeId, full);
    }

    [Fact]
    public async Task A_pool_whose_filesystem_cannot_tell_reads_the_whole_device()
    {
        var ext = Directory.CreateTempSubdirectory("cbt-not-xfs-").FullName;
        try
        {
            pool = new VolumePool(Options.Create(new VolumeOptions { PoolPath = ext }), NullLogger<VolumePool>.Instance);
            var volumeId = NewVolume();
            var (full, _) = await BackupAndCompareAsync(volumeId, null, inUse: true);

            await AssertFullReadAsync(volumeId, full);
        }
        finally
        {
            Directory.Delete(ext, recursive: true);
        }
    }

    [Fact]
    public async Task The_gauge_reports_the_bytes_only_the_bases_hold()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        pool = NewPool(meters: services.GetRequiredService<IMeterFactory>());
        var volumeId = NewVolume();
        await BackupAndCompareAsync(volumeId, null, inUse: false);
        Write(pool.VolumePath(volumeId), 0, TestFiles.RandomBytes(1 << 20, seed: 14));
        using (var file = File.OpenHandle(pool.VolumePath(volumeId), FileMode.Open, FileAccess.Write)) RandomAccess.FlushToDisk(file);

        long? observed = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "volumeagent.cbt.base.size" && instrument.Meter.Scope == services.GetRequiredService<IMeterFactory>())
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => observed = value);
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(1L << 20, observed);
    }

    Guid NewVolume()
    {
        var id = Guid.NewGuid();
        pool.CreateVolume(id, Size);
        var path = pool.VolumePath(id);
        for (var i = 0; i < 8; i++)                     // data with holes between
            Write(path, i * (4L << 20), TestFiles.RandomBytes(1 << 20, seed: i));
        return id;
    }

    // A backup the way the consumer takes it (device, CBT ranges, commit), checked against a full read of the same device.
    async Task<(Guid BackupId, BackupSummary Summary)> BackupAndCompareAsync(Guid volumeId, Guid? parent, bool inUse, string? context = null, Guid? snapshotId = null)
    {
        var backupId = Guid.NewGuid();
        var device = pool.GetBackupDevice(backupId, volumeId, snapshotId, inUse, parent, CancellationToken.None);
        var summary = await backups.BackupAsync(Container, backupId, volumeId, parent,
            new BackupSource(device.Path, Size, device.Generation, device.Changed?.Select(r => (r.Offset, r.Length)).ToList(), device.BaseGeneration),
            null, CancellationToken.None);
        if (summary.Cbt)
            await AssertSameChunksAsync(backupId, await FullReadAsync(volumeId, parent, device.Path), context ?? "");
        pool.ReleaseDevice(Path.GetFileName(device.Path), commit: true);
        return (backupId, summary);
    }

    async Task AssertFullReadAsync(Guid volumeId, Guid parent)
    {
        var (backupId, summary) = await BackupAndCompareAsync(volumeId, parent, inUse: false);
        Assert.False(summary.Cbt);
        var manifest = await backups.ReadManifestAsync(Container, backupId, CancellationToken.None);
        Assert.Equal(manifest!.Totals.DataBytes, summary.BytesRead);
    }

    async Task<Guid> FullReadAsync(Guid volumeId, Guid? parent, string device)
    {
        var id = Guid.NewGuid();
        var summary = await backups.BackupAsync(Container, id, volumeId, parent, new BackupSource(device, Size), null, CancellationToken.None);
        Assert.False(summary.Cbt);
        return id;
    }

    async Task AssertSameChunksAsync(Guid backupId, Guid fullRead, string context)
    {
        var cbt = await backups.ReadManifestAsync(Container, backupId, CancellationToken.None);
        var full = await backups.ReadManifestAsync(Container, fullRead, CancellationToken.None);
        Assert.True(full!.Chunks.SequenceEqual(cbt!.Chunks), $"{context}: the CBT manifest differs from a full read's");
    }

    static void Write(string path, long offset, byte[] data)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        RandomAccess.Write(file, data, offset);
    }

    // Writes of 1 byte to 8 MiB at random offsets (into data or holes, zeros now and then), punched holes, and
    // truncations to the same size: what a guest does between two backups.
    static void RandomWrites(Random random, string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        for (var n = random.Next(1, 5); n > 0; n--)
        {
            var length = random.Next(4) == 0 ? random.Next(1, 4097) : random.Next(1, (8 << 20) + 1);
            var offset = random.NextInt64(Size - length + 1);
            switch (random.Next(6))
            {
                case 0:
                    Assert.Equal(0, fallocate(file, FallocPunchHole | FallocKeepSize, offset, length));
                    break;
                case 1:
                    RandomAccess.SetLength(file, Size);
                    break;
                case 2:
                    RandomAccess.Write(file, new byte[length], offset);
                    break;
                default:
                    var data = new byte[length];
                    random.NextBytes(data);
                    RandomAccess.Write(file, data, offset);
                    break;
            }
        }
    }

    const int FallocKeepSize = 1;
    const int FallocPunchHole = 2;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);
}
