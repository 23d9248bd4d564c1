using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests.Cli;

[Collection(BackendCollection.Name)]
public sealed class RecordsTests(Backend backend)
{
    [Fact]
    public async Task An_exported_record_imported_into_a_fresh_deployment_on_the_same_share_restores()
    {
        var cli = new CinderCli(backend.Api.Address, Backend.Project);
        var volumeId = (await cli.OkAsync("create", "1")).Properties()["id"];
        await cli.WaitForStatusAsync("", volumeId, "available");
        TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: 70, offset: 3 << 20, bytes: 2 << 20);
        var sha = TestFiles.Sha256(backend.VolumeFile(volumeId));
        var backupId = (await cli.OkAsync("backup-create", volumeId)).Properties()["id"];
        await cli.WaitForStatusAsync("backup", backupId, "available");

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
    public async Task A_deployment_with_another_master_key_refuses_the_record()
    {
        var cli = new CinderCli(backend.Api.Address, Backend.Project);
        var volumeId = (await cli.OkAsync("create", "1")).Properties()["id"];
        await cli.WaitForStatusAsync("", volumeId, "available");
        TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: 71, offset: 1 << 20, bytes: 1 << 20);
        var backupId = (await cli.OkAsync("backup-create", volumeId)).Properties()["id"];
        await cli.WaitForStatusAsync("backup", backupId, "available");
        var record = (await cli.As("admin").OkAsync("backup-export", backupId)).Properties();

        await using var stranger = await Backend.SharingRepositoryWithAsync(backend, TestServices.CreateMasterKeyFile());
        var strangerCli = new CinderCli(stranger.Api.Address, Backend.Project);
        var refused = await strangerCli.As("admin").RunAsync("backup-import", record["backup_service"], record["backup_url"]);

        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("was exported under master key", refused.Error);
        Assert.NotEqual(0, (await strangerCli.RunAsync("backup-show", backupId)).ExitCode);   // nothing imported
    }
}
