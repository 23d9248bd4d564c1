using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests.Cli;

/// <summary>Cinder's backup rules, driven by the real <c>cinder</c> CLI against the running service.</summary>
[Collection(BackendCollection.Name)]
public sealed class CinderCliTests(Backend backend)
{
    CinderCli Cli => new(backend.Api.Address, Backend.Project);

    async Task<string> CreateVolumeAsync(int sizeGb = 1)
    {
        var created = (await Cli.OkAsync("create", "--name", $"cli-{Guid.NewGuid():N}"[..12], sizeGb.ToString())).Properties();
        var id = created["id"];
        await Cli.WaitForStatusAsync("", id, "available");
        return id;
    }

    async Task<string> BackupAsync(params string[] args)
    {
        var id = (await Cli.OkAsync(["backup-create", .. args])).Properties()["id"];
        var shown = await Cli.WaitForStatusAsync("backup", id, "available", "error");
        Assert.True(shown["status"] == "available", $"backup {id}: {shown.GetValueOrDefault("fail_reason")}");
        return id;
    }

    [Fact]
    public async Task Create_show_list_restore_and_delete_a_backup()
    {
        var volumeId = await CreateVolumeAsync();
        var file = backend.VolumeFile(volumeId);
        TestFiles.WriteGuestData(file, seed: 60, offset: 1 << 20, bytes: 3 << 20);
        var sha = TestFiles.Sha256(file);

        var backupId = await BackupAsync("--name", "cli-full", "--description", "from the CLI", volumeId);
        var shown = (await Cli.OkAsync("backup-show", backupId)).Properties();
        Assert.Equal("cli-full", shown["name"]);
        Assert.Equal("False", shown["is_incremental"]);
        Assert.Equal(volumeId, shown["volume_id"]);
        Assert.Contains((await Cli.OkAsync("backup-list")).Table(), row => row["ID"] == backupId && row["Status"] == "available");
        Assert.Contains((await Cli.OkAsync("list")).Table(), row => row["ID"] == volumeId && row["Status"] == "available");

        var restored = (await Cli.OkAsync("backup-restore", "--name", "cli-restored", backupId)).Properties();
        var restoredId = restored["volume_id"];
        Assert.Equal("cli-restored", restored["volume_name"]);
        await Cli.WaitForStatusAsync("", restoredId, "available");
        Assert.Equal(sha, TestFiles.Sha256(backend.VolumeFile(restoredId)));

        await Cli.OkAsync("backup-delete", backupId);
        await Cli.WaitUntilGoneAsync("backup", backupId, TimeSpan.FromSeconds(30));
        Assert.Contains($"No volumebackup with a name or ID of '{backupId}' exists", (await Cli.RunAsync("backup-show", backupId)).Error);
    }

    [Fact]
    public async Task Incremental_backups_build_on_the_latest_and_protect_their_parent()
    {
        var volumeId = await CreateVolumeAsync();
        var refused = await Cli.RunAsync("backup-create", "--incremental", volumeId);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("No backups available to do an incremental backup", refused.Error);

        var file = backend.VolumeFile(volumeId);
        TestFiles.WriteGuestData(file, seed: 61, offset: 0, bytes: 4 << 20);
        var fullId = await BackupAsync(volumeId);
        TestFiles.WriteGuestData(file, seed: 62, offset: 0, bytes: 1 << 20);
        var sha = TestFiles.Sha256(file);
        var incrementalId = await BackupAsync("--incremental", volumeId);

        Assert.Equal([fullId, incrementalId], (await Cli.OkAsync("backup-list", "--volume-id", volumeId, "--sort", "created_at:asc")).Table().Select(r => r["ID"]));
        Assert.Equal([incrementalId, fullId], (await Cli.OkAsync("backup-list", "--volume-id", volumeId, "--sort", "name:asc,created_at:desc")).Table().Select(r => r["ID"]));
        Assert.Equal("True", (await Cli.OkAsync("backup-show", incrementalId)).Properties()["is_incremental"]);
        Assert.Equal("True", (await Cli.OkAsync("backup-show", fullId)).Properties()["has_dependent_backups"]);
        var parentDelete = await Cli.RunAsync("backup-delete", fullId);
        Assert.NotEqual(0, parentDelete.ExitCode);
        Assert.Contains("Incremental backups exist for this backup", parentDelete.Output + parentDelete.Error);

        var restoredId = (await Cli.OkAsync("backup-restore", incrementalId)).Properties()["volume_id"];
        await Cli.WaitForStatusAsync("", restoredId, "available");
        Assert.Equal(sha, TestFiles.Sha256(backend.VolumeFile(restoredId)));
    }

