using Microsoft.EntityFrameworkCore;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

[Collection(BackendCollection.Name)]
public sealed partial class RestoreAndDeleteTests(Backend backend)
{
    [Fact]
    public async Task Restore_into_an_existing_volume_replaces_its_data_and_keeps_holes()
    {
        var sourceId = await backend.CreateVolumeAsync();
        var source = backend.VolumeFile(sourceId);
        TestFiles.WriteGuestData(source, seed: 20, offset: 5L << 20, bytes: 2 << 20);
        var sourceSha = TestFiles.Sha256(source);
        var backupId = await BackupAsync(sourceId);

        var targetId = await backend.CreateVolumeAsync();
        var target = backend.VolumeFile(targetId);
        TestFiles.WriteGuestData(target, seed: 21, offset: 0, bytes: 16 << 20);   // old data where the backup has holes

        var restore = await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { volume_id = targetId } });
        Assert.Equal(targetId, (string?)restore["restore"]!["volume_id"]);
        await backend.WaitForAsync($"volumes/{targetId}", "volume", "available", "error_restoring");

        Assert.Equal(sourceSha, TestFiles.Sha256(target));
        Assert.True(TestFiles.AllocatedBytes(target) <= TestFiles.AllocatedBytes(source) + (1 << 20), "the restored volume is as sparse as the source");
        Assert.Empty(Directory.EnumerateFiles(backend.Pool, "*.restore-*"));
    }

    [Fact]
    public async Task Restore_into_a_smaller_or_busy_volume_is_refused_and_changes_nothing()
    {
        var sourceId = await backend.CreateVolumeAsync(2);
        var backupId = await BackupAsync(sourceId);
        var smallId = await backend.CreateVolumeAsync(1);

        var refused = await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { volume_id = smallId } }, expectedStatus: 400);

        Assert.Contains("too small", (string?)refused["badRequest"]!["message"]);
        Assert.Equal("available", (string?)(await backend.GetAsync($"backups/{backupId}"))["backup"]!["status"]);
        Assert.Equal("available", (string?)(await backend.GetAsync($"volumes/{smallId}"))["volume"]!["status"]);
    }

    [Fact]
    public async Task Delete_removes_the_backup_from_the_share_and_the_database()
    {
        var volumeId = await backend.CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: 30, offset: 0, bytes: 3 << 20);
        // Chunk names are keyed hashes and manifests are encrypted: a backup's own chunks are those it added to the share.
        var others = backend.ChunkFiles();
        var backupId = await BackupAsync(volumeId);
        var manifest = Directory.EnumerateFiles(backend.RepositoryFolder, $"{backupId}.manifest", SearchOption.AllDirectories).Single();
        var own = backend.ChunkFiles().Except(others).ToList();
        Assert.Equal(3, own.Count);                                             // its three 1 MiB chunks, shared with no other backup

        var response = await backend.Http.DeleteAsync($"/v3/{Backend.Project}/backups/{backupId}");
        Assert.Equal(202, (int)response.StatusCode);

        await Eventually.UntilAsync(async () => (await backend.Http.GetAsync($"/v3/{Backend.Project}/backups/{backupId}")).StatusCode == System.Net.HttpStatusCode.NotFound,
            TimeSpan.FromSeconds(30), $"backup {backupId} to be gone (404)", every: TimeSpan.FromMilliseconds(150));
        Assert.False(File.Exists(manifest));
        Assert.All(own, chunk => Assert.False(File.Exists(chunk), $"{chunk} is still on the share"));
        Assert.All(others, chunk => Assert.True(File.Exists(chunk), $"{chunk}, which other backups need, is gone"));   // what the rest need stays
        await using var db = backend.NewDbContext();
        Assert.False(await db.Backups.AnyAsync(b => b.Id == Guid.Parse(backupId)));
        Assert.Equal("Deleted", (await db.Backups.IgnoreQueryFilters().SingleAsync(b => b.Id == Guid.Parse(backupId))).State);
    }

    async Task<string> BackupAsync(string volumeId)
    {
        var created = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId } });
        var backupId = (string)created["backup"]!["id"]!;
        Assert.Equal("available", (string?)(await backend.WaitForAsync($"backups/{backupId}", "backup", "available", "error"))["status"]);
        return backupId;
    }
}
