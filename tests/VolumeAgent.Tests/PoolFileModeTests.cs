using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.TestSupport;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>Volumes hold tenants' data: every file the pool makes is readable by the agent's user alone, and so is a pool folder it makes.</summary>
public sealed class PoolFileModeTests : IDisposable
{
    const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    readonly List<string> folders = [];

    [Theory]
    [InlineData("reflink")]   // a folder of the XFS pool
    [InlineData("copy")]      // a temp folder on a disk that cannot reflink
    public void Volumes_snapshots_and_devices_are_made_for_the_agents_user_alone(string kind)
    {
        var parent = kind == "reflink" ? TestServices.CreatePoolFolder("modes") : Directory.CreateTempSubdirectory("pool-modes-").FullName;
        folders.Add(parent);
        var root = Path.Combine(parent, "pool");                 // not there yet: the agent makes it
        var pool = new VolumePool(Options.Create(new VolumeOptions { PoolPath = root }), NullLogger<VolumePool>.Instance);
        var (volume, snapshot, restored) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());

        pool.CreateVolume(volume, 4 << 20);
        File.WriteAllBytes(pool.VolumePath(volume), new byte[4 << 20].Select((_, i) => (byte)i).ToArray());
        var method = pool.CreateSnapshot(snapshot, volume, CancellationToken.None);
        pool.CreateVolumeFromSnapshot(restored, snapshot, 4 << 20, CancellationToken.None);
        var device = pool.GetBackupDevice(Guid.NewGuid(), volume, null, inUse: true, null, CancellationToken.None);
        var (restoreDevice, _) = pool.GetRestoreDevice(restored, Guid.NewGuid());

        Assert.Equal(kind, method);
        Assert.Equal(OwnerOnly | UnixFileMode.UserExecute, File.GetUnixFileMode(root));
        string[] made = [pool.VolumePath(volume), pool.SnapshotPath(snapshot), pool.VolumePath(restored), device.Path, restoreDevice];
        Assert.Equal(made.Order(), Directory.EnumerateFiles(root).Order());
        Assert.All(made, file => Assert.Equal(OwnerOnly, File.GetUnixFileMode(file)));
    }

    public void Dispose()
    {
        foreach (var folder in folders) Directory.Delete(folder, recursive: true);
    }
}
