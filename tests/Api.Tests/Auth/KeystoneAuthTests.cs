using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Auth;

/// <summary>The Api in keystone mode against the Keystone deploy/services.sh runs, validating as its service user vb-api.</summary>
public class KeystoneApiFactory : ApiFactory
{
    protected virtual string KeystoneUrl => Keystone.Url;

    protected override void Configure(IWebHostBuilder builder)
    {
        builder.UseSetting("Auth:Mode", "keystone");
        builder.UseSetting("Auth:Keystone:Url", KeystoneUrl);
        builder.UseSetting("Auth:Keystone:Username", "vb-api");
        builder.UseSetting("Auth:Keystone:PasswordFile", Keystone.PasswordFile("vb-api"));
        builder.UseSetting("Auth:Keystone:TimeoutSeconds", "30");   // a Keystone on SQLite is slow on a loaded machine
    }
}

/// <summary>Keystone is down: nothing listens where the Api looks for it.</summary>
public sealed class KeystoneDownApiFactory : KeystoneApiFactory
{
    protected override string KeystoneUrl => "http://127.0.0.1:9/v3";
}

/// <summary>Tokens as keystonemiddleware treats them: 401 with WWW-Authenticate for missing and invalid ones, 503 when Keystone cannot tell.</summary>
public sealed class KeystoneAuthTests(KeystoneApiFactory api) : IClassFixture<KeystoneApiFactory>
{
    static HttpClient WithToken(HttpClient client, string? token)
    {
        if (token is not null) client.DefaultRequestHeaders.Add("X-Auth-Token", token);
        return client;
    }

    async Task AssertUnauthorizedAsync(string? token, string project = "p")
    {
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api, project);
        var before = await Seed.ChangesAboutAsync(api, volume, backup);
        using var client = WithToken(api.CreateClient(), token);