    [Fact]
    public async Task An_attached_volume_needs_force_and_is_backed_up_online()
    {
        var volumeId = await CreateVolumeAsync();
        var attachment = (await Cli.OkAsync("attachment-create", volumeId, Guid.NewGuid().ToString())).Properties();
        Assert.Equal("reserved", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);      // as Cinder: in-use at os-complete
        Assert.Contains("must be available or in-use", (await Cli.RunAsync("backup-create", "--force", volumeId)).Error);
        await Cli.OkAsync("attachment-complete", attachment["id"]);
        Assert.Equal("in-use", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);

        var refused = await Cli.RunAsync("backup-create", volumeId);
        Assert.Contains("force", refused.Error);
        await BackupAsync("--force", volumeId);
        Assert.Equal("in-use", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);

        await Cli.OkAsync("attachment-delete", attachment["id"]);
        Assert.Equal("available", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);
    }

    [Fact]
    public async Task An_attachment_with_a_connector_gets_connection_info_and_completes()
    {
        var volumeId = await CreateVolumeAsync();

        var attachment = (await Cli.OkAsync("attachment-create", volumeId, Guid.NewGuid().ToString(), "--connect", "True",
            "--initiator", "iqn.1993-08.org.debian:01:test", "--ip", "127.0.0.1", "--host", "compute-1", "--platform", "x86_64",
            "--ostype", "linux", "--multipath", "False", "--mountpoint", "/dev/vdb")).Properties();
        Assert.Equal("local", attachment["driver_volume_type"]);            // cinder prints connection_info as a second table
        Assert.Equal("reserved", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);
        await Cli.OkAsync("attachment-complete", attachment["id"]);
        Assert.Equal("in-use", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);

        await Cli.OkAsync("attachment-delete", attachment["id"]);
        Assert.Equal("available", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);
    }

    [Fact]
    public async Task Quotas_are_shown_updated_and_enforced()
    {
        var project = $"quota-{Guid.NewGuid():N}"[..14];
        var cli = new CinderCli(backend.Api.Address, project);
        var admin = cli.As("admin");
        Assert.Equal("10", (await cli.OkAsync("quota-show", project)).Table().Single(r => r["Property"] == "backups")["Value"]);

        await admin.OkAsync("quota-update", "--backups", "1", project);
        var volume = (await cli.OkAsync("create", "1")).Properties()["id"];
        await cli.WaitForStatusAsync("", volume, "available");
        var first = (await cli.OkAsync("backup-create", volume)).Properties()["id"];
        await cli.WaitForStatusAsync("backup", first, "available");

        var over = await cli.RunAsync("backup-create", volume);
        Assert.NotEqual(0, over.ExitCode);
        Assert.Contains("Maximum number of backups allowed (1) exceeded", over.Error);
        Assert.Contains("413", over.Error);
        var usage = (await cli.OkAsync("quota-usage", project)).Table().Single(r => r["Type"] == "backups");
        Assert.Equal("1", usage["In_use"]);
        Assert.Equal("1", usage["Limit"]);
        var limits = (await cli.OkAsync("absolute-limits")).Table().ToDictionary(r => r["Name"], r => r["Value"]);
        Assert.Equal("1", limits["maxTotalBackups"]);
        Assert.Equal("1", limits["totalBackupsUsed"]);
        Assert.Equal("1", limits["totalBackupGigabytesUsed"]);
    }

