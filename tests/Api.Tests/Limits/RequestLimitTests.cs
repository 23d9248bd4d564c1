using Microsoft.Extensions.DependencyInjection;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Tests.Limits;

/// <summary>What one request may make the Api do: its body's size, a listing's length, its metadata's size.</summary>
public sealed class RequestLimitTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    const int MiB = 1024 * 1024;

    static async Task<JsonObject> FaultAsync(HttpResponseMessage response, string name, int code)
    {
        var body = (await response.Content.ReadFromJsonAsync<JsonObject>())!;
        Assert.Equal(code, (int)response.StatusCode);
        Assert.Equal(code, (int)body[name]!["code"]!);
        return body[name]!.AsObject();
    }

    [Theory]
    [InlineData("POST", "/v3/p/volumes")]
    [InlineData("PUT", "/v3/p/os-quota-sets/p")]
    [InlineData("GET", "/v3/p/volumes")]                    // a route that reads no body is refused all the same, as Cinder's filter does
    [InlineData("POST", "/v3/p/no-such-route")]
    public async Task A_body_over_1_MiB_is_overLimit_before_authentication_and_changes_nothing(string method, string path)
    {
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api);
        var before = await Seed.StateAsync(api, volume, backup);
        using var client = api.CreateClient();               // no token: the size is judged first
        var json = """{"volume": {"size": 1}}""" + new string(' ', MiB);

        var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent(json, Encoding.UTF8, "application/json") });

        var fault = await FaultAsync(response, "overLimit", 413);
        Assert.Equal($"Request is too large. Larger than max_request_body_size ({MiB}).", (string?)fault["message"]);
        Assert.Equal(before, await Seed.StateAsync(api, volume, backup));
    }

    [Fact]
    public async Task A_body_of_exactly_1_MiB_is_read_and_judged_on_its_content()
    {
        await api.StartedAsync();
        using var client = api.ClientFor("p");
        var json = """{"volume": {"size": 0}}""";
        json += new string(' ', MiB - json.Length);

        var response = await client.PostAsync("/v3/p/volumes", new StringContent(json, Encoding.UTF8, "application/json"));

        var fault = await FaultAsync(response, "badRequest", 400);
        Assert.Contains("0 is less than the minimum of 1", (string?)fault["message"]);
    }

    [Theory]
    [InlineData("99999999999999999999999", 1000)]         // Python's int() has no overflow: Cinder clamps to osapi_max_limit
    [InlineData("5000", 1000)]
    [InlineData(" 7 ", 7)]
    public async Task A_limit_above_osapi_max_limit_is_clamped_to_1000_not_refused(string limit, int expected)
    {
        var project = $"many-{Guid.NewGuid():N}"[..13];
        await api.StartedAsync();
        var now = DateTimeOffset.UtcNow;
        await using (var db = api.NewDbContext())
        {
            db.AddRange(Enumerable.Range(0, 1001).Select(i => new Volume
            {
                Id = Guid.NewGuid(), ProjectId = project, UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a",
                Status = VolumeStatus.Available, CreatedAt = now.AddSeconds(-i),
            }));
            await db.SaveChangesAsync();
        }
        using var client = api.ClientFor(project);

        var page = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/volumes?limit={Uri.EscapeDataString(limit)}"))!;

        Assert.Equal(expected, page["volumes"]!.AsArray().Count);
        Assert.NotNull(page["volumes_links"]);                  // the rest is a next link away
    }

    [Theory]
    [InlineData("-1", "limit param must be positive")]
    [InlineData("ten", "limit param must be an integer")]
    [InlineData("1.5", "limit param must be an integer")]
    public async Task A_limit_that_is_no_count_is_badRequest_in_Cinders_words(string limit, string message)
    {
        await api.StartedAsync();
        using var client = api.ClientFor("p");

        var response = await client.GetAsync($"/v3/p/backups?limit={limit}");

        Assert.Equal(message, (string?)(await FaultAsync(response, "badRequest", 400))["message"]);
    }

    [Fact]
    public async Task Thousands_of_repeated_sort_keys_sort_as_one_and_page_correctly()
    {
        var (volume, _) = await Seed.VolumeWithBackupAsync(api, "sorting");
        using var client = api.ClientFor("sorting");
        var sort = string.Join(',', Enumerable.Repeat("size:asc,name", 1500));

        var response = await client.GetAsync($"/v3/sorting/volumes?sort={sort}&limit=1");

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(volume.Id.ToString(), (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["volumes"]![0]!["id"]);
    }

    static readonly string Key256 = new('k', 256), Value256 = new('v', 256), Key255 = new('k', 255), Value255 = new('v', 255);

    // Cinder's metadata (parameter_types.metadata_allows_null / extra_specs): keys of 1-255 of [a-zA-Z0-9-_:. /], values of at most 255.
    public static TheoryData<string, string, string, string> Metadata => new()
    {
        { "POST", "volumes", """{"volume": {"size": 1, "metadata": {"KEY256": "v"}}}""".Replace("KEY256", Key256), "does not match any of the regexes" },
        { "POST", "volumes", """{"volume": {"size": 1, "metadata": {"k": "VALUE256"}}}""".Replace("VALUE256", Value256), "is too long" },
        { "POST", "volumes", """{"volume": {"size": 1, "metadata": {"a\u0000b": "v"}}}""", "does not match any of the regexes" },
        { "POST", "volumes", """{"volume": {"size": 1, "metadata": {"": "v"}}}""", "does not match any of the regexes" },
        { "POST", "snapshots", """{"snapshot": {"volume_id": "{volume}", "metadata": {"k": "VALUE256"}}}""".Replace("VALUE256", Value256), "is too long" },
        { "POST", "backups", """{"backup": {"volume_id": "{volume}", "metadata": {"KEY256": "v"}}}""".Replace("KEY256", Key256), "does not match any of the regexes" },
        { "PUT", "backups/{backup}", """{"backup": {"metadata": {"k": "VALUE256"}}}""".Replace("VALUE256", Value256), "is too long" },
        { "PUT", "backups/{backup}", """{"backup": {"metadata": {"k": 5}}}""", "5 is not of type 'string'" },
    };

    [Theory]
    [MemberData(nameof(Metadata))]
    public async Task Metadata_beyond_Cinders_limits_is_badRequest_and_changes_nothing(string method, string path, string json, string message)
    {
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api);
        await Seed.BackupAgentAsync(api);
        using var client = api.ClientFor("p");
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.43");
        var before = await Seed.ChangesAboutAsync(api, volume, backup);
        string Fill(string text) => text.Replace("{volume}", volume.Id.ToString()).Replace("{backup}", backup.Id.ToString());

        var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), $"/v3/p/{Fill(path)}") { Content = new StringContent(Fill(json), Encoding.UTF8, "application/json") });

        Assert.Contains(message, (string?)(await FaultAsync(response, "badRequest", 400))["message"]);
        Assert.Equal(before, await Seed.ChangesAboutAsync(api, volume, backup));
    }

    [Fact]
    public async Task Metadata_of_255_character_keys_and_values_is_kept_whole()
    {
        var (_, backup) = await Seed.VolumeWithBackupAsync(api);
        using var client = api.ClientFor("p");
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.43");

        var response = await client.PutAsync($"/v3/p/backups/{backup.Id}", new StringContent("""{"backup": {"metadata": {"KEY255": "VALUE255"}}}""".Replace("KEY255", Key255).Replace("VALUE255", Value255), Encoding.UTF8, "application/json"));

        Assert.Equal(200, (int)response.StatusCode);
        await using var db = api.NewDbContext();
        Assert.Equal(Value255, (await db.Backups.FindAsync(backup.Id))!.Metadata[Key255]);
    }

    // An imported record is input too: its fields get the limits a create's body gets.
    public static TheoryData<string, string> BadRecords => new()
    {
        { """{"metadata": {"k": "VALUE"}}""".Replace("VALUE", new string('v', 256)), "is too long" },
        { """{"metadata": {"k\u0007": "v"}}""", "does not match any of the regexes" },
        { """{"name": "NAME"}""".Replace("NAME", new string('n', 256)), "name has more than 255 characters" },
        { """{"container": null}""", "container and availability_zone are required" },
        { """{"size": -5}""", "must not be negative" },
    };

    [Theory]
    [MemberData(nameof(BadRecords))]
    public async Task An_imported_record_beyond_those_limits_is_badRequest_and_changes_nothing(string change, string message)
    {
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api);
        using var admin = api.ClientFor("p", user: "admin");
        var record = (await admin.GetFromJsonAsync<JsonObject>($"/v3/p/backups/{backup.Id}/export_record"))!["backup-record"]!;
        // Edited and signed again as this deployment would sign it: the limits are checked on a record the signature accepts.
        var signed = JsonNode.Parse(Convert.FromBase64String((string)record["backup_url"]!))!.AsObject();
        var fields = JsonNode.Parse(Convert.FromBase64String((string)signed["record"]!))!.AsObject();
        fields["id"] = Guid.NewGuid().ToString();
        foreach (var (key, value) in JsonNode.Parse(change)!.AsObject()) fields[key] = value?.DeepClone();
        var body = Encoding.UTF8.GetBytes(fields.ToJsonString());
        signed["record"] = Convert.ToBase64String(body);
        signed["hmac_sha256"] = Convert.ToBase64String(api.Services.GetRequiredService<RecordSigner>().Sign(body));
        var url = Convert.ToBase64String(Encoding.UTF8.GetBytes(signed.ToJsonString()));
        var before = await Seed.StateAsync(api, volume, backup);

        var response = await admin.PostAsJsonAsync("/v3/p/backups/import_record", new JsonObject { ["backup-record"] = new JsonObject { ["backup_service"] = BackupRecord.Service, ["backup_url"] = url } });

        Assert.Contains(message, (string?)(await FaultAsync(response, "badRequest", 400))["message"]);
        Assert.Equal(before, await Seed.StateAsync(api, volume, backup));
    }
}
