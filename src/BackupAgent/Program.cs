using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent;
using VolumeBackup.BackupAgent.Devices;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.ServiceDefaults;

if (args is ["rotate-master-key", .. var rest])
{
    var cli = Host.CreateApplicationBuilder(rest);
    using var host = cli.Build();
    Environment.ExitCode = await MasterKeyRotation.RunAsync(host.Services.GetRequiredService<IConfiguration>(),
        host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("rotate-master-key"), CancellationToken.None);
    return;
}

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("BackupAgent");
builder.Services.AddOptions<AgentOptions>().BindConfiguration(AgentOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddOptions<RepositoryOptions>().BindConfiguration(RepositoryOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddDeploymentTls();
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<RunningJobs>();
builder.Services.AddHostedService<AgentHeartbeatService>();
builder.Services.AddSingleton(sp =>
{
    var repository = sp.GetRequiredService<IOptions<RepositoryOptions>>().Value;
    return RepositoryStores.Open(repository.Target, repository.Connections);
});
// Read at start: an agent without a usable master key refuses to run (it would write nothing readable).
builder.Services.AddSingleton(_ => MasterKey.Load(builder.Configuration[MasterKey.ConfigKey]));
builder.Services.AddSingleton<BackupRepository>();
builder.Services.AddSingleton<VolumeAgents>();
// Mutual TLS: the agent's certificate (role backup-agent, its zone) to the VolumeAgents, whose own must come from the deployment CA.
builder.Services.AddGrpcClient<VolumeHost.VolumeHostClient>((sp, o) => o.Address = new Uri(sp.GetRequiredService<IOptions<AgentOptions>>().Value.VolumeAgentAddress))
    .ConfigurePrimaryHttpMessageHandler(sp => sp.GetRequiredService<DeploymentTls>().ClientHandler());
builder.Services.AddHostedService<CommandQueues>();   // before the bus starts consuming them
builder.Services.AddMassTransit(x =>
{
    // Usage telemetry enumerates the endpoints when the bus has started, while HostQueues may be connecting the host's:
    // "Collection was modified" then faults the start and the agent never gets ready (bench/scale.sh hit it).
    x.DisableUsageTelemetry();
    x.SetKebabCaseEndpointNameFormatter();
    x.AddConsumer<CreateBackupConsumer, CreateBackupConsumerDefinition>();
    x.AddConsumer<RestoreBackupConsumer, RestoreBackupConsumerDefinition>();
    x.AddConsumer<DeleteBackupConsumer, DeleteBackupConsumerDefinition>();
    x.AddConsumer<VerifyBackupConsumer, VerifyBackupConsumerDefinition>();
    // Every agent hears every cancel: a temporary queue of its own, named for this process (classic: a quorum queue cannot be temporary).
    x.AddConsumer<CancelBackupConsumer>().Endpoint(e => { e.Temporary = true; e.InstanceId = $"-{Environment.MachineName}-{Environment.ProcessId}"; });
    x.UsingRabbitMq((context, bus) =>
    {
        bus.Host(Broker.From(builder.Configuration), context.GetRequiredService<DeploymentTls>());
        HostQueues.WithoutDeadLetterExchange(bus);
        bus.ConfigureEndpoints(context);
    });
});
builder.Services.AddHostedService<HostQueues>();      // after the bus: it connects the host's queues to it once they exist

var app = builder.Build();
app.Services.GetRequiredService<MasterKey>();
app.MapDefaultEndpoints();
app.Run();

public partial class Program;
