using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Validation;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Quotas;

/// <summary>A project's limit for one resource; absent rows mean Cinder's default.</summary>
public sealed class Quota
{
    public required string ProjectId { get; init; }
    public required string Resource { get; init; }
    public int HardLimit { get; set; }
}

/// <summary>
/// Cinder's quota sets. Usage is counted from the rows themselves (a backup being created is "reserved", a finished one
/// "in use", a failed or deleted one nothing), so reserve, commit, roll back and release can never drift from the data.
/// </summary>
public static class QuotasApi
{
    /// <summary>Cinder's defaults (cinder/quota.py).</summary>
    public static readonly IReadOnlyDictionary<string, int> Defaults = new Dictionary<string, int>
    {
        ["volumes"] = 10, ["snapshots"] = 10, ["gigabytes"] = 1000, ["backups"] = 10, ["backup_gigabytes"] = 1000,
        ["groups"] = 10, ["per_volume_gigabytes"] = -1,
    };

    public static RouteGroupBuilder MapQuotas(this RouteGroupBuilder project)
    {
        var quotas = project.MapGroup("/os-quota-sets").WithTags("Quotas");
        quotas.MapGet("/{target}", Get).Rule("volume_extension:quotas:show");
        quotas.MapGet("/{target}/defaults", GetDefaults).Rule("volume_extension:quotas:show");
        quotas.MapPut("/{target}", Update).RequireAdmin("volume_extension:quotas:update").Validate(Schemas.QuotaUpdate);
        quotas.MapDelete("/{target}", Delete).RequireAdmin("volume_extension:quotas:delete");
        project.MapGet("/limits", Limits).WithTags("Quotas").Rule("limits_extension:used_limits");
        return project;
    }

    /// <summary>The caller's absolute limits and usage under Cinder's names (<c>cinder absolute-limits</c>); no rate limits.</summary>
    static async Task<Ok<Dictionary<string, Dictionary<string, object>>>> Limits(Caller caller, AppDbContext db, CancellationToken ct)
    {
        var limits = await LimitsAsync(db, caller.ProjectId, ct);
        var used = await UsageAsync(db, caller.ProjectId, ct);
        var absolute = new Dictionary<string, int>
        {
            ["maxTotalVolumes"] = limits["volumes"], ["maxTotalSnapshots"] = limits["snapshots"], ["maxTotalVolumeGigabytes"] = limits["gigabytes"],
            ["maxTotalBackups"] = limits["backups"], ["maxTotalBackupGigabytes"] = limits["backup_gigabytes"],
            ["totalVolumesUsed"] = used["volumes"].InUse, ["totalSnapshotsUsed"] = used["snapshots"].InUse, ["totalGigabytesUsed"] = used["gigabytes"].InUse,
            ["totalBackupsUsed"] = used["backups"].InUse, ["totalBackupGigabytesUsed"] = used["backup_gigabytes"].InUse,
        };
        return TypedResults.Ok(Wire.Wrap("limits", new Dictionary<string, object> { ["rate"] = Array.Empty<object>(), ["absolute"] = absolute }));
    }

    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object>>>, ProblemHttpResult>> Get(
        string target, Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct)
    {
        if (!caller.CanSee(target)) return CinderErrors.Forbidden($"Project {target} is not the caller's project");
        var limits = await LimitsAsync(db, target, ct);
        var set = new Dictionary<string, object> { ["id"] = target };
        if (Wire.Flag(http.Query, "usage"))
        {
            var used = await UsageAsync(db, target, ct);
            foreach (var (resource, limit) in limits)
            {
                var (inUse, reserved) = used.GetValueOrDefault(resource);
                set[resource] = new Dictionary<string, int> { ["limit"] = limit, ["in_use"] = inUse, ["reserved"] = reserved, ["allocated"] = 0 };
            }
        }
        else foreach (var (resource, limit) in limits) set[resource] = limit;
        return TypedResults.Ok(Wire.Wrap("quota_set", set));
    }

