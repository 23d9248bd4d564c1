using OpenTelemetry;
using VolumeBackup.Api.Dashboard;
using VolumeBackup.Api.Storage;

namespace VolumeBackup.Api.Services;

/// <summary>
/// The storage hosts as Cinder lists its volume services: each VolumeAgent's readiness is asked every few seconds and
/// recorded as a heartbeat of a <c>cinder-volume</c> row, so <c>cinder service-list</c> shows a host going down when its
/// VolumeAgent stops answering.
/// </summary>
public sealed class VolumeHostMonitor(VolumeHosts hosts, DashboardFeed dashboard, IServiceScopeFactory scopes, TimeProvider clock, ILogger<VolumeHostMonitor> logger)
    : BackgroundService
{
    static readonly TimeSpan Every = TimeSpan.FromSeconds(10);

    // A VolumeAgent speaks HTTP/2 only (gRPC), over mutual TLS: the Api's certificate, as on the gRPC channels.
    readonly HttpClient http = hosts.CreateHttpClient(TimeSpan.FromSeconds(5));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Every, clock);
        do
        {
            foreach (var host in hosts.All)
            {
                try
                {
                    if (await AnswersAsync(host, stoppingToken))
                    {
                        await using var scope = scopes.CreateAsyncScope();
                        var now = clock.GetUtcNow();
                        await HeartbeatConsumer.RecordAsync(scope.ServiceProvider.GetRequiredService<AppDbContext>(), AgentService.Volume, host.Name, host.Zone,
                            now, stoppingToken);
                        dashboard.Publish("agent", new AgentUpdate(AgentService.Volume, host.Name, host.Zone, now));   // recorded: the pages hear it
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.VolumeHostCheckFailed(host.Name, e);   // the database is away: the next round records it
                }
            }
        } while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    async Task<bool> AnswersAsync(StorageHost host, CancellationToken ct)
    {
        using var quiet = SuppressInstrumentationScope.Begin();     // a probe every few seconds is not worth a trace
        try
        {
            using var response = await http.GetAsync(new Uri(new Uri(host.Address), "/health/ready"), ct);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            return false;                                           // down: its row stops being refreshed
        }
    }

    public override void Dispose()
    {
        http.Dispose();
        base.Dispose();
    }
}
