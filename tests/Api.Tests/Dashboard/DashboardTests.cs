using System.Net.Http.Json;
using System.Text.Json.Nodes;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Tests.Dashboard;

/// <summary>The dashboard's routes: the page for anyone, its data and events for admins only, the events fed by the bus.</summary>
public sealed class DashboardTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Theory]
    [InlineData("/dashboard/snapshot")]
    [InlineData("/dashboard/events")]
    public async Task Data_and_events_are_403_for_a_non_admin_and_401_without_a_token(string path)
    {
        using var member = api.ClientFor("p", "member");
        var refused = await member.GetAsync(path);
        Assert.Equal(403, (int)refused.StatusCode);
        Assert.Contains("volume_extension:dashboard:view", (string)(await refused.Content.ReadFromJsonAsync<JsonObject>())!["forbidden"]!["message"]!);

        using var anonymous = api.CreateClient();
        Assert.Equal(401, (int)(await anonymous.GetAsync(path)).StatusCode);
    }

    [Fact]
    public async Task The_page_and_its_script_are_served_and_hold_no_data()
    {
        using var anonymous = api.CreateClient();
        var page = await anonymous.GetAsync("/dashboard");
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("id=\"signin\"", await page.Content.ReadAsStringAsync());
        Assert.Contains("X-Auth-Token", await anonymous.GetStringAsync("/dashboard/dashboard.js"));
        Assert.Equal("text/css", (await anonymous.GetAsync("/dashboard/dashboard.css")).Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task Events_start_with_a_snapshot_then_carry_an_agents_progress_from_the_bus()
    {
        await api.StartedAsync();
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var volume = (await api.VolumesWithLiveAgentAsync(project)).Single();
        using var admin = api.ClientFor(project, "admin");
        var backupId = (string)(await (await admin.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id, name = "watched" } }))
            .Content.ReadFromJsonAsync<JsonObject>())!["backup"]!["id"]!;

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var response = await admin.GetAsync("/dashboard/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var (type, snapshot) = await NextEventAsync(reader, cts.Token);
        Assert.Equal("snapshot", type);
        Assert.Contains(snapshot["jobs"]!.AsArray(), j => (string?)j!["id"] == backupId);
        Assert.Contains(snapshot["agents"]!.AsArray(), a => (string?)a!["host"] == project);

        await api.Services.GetRequiredService<IBus>().Publish(new BackupProgressed(Guid.Parse(backupId), 3 << 20, 1L << 30), cts.Token);
        JsonObject job;
        do (type, job) = await NextEventAsync(reader, cts.Token);
        while (type != "job" || (string?)job["id"] != backupId || job["bytes_done"] is null);
        Assert.Equal(3 << 20, (long)job["bytes_done"]!);
        Assert.Equal(1L << 30, (long)job["bytes_total"]!);

        // A restore's progress reaches the page the same way, as a restore job of that backup.
        await api.Services.GetRequiredService<IBus>().Publish(new RestoreProgressed(Guid.Parse(backupId), Guid.NewGuid(), 5 << 20, 2L << 30), cts.Token);
        do (type, job) = await NextEventAsync(reader, cts.Token);
        while (type != "job" || (string?)job["id"] != backupId || (string?)job["kind"] != "restore");
        Assert.Equal((5L << 20, 2L << 30), ((long)job["bytes_done"]!, (long)job["bytes_total"]!));
    }

    static async Task<(string Type, JsonObject Data)> NextEventAsync(StreamReader reader, CancellationToken ct)
    {
        string type = "message", data = "";
        for (string? line; (line = await reader.ReadLineAsync(ct)) is not null;)
        {
            if (line.Length == 0 && data.Length > 0) return (type, JsonNode.Parse(data)!.AsObject());
            if (line.StartsWith("event:", StringComparison.Ordinal)) type = line[6..].Trim();
            else if (line.StartsWith("data:", StringComparison.Ordinal)) data += line[5..].TrimStart();
        }
        throw new EndOfStreamException("The event stream ended");
    }
}
