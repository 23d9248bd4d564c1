using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace VolumeBackup.Api.Tests;

/// <summary>keystoneauth's version discovery (openstacksdk) reads /, /v3 and /v3/ without a token.</summary>
public sealed class VersionDiscoveryTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Theory]
    [InlineData("/", 300)]
    [InlineData("/v3", 200)]
    [InlineData("/v3/", 200)]
    public async Task Each_discovery_url_answers_the_v3_version_document(string path, int status)
    {
        using var client = api.CreateClient();

        var response = await client.GetAsync(path);

        Assert.Equal(status, (int)response.StatusCode);
        var v3 = (await response.Content.ReadFromJsonAsync<JsonObject>())!["versions"]![0]!;
        Assert.Equal("v3.0", (string?)v3["id"]);
        Assert.Equal("CURRENT", (string?)v3["status"]);
    }
}
