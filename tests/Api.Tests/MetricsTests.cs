using System.Net.Http.Json;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests;

/// <summary>The Api's /metrics, in Prometheus's text format, under the names the README lists.</summary>
public sealed class MetricsTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public async Task Metrics_serves_the_outbox_backlog_the_queued_backups_and_the_saga_events()
    {
        await api.StartedAsync();
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var volume = (await api.VolumesWithLiveAgentAsync(project)).Single();
        using var client = api.ClientFor(project);
        Assert.Equal(202, (int)(await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id } })).StatusCode);

        using var scraper = api.CreateClient();
        string[] expected =
        [
            "# TYPE volumebackup_outbox_unsent gauge", "# TYPE volumebackup_outbox_parked gauge", "# TYPE volumebackup_outbox_oldest_unsent_age_seconds gauge",
            "volumebackup_zone=\"nova\"}", "# TYPE volumebackup_saga_events_total counter", "volumebackup_event=\"CreateRequested\"",
        ];
        await Eventually.UntilAsync(() => scraper.GetStringAsync("/metrics"), text => expected.All(text.Contains), TimeSpan.FromSeconds(60),
            "the Api's /metrics to show its instruments", text => $"missing {string.Join(", ", expected.Where(e => !text.Contains(e)))}", every: TimeSpan.FromMilliseconds(500));
    }
}
