using System.Net.Http.Json;
using System.Text.RegularExpressions;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

// Verify on the whole service: the Api's admin action, the saga, a BackupAgent reading the share, and back.
[Collection(BackendCollection.Name)]
public sealed partial class VerifyTests(Backend backend)
{
    [Fact]
    public async Task Verify_finds_a_chunk_damaged_on_the_share_and_marks_that_backup_error_naming_it()
    {
        var damagedVolume = await backend.CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(damagedVolume), seed: 1070, offset: 0, bytes: 3 << 20);
        var damaged = await BackupAsync(damagedVolume);
        var cleanVolume = await backend.CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(cleanVolume), seed: 1071, offset: 0, bytes: 2 << 20);
        var clean = await BackupAsync(cleanVolume);

        // The second of its three chunks (their order in the manifest is the volume's): one bit flipped, size unchanged.
        var manifest = Directory.EnumerateFiles(backend.RepositoryFolder, $"{damaged}.manifest", SearchOption.AllDirectories).Single();
        var hash = ChunkHash().Matches(File.ReadAllText(manifest).Split('\n', 2)[1]).Select(m => m.Value).Distinct().ElementAt(1);
        var chunk = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(manifest))!, "chunks", hash[..2], hash);
        var bytes = await File.ReadAllBytesAsync(chunk);
        bytes[bytes.Length / 2] ^= 0x10;
        await File.WriteAllBytesAsync(chunk, bytes);

        var member = await backend.Http.PostAsJsonAsync($"/v3/{backend.ProjectId}/backups/{damaged}/action", new Dictionary<string, object?> { ["os-verify"] = null });
        Assert.Equal(403, (int)member.StatusCode);              // Cinder's clients cannot send it, and members may not
        await VerifyAsync(damaged);
        await VerifyAsync(clean);

        var failed = await backend.WaitForAsync($"backups/{damaged}", "backup", "error");
        var reason = (string?)failed["fail_reason"];
        Assert.Contains($"chunk 1 ({hash})", reason);
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

    [GeneratedRegex("[0-9a-f]{64}")]
    private static partial Regex ChunkHash();
}
