using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace VolumeBackup.EndToEnd.Tests;

[Collection(BackendCollection.Name)]
public sealed class VersionsTests(Backend backend)
{
    [Fact]
    public async Task Root_lists_v3_with_its_microversion_range()
    {
        var response = await backend.Http.GetAsync("/");
        Assert.Equal(HttpStatusCode.MultipleChoices, response.StatusCode);
        var v3 = (await response.Content.ReadFromJsonAsync<JsonObject>())!["versions"]![0]!;
        Assert.Equal("v3.0", (string?)v3["id"]);
        Assert.Equal("3.0", (string?)v3["min_version"]);
        Assert.Equal("3.70", (string?)v3["version"]);
    }

    [Theory]
    [InlineData("volume 3.64", HttpStatusCode.OK, "volume 3.64")]
    [InlineData("volume latest", HttpStatusCode.OK, "volume 3.70")]
    [InlineData("volume 3.99", HttpStatusCode.NotAcceptable, null)]
    [InlineData("volume 2.0", HttpStatusCode.NotAcceptable, null)]
    [InlineData("volume 3.x", HttpStatusCode.BadRequest, null)]
    public async Task Microversions_are_negotiated_within_the_range(string requested, HttpStatusCode status, string? answered)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/v3/{Backend.Project}/backups");
        request.Headers.Add("OpenStack-API-Version", requested);
        var response = await backend.Http.SendAsync(request);
        Assert.Equal(status, response.StatusCode);
        if (answered is not null) Assert.Equal(answered, response.Headers.GetValues("OpenStack-API-Version").Single());
        else Assert.Contains(status == HttpStatusCode.NotAcceptable ? "notAcceptable" : "badRequest", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Project_attribute_appears_from_3_18_and_user_id_from_3_56()
    {
        var volumeId = await backend.CreateVolumeAsync();
        var backupId = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = volumeId } }))["backup"]!["id"]!;

        async Task<JsonObject> Show(string version)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"/v3/{Backend.Project}/backups/{backupId}");
            request.Headers.Add("OpenStack-API-Version", $"volume {version}");
            return (await (await backend.Http.SendAsync(request)).Content.ReadFromJsonAsync<JsonObject>())!["backup"]!.AsObject();
        }

        Assert.False((await Show("3.0")).ContainsKey("os-backup-project-attr:project_id"));
        Assert.Equal(Backend.Project, (string?)(await Show("3.18"))["os-backup-project-attr:project_id"]);
        Assert.False((await Show("3.18")).ContainsKey("user_id"));
        Assert.Equal("tester", (string?)(await Show("3.56"))["user_id"]);
        await backend.WaitForAsync($"backups/{backupId}", "backup", "available");
    }

    [Fact]
    public async Task Listing_pages_with_limit_and_marker_and_filters_by_name()
    {
        var volumeId = await backend.CreateVolumeAsync();
        var name = $"page-{Guid.NewGuid():N}"[..12];
        for (var i = 0; i < 3; i++)
        {
            var id = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, name } }))["backup"]!["id"]!;
            await backend.WaitForAsync($"backups/{id}", "backup", "available");
        }

        var first = await backend.GetAsync($"backups?name={name}&limit=2");
        Assert.Equal(2, first["backups"]!.AsArray().Count);
        var next = (string)first["backups_links"]![0]!["href"]!;
        var second = await backend.GetAsync(next[next.IndexOf("backups", StringComparison.Ordinal)..]);
        Assert.Single(second["backups"]!.AsArray());
        Assert.False(second.ContainsKey("backups_links"));
        var all = first["backups"]!.AsArray().Concat(second["backups"]!.AsArray()).Select(b => (string?)b!["id"]).ToList();
        Assert.Equal(3, all.Distinct().Count());
    }
}
