using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Backups;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>One backup travels Api → RabbitMQ → BackupAgent → gRPC VolumeAgent → NFS and back, on the real services.</summary>
[Collection(BackendCollection.Name)]
public sealed class BackupFlowTests(Backend backend)
{
    [Fact]
    public async Task Full_backup_of_available_volume_becomes_available_and_restores_to_a_new_volume()
    {
        var volumeId = await backend.CreateVolumeAsync(1, "source");
        var file = backend.VolumeFile(volumeId);
        TestFiles.WriteGuestData(file, seed: 1, offset: 0, bytes: 3 << 20);
        TestFiles.WriteGuestData(file, seed: 2, offset: 600L << 20, bytes: 1 << 20);
        var sourceSha = TestFiles.Sha256(file);

        var created = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, name = "full" } });
        var backupId = (string)created["backup"]!["id"]!;
        await using (var db = backend.NewDbContext())
            Assert.Contains(await db.Outbox.ToListAsync(), m => m.MessageType == "BackupCreateRequested" && m.Body.Contains(backupId));   // the request committed with the row

        var backup = await backend.WaitForAsync($"backups/{backupId}", "backup", "available", "error");
        await using (var db = backend.NewDbContext())               // the saga sent the command through the outbox too
            Assert.Contains(await db.Outbox.ToListAsync(), m => m.MessageType == "CreateBackup" && m.Body.Contains(backupId));
        Assert.Equal("available", (string?)backup["status"]);
        Assert.Equal(1, (int)backup["size"]!);
        Assert.Equal(4, (int)backup["object_count"]!);                           // 4 MiB of data in 1 MiB chunks; holes are not objects
        Assert.Equal("available", (string?)(await backend.GetAsync($"volumes/{volumeId}"))["volume"]!["status"]);
        Assert.True(File.Exists(Path.Combine(backend.RepositoryFolder, ContainerName.Default, "backups", $"{backupId}.manifest")),
            "the manifest is on the NFS export, in the default container");
        await using (var db = backend.NewDbContext())
            Assert.Equal("Available", (await db.Backups.SingleAsync(b => b.Id == Guid.Parse(backupId))).State);

        var detail = await backend.GetAsync("backups/detail");
        Assert.Contains(detail["backups"]!.AsArray(), b => (string?)b!["id"] == backupId);

        var restore = await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { name = "restored" } });
        var restoredId = (string)restore["restore"]!["volume_id"]!;
        Assert.Equal("restored", (string?)restore["restore"]!["volume_name"]);
        await backend.WaitForAsync($"volumes/{restoredId}", "volume", "available", "error_restoring");
        await backend.WaitForAsync($"backups/{backupId}", "backup", "available");
        var restoredFile = backend.VolumeFile(restoredId);
        Assert.Equal(sourceSha, TestFiles.Sha256(restoredFile));
        Assert.True(TestFiles.AllocatedBytes(restoredFile) <= TestFiles.AllocatedBytes(file) + (1 << 20),
            $"holes stay holes: restored {TestFiles.AllocatedBytes(restoredFile)} bytes allocated, source {TestFiles.AllocatedBytes(file)}");
    }
}
