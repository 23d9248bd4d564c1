using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>The pool where it cannot reflink (a temp folder on the machine's ext4 disk), so clones are copies.</summary>
public sealed class VolumePoolTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("volume-pool-copy-").FullName;

    [Fact]
    public async Task A_cancelled_copy_stops_and_leaves_no_temporary()
    {
        var pool = new VolumePool(Options.Create(new VolumeOptions { PoolPath = folder, AllowCopyFallback = true }), NullLogger<VolumePool>.Instance);
        var volumeId = Guid.NewGuid();
        pool.CreateVolume(volumeId, 512L << 20);
        FillWithData(pool.VolumePath(volumeId));
        var backupId = Guid.NewGuid();
        using var cancel = new CancellationTokenSource();

        var copy = Task.Run(() => pool.GetBackupDevice(backupId, volumeId, null, inUse: true, cancel.Token));
        var target = Path.Combine(folder, $"tmp-snapshot-{backupId}");
        using (var started = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            while (!(File.Exists(target) && new FileInfo(target).Length > 0))   // the copy has written its first block
                await Task.Delay(1, started.Token);
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => copy);
        Assert.Equal([$"volume-{volumeId}"], Directory.EnumerateFiles(folder).Select(Path.GetFileName));
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
