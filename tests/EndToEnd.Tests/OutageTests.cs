using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>The broker, the database and the NFS server go away; run alone, as they are everyone's.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class OutageCollection : ICollectionFixture<Backend>
{
    public const string Name = "outages";
}

[Collection(OutageCollection.Name)]
public sealed class OutageTests(Backend backend)
{
    // Here, not beside the other Backend tests: the NFS server is shared, and tests running meanwhile (the multi-host
    // ones) would see their backups fail.
    [Fact]
    public async Task With_the_NFS_server_stopped_a_backup_ends_in_error_and_the_volume_is_released()
    {
        var volumeId = await backend.CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: 40, offset: 0, bytes: 1 << 20);
        await backend.PostAsync($"volumes/{volumeId}/action", new Dictionary<string, object> { ["os-attach"] = new { instance_uuid = Guid.NewGuid(), mountpoint = "/dev/vdb" } });
        await TestServices.SetNfsRunningAsync(false);
        try
        {
            var created = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, force = true } });
            var backupId = (string)created["backup"]!["id"]!;

            var backup = await backend.WaitForAsync($"backups/{backupId}", "backup", "available", "error");

            Assert.Equal("error", (string?)backup["status"]);
            Assert.Contains("NFS", (string?)backup["fail_reason"], StringComparison.OrdinalIgnoreCase);
            Assert.Equal("in-use", (string?)(await backend.GetAsync($"volumes/{volumeId}"))["volume"]!["status"]);
            Assert.Empty(Directory.EnumerateFiles(backend.Pool, "tmp-*"));
        }
        finally
        {
            await TestServices.SetNfsRunningAsync(true);
        }
    }

    [Theory]
    [InlineData("rabbitmq")]
    [InlineData("postgres")]
    public async Task A_backup_running_through_an_outage_completes_and_restores(string service)
    {
        var volumeId = await backend.CreateVolumeAsync(2);
        var file = backend.VolumeFile(volumeId);
        TestFiles.WriteGuestData(file, seed: 70, offset: 64 << 20, bytes: 768 << 20);
        var sha = TestFiles.Sha256(file);
        var backupId = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, name = $"through-{service}" } }))["backup"]!["id"]!;
        await backend.WaitForLogAsync($"Backup {backupId} of volume");

        await TestServices.OutageAsync(service, TimeSpan.FromSeconds(5));

        var backup = await backend.WaitForAsync(TimeSpan.FromMinutes(3), $"backups/{backupId}", "backup", "available", "error");
        Assert.Equal("available", (string?)backup["status"]);
        Assert.Equal("available", (string?)(await backend.GetAsync($"volumes/{volumeId}"))["volume"]!["status"]);
        // A broker that was down long enough (its start recovers every virtual host) silenced the agents' heartbeats past
        // service_down_time: a restore is refused until one is heard again, as Cinder's would be. Wait as a client retries.
        await backend.WaitForBackupServiceAsync();
        var restoredId = (string)(await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { } }))["restore"]!["volume_id"]!;
        await backend.WaitForAsync($"volumes/{restoredId}", "volume", "available");
        Assert.Equal(sha, TestFiles.Sha256(backend.VolumeFile(restoredId)));
        Assert.Empty(Directory.EnumerateFiles(backend.Pool, "tmp-*"));
    }
}
