using System.Globalization;
using System.Numerics;
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
        var absolute = new Dictionary<string, long>
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
        // utils.get_bool_param: a word that is no boolean is refused, not read as false.
        if (http.Query["usage"] is [var usageText] && !BoolWords.Contains(usageText ?? ""))
            return CinderErrors.BadRequest($"Value '{usageText}' for 'usage' is not a boolean.");
        var limits = await LimitsAsync(db, target, ct);
        var set = new Dictionary<string, object> { ["id"] = target };
        if (http.Query["usage"] is [var word] && TrueWords.Contains(word ?? ""))
        {
            var used = await UsageAsync(db, target, ct);
            foreach (var (resource, limit) in limits)
            {
                var (inUse, reserved) = used.GetValueOrDefault(resource);
                set[resource] = new Dictionary<string, long> { ["limit"] = limit, ["in_use"] = inUse, ["reserved"] = reserved, ["allocated"] = 0 };
            }
        }
        else foreach (var (resource, limit) in limits) set[resource] = limit;
        return TypedResults.Ok(Wire.Wrap("quota_set", set));
    }

    static Results<Ok<Dictionary<string, Dictionary<string, object>>>, ProblemHttpResult> GetDefaults(string target, Caller caller)
    {
        if (!caller.CanSee(target)) return CinderErrors.Forbidden($"Project {target} is not the caller's project");   // Cinder's show policy, on the target
        var set = new Dictionary<string, object> { ["id"] = target };
        foreach (var (resource, limit) in Defaults) set[resource] = limit;
        return TypedResults.Ok(Wire.Wrap("quota_set", set));
    }

    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object>>>, ProblemHttpResult>> Update(
        string target, JsonElement body, Caller caller, AppDbContext db, CancellationToken ct)
    {
        if (target.Length > 255) return CinderErrors.BadRequest($"Invalid input received: quota_set_name has {target.Length} characters, more than 255.");
        // The schema (format quota_set) has checked every key and value; these are the values it let through.
        var changes = body.GetProperty("quota_set").EnumerateObject().Where(p => Defaults.ContainsKey(p.Name))
            .ToDictionary(p => p.Name, p => (int)ParseLimit(p.Value)!);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await LockAsync(db, target, ct);                           // a limit below the usage must not slip past a create in flight
        var used = await UsageAsync(db, target, ct);
        foreach (var (resource, limit) in changes)
        {
            if (resource == "per_volume_gigabytes" || limit == -1 || !used.TryGetValue(resource, out var usage)) continue;
            var consumed = usage.InUse + usage.Reserved;
            if (limit < consumed)
                return CinderErrors.BadRequest($"Quota {resource} limit must be equal or greater than existing resources. Current usage is {consumed} and the requested limit is {limit}.");
        }
        foreach (var (resource, limit) in changes)
        {
            var row = await db.Quotas.FindAsync([target, resource], ct);
            if (row is null) db.Quotas.Add(new Quota { ProjectId = target, Resource = resource, HardLimit = limit });
            else row.HardLimit = limit;
        }
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
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

    /// <summary>The largest limit Cinder stores (db.MAX_INT).</summary>
    public const int MaxLimit = int.MaxValue;

    /// <summary>A limit as oslo's validate_integer reads it, <c>int(str(value))</c>: any size, so that range errors can be told apart; null when no integer.</summary>
    public static BigInteger? ParseLimit(JsonElement value)
    {
        var text = value.ValueKind switch
        {
            JsonValueKind.Number => value.GetRawText(),                // 5 reads, 5.0 and 1e3 do not, as in Python
            JsonValueKind.String => value.GetString()!.Trim(),
            _ => null,
        };
        return BigInteger.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) ? n : null;
    }

    public static async Task<Dictionary<string, int>> LimitsAsync(AppDbContext db, string projectId, CancellationToken ct)
    {
        var limits = new Dictionary<string, int>(Defaults);
        foreach (var row in await db.Quotas.AsNoTracking().Where(q => q.ProjectId == projectId).ToListAsync(ct))
            limits[row.Resource] = row.HardLimit;
        return limits;
    }

    /// <summary>
    /// What a project uses, counted in SQL from the rows: a backup being created is reserved, a failed one counts nothing;
    /// every volume and snapshot row counts (an errored one too, until deleted, as in Cinder), and <c>gigabytes</c> holds
    /// volumes and snapshots both (Cinder's no_snapshot_gb_quota is false by default). Sums are 64-bit: sizes of up to
    /// 2^31-1 GiB each cannot overflow them.
    /// </summary>
    public static async Task<Dictionary<string, (long InUse, long Reserved)>> UsageAsync(AppDbContext db, string projectId, CancellationToken ct)
    {
        var backups = await db.Backups.AsNoTracking().Where(b => b.ProjectId == projectId && b.State != nameof(BackupSaga.Error))
            .GroupBy(b => b.State).Select(g => new { State = g.Key, Count = g.LongCount(), Size = g.Sum(b => (long)b.Size) }).ToListAsync(ct);
        var volumes = await db.Volumes.AsNoTracking().Where(v => v.ProjectId == projectId)
            .GroupBy(_ => 1).Select(g => new { Count = g.LongCount(), Size = g.Sum(v => (long)v.Size) }).FirstOrDefaultAsync(ct);
        var snapshots = await db.Snapshots.AsNoTracking().Where(s => s.ProjectId == projectId)
            .GroupBy(_ => 1).Select(g => new { Count = g.LongCount(), Size = g.Sum(s => (long)s.Size) }).FirstOrDefaultAsync(ct);
        var creating = backups.Where(b => BackupStatus.Of(b.State) == BackupStatus.Creating).ToList();
        var done = backups.Except(creating).ToList();
        return new()
        {
            ["backups"] = (done.Sum(b => b.Count), creating.Sum(b => b.Count)),
            ["backup_gigabytes"] = (done.Sum(b => b.Size), creating.Sum(b => b.Size)),
            ["volumes"] = (volumes?.Count ?? 0, 0),
            ["gigabytes"] = (checked((volumes?.Size ?? 0) + (snapshots?.Size ?? 0)), 0),
            ["snapshots"] = (snapshots?.Count ?? 0, 0),
        };
    }

    /// <summary>Serializes quota decisions of one project to the end of the caller's transaction, so two requests racing for the last slot cannot both pass.</summary>
    static Task LockAsync(AppDbContext db, string projectId, CancellationToken ct) =>
        db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(hashtext({"quota:" + projectId}))", ct);

    /// <summary>
    /// Checks that one more backup of <paramref name="sizeGb"/> fits the project's quota, under the project's quota lock held
    /// to the end of the caller's transaction (in which the caller then writes the row that uses it). Null when it fits.
    /// </summary>
    public static Task<string?> CheckBackupAsync(AppDbContext db, string projectId, int sizeGb, CancellationToken ct) =>
        CheckAsync(db, projectId, "backups", "backup_gigabytes", sizeGb, ct);

    /// <summary>Likewise for a new volume (create, or restore into a new one): per_volume_gigabytes, gigabytes, volumes.</summary>
    public static Task<string?> CheckVolumeAsync(AppDbContext db, string projectId, int sizeGb, CancellationToken ct) =>
        CheckAsync(db, projectId, "volumes", "gigabytes", sizeGb, ct);

    /// <summary>Likewise for a new snapshot of a volume of <paramref name="sizeGb"/>: gigabytes, snapshots.</summary>
    public static Task<string?> CheckSnapshotAsync(AppDbContext db, string projectId, int sizeGb, CancellationToken ct) =>
        CheckAsync(db, projectId, "snapshots", "gigabytes", sizeGb, ct);

    /// <summary>Cinder's reserve: over-quota resources in sorted order (so gigabytes before the count), each with its exception's message.</summary>
    static async Task<string?> CheckAsync(AppDbContext db, string projectId, string count, string gigabytes, int sizeGb, CancellationToken ct)
    {
        var limits = await LimitsAsync(db, projectId, ct);
        if (limits[count] < 0 && limits[gigabytes] < 0 && (count != "volumes" || limits["per_volume_gigabytes"] < 0))
            return null;                                    // nothing to count: a project without limits never waits on the lock
        await LockAsync(db, projectId, ct);
        if (count == "volumes" && limits["per_volume_gigabytes"] is >= 0 and var perVolume && sizeGb > perVolume)
            return $"Requested volume size {sizeGb}G is larger than maximum allowed limit {perVolume}G.";
        var used = await UsageAsync(db, projectId, ct);
        long Consumed(string resource) => checked(used[resource].InUse + used[resource].Reserved);
        if (limits[gigabytes] >= 0 && checked(Consumed(gigabytes) + sizeGb) > limits[gigabytes])
            return count == "backups"
                ? $"Requested backup exceeds allowed Backup gigabytes quota. Requested {sizeGb}G, quota is {limits[gigabytes]}G and {Consumed(gigabytes)}G has been consumed."
                : $"Requested volume or snapshot exceeds allowed gigabytes quota. Requested {sizeGb}G, quota is {limits[gigabytes]}G and {Consumed(gigabytes)}G has been consumed.";
        if (limits[count] >= 0 && Consumed(count) + 1 > limits[count])
            return count switch
            {
                "volumes" => $"Maximum number of volumes allowed ({limits[count]}) exceeded for quota 'volumes'.",
                "snapshots" => $"Maximum number of snapshots allowed ({limits[count]}) exceeded",
                _ => $"Maximum number of backups allowed ({limits[count]}) exceeded",
            };
        return null;
    }

    static readonly HashSet<string> TrueWords = new(["1", "t", "true", "on", "y", "yes"], StringComparer.OrdinalIgnoreCase);
    static readonly HashSet<string> BoolWords = new([.. TrueWords, "0", "f", "false", "off", "n", "no"], StringComparer.OrdinalIgnoreCase);
}
