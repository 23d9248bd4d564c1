using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

[Collection(BackendCollection.Name)]
public sealed class FailureTests(Backend backend)
{
    [Fact]
    public async Task An_agent_killed_mid_backup_hands_the_backup_to_another_agent()
    {
        var volumeId = await backend.CreateVolumeAsync(2);
        var file = backend.VolumeFile(volumeId);
        TestFiles.WriteGuestData(file, seed: 41, offset: 0, bytes: 768 << 20);
        var sha = TestFiles.Sha256(file);
        var backupId = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = volumeId } }))["backup"]!["id"]!;

        var worker = await backend.WaitForLogAsync($"Backup {backupId} of volume");   // the agent holding the device
        var before = (string?)(await backend.GetAsync($"backups/{backupId}"))["backup"]!["status"];
        await backend.StopAsync(worker);                                       // killed, not stopped: its message is redelivered
        await backend.StartBackupAgentAsync($"BackupAgent-after-{backupId[..8]}");  // as a supervisor restarts it

        var backup = await backend.WaitForAsync($"backups/{backupId}", "backup", "available", "error");
        Assert.Equal("creating", before);
        Assert.Equal("available", (string?)backup["status"]);
        Assert.Empty(Directory.EnumerateFiles(backend.Pool, "tmp-*"));
        var restoredId = (string)(await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { } }))["restore"]!["volume_id"]!;
        await backend.WaitForAsync($"volumes/{restoredId}", "volume", "available");
        Assert.Equal(sha, TestFiles.Sha256(backend.VolumeFile(restoredId)));
    }

    [Fact]
    public async Task A_VolumeAgent_restarted_mid_restore_never_leaves_the_volume_available_with_its_old_data()
    {
        var sourceId = await backend.CreateVolumeAsync(2);
        TestFiles.WriteGuestData(backend.VolumeFile(sourceId), seed: 43, offset: 0, bytes: 1024 << 20);
        var backedUp = TestFiles.Sha256(backend.VolumeFile(sourceId));
        var backupId = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = sourceId } }))["backup"]!["id"]!;
        await backend.WaitForAsync(TimeSpan.FromMinutes(3), $"backups/{backupId}", "backup", "available");
        var targetId = await backend.CreateVolumeAsync(2);
        TestFiles.WriteGuestData(backend.VolumeFile(targetId), seed: 44, offset: 0, bytes: 4 << 20);
        var old = TestFiles.Sha256(backend.VolumeFile(targetId));

        await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { volume_id = targetId } });
        await backend.WaitForLogAsync($"into volume {targetId}: device");           // the agent writes into its device now
        await backend.RestartVolumeAgentAsync();                                     // which removes that device at start

        var volume = await backend.WaitForAsync(TimeSpan.FromMinutes(3), $"volumes/{targetId}", "volume", "available", "error_restoring");
        var now = TestFiles.Sha256(backend.VolumeFile(targetId));
        if ((string?)volume["status"] == "available")
            Assert.Equal(backedUp, now);                                             // redone on a fresh device
        else
            Assert.Equal(old, now);                                                  // given up: the old data intact
        Assert.Equal("available", (string?)(await backend.GetAsync($"backups/{backupId}"))["backup"]!["status"]);
    }

    [Theory]
    [InlineData("backups", """{"backup": {"volume_id": "00000000-0000-0000-0000-000000000001"}}""", 404, "itemNotFound")]
    [InlineData("backups", """{"backup": {"volume_id": """, 400, "badRequest")]
    [InlineData("backups", """{"backup": {"name": "no volume"}}""", 400, "badRequest")]
    [InlineData("backups", """{"nothing": {}}""", 400, "badRequest")]
    [InlineData("backups", """{"backup": {"volume_id": "00000000-0000-0000-0000-000000000001", "container": "../escape"}}""", 400, "badRequest")]
    [InlineData("volumes", """{"volume": {"size": 0}}""", 400, "badRequest")]
    [InlineData("volumes", """{"volume": {"name": "no size"}}""", 400, "badRequest")]
    [InlineData("volumes", """not json""", 400, "badRequest")]
    [InlineData("backups", "", 400, "badRequest")]
    public async Task Bad_requests_get_Cinder_errors_and_change_nothing(string path, string body, int status, string fault)
    {
        var before = await CountRowsAsync();

        var response = await backend.Http.PostAsync($"/v3/{Backend.Project}/{path}", new StringContent(body, Encoding.UTF8, "application/json"));

        Assert.Equal(status, (int)response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
        Assert.Equal(status, (int)error[fault]!["code"]!);
        Assert.False(string.IsNullOrWhiteSpace((string?)error[fault]!["message"]));
        Assert.Equal(before, await CountRowsAsync());
    }

    [Fact]
    public async Task Unknown_backup_is_itemNotFound_and_a_missing_token_is_unauthorized()
    {
        var missing = await backend.Http.GetAsync($"/v3/{Backend.Project}/backups/{Guid.NewGuid()}");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("could not be found", (string?)(await missing.Content.ReadFromJsonAsync<JsonObject>())!["itemNotFound"]!["message"]);

        using var anonymous = new HttpClient { BaseAddress = backend.Http.BaseAddress };
        var refused = await anonymous.GetAsync($"/v3/{Backend.Project}/backups");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal(401, (int)(await refused.Content.ReadFromJsonAsync<JsonObject>())!["unauthorized"]!["code"]!);
    }

    async Task<(int, int, int)> CountRowsAsync()
    {
        await using var db = backend.NewDbContext();
        return (await db.Volumes.CountAsync(), await db.Backups.CountAsync(), await db.Outbox.CountAsync());
    }
}
