using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Authorization;
using Grpc.Core;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Validation;
using Host = VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.Api.Volumes;

public static class VolumesApi
{
    public static RouteGroupBuilder MapVolumes(this RouteGroupBuilder project)
    {
        var volumes = project.MapGroup("/volumes").WithTags("Volumes");
        volumes.MapPost("", Create).Validate(Schemas.ForVolumeCreate);
        volumes.MapGet("", List);
        volumes.MapGet("/detail", ListDetail);
        volumes.MapGet("/{id}", Get);
        volumes.MapDelete("/{id}", Delete);
        volumes.MapPost("/{id}/action", Action).Validate(BodyValidation.ByAction(Schemas.VolumeActions));
        return project;
    }

    static async Task<Results<Accepted<Dictionary<string, VolumeView>>, ProblemHttpResult>> Create(
        CreateVolumeBody body, Caller caller, AppDbContext db, VolumeHosts hosts, HttpRequest http, TimeProvider clock, CancellationToken ct)
    {
        if (body.Volume is not { } request) return CinderErrors.BadRequest("Missing required element 'volume' in request body.");
        if (request.Size is not ({ } size and > 0))
            return CinderErrors.BadRequest("Invalid input for field/attribute size. Value: must be an integer greater than 0.");
        var zone = request.AvailabilityZone ?? hosts.All[0].Zone;
        if (!hosts.ServesZone(zone)) return CinderErrors.BadRequest($"Availability zone '{zone}' is invalid.");

        Guid? snapshotId = null;
        if (request.SnapshotId is not null)
        {
            if (!Guid.TryParse(request.SnapshotId, out var sid) || await db.Snapshots.FindAsync([sid], ct) is not { } snap || !caller.CanSee(snap.ProjectId))
                return CinderErrors.NotFound($"Snapshot {request.SnapshotId} could not be found.");
            if (snap.Status != "available") return CinderErrors.BadRequest($"Invalid snapshot: Originating snapshot status must be one of 'available' values");
            if (size < snap.Size) return CinderErrors.BadRequest($"Volume size '{size}'GB cannot be smaller than the snapshot size {snap.Size}GB.");
            snapshotId = sid;
        }
        // A volume from a snapshot is a clone: it must be on the snapshot's host.
        var host = snapshotId is { } fromSnapshot
            ? await db.Snapshots.Where(x => x.Id == fromSnapshot).Join(db.Volumes, x => x.VolumeId, v => v.Id, (_, v) => v.Host).FirstOrDefaultAsync(ct) is { } snapshotHost
                ? hosts.All.FirstOrDefault(h => h.Name == snapshotHost) : null
            : await hosts.PickHostAsync(zone, (long)size << 30, db, ct);
        if (host is null) return NoValidBackend(zone, size);

        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = caller.ProjectId, UserId = caller.UserId, Name = request.Name, Description = request.Description,
            Size = size, AvailabilityZone = zone, Host = host.Name, SnapshotId = snapshotId, Metadata = request.Metadata ?? [],
            CreatedAt = clock.GetUtcNow(),
        };
        db.Volumes.Add(volume);
        await db.SaveChangesAsync(ct);
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
        return await Listing.PageAsync(Visible(db, caller, http), SortKeys, v => VolumeView.From(v, baseUrl), "volumes/detail", caller.ProjectId, http.HttpContext, ct);
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
        if (http.Query["name"] is [var name]) query = query.Where(v => v.Name == name);
        if (http.Query["status"] is [var status]) query = query.Where(v => v.Status == status);
        return query;
    }

    static async Task<Results<Ok<Dictionary<string, VolumeView>>, ProblemHttpResult>> Get(string id, Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct) =>
        await db.FindVolumeAsync(caller, id, ct) is { } volume
            ? TypedResults.Ok(Wire.Wrap("volume", VolumeView.From(volume, Wire.BaseUrl(http))))
            : VolumeNotFound(id);

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
