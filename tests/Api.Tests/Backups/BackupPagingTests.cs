using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using VolumeBackup.Api.Backups;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>The Api over one project of 5,000 backups, seeded once for the class.</summary>
public sealed class ManyBackupsApiFactory : RecordingApiFactory
{
    public const int Count = 5000;
    Task<(string Project, List<string> Ids)>? seeded;

    /// <summary>The project and its backups' ids in the default order: created_at desc, then id.</summary>
    public Task<(string Project, List<string> Ids)> SeededAsync() => seeded ??= SeedAsync();

    async Task<(string, List<string>)> SeedAsync()
    {
        await StartedAsync();
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var start = DateTimeOffset.UtcNow.AddDays(-1);
        // Seven backups share each creation second, so page boundaries fall inside ties that only the id breaks.
        var backups = Enumerable.Range(0, Count).Select(i => new Backup
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", VolumeId = Guid.NewGuid(), Container = "c", AvailabilityZone = "nova",
            Name = $"b{i}", Size = 1, State = nameof(BackupSaga.Available), CreatedAt = start.AddSeconds(i / 7), DataTimestamp = start,
        }).ToList();
        await using var db = NewDbContext();
        db.AddRange(backups);
        await db.SaveChangesAsync();
        // uuid order is the order of the lower-case text, byte by byte
        return (project, backups.OrderByDescending(b => b.CreatedAt).ThenBy(b => b.Id.ToString(), StringComparer.Ordinal).Select(b => b.Id.ToString()).ToList());
    }
}

/// <summary>Paging 5,000 backups of one project: each page reads its own rows from PostgreSQL, never the whole project.</summary>
public sealed class BackupPagingTests(ManyBackupsApiFactory api) : IClassFixture<ManyBackupsApiFactory>, IAsyncLifetime
{
    const int Seeded = ManyBackupsApiFactory.Count;
    string project = "";
    List<string> expected = [];

    public async Task InitializeAsync() => (project, expected) = await api.SeededAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task A_page_of_50_with_its_count_reads_50_rows_and_counts_in_SQL()
    {
        using var client = Client();
        api.Queries.Clear();

        var first = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/backups/detail?limit=50&with_count=true"))!;

        Assert.Equal(expected[..50], first.Field("backups", "id"));
        Assert.Equal(Seeded, (int)first["count"]!);
        Assert.Equal(50, BackupsRead());
        Assert.Contains(api.Queries.Commands, sql => sql.Contains("LIMIT", StringComparison.Ordinal) && sql.Contains("FROM backups", StringComparison.Ordinal));
        Assert.Contains(api.Queries.Commands, sql => sql.Contains("count(*)", StringComparison.OrdinalIgnoreCase) && sql.Contains("FROM backups", StringComparison.Ordinal));
        var next = (string)first["backups_links"]!.AsArray().Single()!["href"]!;
        Assert.Contains($"marker={expected[49]}", next, StringComparison.Ordinal);
        Assert.Contains("with_count=true", next, StringComparison.Ordinal);

        api.Queries.Clear();
        var second = (await client.GetFromJsonAsync<JsonObject>(next))!;

        Assert.Equal(expected[50..100], second.Field("backups", "id"));
        Assert.Empty(first.Field("backups", "id").Intersect(second.Field("backups", "id")));
        Assert.Equal(Seeded, (int)second["count"]!);
        Assert.Equal(50, BackupsRead());                       // the marker's sort values are read as values, not as a row
    }

    [Fact]
    public async Task A_full_last_page_links_to_an_empty_page_as_in_Cinder()
    {
        using var client = Client();

        var last = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/backups?limit=50&marker={expected[Seeded - 51]}"))!;

        Assert.Equal(expected[^50..], last.Field("backups", "id"));
        Assert.Null(last["count"]);                            // asked for by with_count only
        var empty = (await client.GetFromJsonAsync<JsonObject>((string)last["backups_links"]!.AsArray().Single()!["href"]!))!;
        Assert.Empty(empty["backups"]!.AsArray());
        Assert.Null(empty["backups_links"]);
    }

    [Fact]
    public async Task Without_a_limit_a_page_holds_osapi_max_limit_rows()
    {
        using var client = Client();
        api.Queries.Clear();

        var page = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/backups"))!;

        Assert.Equal(expected[..1000], page.Field("backups", "id"));
        Assert.NotNull(page["backups_links"]);
        Assert.Equal(1000, BackupsRead());
    }

    [Fact]
    public async Task A_marker_that_is_not_a_visible_backup_is_itemNotFound()
    {
        using var client = Client();

        var response = await client.GetAsync($"/v3/{project}/backups/detail?limit=50&marker={Guid.NewGuid()}");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal(404, (int)(await response.Content.ReadFromJsonAsync<JsonObject>())!["itemNotFound"]!["code"]!);
        using var other = api.ClientFor("another-project");
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v3/another-project/backups?marker={expected[0]}")).StatusCode);
    }

    int BackupsRead() => api.Queries.Entities.OfType<Backup>().Count(b => b.ProjectId == project);

    HttpClient Client()
    {
        var client = api.ClientFor(project);
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.45");
        return client;
    }
}
