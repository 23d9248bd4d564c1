using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Auth;

/// <summary>
/// Cinder's Zed default policy, one row of the README's table per case, with real Keystone tokens: a reader and a member of
/// project demo, a member of project alt (calling with demo's id in the URL) and the cloud admin (project admin).
/// An allowed call gets past authorization (whatever the route then answers, never 401/403); a refused one gets 403 and
/// changes no row.
/// </summary>
public sealed class PolicyTests(KeystoneApiFactory api) : IClassFixture<KeystoneApiFactory>
{
    const string R = "reader", M = "member", A = "admin";

    // method, path under /v3/{project}/ ({volume} and {backup} are seeded in demo, {attachment} a random id, {project} is demo's id), body, who may
    public static TheoryData<string, string, string?, string> Rows => new()
    {
        { "GET", "volumes", null, $"{R} {M} {A}" },
        { "GET", "volumes/detail", null, $"{R} {M} {A}" },
        { "GET", "volumes/{volume}", null, $"{R} {M} {A}" },
        { "POST", "volumes", """{"volume": {"size": 1}}""", $"{M} {A}" },
        { "PUT", "volumes/{volume}", """{"volume": {"name": "renamed"}}""", $"{M} {A}" },
        { "DELETE", "volumes/{volume}", null, $"{M} {A}" },
        { "POST", "volumes/{volume}/action", """{"os-reset_status": {"status": "error"}}""", A },
        { "GET", "snapshots/detail", null, $"{R} {M} {A}" },
        { "POST", "snapshots", """{"snapshot": {"volume_id": "{volume}"}}""", $"{M} {A}" },
        { "PUT", "snapshots/{attachment}", """{"snapshot": {"name": "renamed"}}""", $"{M} {A}" },
        { "DELETE", "snapshots/{attachment}", null, $"{M} {A}" },
        { "GET", "backups", null, $"{R} {M} {A}" },
        { "GET", "backups/detail", null, $"{R} {M} {A}" },
        { "GET", "backups/{backup}", null, $"{R} {M} {A}" },
        { "POST", "backups", """{"backup": {"volume_id": "{volume}"}}""", $"{M} {A}" },
        { "PUT", "backups/{backup}", """{"backup": {"name": "renamed"}}""", $"{M} {A}" },
        { "POST", "backups/{backup}/restore", """{"restore": {"name": "restored"}}""", $"{M} {A}" },
        { "DELETE", "backups/{backup}", null, $"{M} {A}" },
        { "POST", "backups/{backup}/action", """{"os-reset_status": {"status": "error"}}""", A },
        { "POST", "backups/{backup}/action", """{"os-force_delete": {}}""", A },
        { "POST", "backups/{backup}/action", """{"os-verify": null}""", A },
        { "POST", "backups/verify", """{"verify": {"container": "backups"}}""", A },
        { "GET", "backups/{backup}/export_record", null, A },
        { "POST", "backups/import_record", """{"backup-record": {"backup_service": "x", "backup_url": "eyJ9"}}""", A },
        { "GET", "attachments", null, $"{R} {M} {A}" },
        { "POST", "attachments", """{"attachment": {"volume_uuid": "{volume}", "instance_uuid": "0b0b0b0b-0000-4000-8000-000000000001"}}""", $"{M} {A}" },
        { "POST", "attachments/{attachment}/action", """{"os-complete": null}""", $"{M} {A}" },
        { "GET", "os-quota-sets/{project}", null, $"{R} {M} {A}" },
        { "GET", "os-quota-sets/{project}/defaults", null, $"{R} {M} {A}" },
        { "PUT", "os-quota-sets/{project}", """{"quota_set": {"backups": 5}}""", A },
        { "DELETE", "os-quota-sets/{project}", null, A },
        { "GET", "limits", null, $"{R} {M} {A}" },
        { "GET", "os-availability-zone", null, $"{R} {M} {A}" },
        { "GET", "os-services", null, A },
    };

    static readonly Dictionary<string, string> Users = new() { [R] = "demo-reader", [M] = "demo-member", ["other"] = "alt-member", [A] = "admin" };

