using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace VolumeBackup.Api.Tests.Validation;

/// <summary>Bodies Cinder's schemas refuse get 400 in Cinder's shape, with Cinder's message, and change nothing.</summary>
public sealed class BodyValidationTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    static readonly string Long = new('x', 256);

    // route, body ({volume} and {backup} are the seeded ids), the message Cinder gives
    public static TheoryData<string, string, string, string> BadBodies => new()
    {
        // backup create
        { "POST", "backups", """{"backup": {"volume_id": "{volume}", "foo": 1}}""", "Invalid input for field/attribute backup. Value: {'volume_id': '{volume}', 'foo': 1}. Additional properties are not allowed ('foo' was unexpected)" },
        { "POST", "backups", """{"backup": {"volume_id": "not-a-uuid"}}""", "Invalid input for field/attribute volume_id. Value: not-a-uuid. 'not-a-uuid' is not a 'uuid'" },
        { "POST", "backups", """{"backup": {"volume_id": "{volume}", "snapshot_id": "nope"}}""", "Invalid input for field/attribute snapshot_id. Value: nope. 'nope' is not valid under any of the given schemas" },
        { "POST", "backups", $$$"""{"backup": {"volume_id": "{volume}", "name": "{{{Long}}}"}}""", $"Invalid input for field/attribute name. Value: {Long}. '{Long}' is too long" },
        { "POST", "backups", """{"backup": {"volume_id": "{volume}", "force": "maybe"}}""", "Invalid input for field/attribute force. Value: maybe. 'maybe' is not one of [True, 'True'" },
        { "POST", "backups", """{"backup": {"volume_id": "{volume}", "incremental": 3}}""", "Invalid input for field/attribute incremental. Value: 3. 3 is not of type 'boolean', 'string'" },
        { "POST", "backups", """{"backup": {"name": "x"}}""", "Invalid input for field/attribute backup. Value: {'name': 'x'}. 'volume_id' is a required property" },
        { "POST", "backups", """{"volume_id": "{volume}"}""", "'backup' is a required property" },
        { "POST", "backups", """{"backup": {"volume_id": "{volume}", "metadata": {"a": "b"}}}""", "Additional properties are not allowed ('metadata' was unexpected)" },
        // backup update (3.9), restore, actions, import
        { "PUT", "backups/{backup}", """{"backup": {"name": "x", "size": 2}}""", "Additional properties are not allowed ('size' was unexpected)" },
        { "PUT", "backups/{backup}", $$$"""{"backup": {"description": "{{{Long}}}"}}""", "is too long" },
        { "POST", "backups/{backup}/restore", """{"restore": {"volume_id": "vol-1"}}""", "Invalid input for field/attribute volume_id. Value: vol-1. 'vol-1' is not valid under any of the given schemas" },
        { "POST", "backups/{backup}/restore", """{"restore": {}, "x": 1}""", "Additional properties are not allowed ('x' was unexpected)" },
        { "POST", "backups/{backup}/action", """{"os-reset_status": {"status": "creating"}}""", "Backup status: creating is invalid, valid statuses are: ['available', 'error']." },
        { "POST", "backups/{backup}/action", """{"os-reset_status": {}}""", "Invalid input for field/attribute os-reset_status. Value: {}. 'status' is a required property" },
        { "POST", "backups/{backup}/action", """{"os-force_delete": {}, "os-reset_status": {"status": "error"}}""", "Additional properties are not allowed ('os-reset_status' was unexpected)" },
        { "POST", "backups/import_record", """{"backup-record": {"backup_service": "x"}}""", "'backup_url' is a required property" },
        // volume create, actions; snapshot create; attachment create; quota update
        { "POST", "volumes", """{"volume": {"size": 1, "snapshot_id": "snap"}}""", "Invalid input for field/attribute snapshot_id. Value: snap. 'snap' is not valid under any of the given schemas" },
        { "POST", "volumes", """{"volume": {"size": 0}}""", "Invalid input for field/attribute size. Value: 0. 0 is less than the minimum of 1" },
        { "POST", "volumes", """{"volume": {"size": 1, "multiattach": "sometimes"}}""", "'sometimes' is not valid under any of the given schemas" },
        { "POST", "volumes", $$$"""{"volume": {"size": 1, "name": "{{{Long}}}"}}""", "name has 256 characters, more than 255." },
        { "POST", "volumes", """{"volume": {"size": 1}, "x": 1}""", "Additional properties are not allowed ('x' was unexpected)" },
        { "POST", "volumes/{volume}/action", """{"os-attach": {"instance_uuid": "{volume}"}}""", "'mountpoint' is a required property" },
        { "POST", "volumes/{volume}/action", """{"os-attach": {"instance_uuid": "server-1", "mountpoint": "/dev/vdb"}}""", "Invalid input for field/attribute instance_uuid. Value: server-1. 'server-1' is not a 'uuid'" },
        { "POST", "volumes/{volume}/action", """{"os-reset_status": {"status": "sleeping"}}""", "Volume status: sleeping is invalid" },
        { "POST", "snapshots", """{"snapshot": {"volume_id": "v1"}}""", "Invalid input for field/attribute volume_id. Value: v1. 'v1' is not valid under any of the given schemas" },
        { "POST", "snapshots", """{"snapshot": {"volume_id": "{volume}", "force": "perhaps"}}""", "'perhaps' is not one of" },
        { "POST", "snapshots", """{"snapshot": {"name": "s"}}""", "'volume_id' is a required property" },
        { "POST", "attachments", """{"attachment": {"volume_uuid": "v1", "instance_uuid": "{volume}"}}""", "Invalid input for field/attribute volume_uuid. Value: v1. 'v1' is not a 'uuid'" },
        { "POST", "attachments", """{"attachment": {"instance_uuid": "{volume}"}}""", "'volume_uuid' is a required property" },
        { "PUT", "os-quota-sets/p", """{"quota_set": {"bogus": 1}}""", "Invalid input received: Bad key(s) in quota set: bogus" },
        { "PUT", "os-quota-sets/p", """{"quota_set": {"backups": "many"}}""", "backups must be an integer." },
        { "PUT", "os-quota-sets/p", """{"quota_set": {}}""", "Invalid input for field/attribute quota_set. Value: {}. {} does not have enough properties" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task A_body_outside_Cinders_schema_is_badRequest_and_changes_nothing(string method, string path, string body, string message)
    {
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api);
        using var client = api.ClientFor("p", user: "admin");                     // admin: every route is open, only the body is wrong
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.27");
        var before = await Seed.StateAsync(api, volume, backup);
        string Fill(string text) => text.Replace("{volume}", volume.Id.ToString()).Replace("{backup}", backup.Id.ToString());

        var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), $"/v3/p/{Fill(path)}")
        {
            Content = new StringContent(Fill(body), Encoding.UTF8, "application/json"),
        });

        Assert.Equal(400, (int)response.StatusCode);
        var fault = (await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!;
        Assert.Equal(400, (int)fault["code"]!);
        Assert.Contains(Fill(message), (string?)fault["message"]);
        Assert.Equal(before, await Seed.StateAsync(api, volume, backup));
    }

    [Fact]
    public async Task The_body_the_cinder_client_sends_for_backup_create_passes_the_schema()
    {
        var (volume, _) = await Seed.VolumeWithBackupAsync(api);
        using var client = api.ClientFor("p");
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.70");

        var response = await client.PostAsync("/v3/p/backups", new StringContent($$$"""
            {"backup": {"container": null, "description": null, "name": "x", "volume_id": "{{{volume.Id}}}", "incremental": "False",
                        "force": false, "snapshot_id": null, "metadata": null, "availability_zone": null}}
            """, Encoding.UTF8, "application/json"));

        // Past the schema: refused only because no backup agent is alive in these tests.
        Assert.Equal("Service cinder-backup could not be found.", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["computeFault"]!["message"]);
    }

    [Fact]
    public async Task A_path_id_that_is_not_a_uuid_is_still_itemNotFound()
    {
        using var client = api.ClientFor("p");
        await api.StartedAsync();

        var response = await client.GetAsync("/v3/p/backups/not-a-uuid");

        Assert.Equal(404, (int)response.StatusCode);
        Assert.Equal("Backup not-a-uuid could not be found.", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["itemNotFound"]!["message"]);
    }
}