    [Fact]
    public async Task Service_list_shows_the_backup_agents()
    {
        var services = (await Cli.As("admin").OkAsync("service-list")).Table();
        var backupService = services.Single(r => r["Binary"] == "cinder-backup");
        Assert.Equal("host-a", backupService["Host"]);
        Assert.Equal("nova", backupService["Zone"]);
        Assert.Equal("up", backupService["State"]);
        var volumeService = services.Single(r => r["Binary"] == "cinder-volume");     // the VolumeAgent, asked by the Api
        Assert.Equal(("host-a", "nova", "up"), (volumeService["Host"], volumeService["Zone"], volumeService["State"]));

        Assert.Equal("available", (await Cli.OkAsync("availability-zone-list")).Table().Single(r => r["Name"] == "nova")["Status"]);

        var denied = await Cli.RunAsync("service-list");
        Assert.NotEqual(0, denied.ExitCode);
        Assert.Contains("403", denied.Error);
    }

    [Fact]
    public async Task Reset_state_is_for_admins()
    {
        var volumeId = await CreateVolumeAsync();
        var backupId = await BackupAsync(volumeId);

        Assert.NotEqual(0, (await Cli.RunAsync("backup-reset-state", "--state", "error", backupId)).ExitCode);
        await Cli.As("admin").OkAsync("backup-reset-state", "--state", "error", backupId);
        Assert.Equal("error", (await Cli.OkAsync("backup-show", backupId)).Properties()["status"]);
        await Cli.OkAsync("backup-delete", backupId);                      // an error backup may be deleted
    }

    [Fact]
    public async Task Snapshots_and_a_backup_of_a_snapshot()
    {
        var volumeId = await CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: 63, offset: 0, bytes: 2 << 20);
        var snapshot = (await Cli.OkAsync("snapshot-create", "--name", "cli-snap", volumeId)).Properties()["id"];
        await Cli.WaitForStatusAsync("snapshot", snapshot, "available");
        Assert.Contains((await Cli.OkAsync("snapshot-list")).Table(), r => r["ID"] == snapshot);

        var backupId = await BackupAsync("--snapshot-id", snapshot, volumeId);
        Assert.Equal(snapshot, (await Cli.OkAsync("backup-show", backupId)).Properties()["snapshot_id"]);
        Assert.Equal("available", (await Cli.OkAsync("snapshot-show", snapshot)).Properties()["status"]);
        await Cli.OkAsync("snapshot-delete", snapshot);
    }

    [Fact]
    public async Task Force_delete_cancels_a_running_backup_and_leaves_nothing_behind()
    {
        var volumeId = await CreateVolumeAsync(2);
        TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: 64, offset: 0, bytes: 256 << 20);
        var backupId = (await Cli.OkAsync("backup-create", volumeId)).Properties()["id"];

        Assert.NotEqual(0, (await Cli.RunAsync("backup-delete", "--force", backupId)).ExitCode);   // admins only
        await Cli.As("admin").OkAsync("backup-delete", "--force", backupId);

        await Cli.WaitUntilGoneAsync("backup", backupId, TimeSpan.FromSeconds(60));
        Assert.Equal("available", (await Cli.OkAsync("show", volumeId)).Properties()["status"]);
        await Task.Delay(2000);                                               // a cancelled writer would have finished by now
        Assert.Empty(Directory.EnumerateFiles(backend.RepositoryFolder, $"{backupId}*", SearchOption.AllDirectories));
        Assert.Empty(Directory.EnumerateFiles(backend.Pool, "tmp-*"));
    }

    [Fact]
    public async Task Update_renames_and_admins_list_all_projects()
    {
        var volumeId = await CreateVolumeAsync();
        var backupId = await BackupAsync("--name", "before", volumeId);

        await Cli.OkAsync("backup-update", "--name", "after", "--description", "renamed", backupId);
        var shown = (await Cli.OkAsync("backup-show", backupId)).Properties();
        Assert.Equal("after", shown["name"]);
        Assert.Equal("renamed", shown["description"]);

        var other = new CinderCli(backend.Api.Address, $"other-{Guid.NewGuid():N}"[..14]);
        Assert.DoesNotContain((await other.OkAsync("backup-list")).Table(), r => r["ID"] == backupId);
        Assert.NotEqual(0, (await other.RunAsync("backup-show", backupId)).ExitCode);                  // another project cannot see it
        Assert.Contains((await Cli.As("admin").OkAsync("backup-list", "--all-tenants")).Table(), r => r["ID"] == backupId);
    }
}
