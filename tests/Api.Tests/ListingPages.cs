using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace VolumeBackup.Api.Tests;

/// <summary>Walks a Cinder listing from <paramref name="url"/> along its next links, returning each page's body.</summary>
public static class ListingPages
{
    public static async Task<List<JsonObject>> WalkAsync(HttpClient client, string url, string list, int most = 100)
    {
        List<JsonObject> pages = [];
        for (string? next = url; next is not null; next = (string?)pages[^1][$"{list}_links"]?.AsArray().Single()!["href"])
        {
            Assert.True(pages.Count < most, $"more than {most} pages from {url}");
            pages.Add((await client.GetFromJsonAsync<JsonObject>(next))!);
        }
        return pages;
    }

    public static IEnumerable<string?> Field(this JsonObject page, string list, string field) => page[list]!.AsArray().Select(r => (string?)r![field]);
}
