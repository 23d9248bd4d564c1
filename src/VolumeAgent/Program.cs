using VolumeBackup.ServiceDefaults;
using VolumeBackup.VolumeAgent;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("VolumeAgent");
builder.Services.AddOptions<VolumeOptions>().BindConfiguration(VolumeOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddDeploymentTls();
builder.WebHost.RequireMutualTls();
builder.Services.AddSingleton<VolumePool>();
builder.Services.AddGrpc();

var app = builder.Build();
app.MapGrpcService<VolumeService>();
app.MapDefaultEndpoints();
app.Run();

public partial class Program;
