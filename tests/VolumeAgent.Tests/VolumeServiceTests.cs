using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.TestSupport;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>The VolumeAgent over gRPC, on a folder of the XFS reflink pool.</summary>
public sealed class VolumeServiceTests : IDisposable
{
    readonly string pool = TestServices.CreatePoolFolder("va");
    readonly InProcessVolumeAgent agent;
    readonly VolumeHost.VolumeHostClient client;

    public VolumeServiceTests()
    {
        agent = new InProcessVolumeAgent(pool);
        client = agent.Client;
    }

    [Fact]
    public async Task Device_of_an_in_use_volume_is_a_clone_frozen_when_it_was_handed_out()
    {
        var (volumeId, volume) = await VolumeAsync(64 << 20, seed: 1);
        var before = Sha256(volume);
        var backupId = Guid.NewGuid();

        var device = await client.GetBackupDeviceAsync(new GetBackupDeviceRequest { VolumeId = volumeId.ToString(), BackupId = backupId.ToString(), InUse = true });
        Write(volume, seed: 2);                                   // the guest keeps writing after the device was handed out

        Assert.True(device.Temporary);
        Assert.Equal("reflink", device.Method);
        Assert.NotEqual(volume, device.Path);
        Assert.Equal(before, Sha256(device.Path));
        Assert.NotEqual(before, Sha256(volume));
        Assert.Equal([Path.GetFileName(device.Path)], Directory.EnumerateFiles(pool, "tmp-*").Select(Path.GetFileName));   // the temporary snapshot is already gone

        await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId });
        Assert.Empty(Directory.EnumerateFiles(pool, "tmp-*"));
    }

    [Fact]
    public async Task Restore_device_replaces_the_volume_only_on_commit()
    {
        var (volumeId, volume) = await VolumeAsync(16 << 20, seed: 3);
        var original = Sha256(volume);

        var dropped = await RestoreDeviceAsync(volumeId, Guid.NewGuid());
        Write(dropped.Path, seed: 4);
        await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = dropped.DeviceId, Commit = false });
        Assert.Equal(original, Sha256(volume));

        var kept = await RestoreDeviceAsync(volumeId, Guid.NewGuid());
        Write(kept.Path, seed: 5);
        var restored = Sha256(kept.Path);
        await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = kept.DeviceId, Commit = true });
        Assert.Equal(restored, Sha256(volume));
        Assert.Empty(Directory.EnumerateFiles(pool, "*.restore-*"));
    }

    [Fact]
    public async Task Committing_a_restore_device_an_agent_restart_removed_fails_and_keeps_the_volume()
    {
        var (volumeId, volume) = await VolumeAsync(16 << 20, seed: 7);
        var original = Sha256(volume);
        var device = await RestoreDeviceAsync(volumeId, Guid.NewGuid());
        await using (var writer = new FileStream(device.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            _ = new VolumePool(Options.Create(new VolumeOptions { PoolPath = pool }), NullLogger<VolumePool>.Instance);   // an agent restarting mid-restore
            writer.Write(Enumerable.Repeat((byte)0xAB, 4096).ToArray());   // the writer still holds the now unlinked file
        }

        var commit = await Assert.ThrowsAsync<RpcException>(() => client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId, Commit = true }).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, commit.StatusCode);
        Assert.Contains(device.DeviceId, commit.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(original, Sha256(volume));
    }

    [Fact]
    public async Task A_redelivered_restore_gets_its_own_device_and_the_first_keeps_its_data()
    {
        var (volumeId, volume) = await VolumeAsync(16 << 20, seed: 9);
        var restoreId = Guid.NewGuid();
        var first = await RestoreDeviceAsync(volumeId, restoreId);
        Write(first.Path, seed: 8);
        var written = Sha256(first.Path);

        var second = await RestoreDeviceAsync(volumeId, restoreId);

        Assert.NotEqual(first.DeviceId, second.DeviceId);
        Assert.Equal(written, Sha256(first.Path));
        await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = second.DeviceId, Commit = false });
        await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = first.DeviceId, Commit = true });
        Assert.Equal(written, Sha256(volume));
        Assert.Empty(Directory.EnumerateFiles(pool, "*.restore-*"));
    }

    [Fact]
    public async Task Bad_ids_are_InvalidArgument_and_missing_volumes_NotFound()
    {
        var invalid = await Assert.ThrowsAsync<RpcException>(() => client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = "../etc", SizeBytes = 1 }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, invalid.StatusCode);

        var escape = await Assert.ThrowsAsync<RpcException>(() => client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = "../volume-x" }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, escape.StatusCode);

        var missing = await Assert.ThrowsAsync<RpcException>(() => client.GetBackupDeviceAsync(new GetBackupDeviceRequest
        {
            VolumeId = Guid.NewGuid().ToString(), BackupId = Guid.NewGuid().ToString(),
        }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task A_volume_from_a_snapshot_has_the_snapshot_data()
    {
        var (volumeId, _) = await VolumeAsync(8 << 20, seed: 6);
        var snapshotId = Guid.NewGuid();
        var snapshot = await client.CreateSnapshotAsync(new CreateSnapshotRequest { SnapshotId = snapshotId.ToString(), VolumeId = volumeId.ToString() });
        Assert.Equal("reflink", snapshot.Method);

        var cloneId = Guid.NewGuid();
        await client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = cloneId.ToString(), SizeBytes = 16 << 20, SourceSnapshotId = snapshotId.ToString() });

        using var clone = File.OpenRead(Path.Combine(pool, $"volume-{cloneId}"));
        Assert.Equal(16 << 20, clone.Length);
        var head = new byte[8 << 20];
        clone.ReadExactly(head);
        Assert.Equal(Sha256(Path.Combine(pool, $"snapshot-{snapshotId}")), Sha256(head));
    }

    static void Write(string file, int seed) => WriteGuestData(file, seed, offset: 0, bytes: 4 << 20);

    async Task<(Guid Id, string Path)> VolumeAsync(long sizeBytes, int seed)
    {
        var id = Guid.NewGuid();
        await client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = id.ToString(), SizeBytes = sizeBytes });
        var path = Path.Combine(pool, $"volume-{id}");
        Write(path, seed);
        return (id, path);
    }

    async Task<Device> RestoreDeviceAsync(Guid volumeId, Guid restoreId) =>
        await client.GetRestoreDeviceAsync(new GetRestoreDeviceRequest { VolumeId = volumeId.ToString(), RestoreId = restoreId.ToString() });

    public void Dispose()
    {
        agent.Dispose();
        Directory.Delete(pool, recursive: true);
    }
}
