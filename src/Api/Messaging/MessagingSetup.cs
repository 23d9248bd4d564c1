using MassTransit;
using MassTransit.Configuration;
using MassTransit.Saga;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Dashboard;
using VolumeBackup.Api.Services;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Messaging;

public static class MessagingSetup
{
    /// <summary>
    /// The backup saga on its PostgreSQL repository (MassTransit's own repository seam), with the retry every Api endpoint uses.
    /// Shared by the Api and the saga's test harness, so the tests run the machine as registered here.
    /// </summary>
    public static void AddBackupSaga(this IBusRegistrationConfigurator x)
    {
        x.AddSagaStateMachine<BackupSaga, Backup>().Endpoint(e => e.QuorumQueue()).Repository(r =>
            r.RegisterSagaRepository<Backup, AppDbContext, SagaConsumeContextFactory<AppDbContext, Backup>, PostgresSagaRepositoryContextFactory<Backup>>());
        x.AddConfigureEndpointsCallback((context, _, endpoint) =>
        {
            // Concurrency conflicts are retried within a fraction of a second; a database outage of up to about twelve minutes is
            // ridden out (the event stays unacknowledged on the broker meanwhile), a longer one ends in the _error queue.
            // Our own endpoints' faults are not published, so every Fault<T> the saga sees comes from an agent.
            endpoint.UseMessageRetry(r => r.Exponential(20, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1), TimeSpan.FromMilliseconds(200)));
            endpoint.PublishFaults = false;
        });
    }

    /// <summary>RabbitMQ, the backup saga on PostgreSQL, the event consumers (the dashboard's feed among them) and the outbox relay.</summary>
    public static IServiceCollection AddMessaging(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<OutboxSignal>();
        services.AddSingleton<OsloPublisher>();
        services.AddSingleton<CommandQueues>();
        services.AddOptions<CommandQueueOptions>().BindConfiguration(CommandQueueOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddHostedService<CommandTopology>();
        services.AddOptions<NotificationOptions>().BindConfiguration(NotificationOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddHostedService<OutboxRelay>();
        services.AddMassTransit(x =>
        {
            x.SetKebabCaseEndpointNameFormatter();
            x.AddBackupSaga();
            x.AddConsumer<HeartbeatConsumer>().Endpoint(e => e.QuorumQueue());
            // A queue per Api instance, gone with it: every instance's pages see every event, one at a time in the queue's order.
            // Classic (a quorum queue cannot be temporary): on a cluster it lives on one node, and the bus declares it anew on another.
            x.AddConsumer<DashboardConsumer>().Endpoint(e =>
            {
                e.Name = $"dashboard-{Environment.MachineName}-{Guid.NewGuid():N}";
                e.Temporary = true;
                e.ConcurrentMessageLimit = 1;
            });
            x.UsingRabbitMq((context, bus) =>
            {
                bus.Host(Broker.From(configuration), context.GetRequiredService<DeploymentTls>());
                bus.ConfigureEndpoints(context);
            });
        });
        return services;
    }
}
