using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>The broker and the database go away in the middle of a backup; run alone, as they are everyone's.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class OutageCollection : ICollectionFixture<Backend>
{
    public const string Name = "outages";
}

[Collection(OutageCollection.Name)]
public sealed class OutageTests(Backend backend)
{
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