        foreach (var response in new[]
                 {
                     await client.GetAsync($"/v3/{project}/backups/detail"),
                     await client.DeleteAsync($"/v3/{project}/backups/{backup.Id}"),
                     await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id } }),
                 })
        {
            Assert.Equal(401, (int)response.StatusCode);
            Assert.Equal($"Keystone uri=\"{Keystone.Url}\"", response.Headers.WwwAuthenticate.ToString());
            var fault = (await response.Content.ReadFromJsonAsync<JsonObject>())!["unauthorized"]!;
            Assert.Equal("The request you have made requires authentication.", (string?)fault["message"]);
        }
        Assert.Equal(before, await Seed.ChangesAboutAsync(api, volume, backup));
    }

    [Fact]
    public Task A_request_without_a_token_gets_401_with_the_Keystone_uri() => AssertUnauthorizedAsync(null);

    [Fact]
    public Task A_forged_token_gets_401() => AssertUnauthorizedAsync("gAAAAABforgedforgedforgedforgedforgedforgedforgedforged");

    [Fact]
    public Task A_noauth_token_gets_401() => AssertUnauthorizedAsync("admin:p");

    [Fact]
    public async Task A_truncated_token_gets_401()
    {
        var (token, project, _) = await Keystone.LoginAsync("demo-member");
        await AssertUnauthorizedAsync(token[..^8], project);
    }

    [Fact]
    public async Task A_revoked_token_gets_401()
    {
        var (token, project, _) = await Keystone.LoginAsync("demo-member");
        using var admin = await Keystone.AdminClientAsync();
        using var revoke = new HttpRequestMessage(HttpMethod.Delete, "auth/tokens");
        revoke.Headers.Add("X-Subject-Token", token);
        Assert.Equal(204, (int)(await admin.SendAsync(revoke)).StatusCode);

        await AssertUnauthorizedAsync(token, project);
    }

    [Fact]
    public async Task A_token_of_a_user_disabled_since_gets_401()
    {
        using var admin = await Keystone.AdminClientAsync();
        var name = $"t-disabled-{Guid.NewGuid():N}"[..20];
        var password = Guid.NewGuid().ToString("N");
        var created = await admin.PostAsJsonAsync("users", new { user = new { name, password, domain_id = "default", enabled = true } });
        var userId = (string)(await created.Content.ReadFromJsonAsync<JsonObject>())!["user"]!["id"]!;
        var (_, demo, _) = await Keystone.SharedLoginAsync("demo-member");
        var roles = await admin.GetFromJsonAsync<JsonObject>("roles?name=member");
        (await admin.PutAsync($"projects/{demo}/users/{userId}/roles/{roles!["roles"]![0]!["id"]}", null)).EnsureSuccessStatusCode();
        try
        {
            var (token, _, _) = await Keystone.LoginAsync(name, password, "demo");
            (await admin.PatchAsJsonAsync($"users/{userId}", new { user = new { enabled = false } })).EnsureSuccessStatusCode();

            await AssertUnauthorizedAsync(token, demo);
        }
        finally { await admin.DeleteAsync($"users/{userId}"); }
    }

    [Fact]
    public async Task The_project_user_and_roles_come_from_the_token()
    {
        var (token, project, user) = await Keystone.LoginAsync("demo-member");
        var (volume, _) = await Seed.VolumeWithBackupAsync(api, project);
        await Seed.BackupAgentAsync(api);
        using var client = WithToken(api.CreateClient(), token);

        var created = await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id, name = "from-token" } });

        Assert.True(202 == (int)created.StatusCode, await created.Content.ReadAsStringAsync());
        await using var db = api.NewDbContext();
        var backup = db.Backups.Single(b => b.Name == "from-token" && b.VolumeId == volume.Id);
        Assert.Equal((project, user), (backup.ProjectId, backup.UserId));
    }

    [Fact]
    public async Task Another_projects_id_in_the_url_is_refused_and_its_rows_are_not_seen()
    {
        var (token, _, _) = await Keystone.LoginAsync("alt-member");
        var (_, demo, _) = await Keystone.SharedLoginAsync("demo-reader");
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api, demo);
        using var client = WithToken(api.CreateClient(), token);

        Assert.Equal(403, (int)(await client.GetAsync($"/v3/{demo}/backups/{backup.Id}")).StatusCode);
        Assert.Equal(403, (int)(await client.GetAsync($"/v3/{demo}/volumes/{volume.Id}")).StatusCode);
    }

    [Fact]
    public async Task Urls_without_the_project_id_work_in_the_tokens_project()
    {
        var (token, project, _) = await Keystone.SharedLoginAsync("demo-reader");
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api, project);
        var (_, other) = await Seed.VolumeWithBackupAsync(api, "p");
        using var client = WithToken(api.CreateClient(), token);

        var listed = await client.GetFromJsonAsync<JsonObject>("/v3/backups/detail");
        var ids = listed!["backups"]!.AsArray().Select(b => (string?)b!["id"]).ToList();
        Assert.Contains(backup.Id.ToString(), ids);
        Assert.DoesNotContain(other.Id.ToString(), ids);
        Assert.Equal(volume.Id.ToString(), (string?)(await client.GetFromJsonAsync<JsonObject>($"/v3/volumes/{volume.Id}"))!["volume"]!["id"]);
        Assert.Equal(404, (int)(await client.GetAsync($"/v3/backups/{other.Id}")).StatusCode);
        Assert.Equal(403, (int)(await client.DeleteAsync($"/v3/backups/{backup.Id}")).StatusCode);   // still a reader
    }

    [Fact]
    public async Task An_X_Roles_header_grants_nothing_to_a_Keystone_token()
    {
        var (token, project, _) = await Keystone.SharedLoginAsync("demo-reader");
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api, project);
        var before = await Seed.ChangesAboutAsync(api, volume, backup);
        using var client = WithToken(api.CreateClient(), token);
        client.DefaultRequestHeaders.Add("X-Roles", "admin,member");

        Assert.Equal(403, (int)(await client.GetAsync($"/v3/{project}/os-services")).StatusCode);
        Assert.Equal(403, (int)(await client.DeleteAsync($"/v3/{project}/backups/{backup.Id}")).StatusCode);
        Assert.Equal(before, await Seed.ChangesAboutAsync(api, volume, backup));
    }

    [Fact]
    public async Task A_validated_token_is_cached()
    {
        var (token, project, _) = await Keystone.LoginAsync("demo-reader");
        using var client = WithToken(api.CreateClient(), token);
        Assert.Equal(200, (int)(await client.GetAsync($"/v3/{project}/backups")).StatusCode);

        // Revoked after it was validated: honoured until its cache entry lapses (CacheSeconds, 300 s by default), as keystonemiddleware does.
        using var admin = await Keystone.AdminClientAsync();
        using var revoke = new HttpRequestMessage(HttpMethod.Delete, "auth/tokens");
        revoke.Headers.Add("X-Subject-Token", token);
        Assert.Equal(204, (int)(await admin.SendAsync(revoke)).StatusCode);

        Assert.Equal(200, (int)(await client.GetAsync($"/v3/{project}/backups")).StatusCode);
    }
}

public sealed class KeystoneDownTests(KeystoneDownApiFactory api) : IClassFixture<KeystoneDownApiFactory>
{
    [Fact]
    public async Task Keystone_down_gets_503_and_changes_nothing()
    {
        var (token, project, _) = await Keystone.LoginAsync("demo-member");
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api, project);
        var before = await Seed.ChangesAboutAsync(api, volume, backup);
        using var client = api.CreateClient();
        client.DefaultRequestHeaders.Add("X-Auth-Token", token);

        foreach (var response in new[]
                 {
                     await client.GetAsync($"/v3/{project}/backups/detail"),
                     await client.DeleteAsync($"/v3/{project}/backups/{backup.Id}"),
                     await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id } }),
                 })
        {
            Assert.Equal(503, (int)response.StatusCode);
            Assert.Equal(503, (int)(await response.Content.ReadFromJsonAsync<JsonObject>())!["serviceUnavailable"]!["code"]!);
        }
        Assert.Equal(before, await Seed.ChangesAboutAsync(api, volume, backup));
    }
}
