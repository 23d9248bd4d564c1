using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Services;

namespace VolumeBackup.Api.Dashboard;

/// <summary>
/// The operators' live page. The page itself (HTML, JS, CSS, embedded in the Api) holds no data and is served to anyone; its
/// data comes from two admin-only routes behind the one authentication handler, so the browser signs in as any client does:
/// it sends <c>X-Auth-Token</c>, which it keeps in sessionStorage and reads the event stream with fetch() (EventSource cannot
/// send a header). The stream starts with a snapshot of the database, then carries the feed's events.
/// </summary>
public static class DashboardApi
{
    public const string Rule = "volume_extension:dashboard:view";
    const int RecentFinished = 20, RecentFailures = 10, InFlightShown = 200;

    public static RouteGroupBuilder MapDashboard(this IEndpointRouteBuilder app)
    {
        var dashboard = app.MapGroup("/dashboard").WithTags("Dashboard");
        dashboard.MapGet("/", () => Asset("index.html", "text/html; charset=utf-8"));
        dashboard.MapGet("/dashboard.js", () => Asset("dashboard.js", "text/javascript; charset=utf-8"));
        dashboard.MapGet("/dashboard.css", () => Asset("dashboard.css", "text/css; charset=utf-8"));
        dashboard.MapGet("/snapshot", Snapshot).RequireAdmin(Rule);
        dashboard.MapGet("/events", Events).RequireAdmin(Rule);
        return dashboard;
    }

    static IResult Asset(string name, string contentType) =>
        Results.Stream(typeof(DashboardApi).Assembly.GetManifestResourceStream($"dashboard/{name}")!, contentType);

    static async Task<Ok<DashboardSnapshot>> Snapshot(AppDbContext db, DashboardFeed feed, IOptions<ServiceOptions> services, TimeProvider clock, CancellationToken ct) =>
        TypedResults.Ok(await SnapshotAsync(db, feed, services.Value.DownTime, clock, ct));

    static ServerSentEventsResult<string> Events(AppDbContext db, DashboardFeed feed, IOptions<ServiceOptions> services, TimeProvider clock, CancellationToken ct) =>
        TypedResults.ServerSentEvents(Stream(db, feed, services.Value.DownTime, clock, ct));

    static async IAsyncEnumerable<SseItem<string>> Stream(AppDbContext db, DashboardFeed feed, TimeSpan downTime, TimeProvider clock,
        [EnumeratorCancellation] CancellationToken ct)
    {
        using var subscription = feed.Subscribe();               // before the snapshot is read: an event meanwhile is queued, not lost
        yield return new SseItem<string>(feed.Serialize(await SnapshotAsync(db, feed, downTime, clock, ct)), "snapshot");
        await foreach (var item in subscription.Events.ReadAllAsync(ct)) yield return item;
    }

    /// <summary>One read of the rows, when a page connects; afterwards the page is kept current by events alone.</summary>
    public static async Task<DashboardSnapshot> SnapshotAsync(AppDbContext db, DashboardFeed feed, TimeSpan downTime, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        string[] inFlight = ["Initial", nameof(BackupSaga.Creating), nameof(BackupSaga.Restoring), nameof(BackupSaga.Deleting)];
        string[] failed = [nameof(BackupSaga.Error), nameof(BackupSaga.ErrorDeleting)];
        var running = await db.Backups.AsNoTracking().Where(b => inFlight.Contains(b.State)).OrderByDescending(b => b.CreatedAt).Take(InFlightShown).ToListAsync(ct);
        var finished = await db.Backups.AsNoTracking().Where(b => b.State == nameof(BackupSaga.Available) && b.UpdatedAt != null)
            .OrderByDescending(b => b.UpdatedAt).Take(RecentFinished).ToListAsync(ct);
        var failures = await db.Backups.AsNoTracking().Where(b => failed.Contains(b.State) && b.UpdatedAt != null)
            .OrderByDescending(b => b.UpdatedAt).Take(RecentFailures).ToListAsync(ct);
        var agents = await db.Services.AsNoTracking().OrderBy(s => s.Zone).ThenBy(s => s.Binary).ThenBy(s => s.Host)
            .Select(s => new AgentUpdate(s.Binary, s.Host, s.Zone, s.LastHeartbeat, s.Disabled)).ToListAsync(ct);
        return new DashboardSnapshot(now, (int)downTime.TotalSeconds, (int)DashboardFeed.Bucket.TotalSeconds,
            running.Concat(finished).Select(Job).ToList(), failures.Select(Job).ToList(), agents, await RepositoryAsync(db, ct), feed.LastHour());
    }

    /// <summary>
    /// What the available backups cover (the bytes of the volumes they hold) against what the share holds: every byte the
    /// agents wrote less every byte deletes freed, summed over all rows (a deleted backup keeps its row and its figures).
    /// So the ratio is the whole saving: compression, zeros skipped and chunks shared within and across backups.
    /// </summary>
    public static async Task<RepositoryStats> RepositoryAsync(AppDbContext db, CancellationToken ct)
    {
        var covered = await db.Backups.AsNoTracking().Where(b => b.State == nameof(BackupSaga.Available))
            .GroupBy(_ => 1).Select(g => new { Count = g.Count(), Logical = g.Sum(b => b.BytesDone) }).FirstOrDefaultAsync(ct);
        var stored = await db.Backups.IgnoreQueryFilters().AsNoTracking().SumAsync(b => b.BytesWritten - b.BytesFreed, ct);
        if (covered is null) return new RepositoryStats(0, 0, Math.Max(0, stored), null);
        return new RepositoryStats(covered.Count, covered.Logical, Math.Max(0, stored), stored > 0 ? Math.Round((double)covered.Logical / stored, 2) : null);
    }

    static JobUpdate Job(Backup b)
    {
        var restore = b.State == nameof(BackupSaga.Restoring);
        return new JobUpdate(b.Id, restore ? Kinds.Restore : Kinds.Backup, b.Status, Phases.Of(b), b.Name, b.ProjectId, b.AvailabilityZone, b.Host,
            restore ? null : b.BytesDone, restore ? null : (long)b.Size << 30, b.FailReason, b.UpdatedAt ?? b.CreatedAt);
    }
}

public sealed record DashboardSnapshot(
    DateTimeOffset Now, int DownAfterSeconds, int BucketSeconds, List<JobUpdate> Jobs, List<JobUpdate> Failures, List<AgentUpdate> Agents,
    RepositoryStats Repository, List<ThroughputPoint> Throughput);

public sealed record RepositoryStats(int Backups, long LogicalBytes, long StoredBytes, double? Ratio);
