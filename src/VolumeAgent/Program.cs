using VolumeBackup.ServiceDefaults;
using VolumeBackup.VolumeAgent;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("VolumeAgent");
builder.Services.AddOptions<VolumeOptions>().BindConfiguration(VolumeOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddDeploymentTls();
builder.WebHost.RequireMutualTls();
// A remote restore streams a device in: Kestrel's default receive windows (1 MiB per connection) would let only a MiB
// be in flight across all of its WriteDevice streams per round trip.
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.Limits.Http2.InitialConnectionWindowSize = 32 << 20;
    kestrel.Limits.Http2.InitialStreamWindowSize = 8 << 20;
});
builder.Services.AddSingleton<VolumePool>();
builder.Services.AddGrpc();

var app = builder.Build();
app.MapGrpcService<VolumeService>();
app.MapDefaultEndpoints();
app.Run();

public partial class Program;
