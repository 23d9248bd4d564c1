using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Backups;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>export_record and import_record: records are signed with a key derived from the master key (TestServices.MasterKeyFile here).</summary>
public sealed class BackupRecordTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public async Task An_exported_record_carries_no_key_and_imports_back_after_its_row_is_gone()
    {
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, "rec-a");
        var record = await ExportAsync("rec-a", backup.Id);
        var envelope = Envelope(record);
        await ForgetAsync(backup.Id);

        var imported = await ImportAsync("rec-a", record);

        Assert.Equal(HttpStatusCode.Created, imported.StatusCode);
        Assert.Equal(MasterKey.Load(TestServices.MasterKeyFile).Id, (string?)envelope["master_key_id"]);
        Assert.DoesNotContain(Convert.ToBase64String(File.ReadAllBytes(TestServices.MasterKeyFile)), Encoding.UTF8.GetString(Convert.FromBase64String(record)));
        await api.WaitUntilAsync(async db => await db.Backups.AnyAsync(b => b.Id == backup.Id && b.State == nameof(BackupSaga.Available)), "the imported backup available");
    }

    [Fact]
    public async Task A_record_imported_under_another_id_is_a_second_row_on_the_same_manifest_and_exports_as_such()
    {
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, "rec-h");
        var envelope = Envelope(await ExportAsync("rec-h", backup.Id));
        var copyId = Guid.NewGuid();
        envelope["id"] = copyId.ToString();                    // outside the signature, as Cinder's users change it

        Assert.Equal(HttpStatusCode.Created, (await ImportAsync("rec-h", Encode(envelope))).StatusCode);

        await api.WaitUntilAsync(async db => await db.Backups.AnyAsync(b => b.Id == copyId && b.State == nameof(BackupSaga.Available)), "the copy available");
        await using (var db = api.NewDbContext())
        {
            Assert.Equal(backup.Id, (await db.Backups.SingleAsync(b => b.Id == copyId)).ManifestId);
            Assert.Null((await db.Backups.SingleAsync(b => b.Id == backup.Id)).ManifestId);
        }
        // Its own record names the manifest too, so a third row made from it still finds the data.
        var again = Envelope(await ExportAsync("rec-h", copyId));
        var body = JsonNode.Parse(Convert.FromBase64String((string)again["record"]!))!;
        Assert.Equal((copyId.ToString(), backup.Id.ToString()), ((string?)body["id"], (string?)body["manifestId"]));
    }

    [Fact]
    public async Task An_edited_record_is_refused_and_nothing_changes()
    {
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, "rec-b");
        var record = await ExportAsync("rec-b", backup.Id);
        await ForgetAsync(backup.Id);
        var envelope = Envelope(record);
        var body = JsonNode.Parse(Convert.FromBase64String((string)envelope["record"]!))!;
        body["container"] = "someone-elses-container";
        envelope["record"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(body.ToJsonString()));

        await AssertRefusedAsync("rec-b", Encode(envelope), backup.Id, "signature does not match: it was edited");
    }

    [Fact]
    public async Task A_record_forged_with_another_key_but_this_deployments_key_id_is_refused()
    {
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, "rec-c");
        var genuine = await ExportAsync("rec-c", backup.Id);
        await ForgetAsync(backup.Id);
        var forger = new RecordSigner(MasterKey.FromBytes(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        var envelope = Envelope(genuine);
        envelope["hmac_sha256"] = Convert.ToBase64String(forger.Sign(Convert.FromBase64String((string)envelope["record"]!)));

        await AssertRefusedAsync("rec-c", Encode(envelope), backup.Id, "signature does not match");
    }

    [Fact]
    public async Task A_record_of_a_deployment_with_another_master_key_is_refused_saying_so()
    {
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, "rec-d");
        var other = MasterKey.Load(TestServices.CreateMasterKeyFile());
        var record = BackupRecord.Export(backup, new RecordSigner(other))["backup_url"];
        await ForgetAsync(backup.Id);

        await AssertRefusedAsync("rec-d", record, backup.Id, $"was exported under master key {other.Id}, and this deployment holds master key");
    }

    [Fact]
    public async Task An_unsigned_record_of_an_earlier_version_is_refused()
    {
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, "rec-e");
        var envelope = Envelope(await ExportAsync("rec-e", backup.Id));
        await ForgetAsync(backup.Id);
        var unsigned = Convert.ToBase64String(Convert.FromBase64String((string)envelope["record"]!));   // the old backup_url: the record alone

        await AssertRefusedAsync("rec-e", unsigned, backup.Id, "Can't parse backup record");
        envelope.Remove("hmac_sha256");
        await AssertRefusedAsync("rec-e", Encode(envelope), backup.Id, "not signed");
    }

    [Fact]
    public async Task An_incremental_cannot_be_imported_to_hang_off_another_projects_backup()
    {
        var (_, theirs) = await Seed.VolumeWithBackupAsync(api, "rec-victim");
        var (_, child) = await Seed.VolumeWithBackupAsync(api, "rec-f");
        await using (var db = api.NewDbContext())
        {
            // A genuine record of an incremental whose parent is another project's backup (say, exported before a move).
            await db.Backups.Where(b => b.Id == child.Id).ExecuteUpdateAsync(s => s.SetProperty(b => b.ParentId, theirs.Id).SetProperty(b => b.Container, theirs.Container));
        }
        var record = await ExportAsync("rec-f", child.Id);
        await ForgetAsync(child.Id);

        await AssertRefusedAsync("rec-f", record, child.Id, $"The parent backup {theirs.Id} of this incremental backup belongs to another project");
        await using var after = api.NewDbContext();
        Assert.Equal(0, (await after.Backups.SingleAsync(b => b.Id == theirs.Id)).NumDependentBackups);
    }

    [Fact]
    public async Task An_imported_incremental_of_the_same_project_counts_as_its_parents_dependent()
    {
        var (_, parent) = await Seed.VolumeWithBackupAsync(api, "rec-g");
        var (_, child) = await Seed.VolumeWithBackupAsync(api, "rec-g");
        await using (var db = api.NewDbContext())
            await db.Backups.Where(b => b.Id == child.Id).ExecuteUpdateAsync(s => s.SetProperty(b => b.ParentId, parent.Id));
        var record = await ExportAsync("rec-g", child.Id);
        await ForgetAsync(child.Id);

        Assert.Equal(HttpStatusCode.Created, (await ImportAsync("rec-g", record)).StatusCode);

        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == parent.Id)).NumDependentBackups == 1, "the parent counting its imported dependent");
        var delete = await api.ClientFor("rec-g").DeleteAsync($"/v3/rec-g/backups/{parent.Id}");
        Assert.Equal(HttpStatusCode.BadRequest, delete.StatusCode);
    }

    async Task<string> ExportAsync(string project, Guid backupId)
    {
        var json = await api.ClientFor(project, "admin").GetFromJsonAsync<JsonObject>($"/v3/{project}/backups/{backupId}/export_record");
        Assert.Equal(BackupRecord.Service, (string?)json!["backup-record"]!["backup_service"]);
        return (string)json["backup-record"]!["backup_url"]!;
    }

    Task<HttpResponseMessage> ImportAsync(string project, string url) =>
        api.ClientFor(project, "admin").PostAsJsonAsync($"/v3/{project}/backups/import_record",
            new JsonObject { ["backup-record"] = new JsonObject { ["backup_service"] = BackupRecord.Service, ["backup_url"] = url } });

    async Task AssertRefusedAsync(string project, string url, Guid backupId, string message)
    {
        await using var before = api.NewDbContext();
        var (backups, outbox) = (await before.Backups.IgnoreQueryFilters().CountAsync(), await before.Outbox.CountAsync());

        var response = await ImportAsync(project, url);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var fault = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["badRequest"]!;
        Assert.Equal(400, (int)fault["code"]!);
        Assert.Contains(message, (string)fault["message"]!, StringComparison.Ordinal);
        await using var after = api.NewDbContext();
        Assert.Equal((backups, outbox), (await after.Backups.IgnoreQueryFilters().CountAsync(), await after.Outbox.CountAsync()));
        Assert.False(await after.Backups.IgnoreQueryFilters().AnyAsync(b => b.Id == backupId));
    }

    // Removes the exported backup's row, as the deployment that will import it has none.
    async Task ForgetAsync(Guid backupId)
    {
        await using var db = api.NewDbContext();
        await db.Backups.IgnoreQueryFilters().Where(b => b.Id == backupId).ExecuteDeleteAsync();
    }

    static JsonObject Envelope(string url) => JsonNode.Parse(Convert.FromBase64String(url))!.AsObject();

    static string Encode(JsonObject envelope) => Convert.ToBase64String(Encoding.UTF8.GetBytes(envelope.ToJsonString()));
}
