using System.Net.Http.Json;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

// Verify on the whole service: the Api's admin action, the saga, a BackupAgent reading the share, and back.
[Collection(BackendCollection.Name)]
public sealed class VerifyTests(Backend backend)
{
    [Fact]
    public async Task Verify_finds_a_chunk_damaged_on_the_share_and_marks_that_backup_error_naming_it()
    {
        var damagedVolume = await backend.CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(damagedVolume), seed: 1070, offset: 0, bytes: 3 << 20);
        var chunksBefore = backend.ChunkFiles();
        var damaged = await BackupAsync(damagedVolume);
        // Chunk names are keyed hashes and the manifest is encrypted: the damaged backup's chunks are those it added.
        var chunk = backend.ChunkFiles().Except(chunksBefore).Order(StringComparer.Ordinal).First();
        var hash = Path.GetFileName(chunk);
        var cleanVolume = await backend.CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(cleanVolume), seed: 1071, offset: 0, bytes: 2 << 20);
        var clean = await BackupAsync(cleanVolume);

        // One bit flipped, size unchanged.
        var bytes = await File.ReadAllBytesAsync(chunk);
        bytes[bytes.Length / 2] ^= 0x10;
        await File.WriteAllBytesAsync(chunk, bytes);

        var member = await backend.Http.PostAsJsonAsync($"/v3/{backend.ProjectId}/backups/{damaged}/action", new Dictionary<string, object?> { ["os-verify"] = null });
        Assert.Equal(403, (int)member.StatusCode);              // Cinder's clients cannot send it, and members may not
        await VerifyAsync(damaged);
        await VerifyAsync(clean);

        var failed = await backend.WaitForAsync($"backups/{damaged}", "backup", "error");
        var reason = (string?)failed["fail_reason"];
        Assert.Matches($@"chunk \d+ \({hash}\)", reason);
        Assert.Contains("corrupt", reason);
        await backend.WaitForLogAsync($"Backup {clean} verified");
        Assert.Equal("available", (string?)(await backend.GetAsync($"backups/{clean}"))["backup"]!["status"]);
    }

    async Task VerifyAsync(string backupId)
    {
        var response = await backend.Admin.PostAsJsonAsync($"/v3/{backend.ProjectId}/backups/{backupId}/action", new Dictionary<string, object?> { ["os-verify"] = null });
        Assert.True((int)response.StatusCode == 202, $"os-verify: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }

    async Task<string> BackupAsync(string volumeId)
    {
        var created = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId } });
        var backupId = (string)created["backup"]!["id"]!;
        Assert.Equal("available", (string?)(await backend.WaitForAsync($"backups/{backupId}", "backup", "available", "error"))["status"]);
        return backupId;
    }
}
