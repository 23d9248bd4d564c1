using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("BackupAgent");
builder.Services.AddOptions<AgentOptions>().BindConfiguration(AgentOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddOptions<RepositoryOptions>().BindConfiguration(RepositoryOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<RunningJobs>();
builder.Services.AddHostedService<AgentHeartbeatService>();
builder.Services.AddSingleton(sp =>
{
    var repository = sp.GetRequiredService<IOptions<RepositoryOptions>>().Value;
    return RepositoryStores.Open(repository.Target, repository.Connections);
});
builder.Services.AddSingleton<BackupRepository>();
builder.Services.AddGrpcClient<VolumeHost.VolumeHostClient>((sp, o) => o.Address = new Uri(sp.GetRequiredService<IOptions<AgentOptions>>().Value.VolumeAgentAddress));
builder.Services.AddMassTransit(x =>
{
    x.SetKebabCaseEndpointNameFormatter();
    x.AddConsumer<CreateBackupConsumer, CreateBackupConsumerDefinition>();
    x.AddConsumer<RestoreBackupConsumer, RestoreBackupConsumerDefinition>();
    x.AddConsumer<DeleteBackupConsumer, DeleteBackupConsumerDefinition>();
    // Every agent hears every cancel: a temporary queue of its own, named for this process (classic: a quorum queue cannot be temporary).
    x.AddConsumer<CancelBackupConsumer>().Endpoint(e => { e.Temporary = true; e.InstanceId = $"-{Environment.MachineName}-{Environment.ProcessId}"; });
    x.UsingRabbitMq((context, bus) =>
    {
        bus.Host(Broker.From(builder.Configuration));
        bus.ConfigureEndpoints(context);
    });
});

var app = builder.Build();
app.MapDefaultEndpoints();
app.Run();

public partial class Program;
