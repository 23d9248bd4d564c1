using MassTransit;
using MassTransit.Configuration;
using MassTransit.Saga;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Services;

namespace VolumeBackup.Api.Messaging;

public static class MessagingSetup
{
    /// <summary>RabbitMQ, the backup saga on PostgreSQL, the event consumers and the outbox relay.</summary>
    public static IServiceCollection AddMessaging(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<OutboxSignal>();
        services.AddHostedService<OutboxRelay>();
        services.AddMassTransit(x =>
        {
            x.SetKebabCaseEndpointNameFormatter();
            x.AddSagaStateMachine<BackupSaga, BackupSagaState>();
            x.AddConsumer<RestoreEventsConsumer>();
            x.AddConsumer<DeleteEventsConsumer>();
            x.AddConsumer<HeartbeatConsumer>();
            x.AddConfigureEndpointsCallback((context, _, endpoint) =>
            {
                // Concurrency conflicts are retried within a fraction of a second; a database outage of up to about twelve minutes is
                // ridden out (the event stays unacknowledged on the broker meanwhile), a longer one ends in the _error queue.
                // Our own endpoints' faults are not published, so every Fault<T> the saga sees comes from an agent.
                endpoint.UseMessageRetry(r => r.Exponential(20, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1), TimeSpan.FromMilliseconds(200)));
                endpoint.PublishFaults = false;
            });
            x.UsingRabbitMq((context, bus) =>
            {
                bus.Host(new Uri(configuration.GetConnectionString("RabbitMq") ?? throw new InvalidOperationException("ConnectionStrings:RabbitMq is required")));
                bus.ConfigureEndpoints(context);
            });
        });
        // After AddMassTransit, so these registrations are the last and win over the default in-memory repository.
        services.RegisterSagaRepository<BackupSagaState, AppDbContext, SagaConsumeContextFactory<AppDbContext, BackupSagaState>,
            PostgresSagaRepositoryContextFactory<BackupSagaState>>();
        return services;
    }
}
