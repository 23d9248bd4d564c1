using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>An attached volume is backed up through a temporary snapshot and clone, at one point in time.</summary>
[Collection(BackendCollection.Name)]
public sealed class OnlineBackupTests(Backend backend)
{
    [Fact]
    public async Task In_use_backup_needs_force()
    {
        var volumeId = await backend.CreateVolumeAsync();
        await backend.PostAsync($"volumes/{volumeId}/action", new Dictionary<string, object> { ["os-attach"] = new { instance_uuid = Guid.NewGuid(), mountpoint = "/dev/vdb" } });

        var refused = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId } }, expectedStatus: 400);

        Assert.Contains("force", (string?)refused["badRequest"]!["message"]);
        Assert.Equal("in-use", (string?)(await backend.GetAsync($"volumes/{volumeId}"))["volume"]!["status"]);
    }

    [Fact]
    public async Task In_use_backup_holds_the_data_of_the_moment_the_clone_was_taken()
    {
        var volumeId = await backend.CreateVolumeAsync();
        var file = backend.VolumeFile(volumeId);
        TestFiles.WriteGuestData(file, seed: 10, offset: 0, bytes: 8 << 20);
        var atBackup = TestFiles.Sha256(file);
        await backend.PostAsync($"volumes/{volumeId}/action", new Dictionary<string, object> { ["os-attach"] = new { instance_uuid = Guid.NewGuid(), mountpoint = "/dev/vdb" } });

        var created = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, force = true, name = "online" } });
        var backupId = (string)created["backup"]!["id"]!;
        // The volume is in-use again only once the agent holds its clone: from here the guest may write freely.
        await backend.WaitForAsync($"volumes/{volumeId}", "volume", "in-use");
        TestFiles.WriteGuestData(file, seed: 11, offset: 0, bytes: 8 << 20);
        Assert.NotEqual(atBackup, TestFiles.Sha256(file));

        Assert.Equal("available", (string?)(await backend.WaitForAsync($"backups/{backupId}", "backup", "available", "error"))["status"]);
        Assert.Equal("in-use", (string?)(await backend.GetAsync($"volumes/{volumeId}"))["volume"]!["status"]);
        Assert.Empty(Directory.EnumerateFiles(backend.Pool, "tmp-*"));            // snapshot and clone are gone

        var restore = await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { } });
        var restoredId = (string)restore["restore"]!["volume_id"]!;
        await backend.WaitForAsync($"volumes/{restoredId}", "volume", "available");
        Assert.Equal(atBackup, TestFiles.Sha256(backend.VolumeFile(restoredId)));
    }
}
