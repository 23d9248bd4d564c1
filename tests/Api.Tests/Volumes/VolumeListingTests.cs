using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Tests.Volumes;

/// <summary>Cinder's listing grammar on /volumes and /snapshots: limit, marker, next links, sort and count (3.45).</summary>
public sealed class VolumeListingTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public async Task Volumes_page_by_limit_and_marker_newest_first_with_their_count()
    {
        var (project, volumes) = await SeedAsync("v1", "v2", "v3", "v4", "v5");
        using var client = Client(project);

        var pages = await ListingPages.WalkAsync(client, $"/v3/{project}/volumes/detail?limit=2&with_count=true", "volumes");

        Assert.Equal([2, 2, 1], pages.Select(p => p["volumes"]!.AsArray().Count));
        Assert.Equal(volumes.Select(v => v.Id.ToString()).Reverse(), pages.SelectMany(p => p.Field("volumes", "id")));
        Assert.All(pages, p => Assert.Equal(5, (int)p["count"]!));
    }

    [Fact]
    public async Task A_sorted_volume_listing_pages_through_ties_and_missing_names_in_the_same_order()
    {
        var (project, _) = await SeedAsync("b", null, "a", "b", null, "c");
        using var client = Client(project);

        var whole = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/volumes?sort=name:asc"))!;
        var pages = await ListingPages.WalkAsync(client, $"/v3/{project}/volumes?sort=name:asc&limit=2", "volumes");

        Assert.Equal(["a", "b", "b", "c", null, null], whole.Field("volumes", "name"));    // PostgreSQL puts NULLs last ascending
        Assert.Equal(whole.Field("volumes", "id"), pages.SelectMany(p => p.Field("volumes", "id")));
    }

    [Fact]
    public async Task Snapshots_page_by_limit_and_marker_with_their_count()
    {
        var (project, volumes) = await SeedAsync("v1");
        var start = DateTimeOffset.UtcNow.AddHours(-1);
        var snapshots = Enumerable.Range(0, 3).Select(i => new Snapshot
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", VolumeId = volumes[0].Id, Name = $"s{i}", Size = 1, Status = "available",
            CreatedAt = start.AddSeconds(i),
        }).ToList();
        await using (var db = api.NewDbContext())
        {
            db.AddRange(snapshots);
            await db.SaveChangesAsync();
        }
        using var client = Client(project);

        var pages = await ListingPages.WalkAsync(client, $"/v3/{project}/snapshots/detail?limit=2&with_count=true&sort=name:asc", "snapshots");

        Assert.Equal([["s0", "s1"], ["s2"]], pages.Select(p => p.Field("snapshots", "name").ToArray()));
        Assert.All(pages, p => Assert.Equal(3, (int)p["count"]!));
        Assert.Contains($"/v3/{project}/snapshots/detail?", (string)pages[0]["snapshots_links"]![0]!["href"]!, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("volumes", "sort=colour:asc", HttpStatusCode.BadRequest)]
    [InlineData("snapshots", "sort=name:sideways", HttpStatusCode.BadRequest)]
    [InlineData("volumes/detail", "limit=many", HttpStatusCode.BadRequest)]
    [InlineData("snapshots/detail", "marker=00000000-0000-0000-0000-000000000001", HttpStatusCode.NotFound)]
    [InlineData("volumes", "marker=not-a-volume", HttpStatusCode.NotFound)]
    public async Task A_bad_sort_or_limit_is_a_badRequest_and_an_unknown_marker_itemNotFound(string path, string query, HttpStatusCode status)
    {
        var (project, _) = await SeedAsync("v1");
        using var client = Client(project);

        var response = await client.GetAsync($"/v3/{project}/{path}?{query}");

        Assert.Equal(status, response.StatusCode);
        var error = status == HttpStatusCode.NotFound ? "itemNotFound" : "badRequest";
        Assert.Equal((int)status, (int)(await response.Content.ReadFromJsonAsync<JsonObject>())![error]!["code"]!);
    }

    HttpClient Client(string project)
    {
        var client = api.ClientFor(project);
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.45");
        return client;
    }

    // Volumes of one fresh project; created a second apart in the order given.
    async Task<(string, List<Volume>)> SeedAsync(params string?[] names)
    {
        await api.StartedAsync();
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var start = DateTimeOffset.UtcNow.AddHours(-2);
        var volumes = names.Select((name, i) => new Volume
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", Name = name, Size = 1, AvailabilityZone = "nova", Host = "host-a",
            Status = VolumeStatus.Available, CreatedAt = start.AddSeconds(i),
        }).ToList();
        await using var db = api.NewDbContext();
        db.AddRange(volumes);
        await db.SaveChangesAsync();
        return (project, volumes);
    }
}
