using System.Text;
using System.Text.Json.Nodes;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests.Cli;

[Collection(BackendCollection.Name)]
public sealed class RecordsTests(Backend backend)
{
    [Fact]
    public async Task An_exported_record_imported_into_a_fresh_deployment_on_the_same_share_restores()
    {
        var cli = new CinderCli(backend.Api.Address, Backend.Project);
        var (backupId, sha) = await BackupOfGuestDataAsync(cli, seed: 70, offset: 3 << 20);

        Assert.NotEqual(0, (await cli.RunAsync("backup-export", backupId)).ExitCode);        // admin only
        var record = (await cli.As("admin").OkAsync("backup-export", backupId)).Properties();

        await using var fresh = await Backend.SharingRepositoryWithAsync(backend);
        var freshCli = new CinderCli(fresh.Api.Address, Backend.Project);
        await freshCli.As("admin").OkAsync("backup-import", record["backup_service"], record["backup_url"]);
        Assert.Equal("available", (await freshCli.OkAsync("backup-show", backupId)).Properties()["status"]);

        var restoredId = (await freshCli.OkAsync("backup-restore", backupId)).Properties()["volume_id"];
        await freshCli.WaitForStatusAsync("", restoredId, "available", "error_restoring");
        Assert.Equal(sha, TestFiles.Sha256(fresh.VolumeFile(restoredId)));

        var again = await freshCli.As("admin").RunAsync("backup-import", record["backup_service"], record["backup_url"]);
        Assert.NotEqual(0, again.ExitCode);
        Assert.Contains("already exists", again.Error);
    }

    [Fact]
    public async Task A_record_imported_under_another_id_restores_and_its_data_stays_while_either_row_lives()
    {
        var cli = new CinderCli(backend.Api.Address, Backend.Project);
        var (backupId, sha) = await BackupOfGuestDataAsync(cli, seed: 72, offset: 5 << 20);
        var record = (await cli.As("admin").OkAsync("backup-export", backupId)).Properties();

        // The id outside the record's signature changed, as Cinder's users do to import a second row of a backup.
        var envelope = JsonNode.Parse(Convert.FromBase64String(record["backup_url"]))!.AsObject();
        var copyId = Guid.NewGuid().ToString();
        envelope["id"] = copyId;
        await cli.As("admin").OkAsync("backup-import", record["backup_service"], Convert.ToBase64String(Encoding.UTF8.GetBytes(envelope.ToJsonString())));
        await cli.WaitForStatusAsync("backup", copyId, "available");

        // The original goes; the copy still restores the data: its manifest stayed.
        await cli.OkAsync("backup-delete", backupId);
        await cli.WaitUntilGoneAsync("backup", backupId, TimeSpan.FromSeconds(60));
        var restoredId = (await cli.OkAsync("backup-restore", copyId)).Properties()["volume_id"];
        await cli.WaitForStatusAsync("", restoredId, "available", "error_restoring");
        Assert.Equal(sha, TestFiles.Sha256(backend.VolumeFile(restoredId)));

        // The copy goes last and takes the manifest with it.
        await cli.OkAsync("backup-delete", copyId);
        await cli.WaitUntilGoneAsync("backup", copyId, TimeSpan.FromSeconds(60));
        Assert.DoesNotContain(Directory.EnumerateFiles(backend.RepositoryFolder, "*", SearchOption.AllDirectories), f => f.Contains(backupId, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_deployment_with_another_master_key_refuses_the_record()
    {
        var cli = new CinderCli(backend.Api.Address, Backend.Project);
        var (backupId, _) = await BackupOfGuestDataAsync(cli, seed: 71, offset: 1 << 20);
        var record = (await cli.As("admin").OkAsync("backup-export", backupId)).Properties();

        await using var stranger = await Backend.SharingRepositoryWithAsync(backend, TestServices.CreateMasterKeyFile());
        var strangerCli = new CinderCli(stranger.Api.Address, Backend.Project);
        var refused = await strangerCli.As("admin").RunAsync("backup-import", record["backup_service"], record["backup_url"]);

        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("was exported under master key", refused.Error);
        Assert.NotEqual(0, (await strangerCli.RunAsync("backup-show", backupId)).ExitCode);   // nothing imported
    }

    // A 1 GiB volume with 2 MiB of guest data at offset, backed up: the backup's id and the volume's SHA-256 at that time.
    async Task<(string BackupId, string Sha)> BackupOfGuestDataAsync(CinderCli cli, int seed, int offset)
    {
        var volumeId = (await cli.OkAsync("create", "1")).Properties()["id"];
        await cli.WaitForStatusAsync("", volumeId, "available");
        TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: seed, offset: offset, bytes: 2 << 20);
        var sha = TestFiles.Sha256(backend.VolumeFile(volumeId));
        var backupId = (await cli.OkAsync("backup-create", volumeId)).Properties()["id"];
        await cli.WaitForStatusAsync("backup", backupId, "available");
        return (backupId, sha);
    }
}
