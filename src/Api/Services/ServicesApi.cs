using MassTransit;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Versions;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Services;

public static class ServicesApi
{
    public static RouteGroupBuilder MapServices(this RouteGroupBuilder project)
    {
        project.MapGet("/os-services", List).WithTags("Services").RequireAdmin("volume_extension:services:index");
        return project;
    }

    /// <summary>Agents as <c>cinder service-list</c> shows them (admin only, as in Cinder).</summary>
    static async Task<Results<Ok<Dictionary<string, List<Dictionary<string, object?>>>>, ProblemHttpResult>> List(
        Caller caller, AppDbContext db, HttpRequest http, IOptions<ServiceOptions> services, TimeProvider clock, CancellationToken ct)
    {
        var query = db.Services.AsNoTracking();
        if (http.Query["binary"] is [var binary]) query = query.Where(s => s.Binary == binary);
        if (http.Query["host"] is [var host]) query = query.Where(s => s.Host == host);
        var now = clock.GetUtcNow();
        var rows = await query.OrderBy(s => s.Binary).ThenBy(s => s.Host).ToListAsync(ct);
        var version = Microversion.Of(http.HttpContext);
        return TypedResults.Ok(Wire.Wrap("services", rows.Select(s =>
        {
            // The fields Cinder's services index writes: cluster from 3.7, a volume service's replication fields, its
            // back end's state from 3.49.
            var up = s.IsUp(now, services.Value.DownTime);
            var row = new Dictionary<string, object?>
            {
                ["binary"] = s.Binary,
                ["host"] = s.Host,
                ["zone"] = s.Zone,
                ["status"] = s.Disabled ? "disabled" : "enabled",
                ["state"] = up ? "up" : "down",
                ["updated_at"] = Wire.Time(s.LastHeartbeat),
                ["disabled_reason"] = s.DisabledReason,
            };
            if (version >= Microversion.ClusterSupport) row["cluster"] = null;
            if (s.Binary == AgentService.Volume)
            {
                row["replication_status"] = "disabled";
                row["active_backend_id"] = null;
                row["frozen"] = false;
                if (version >= Microversion.BackendStateReport) row["backend_state"] = up ? "up" : "down";
            }
            return row;
        }).ToList()));
    }

    /// <summary>Whether a backup agent of the zone has been heard from recently: Cinder refuses a backup otherwise.</summary>
    public static Task<bool> BackupServiceUpAsync(AppDbContext db, string zone, DateTimeOffset now, TimeSpan downTime, CancellationToken ct)
    {
        var since = now - downTime;
        return db.Services.AnyAsync(s => s.Binary == AgentService.Backup && s.Zone == zone && !s.Disabled && s.LastHeartbeat > since, ct);
    }
}

/// <summary>Records heartbeats; a late one never moves the clock back.</summary>
public sealed class HeartbeatConsumer(AppDbContext db, TimeProvider clock) : IConsumer<AgentHeartbeat>
{
    public async Task Consume(ConsumeContext<AgentHeartbeat> context)
    {
        var beat = context.Message;
        await RecordAsync(db, beat.Binary, beat.Host, beat.Zone, clock.GetUtcNow(), context.CancellationToken);
    }

    /// <summary>The Api's clock, not the agent's: up/down is judged against it.</summary>
    public static async Task RecordAsync(AppDbContext db, string binary, string host, string zone, DateTimeOffset now, CancellationToken ct)
    {
        var service = await db.Services.FirstOrDefaultAsync(s => s.Binary == binary && s.Host == host, ct);
        if (service is null)
        {
            service = new AgentService { Binary = binary, Host = host, CreatedAt = now };
            db.Services.Add(service);
        }
        service.Zone = zone;
        if (now > service.LastHeartbeat) service.LastHeartbeat = now;
        await db.SaveChangesAsync(ct);
    }
}
