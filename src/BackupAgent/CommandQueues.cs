using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent;

/// <summary>
/// Locality (see Queues): this agent reads backups and restores from its host's queue and from its zone's queue, and
/// deletes from its zone's. The host queue's arguments (spill after Agent:SpillAfter into the zone's queue, which is
/// also its alternate exchange) must be the same for every agent of the host, and match what the Api sends to.
/// </summary>
public static class CommandQueues
{
    public static void AddCommandConsumers(this IBusRegistrationConfigurator x)
    {
        x.AddConsumer<CreateBackupConsumer, CreateBackupConsumerDefinition>().ExcludeFromConfigureEndpoints();
        x.AddConsumer<RestoreBackupConsumer, RestoreBackupConsumerDefinition>().ExcludeFromConfigureEndpoints();
        x.AddConsumer<DeleteBackupConsumer, DeleteBackupConsumerDefinition>();
    }

    public static void ConfigureCommandQueues(this IRabbitMqBusFactoryConfigurator bus, IBusRegistrationContext context)
    {
        var agent = context.GetRequiredService<IOptions<AgentOptions>>().Value;
        HostAndZone<CreateBackupConsumer>(bus, context, agent, Queues.CreateBackup(agent.Zone));
        HostAndZone<RestoreBackupConsumer>(bus, context, agent, Queues.RestoreBackup(agent.Zone));
    }

    static void HostAndZone<T>(IRabbitMqBusFactoryConfigurator bus, IBusRegistrationContext context, AgentOptions agent, string zoneQueue)
        where T : class, IConsumer
    {
        // Prefetch no more than can run: a command this agent cannot start yet stays in the broker, free for others
        // (and, on the host queue, free to expire into the zone's).
        bus.ReceiveEndpoint(zoneQueue, e =>
        {
            e.PrefetchCount = agent.ConcurrentJobs;
            e.ConfigureConsumer<T>(context);
        });
        bus.ReceiveEndpoint(Queues.OnHost(zoneQueue, agent.Host), e =>
        {
            e.PrefetchCount = agent.ConcurrentJobs;
            e.SetQueueArgument("x-message-ttl", (long)agent.SpillAfter.TotalMilliseconds);
            e.SetQueueArgument("x-dead-letter-exchange", zoneQueue);
            e.SetExchangeArgument("alternate-exchange", zoneQueue);
            e.ConfigureConsumer<T>(context);
        });
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
