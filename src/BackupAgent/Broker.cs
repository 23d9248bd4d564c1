using MassTransit;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using VolumeBackup.Contracts;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.BackupAgent;

/// <summary>The broker's address (ConnectionStrings:RabbitMq, with the agents' own user) and, for amqps://, TLS trusting the deployment CA only.</summary>
public static class Broker
{
    public static Uri Uri(IConfiguration configuration) =>
        new(configuration.GetConnectionString("RabbitMq") ?? throw new InvalidOperationException("ConnectionStrings:RabbitMq is required"));

    public static void Secure(IRabbitMqHostConfigurator host, Uri broker, DeploymentTls tls)
    {
        if (broker.Scheme != "amqps") return;
        host.UseSsl(s =>
        {
            s.ServerName = broker.Host;
            s.CertificateValidationCallback = tls.ValidateServer;
        });
    }
}

/// <summary>
/// Declares the zone's command queues before the bus starts: the agent's broker user may declare and read them but not
/// bind them (see ZoneQueueDefinition), so they must exist before it consumes; the Api's first send binds them.
/// Registered before MassTransit, whose hosted service starts after this one.
/// </summary>
// RabbitMQ.Client (under MassTransit.RabbitMQ): MassTransit declares a receive endpoint's queue only together with its binding.
public sealed class CommandQueues(IConfiguration configuration, IOptions<AgentOptions> options, DeploymentTls tls, ILogger<CommandQueues> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var zone = options.Value.Zone;
        var factory = new ConnectionFactory { Uri = Broker.Uri(configuration), ClientProvidedName = "volumebackup-agent-declare" };
        if (factory.Ssl.Enabled) factory.Ssl.CertificateValidationCallback = tls.ValidateServer;
        for (var delay = TimeSpan.FromSeconds(1); ; delay = TimeSpan.FromSeconds(Math.Min(delay.TotalSeconds * 2, 30)))
        {
            try
            {
                await using var connection = await factory.CreateConnectionAsync(cancellationToken);
                await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
                foreach (var queue in new[] { Queues.CreateBackup(zone), Queues.RestoreBackup(zone), Queues.DeleteBackup(zone), Queues.VerifyBackup(zone) })
                    await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, cancellationToken: cancellationToken);
                return;
            }
            catch (Exception e) when (e is RabbitMQ.Client.Exceptions.BrokerUnreachableException or RabbitMQ.Client.Exceptions.AlreadyClosedException)
            {
                logger.CommandQueuesNotDeclared(delay, e);   // the broker is not up yet: an agent cannot work without it
                await Task.Delay(delay, cancellationToken);
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
