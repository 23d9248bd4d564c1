using Microsoft.AspNetCore.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Dashboard;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Validation;
using VolumeBackup.Api.Quotas;
using VolumeBackup.Api.Services;
using VolumeBackup.Api.Versions;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;
using VolumeBackup.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddSingleton<IProblemDetailsWriter, CinderProblemDetailsWriter>();   // before AddProblemDetails: writers run in order
builder.AddServiceDefaults("Api");
builder.Services.AddExceptionHandler<ConcurrencyExceptionHandler>();
// A body that is missing or not JSON throws, so the one error path renders it in Cinder's shape with its reason.
builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
builder.Services.ConfigureHttpJsonOptions(o =>
{
    o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
    o.SerializerOptions.Converters.Add(new CinderBooleanConverter());
});
builder.Services.AddCinderAuth();
builder.Services.AddOptions<StorageOptions>().BindConfiguration(StorageOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddOptions<ServiceOptions>().BindConfiguration(ServiceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddDeploymentTls();
builder.Services.AddSingleton<VolumeHosts>();
builder.Services.AddSingleton<DashboardFeed>();
builder.Services.AddDbContext<AppDbContext>(o => AppDbContext.Configure(o,
    builder.Configuration.GetConnectionString("Postgres") ?? throw new InvalidOperationException("ConnectionStrings:Postgres is required")));
builder.Services.AddMessaging(builder.Configuration);
builder.Services.AddOptions<BackupOptions>().BindConfiguration(BackupOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddSingleton(sp => new RecordSigner(MasterKey.Load(sp.GetRequiredService<IConfiguration>()[MasterKey.ConfigKey])));
builder.Services.AddHostedService<UntakenBackupsWatchdog>();
builder.Services.AddOptions<VerifyOptions>().BindConfiguration(VerifyOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddHostedService<VerifySchedule>();
builder.Services.AddHostedService<VolumeHostMonitor>();

var app = builder.Build();
app.Services.GetRequiredService<RecordSigner>();   // no master key, no start: records could be neither signed nor checked
app.UseExceptionHandler(new ExceptionHandlerOptions
{
    StatusCodeSelector = e => e is BadHttpRequestException bad ? bad.StatusCode : StatusCodes.Status500InternalServerError,
});
app.UseStatusCodePages();
app.UseRequestBodyLimit();                                                  // before authentication, as Cinder's sizelimit filter
app.UseAuthentication();
app.UseAuthorization();
app.UseCinderNotFound();
app.UseBodyValidation();

await using (var scope = app.Services.CreateAsyncScope())
    await scope.ServiceProvider.GetRequiredService<AppDbContext>().Database.MigrateAsync();

app.MapVersions();
// With and without the project id (Cinder 3.67: a catalog may hold /v3 or /v3/%(project_id)s); without it, the token's project.
foreach (var prefix in new[] { "/v3/{project_id}", "/v3" })
    app.MapGroup(prefix)
        .AddEndpointFilter<MicroversionFilter>()
        .RequireAuthorization(CinderAuth.ProjectPolicy)
        .MapVolumes()
        .MapSnapshots()
        .MapAttachments()
        .MapBackups()
        .MapQuotas()
        .MapServices()
        .MapAvailabilityZones();
app.MapDashboard();
app.MapDefaultEndpoints();
app.Run();

public partial class Program;
