using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Authorization;
using Grpc.Core;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Quotas;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Validation;
using VolumeBackup.Api.Versions;
using Host = VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.Api.Volumes;

public static partial class VolumesApi
{
    [System.Text.RegularExpressions.GeneratedRegex(@"['""]([^'""]*)['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial System.Text.RegularExpressions.Regex MetadataPair();

    public static RouteGroupBuilder MapVolumes(this RouteGroupBuilder project)
    {
        var volumes = project.MapGroup("/volumes").WithTags("Volumes");
        volumes.MapPost("", Create).Rule("volume:create").Validate(Schemas.ForVolumeCreate);
        volumes.MapGet("", List).Rule("volume:get_all");
        volumes.MapGet("/detail", ListDetail).Rule("volume:get_all");
        volumes.MapGet("/summary", Summary).Rule("volume:get_all");
        volumes.MapGet("/{id}", Get).Rule("volume:get");
        volumes.MapPut("/{id}", Update).Rule("volume:update").Validate(Schemas.VolumeUpdate);
        volumes.MapDelete("/{id}", Delete).Rule("volume:delete");
        volumes.MapPost("/{id}/action", Action).Rules(ActionRules).Validate(BodyValidation.ByAction(Schemas.VolumeActions));
        return project;
    }

    static readonly Dictionary<string, string> ActionRules = new()
    {
        ["os-attach"] = "volume_extension:volume_actions:attach",
        ["os-detach"] = "volume_extension:volume_actions:detach",
        ["os-reserve"] = "volume_extension:volume_actions:reserve",
        ["os-unreserve"] = "volume_extension:volume_actions:unreserve",
        ["os-reset_status"] = "volume_extension:volume_admin_actions:reset_status",
    };

    static async Task<Results<Accepted<Dictionary<string, VolumeView>>, ProblemHttpResult>> Create(
        CreateVolumeBody body, Caller caller, AppDbContext db, VolumeHosts hosts, HttpRequest http, TimeProvider clock, ILoggerFactory loggers, CancellationToken ct)
    {
        var logger = loggers.CreateLogger(typeof(VolumesApi));
        if (body.Volume is not { } request) return CinderErrors.BadRequest("Missing required element 'volume' in request body.");
        if (request.Size is not ({ } size and > 0))
            return CinderErrors.BadRequest("Invalid input for field/attribute size. Value: must be an integer greater than 0.");
        // One volume type, Cinder's default; no clones of volumes.
        if (request.VolumeType is { } type && type != DefaultVolumeType)
            return CinderErrors.NotFound($"Volume type with name {type} could not be found.");
        if (request.SourceVolid is { } source)
            return await db.FindVolumeAsync(caller, source, ct) is null ? VolumeNotFound(source)
                : CinderErrors.BadRequest("Invalid input received: this service does not clone volumes (source_volid); back the volume up and restore it instead.");
        var zone = request.AvailabilityZone ?? hosts.All[0].Zone;
        if (!hosts.ServesZone(zone)) return CinderErrors.BadRequest($"Availability zone '{zone}' is invalid.");

        Guid? snapshotId = null;
        if (request.SnapshotId is not null)
        {
            if (!Wire.TryParseId(request.SnapshotId, out var sid) || await db.Snapshots.FindAsync([sid], ct) is not { } snap || !caller.CanSee(snap.ProjectId))
                return CinderErrors.NotFound($"Snapshot {request.SnapshotId} could not be found.");
            if (snap.Status != "available") return CinderErrors.BadRequest($"Invalid snapshot: Originating snapshot status must be one of 'available' values");
            if (size < snap.Size) return CinderErrors.BadRequest($"Volume size '{size}'GB cannot be smaller than the snapshot size {snap.Size}GB.");
            snapshotId = sid;
        }
        // A volume from a snapshot is a clone: it must be on the snapshot's host; any other is placed once its quota is held.
        var snapshotHost = snapshotId is { } fromSnapshot
            ? await db.Snapshots.Where(x => x.Id == fromSnapshot).Join(db.Volumes, x => x.VolumeId, v => v.Id, (_, v) => v.Host).FirstOrDefaultAsync(ct)
            : null;
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = caller.ProjectId, UserId = caller.UserId, Name = request.Name, Description = request.Description,
            Size = size, AvailabilityZone = zone, Host = snapshotHost ?? "", SnapshotId = snapshotId, Metadata = request.Metadata ?? [],
            CreatedAt = clock.GetUtcNow(),
        };
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            if (await QuotasApi.CheckVolumeAsync(db, volume.ProjectId, size, ct) is { } overQuota) return CinderErrors.OverLimit(overQuota);
            db.Volumes.Add(volume);                         // the row is the reservation: usage is counted from the rows
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        if (snapshotId is null && await hosts.PickHostAsync(zone, (long)size << 30, db, ct) is { } picked)
            volume.Host = picked.Name;
        if (volume.Host.Length == 0)
        {
            // Cinder's scheduler: the create was accepted, and the volume goes to error when no back end passes the filters.
            logger.NoValidBackend(volume.Id, zone, size);
            volume.Status = VolumeStatus.Error;
            volume.UpdatedAt = clock.GetUtcNow();
            await db.SaveChangesAsync(CancellationToken.None);
        }
        else
            await CreateOnHostAsync(volume, hosts, db, clock, ct);
        return TypedResults.Accepted($"{Wire.BaseUrl(http)}/v3/{volume.ProjectId}/volumes/{volume.Id}", Wire.Wrap("volume", VolumeView.From(volume, Wire.BaseUrl(http))));
    }

    /// <summary>Cinder's scheduler answer when no backend passes its filters.</summary>
    public static ProblemHttpResult NoValidBackend(string zone, int sizeGb) =>
        CinderErrors.ServerError($"No valid backend was found. No storage host of availability zone '{zone}' answers with room for {sizeGb} GiB.");

    /// <summary>Creates the file on the storage host; a failure leaves the volume in error, as Cinder does, with the row kept for the user to delete.</summary>
    public static async Task CreateOnHostAsync(Volume volume, VolumeHosts hosts, AppDbContext db, TimeProvider clock, CancellationToken ct)
    {
        try
        {
            await hosts.Client(volume.Host).CreateVolumeAsync(new Host.CreateVolumeRequest
            {
                VolumeId = volume.Id.ToString(), SizeBytes = volume.SizeBytes, SourceSnapshotId = volume.SnapshotId?.ToString() ?? "",
            }, deadline: hosts.Deadline, cancellationToken: ct);
            volume.Status = VolumeStatus.Available;
        }
        catch (RpcException)
        {
            volume.Status = VolumeStatus.Error;
        }
        volume.UpdatedAt = clock.GetUtcNow();
        await db.SaveChangesAsync(CancellationToken.None);   // the file exists or not: the row must say which, even if the caller left
    }

    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> List(Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct)
    {
        var baseUrl = Wire.BaseUrl(http);
        return await Listing.PageAsync(Visible(db, caller, http), SortKeys, v => VolumeSummary.From(v, baseUrl), "volumes", caller.ProjectId, http.HttpContext, ct);
    }

    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> ListDetail(Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct)
    {
        var baseUrl = Wire.BaseUrl(http);
        return await Listing.PageAsync(Visible(db, caller, http), SortKeys, v => VolumeView.From(v, baseUrl, extended: true, caller.IsAdmin), "volumes/detail", caller.ProjectId, http.HttpContext, ct);
    }

    // The volumes table's columns Cinder's clients sort by ("name" is display_name).
    static readonly SortKeys<Volume> SortKeys = new SortKeys<Volume>(v => v.Id)
        .Add("created_at", v => v.CreatedAt).Add("updated_at", v => v.UpdatedAt).Add("id", v => v.Id).Add("status", v => v.Status)
        .Add("size", v => v.Size).Add("name", v => v.Name).Add("display_name", v => v.Name).Add("display_description", v => v.Description)
        .Add("availability_zone", v => v.AvailabilityZone).Add("host", v => v.Host).Add("project_id", v => v.ProjectId).Add("user_id", v => v.UserId);

    static IQueryable<Volume> Visible(AppDbContext db, Caller caller, HttpRequest http)
    {
        var query = db.Volumes.AsNoTracking();
        if (!(caller.IsAdmin && Wire.Flag(http.Query, "all_tenants"))) query = query.Where(v => v.ProjectId == caller.ProjectId);
        else if (http.Query["project_id"] is [var project]) query = query.Where(v => v.ProjectId == project);   // an admin's filter
        if (http.Query["name"] is [var name]) query = query.Where(v => v.Name == name);
        if (http.Query["status"] is [var status]) query = query.Where(v => v.Status == status);
        // Cinder's metadata filter is a Python dict's repr ({'k': 'v'}); a volume matches when its metadata holds every pair.
        if (http.Query["metadata"] is [{ } wanted])
        {
            var pairs = MetadataPair().Matches(wanted).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
            var json = System.Text.Json.JsonSerializer.Serialize(pairs);
            query = query.Where(v => EF.Functions.JsonContains(v.Metadata, json));
        }
        return query;
    }

    public const string DefaultVolumeType = "__DEFAULT__";

    /// <summary>Cinder's volume summary (3.12): count and size of the volumes listed, and from 3.36 their metadata's values.</summary>
    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object>>>, ProblemHttpResult>> Summary(
        Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct)
    {
        var version = Microversion.Of(http.HttpContext);
        if (version < new Microversion(3, 12)) return CinderErrors.NotFound("The resource could not be found.");
        var volumes = await Visible(db, caller, http).Select(v => new { v.Size, v.Metadata }).ToListAsync(ct);
        var summary = new Dictionary<string, object> { ["total_count"] = volumes.Count, ["total_size"] = volumes.Sum(v => v.Size) };
        if (version >= new Microversion(3, 36))
            summary["metadata"] = volumes.SelectMany(v => v.Metadata).GroupBy(m => m.Key)
                .ToDictionary(g => g.Key, g => g.Select(m => m.Value).Distinct().ToList());
        return TypedResults.Ok(Wire.Wrap("volume-summary", summary));
    }

    static async Task<Results<Ok<Dictionary<string, VolumeView>>, ProblemHttpResult>> Get(string id, Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct) =>
        await db.FindVolumeAsync(caller, id, ct) is { } volume
            ? TypedResults.Ok(Wire.Wrap("volume", VolumeView.From(volume, Wire.BaseUrl(http), extended: true, caller.IsAdmin)))
            : VolumeNotFound(id);

    /// <summary>Name, description and metadata (which it replaces whole), as Cinder's update; 200 with the volume.</summary>
    static async Task<Results<Ok<Dictionary<string, VolumeView>>, ProblemHttpResult>> Update(
        string id, JsonElement body, Caller caller, AppDbContext db, HttpRequest http, TimeProvider clock, CancellationToken ct)
    {
        if (await db.FindVolumeAsync(caller, id, ct) is not { } volume) return VolumeNotFound(id);
        var changes = body.GetProperty("volume");                                  // the schema requires it
        // A key that is present changes the field, null included; "name" wins over the v1 "display_name".
        foreach (var key in new[] { "display_name", "name" })
            if (changes.TryGetProperty(key, out var name)) volume.Name = name.GetString()?.Trim();
        foreach (var key in new[] { "display_description", "description" })
            if (changes.TryGetProperty(key, out var description)) volume.Description = description.GetString()?.Trim();
        if (changes.TryGetProperty("metadata", out var metadata))
            volume.Metadata = metadata.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        volume.UpdatedAt = clock.GetUtcNow();
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(Wire.Wrap("volume", VolumeView.From(volume, Wire.BaseUrl(http))));
    }

    static async Task<Results<Accepted, ProblemHttpResult>> Delete(string id, Caller caller, AppDbContext db, VolumeHosts hosts, CancellationToken ct)
    {
        if (await db.FindVolumeAsync(caller, id, ct) is not { } volume) return VolumeNotFound(id);
        string[] deletable = [VolumeStatus.Available, VolumeStatus.Error, VolumeStatus.ErrorRestoring, VolumeStatus.ErrorDeleting];
        if (!deletable.Contains(volume.Status))
            return CinderErrors.BadRequest($"Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.");
        if (await db.Snapshots.AnyAsync(s => s.VolumeId == volume.Id, ct))
            return CinderErrors.BadRequest("Invalid volume: Volume still has 1 dependent snapshots.");
        volume.Status = VolumeStatus.Deleting;
        await db.SaveChangesAsync(ct);
        // From here the row must end deleted or error_deleting (which may be deleted again), even if the caller goes away.
        try
        {
            if (volume.Host.Length > 0)                     // never placed (no valid back end): no file anywhere
                await hosts.Client(volume.Host).DeleteVolumeAsync(new Host.DeleteVolumeRequest { VolumeId = volume.Id.ToString() }, deadline: hosts.Deadline);
        }
        catch (RpcException e)
        {
            volume.Status = VolumeStatus.ErrorDeleting;
            await db.SaveChangesAsync(CancellationToken.None);
            return CinderErrors.ServerError($"Volume {volume.Id} could not be deleted on host {volume.Host}: {e.Status.Detail}");
        }
        db.Volumes.Remove(volume);
        await db.SaveChangesAsync(CancellationToken.None);
        return TypedResults.Accepted((string?)null);
    }

    /// <summary>Cinder's volume actions that attach and detach (os-attach, os-detach) and reset a status (admin).</summary>
    static async Task<Results<Accepted, ProblemHttpResult>> Action(
        string id, JsonElement body, Caller caller, ClaimsPrincipal user, IAuthorizationService authorization, AppDbContext db, TimeProvider clock, CancellationToken ct)
    {
        if (await db.FindVolumeAsync(caller, id, ct) is not { } volume) return VolumeNotFound(id);
        if (body.ValueKind != JsonValueKind.Object || body.EnumerateObject().FirstOrDefault() is not { Name: not null } action)
            return CinderErrors.BadRequest("Malformed request body");
        switch (action.Name)
        {
            case "os-attach":
                if (volume.Status != VolumeStatus.Available)
                    return CinderErrors.BadRequest($"Invalid volume: Volume status must be available to reserve, but the status is {volume.Status}.");
                volume.Attach(
                    action.Value.TryGetProperty("instance_uuid", out var instance) && Guid.TryParse(instance.GetString(), out var i) ? i : null,
                    action.Value.TryGetProperty("mountpoint", out var mount) ? mount.GetString() : null, clock.GetUtcNow());
                break;
            case "os-reserve":
                if (volume.Status != VolumeStatus.Available)
                    return CinderErrors.BadRequest($"Invalid volume: Volume status must be available to reserve, but the status is {volume.Status}.");
                volume.Status = VolumeStatus.Attaching;
                break;
            case "os-unreserve":
                if (volume.Status == VolumeStatus.Attaching) volume.Status = VolumeStatus.Available;   // Cinder: only an attaching volume
                break;
            case "os-detach":
                if (volume.Status != VolumeStatus.InUse)
                    return CinderErrors.BadRequest($"Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach.");
                volume.Detach(clock.GetUtcNow());
                break;
            case "os-reset_status":
                if (await authorization.AuthorizeAdminAsync(user, "volume_extension:volume_admin_actions:reset_status") is { } denied) return denied;
                if (!action.Value.TryGetProperty("status", out var status) || status.GetString() is not { Length: > 0 } newStatus)
                    return CinderErrors.BadRequest("Must specify 'status'");
                volume.Status = newStatus;
                volume.PreviousStatus = null;
                break;
            default:
                return CinderErrors.BadRequest($"There is no such action: {action.Name}");
        }
        volume.UpdatedAt = clock.GetUtcNow();
        await db.SaveChangesAsync(ct);
        return TypedResults.Accepted((string?)null);
    }

    public static ProblemHttpResult VolumeNotFound(string id) => CinderErrors.NotFound($"Volume {id} could not be found.");
}
