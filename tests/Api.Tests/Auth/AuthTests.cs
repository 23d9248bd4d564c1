using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace VolumeBackup.Api.Tests.Auth;

/// <summary>The "cinder" scheme and the admin policy, as Cinder's clients see them: 401 unauthorized, 403 forbidden naming the rule.</summary>
public sealed class AuthTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    // method, route ({volume} and {backup} are the seeded ids), a valid body, Cinder's rule
    public static TheoryData<string, string, string?, string> AdminRoutes => new()
    {
        { "GET", "os-services", null, "volume_extension:services:index" },
        { "PUT", "os-quota-sets/p", """{"quota_set": {"backups": 5}}""", "volume_extension:quotas:update" },
        { "GET", "backups/{backup}/export_record", null, "backup:export-import" },
        { "POST", "backups/import_record", """{"backup-record": {"backup_service": "x", "backup_url": "eyJ9"}}""", "backup:backup-import" },
        { "POST", "backups/{backup}/action", """{"os-reset_status": {"status": "error"}}""", "volume_extension:backup_admin_actions:reset_status" },
        { "POST", "backups/{backup}/action", """{"os-force_delete": {}}""", "volume_extension:backup_admin_actions:force_delete" },
        { "POST", "volumes/{volume}/action", """{"os-reset_status": {"status": "error"}}""", "volume_extension:volume_admin_actions:reset_status" },
    };

    static async Task<HttpResponseMessage> SendAsync(HttpClient client, string method, string path, string? body) =>
        await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), $"/v3/p/{path}")
        {
            Content = body is null ? null : new StringContent(body, Encoding.UTF8, "application/json"),
        });

    async Task<(string Path, string? Body, Func<Task> AssertUnchanged)> SeedAsync(string path, string? body)
    {
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api);
        var before = await Seed.StateAsync(api, volume, backup);
        string? Fill(string? text) => text?.Replace("{volume}", volume.Id.ToString()).Replace("{backup}", backup.Id.ToString());
        return (Fill(path)!, Fill(body), async () => Assert.Equal(before, await Seed.StateAsync(api, volume, backup)));
    }

    static async Task AssertFaultAsync(HttpResponseMessage response, int code, string fault, string message)
    {
        Assert.Equal(code, (int)response.StatusCode);
        var body = (await response.Content.ReadFromJsonAsync<JsonObject>())![fault]!;
        Assert.Equal(code, (int)body["code"]!);
        Assert.Equal(message, (string?)body["message"]);
    }

    [Theory]
    [MemberData(nameof(AdminRoutes))]
    public async Task A_non_admin_is_forbidden_on_an_admin_route_and_nothing_changes(string method, string route, string? json, string rule)
    {
        var (path, body, assertUnchanged) = await SeedAsync(route, json);
        using var client = api.ClientFor("p");

        await AssertFaultAsync(await SendAsync(client, method, path, body), 403, "forbidden", $"Policy doesn't allow {rule} to be performed.");
        await assertUnchanged();
    }

    [Theory]
    [MemberData(nameof(AdminRoutes))]
    public async Task An_X_Roles_admin_header_grants_nothing(string method, string route, string? json, string rule)
    {
        var (path, body, assertUnchanged) = await SeedAsync(route, json);
        using var client = api.ClientFor("p");
        client.DefaultRequestHeaders.Add("X-Roles", "admin");

        await AssertFaultAsync(await SendAsync(client, method, path, body), 403, "forbidden", $"Policy doesn't allow {rule} to be performed.");
        await assertUnchanged();
    }

    [Fact]
    public async Task An_admin_user_is_allowed_on_admin_routes()
    {
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api);
        using var admin = api.ClientFor("p", user: "admin");

        Assert.Equal(200, (int)(await admin.GetAsync("/v3/p/os-services")).StatusCode);
        Assert.Equal(200, (int)(await admin.PutAsJsonAsync("/v3/p/os-quota-sets/other", new { quota_set = new { backups = 7 } })).StatusCode);
        Assert.Equal(202, (int)(await admin.PostAsJsonAsync($"/v3/p/backups/{backup.Id}/action", new Dictionary<string, object> { ["os-reset_status"] = new { status = "error" } })).StatusCode);
        Assert.Equal(202, (int)(await admin.PostAsJsonAsync($"/v3/p/volumes/{volume.Id}/action", new Dictionary<string, object> { ["os-reset_status"] = new { status = "error" } })).StatusCode);
        await using var db = api.NewDbContext();
        Assert.Equal(7, db.Quotas.Single(q => q.ProjectId == "other" && q.Resource == "backups").HardLimit);
        Assert.Equal("error", db.Volumes.Single(v => v.Id == volume.Id).Status);
        Assert.Contains(db.Outbox.ToList(), m => m.Body.Contains(backup.Id.ToString()));
    }

    [Fact]
    public async Task A_request_without_a_token_is_unauthorized()
    {
        await api.StartedAsync();
        using var anonymous = api.CreateClient();

        await AssertFaultAsync(await anonymous.GetAsync("/v3/p/backups"), 401, "unauthorized", "Authentication required: send X-Auth-Token: user:project");
        await AssertFaultAsync(await anonymous.GetAsync("/v3/p/os-services"), 401, "unauthorized", "Authentication required: send X-Auth-Token: user:project");
    }

    [Fact]
    public async Task Another_projects_path_is_forbidden_unless_admin()
    {
        await api.StartedAsync();
        using var user = api.ClientFor("p");
        using var admin = api.ClientFor("p", user: "admin");

        await AssertFaultAsync(await user.GetAsync("/v3/q/backups"), 403, "forbidden", "Project q is not the caller's project");
        Assert.Equal(200, (int)(await admin.GetAsync("/v3/q/backups")).StatusCode);
    }
}
