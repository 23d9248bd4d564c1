using MassTransit;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using VolumeBackup.Contracts;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.BackupAgent;

/// <summary>
/// Declares the zone's command queues before the bus starts: the agent's broker user may declare and read them but not
/// bind them (see ZoneQueueDefinition), so they must exist before it consumes; the Api binds them. Registered before
/// MassTransit, whose hosted service starts after this one.
/// </summary>
// RabbitMQ.Client (under MassTransit.RabbitMQ): MassTransit declares a receive endpoint's queue only together with its binding.
public sealed class CommandQueues(IConfiguration configuration, IOptions<AgentOptions> options, DeploymentTls tls, ILogger<CommandQueues> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        for (var delay = Broker.NextRetryDelay(null); ; delay = Broker.NextRetryDelay(delay))
        {
            try
            {
                await using var connection = await Broker.ConnectAsync(configuration, tls, "volumebackup-agent-declare", cancellationToken);
                await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
                foreach (var queue in Queues.OfZone(options.Value.Zone))
                    await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: CommandQueueArguments.Zone, cancellationToken: cancellationToken);
                return;
            }
            catch (Exception e) when (e is BrokerUnreachableException or AlreadyClosedException)
            {
                logger.CommandQueuesNotDeclared(delay, e);   // the broker is not up yet: an agent cannot work without it
                await Task.Delay(delay, cancellationToken);
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>
/// Locality (see Queues): this agent also takes backups and restores from its host's own queues, which the Api
/// declares (a host queue names the zone queue as its dead-letter exchange, which the agent's user may not). Until the
/// Api has declared them (it does at its start) the agent reads the zone's queues only, and commands for its host reach
/// it through them once they spill; it then connects the host's queues to the running bus.
/// </summary>
public sealed class HostQueues(
    IConfiguration configuration, IOptions<AgentOptions> options, DeploymentTls tls, IReceiveEndpointConnector endpoints, ILogger<HostQueues> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var agent = options.Value;
        var queues = Queues.HostRouted(agent.Zone).Select(zoneQueue => (Zone: zoneQueue, Host: Queues.OnHost(zoneQueue, agent.Host))).ToList();
        for (var delay = Broker.NextRetryDelay(null); !await ExistAsync(queues.Select(q => q.Host), stoppingToken); delay = Broker.NextRetryDelay(delay))
        {
            logger.HostQueuesMissing(agent.Host, delay);
            await Task.Delay(delay, stoppingToken);
        }
        foreach (var (zoneQueue, hostQueue) in queues)
        {
            var handle = endpoints.ConnectReceiveEndpoint(hostQueue, (context, endpoint) =>
            {
                if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbit)
                {
                    // Declared again exactly as the Api declared it (it exists, so no dead-letter permission is checked).
                    foreach (var (name, value) in CommandQueueArguments.Host(zoneQueue)) rabbit.SetQueueArgument(name, value);
                    rabbit.ConfigureConsumeTopology = false;
                    rabbit.BindQueue = false;                      // the Api bound it
                }
                if (zoneQueue == Queues.CreateBackup(agent.Zone)) endpoint.ConfigureConsumer<CreateBackupConsumer>(context);
                else endpoint.ConfigureConsumer<RestoreBackupConsumer>(context);
            });
            await handle.Ready.WaitAsync(stoppingToken);
        }
        logger.HostQueuesConnected(agent.Host);
    }

    /// <summary>
    /// A queue's _error and _skipped queues copy its arguments: theirs leave out the dead-letter exchange, which this
    /// agent may not name (and a faulted command must stay there, not go back to the zone's queue).
    /// </summary>
    public static void WithoutDeadLetterExchange(IRabbitMqBusFactoryConfigurator bus)
    {
        bus.SendTopology.ConfigureErrorSettings = error => error.SetQueueArgument("x-dead-letter-exchange", null);
        bus.SendTopology.ConfigureDeadLetterSettings = skipped => skipped.SetQueueArgument("x-dead-letter-exchange", null);
    }

    async Task<bool> ExistAsync(IEnumerable<string> names, CancellationToken ct)
    {
        try
        {
            await using var connection = await Broker.ConnectAsync(configuration, tls, "volumebackup-agent-host-queues", ct);
            foreach (var name in names)
            {
                await using var channel = await connection.CreateChannelAsync(cancellationToken: ct);
                await channel.QueueDeclarePassiveAsync(name, ct);       // a missing queue closes the channel (404)
            }
            return true;
        }
        catch (Exception e) when (e is OperationInterruptedException or BrokerUnreachableException or AlreadyClosedException)
        {
            return false;
        }
    }
}

/// <summary>An agent serves one availability zone: a command of another (a misrouted message) fails instead of touching that zone's volumes.</summary>
public static class ZoneGuard
{
    public static void Check(AgentOptions agent, string zone, Guid backupId)
    {
        if (zone.Length > 0 && zone != agent.Zone)
            throw new InvalidOperationException($"Backup {backupId} is of availability zone '{zone}'; this agent serves zone '{agent.Zone}' and never touches another zone's volumes.");
    }
}
