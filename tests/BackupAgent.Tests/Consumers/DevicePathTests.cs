using MassTransit;
using VolumeBackup.BackupAgent.Tests.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;

namespace VolumeBackup.BackupAgent.Tests.Consumers;

/// <summary>
/// Defence in depth: the agent (root) reads and writes a device only inside the pool it serves (Agent:PoolPath), whatever
/// path the VolumeAgent answers. Outside it, the job fails at once naming the path, and the device is still released.
/// </summary>
public sealed class DevicePathTests : IAsyncLifetime
{
    readonly AgentHarness agent = new();
    readonly string outside = Directory.CreateTempSubdirectory("outside-pool-").FullName;

    public Task InitializeAsync() => agent.StartAsync();

    public async Task DisposeAsync()
    {
        await agent.DisposeAsync();
        Directory.Delete(outside, recursive: true);
    }

    [Fact]
    public void Only_files_inside_the_pool_pass_with_every_link_resolved()
    {
        var volume = Path.Combine(agent.Pool, "volume-a");
        File.WriteAllBytes(volume, [1]);
        var secret = Path.Combine(outside, "secret");
        File.WriteAllBytes(secret, [2]);
        File.CreateSymbolicLink(Path.Combine(agent.Pool, "link-out"), secret);
        File.CreateSymbolicLink(Path.Combine(agent.Pool, "link-in"), volume);
        Directory.CreateSymbolicLink(Path.Combine(agent.Pool, "dir-out"), outside);

        Assert.Equal(volume, DevicePath.Check(agent.Pool, volume));
        Assert.Equal(volume, DevicePath.Check(agent.Pool, Path.Combine(agent.Pool, "link-in")));
        foreach (var (path, reason) in new[]
        {
            (secret, "it is outside the pool"),
            ("/etc/passwd", "it is outside the pool"),
            (Path.Combine(agent.Pool, "link-out"), $"it resolves to {secret}, outside the pool"),
            (Path.Combine(agent.Pool, "dir-out", "secret"), $"it resolves to {secret}, outside the pool"),
            ($"{agent.Pool}/../{Path.GetFileName(agent.Pool)}/volume-a", "not an absolute path without '..'"),
            ("volume-a", "not an absolute path without '..'"),
            (agent.Pool, "it is outside the pool"),
            (Path.Combine(agent.Pool, "volume-missing"), "it does not exist"),
        })
        {
            var error = Assert.Throws<UntrustedDeviceException>(() => DevicePath.Check(agent.Pool, path));
            Assert.Contains($"Refused device path {path} from the VolumeAgent: {reason}", error.Message);
        }
    }

    [Fact]
    public async Task A_backup_whose_device_is_outside_the_pool_fails_without_reading_it_and_releases_the_device()
    {
        var (volumeId, _) = await agent.VolumeAsync(TestFiles.RandomBytes(1 << 20, seed: 11));
        var secret = Path.Combine(outside, "shadow");
        await File.WriteAllBytesAsync(secret, TestFiles.RandomBytes(1 << 20, seed: 12));
        agent.Devices.Path = secret;
        var backupId = Guid.NewGuid();

        await agent.Bus.Bus.Publish(new CreateBackup(backupId, volumeId, null, RepositoryFixture.Container, null, InUse: true, 1 << 20, "project", "nova"));

        Assert.True(await agent.Bus.Published.Any<Fault<CreateBackup>>(x => x.Context.Message.Message.BackupId == backupId));
        var fault = Assert.Single(agent.PublishedSoFar<Fault<CreateBackup>>());
        Assert.Contains($"Refused device path {secret} from the VolumeAgent: it is outside the pool", fault.Exceptions[0].Message);
        Assert.Empty(agent.PublishedSoFar<BackupCompleted>());
        Assert.Empty(agent.Repository.ChunkFiles());                   // nothing of it reached the share
        Assert.Equal(1, agent.Calls["GetBackupDevice"]);              // refused, not retried: the same path would come back
        Assert.Equal(1, agent.Calls["ReleaseDevice"]);                 // the real device, a temporary clone, is not left behind
        Assert.Empty(Directory.EnumerateFiles(agent.Pool, "tmp-*"));
    }

    [Fact]
    public async Task A_restore_whose_device_links_out_of_the_pool_fails_and_leaves_the_target_untouched()
    {
        var data = TestFiles.RandomBytes(1 << 20, seed: 13);
        var backupId = Guid.NewGuid();
        await agent.Repository.Repository().BackupAsync(RepositoryFixture.Container, backupId, Guid.NewGuid(), null, agent.Repository.Volume(data),
            data.Length, null, CancellationToken.None);
        var (volumeId, volume) = await agent.VolumeAsync(TestFiles.RandomBytes(data.Length, seed: 14));
        var victim = Path.Combine(outside, "disk");
        var original = TestFiles.RandomBytes(data.Length, seed: 15);
        await File.WriteAllBytesAsync(victim, original);
        var link = Path.Combine(agent.Pool, "volume-link");
        File.CreateSymbolicLink(link, victim);
        agent.Devices.Path = link;

        await agent.Bus.Bus.Publish(new RestoreBackup(backupId, Guid.NewGuid(), volumeId, RepositoryFixture.Container, "nova"));

        Assert.True(await agent.Bus.Published.Any<Fault<RestoreBackup>>(x => x.Context.Message.Message.BackupId == backupId));
        Assert.Contains($"it resolves to {victim}, outside the pool", Assert.Single(agent.PublishedSoFar<Fault<RestoreBackup>>()).Exceptions[0].Message);
        Assert.Empty(agent.PublishedSoFar<BackupRestored>());
        Assert.Equal(original, await File.ReadAllBytesAsync(victim));
        Assert.NotEqual(data, await File.ReadAllBytesAsync(volume));
        Assert.Equal(1, agent.Calls["GetRestoreDevice"]);
        Assert.Empty(Directory.EnumerateFiles(agent.Pool, "*.restore-*"));   // the real restore device was dropped
    }
}
