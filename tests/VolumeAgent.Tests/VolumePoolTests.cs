using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.TestSupport;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>
/// The pool where it cannot reflink (a temp folder on the machine's ext4 disk), so clones are copies. Run alone: each
/// test catches a copy mid-way by polling its file every millisecond, which other classes' work on the two cores
/// could starve for longer than the copy lasts.
/// </summary>
[Collection(VolumePoolTests.Alone)]
public sealed class VolumePoolTests : IDisposable
{
    public const string Alone = "volume-pool-copies";

    readonly string folder = Directory.CreateTempSubdirectory("volume-pool-copy-").FullName;

    [Fact]
    public async Task A_cancelled_copy_stops_and_leaves_no_temporary()
    {
        var pool = new VolumePool(Options.Create(new VolumeOptions { PoolPath = folder, AllowCopyFallback = true }), NullLogger<VolumePool>.Instance);
        var volumeId = Guid.NewGuid();
        pool.CreateVolume(volumeId, 1L << 30);                  // long enough to copy that the cancel lands mid-way, even on a busy machine
        FillWithData(pool.VolumePath(volumeId));
        var backupId = Guid.NewGuid();
        using var cancel = new CancellationTokenSource();

        var copy = Task.Run(() => pool.GetBackupDevice(backupId, volumeId, null, inUse: true, null, cancel.Token));
        await CopyingAsync(backupId);
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => copy);
        Assert.Equal([$"volume-{volumeId}"], Directory.EnumerateFiles(folder).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_device_call_the_caller_gives_up_on_stops_its_copy()
    {
        using var agent = new InProcessVolumeAgent(folder);
        var client = agent.Client;
        var volumeId = Guid.NewGuid();
        await client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = volumeId.ToString(), SizeBytes = 512L << 20 });
        FillWithData(Path.Combine(folder, $"volume-{volumeId}"));
        var backupId = Guid.NewGuid();
        using var cancel = new CancellationTokenSource();

        var call = client.GetBackupDeviceAsync(new GetBackupDeviceRequest { VolumeId = volumeId.ToString(), BackupId = backupId.ToString(), InUse = true },
            cancellationToken: cancel.Token);
        await CopyingAsync(backupId);
        await cancel.CancelAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync);
        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
        await Eventually.UntilAsync(() => !Directory.EnumerateFiles(folder, "tmp-*").Any(), TimeSpan.FromSeconds(30),
            "the cancelled copy to remove its temporaries (the server notices at its next block)", every: TimeSpan.FromMilliseconds(10));
    }

    // Until the copy has written its first block into the temporary snapshot.
    async Task CopyingAsync(Guid backupId)
    {
        var target = Path.Combine(folder, $"tmp-snapshot-{backupId}");
        await Eventually.UntilAsync(() => File.Exists(target) && new FileInfo(target).Length > 0, TimeSpan.FromSeconds(30),
            "the copy's first block", every: TimeSpan.FromMilliseconds(1));
    }

    // Data in every block, so the copy has no holes to skip and takes long enough to be caught mid-way.
    static void FillWithData(string path)
    {
        var block = new byte[1 << 20];
        new Random(9).NextBytes(block);
        using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
        while (file.Position < file.Length)
            file.Write(block);
    }

    public void Dispose() => Directory.Delete(folder, recursive: true);
}

[CollectionDefinition(VolumePoolTests.Alone, DisableParallelization = true)]
public sealed class VolumePoolCopies;