    static Ok<Dictionary<string, Dictionary<string, object>>> GetDefaults(string target)
    {
        var set = new Dictionary<string, object> { ["id"] = target };
        foreach (var (resource, limit) in Defaults) set[resource] = limit;
        return TypedResults.Ok(Wire.Wrap("quota_set", set));
    }

    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object>>>, ProblemHttpResult>> Update(
        string target, JsonElement body, Caller caller, AppDbContext db, CancellationToken ct)
    {
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("quota_set", out var set) || set.ValueKind != JsonValueKind.Object)
            return CinderErrors.BadRequest("Missing required element 'quota_set' in request body.");
        var changes = new Dictionary<string, int>();
        foreach (var item in set.EnumerateObject())
        {
            if (item.Name is "tenant_id" or "id") continue;
            if (!Defaults.ContainsKey(item.Name)) return CinderErrors.BadRequest($"Bad key(s) in quota set: {item.Name}");
            if (!TryLimit(item.Value, out var limit) || limit < -1)
                return CinderErrors.BadRequest($"Invalid input for field/attribute {item.Name}. Value: {item.Value}. must be an integer of at least -1");
            changes[item.Name] = limit;
        }
        foreach (var (resource, limit) in changes)
        {
            var row = await db.Quotas.FindAsync([target, resource], ct);
            if (row is null) db.Quotas.Add(new Quota { ProjectId = target, Resource = resource, HardLimit = limit });
            else row.HardLimit = limit;
        }
        await db.SaveChangesAsync(ct);
        var result = new Dictionary<string, object>();
        foreach (var (resource, limit) in await LimitsAsync(db, target, ct)) result[resource] = limit;
        return TypedResults.Ok(Wire.Wrap("quota_set", result));
    }

    /// <summary>Back to the defaults: the project's own limits are removed (Cinder's quota delete, 200 with no body).</summary>
    static async Task<Ok> Delete(string target, AppDbContext db, CancellationToken ct)
    {
        await db.Quotas.Where(q => q.ProjectId == target).ExecuteDeleteAsync(ct);
        return TypedResults.Ok();
    }

    static bool TryLimit(JsonElement value, out int limit)
    {
        limit = 0;
        return value.ValueKind switch
        {
            JsonValueKind.Number => value.TryGetInt32(out limit),
            JsonValueKind.String => int.TryParse(value.GetString(), out limit),
            _ => false,
        };
    }

    public static async Task<Dictionary<string, int>> LimitsAsync(AppDbContext db, string projectId, CancellationToken ct)
    {
        var limits = new Dictionary<string, int>(Defaults);
        foreach (var row in await db.Quotas.AsNoTracking().Where(q => q.ProjectId == projectId).ToListAsync(ct))
            limits[row.Resource] = row.HardLimit;
        return limits;
    }

    static async Task<Dictionary<string, (int InUse, int Reserved)>> UsageAsync(AppDbContext db, string projectId, CancellationToken ct)
    {
        var backups = await db.Backups.AsNoTracking().Where(b => b.ProjectId == projectId && b.State != nameof(BackupSaga.Error))
            .Select(b => new { b.State, b.Size }).ToListAsync(ct);
        var volumes = await db.Volumes.AsNoTracking().Where(v => v.ProjectId == projectId).Select(v => v.Size).ToListAsync(ct);
        var snapshots = await db.Snapshots.AsNoTracking().Where(s => s.ProjectId == projectId).Select(s => s.Size).ToListAsync(ct);
        var creating = backups.Where(b => BackupStatus.Of(b.State) == BackupStatus.Creating).ToList();
        var done = backups.Where(b => BackupStatus.Of(b.State) != BackupStatus.Creating).ToList();
        return new()
        {
            ["backups"] = (done.Count, creating.Count),
            ["backup_gigabytes"] = (done.Sum(b => b.Size), creating.Sum(b => b.Size)),
            ["volumes"] = (volumes.Count, 0),
            ["gigabytes"] = (volumes.Sum() + snapshots.Sum(), 0),     // Cinder counts snapshots in gigabytes too
            ["snapshots"] = (snapshots.Count, 0),
        };
    }

    /// <summary>
    /// Checks that one more volume (<paramref name="snapshot"/> false) or snapshot of <paramref name="sizeGb"/> fits the project's
    /// quota, under the same per-project lock as backups. Null when it fits; else Cinder's message.
    /// </summary>
    public static async Task<string?> CheckVolumeAsync(AppDbContext db, string projectId, int sizeGb, bool snapshot, CancellationToken ct)
    {
        await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(hashtext({"quota:" + projectId}))", ct);
        var limits = await LimitsAsync(db, projectId, ct);
        if (!snapshot && limits["per_volume_gigabytes"] >= 0 && sizeGb > limits["per_volume_gigabytes"])
            return $"Requested volume size {sizeGb}G is larger than maximum allowed limit {limits["per_volume_gigabytes"]}G.";
        var (resource, count) = snapshot
            ? ("snapshots", await db.Snapshots.CountAsync(s => s.ProjectId == projectId, ct))
            : ("volumes", await db.Volumes.CountAsync(v => v.ProjectId == projectId, ct));
        if (limits[resource] >= 0 && count + 1 > limits[resource])
            return $"Maximum number of {resource} allowed ({limits[resource]}) exceeded for quota '{resource}'.";
        var gigabytes = await db.Volumes.Where(v => v.ProjectId == projectId).SumAsync(v => v.Size, ct)
                        + await db.Snapshots.Where(s => s.ProjectId == projectId).SumAsync(s => s.Size, ct);
        if (limits["gigabytes"] >= 0 && gigabytes + sizeGb > limits["gigabytes"])
            return $"Requested volume or snapshot exceeds allowed gigabytes quota. Requested {sizeGb}G, quota is {limits["gigabytes"]}G and {gigabytes}G has been consumed.";
        return null;
    }

    /// <summary>
    /// Checks that one more backup of <paramref name="sizeGb"/> fits the project's quota, under a per-project lock held to the
    /// end of the caller's transaction, so two requests racing for the last slot cannot both pass. Null when it fits.
    /// </summary>
    public static async Task<string?> CheckBackupAsync(AppDbContext db, string projectId, int sizeGb, CancellationToken ct)
    {
        await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(hashtext({"quota:" + projectId}))", ct);
        var limits = await LimitsAsync(db, projectId, ct);
        var counted = db.Backups.Where(b => b.ProjectId == projectId && b.State != nameof(BackupSaga.Error));
        var count = await counted.CountAsync(ct);
        var gigabytes = await counted.SumAsync(b => b.Size, ct);
        if (limits["backups"] >= 0 && count + 1 > limits["backups"])
            return $"Maximum number of backups allowed ({limits["backups"]}) exceeded";
        if (limits["backup_gigabytes"] >= 0 && gigabytes + sizeGb > limits["backup_gigabytes"])
            return $"Requested backup exceeds allowed Backup gigabytes quota. Requested {sizeGb}G, quota is {limits["backup_gigabytes"]}G and {gigabytes}G has been consumed.";
        return null;
    }
}
