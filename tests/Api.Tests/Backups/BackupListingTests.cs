using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using VolumeBackup.Api.Backups;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>Cinder's sort parameters on /backups/detail, against rows in PostgreSQL.</summary>
public sealed class BackupListingTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Theory]
    [InlineData("sort=size:asc,name:desc", "b2,b1,c2,c1,a1")]
    [InlineData("sort=size,name:asc", "a1,c1,c2,b1,b2")]
    [InlineData("sort_key=size,name&sort_dir=asc,asc", "b1,b2,c1,c2,a1")]
    [InlineData("sort=name:asc", "a1,b1,b2,c1,c2")]
    [InlineData("sort=display_name:desc", "c2,c1,b2,b1,a1")]          // what the CLI sends for --sort name:desc
    public async Task Backups_sort_by_every_key_asked_in_order(string query, string expected)
    {
        var project = await SeedAsync(("c2", 2), ("b2", 1), ("a1", 3), ("c1", 2), ("b1", 1));   // creation order follows neither name nor size
        using var client = Client(project);

        var listed = await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/backups/detail?{query}");

        Assert.Equal(expected, string.Join(',', listed!["backups"]!.AsArray().Select(b => (string?)b!["name"])));
    }

    [Theory]
    [InlineData("sort=size:sideways")]
    [InlineData("sort=size:asc,colour:asc")]
    [InlineData("sort=size:asc:desc")]
    public async Task A_bad_sort_is_a_badRequest(string query)
    {
        var project = await SeedAsync(("a1", 1));
        using var client = Client(project);

        var response = await client.GetAsync($"/v3/{project}/backups/detail?{query}");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(400, (int)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["code"]!);
    }

    [Theory]
    [InlineData("sort=name:asc,size:desc")]
    [InlineData("sort=name:desc,size:asc")]
    [InlineData("sort_key=size,created_at&sort_dir=asc,asc")]
    public async Task Paging_a_sorted_listing_walks_every_backup_once_in_its_order(string sort)
    {
        var project = await SeedAsync(("b", 2), (null, 1), ("a", 3), ("b", 1), (null, 2), ("b", 2), ("c", 1));
        using var client = Client(project);

        var whole = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/backups?{sort}"))!;
        var pages = await ListingPages.WalkAsync(client, $"/v3/{project}/backups?{sort}&limit=2", "backups");

        Assert.Equal(7, whole["backups"]!.AsArray().Count);
        Assert.Equal(whole.Field("backups", "id"), pages.SelectMany(p => p.Field("backups", "id")));
    }

    HttpClient Client(string project)
    {
        var client = api.ClientFor(project);
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.37");
        return client;
    }

    // Backups of one fresh project; created a second apart in the order given.
    async Task<string> SeedAsync(params (string? Name, int Size)[] backups)
    {
        await api.StartedAsync();
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var start = DateTimeOffset.UtcNow.AddHours(-1);
        await using var db = api.NewDbContext();
        db.AddRange(backups.Select((b, i) => new Backup
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", VolumeId = Guid.NewGuid(), Container = "c", AvailabilityZone = "nova",
            Name = b.Name, Size = b.Size, State = nameof(BackupSaga.Available), CreatedAt = start.AddSeconds(i), DataTimestamp = start.AddSeconds(i),
        }));
        await db.SaveChangesAsync();
        return project;
    }
}