    [Theory]
    [MemberData(nameof(Rows))]
    public async Task Each_role_gets_what_the_policy_says(string method, string route, string? json, string allowed)
    {
        var (_, demo, _) = await Keystone.SharedLoginAsync("demo-reader");
        await Seed.BackupAgentAsync(api);
        foreach (var (role, user) in Users)
        {
            var (volume, backup) = await Seed.VolumeWithBackupAsync(api, demo);
            var before = await Seed.ChangesAboutAsync(api, volume, backup);
            string? Fill(string? text) => text?.Replace("{volume}", volume.Id.ToString()).Replace("{backup}", backup.Id.ToString()).Replace("{project}", demo).Replace("{attachment}", Guid.NewGuid().ToString());
            var (token, _, _) = await Keystone.SharedLoginAsync(user);
            using var client = api.CreateClient();
            client.DefaultRequestHeaders.Add("X-Auth-Token", token);
            client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.44");

            var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), $"/v3/{demo}/{Fill(route)}")
            {
                Content = json is null ? null : new StringContent(Fill(json)!, Encoding.UTF8, "application/json"),
            });

            var status = (int)response.StatusCode;
            if (allowed.Split(' ').Contains(role))
                Assert.True(status is not (401 or 403), $"{role} ({user}) {method} {route}: {status} {await response.Content.ReadAsStringAsync()}");
            else
            {
                Assert.True(status == 403, $"{role} ({user}) {method} {route}: {status}, expected 403");
                Assert.Equal(before, await Seed.ChangesAboutAsync(api, volume, backup));
            }
        }
    }

    // A reader's refusal names the rule Cinder checks, as Cinder's 403 does: the route's, or for an action route the action's.
    public static TheoryData<string, string, string?, string> ReaderRefusals => new()
    {
        { "POST", "volumes", """{"volume": {"size": 1}}""", "volume:create" },
        { "PUT", "volumes/{volume}", """{"volume": {"name": "x"}}""", "volume:update" },
        { "DELETE", "volumes/{volume}", null, "volume:delete" },
        { "POST", "volumes/{volume}/action", """{"os-attach": {"mountpoint": "/dev/vdb", "host_name": "h"}}""", "volume_extension:volume_actions:attach" },
        { "POST", "volumes/{volume}/action", """{"os-reset_status": {"status": "error"}}""", "volume_extension:volume_admin_actions:reset_status" },
        { "POST", "snapshots", """{"snapshot": {"volume_id": "{volume}"}}""", "volume:create_snapshot" },
        { "POST", "backups", """{"backup": {"volume_id": "{volume}"}}""", "backup:create" },
        { "PUT", "backups/{backup}", """{"backup": {"name": "x"}}""", "backup:update" },
        { "POST", "backups/{backup}/restore", """{"restore": {"name": "x"}}""", "backup:restore" },
        { "DELETE", "backups/{backup}", null, "backup:delete" },
        { "POST", "backups/{backup}/action", """{"os-force_delete": {}}""", "volume_extension:backup_admin_actions:force_delete" },
        { "POST", "attachments", """{"attachment": {"volume_uuid": "{volume}"}}""", "volume:attachment_create" },
        { "PUT", "os-quota-sets/{project}", """{"quota_set": {"backups": 5}}""", "volume_extension:quotas:update" },
    };

    [Theory]
    [MemberData(nameof(ReaderRefusals))]
    public async Task A_readers_refusal_names_Cinders_rule_and_changes_nothing(string method, string route, string? json, string rule)
    {
        var (token, demo, _) = await Keystone.SharedLoginAsync("demo-reader");
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api, demo);
        var before = await Seed.ChangesAboutAsync(api, volume, backup);
        string? Fill(string? text) => text?.Replace("{volume}", volume.Id.ToString()).Replace("{backup}", backup.Id.ToString()).Replace("{project}", demo);
        using var client = api.CreateClient();
        client.DefaultRequestHeaders.Add("X-Auth-Token", token);
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.44");

        var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), $"/v3/{demo}/{Fill(route)}")
        {
            Content = json is null ? null : new StringContent(Fill(json)!, Encoding.UTF8, "application/json"),
        });

        Assert.Equal(403, (int)response.StatusCode);
        var fault = (await response.Content.ReadFromJsonAsync<JsonObject>())!["forbidden"]!;
        Assert.Equal(403, (int)fault["code"]!);
        Assert.Equal($"Policy doesn't allow {rule} to be performed.", (string?)fault["message"]);
        Assert.Equal(before, await Seed.ChangesAboutAsync(api, volume, backup));
    }
}
