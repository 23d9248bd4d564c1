using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent;

/// <summary>Tells the Api every few seconds that this agent serves its zone; silence for a minute marks it down.</summary>
public sealed class AgentHeartbeatService(IBus bus, IOptions<AgentOptions> options, TimeProvider clock, ILogger<AgentHeartbeatService> logger) : BackgroundService
{
    static readonly string Instance = $"{Environment.MachineName}:{Environment.ProcessId}";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var agent = options.Value;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(agent.HeartbeatSeconds), clock);
        do
        {
            try
            {
                await bus.Publish(new AgentHeartbeat(AgentHeartbeat.BackupBinary, agent.ServiceName, agent.Zone, Instance, clock.GetUtcNow()), stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.HeartbeatFailed(e);               // the broker is restarting: the next beat will tell
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
