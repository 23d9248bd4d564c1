using System.Text.Json;
using Grpc.Core;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Quotas;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Validation;
using Host = VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.Api.Volumes;

public static class SnapshotsApi
{
    public static RouteGroupBuilder MapSnapshots(this RouteGroupBuilder project)
    {
        var snapshots = project.MapGroup("/snapshots").WithTags("Snapshots");
        snapshots.MapPost("", Create).Rule("volume:create_snapshot").Validate(Schemas.SnapshotCreate);
        snapshots.MapGet("", List).Rule("volume:get_all_snapshots");
        snapshots.MapGet("/detail", ListDetail).Rule("volume:get_all_snapshots");
        snapshots.MapGet("/{id}", Get).Rule("volume:get_snapshot");
        snapshots.MapPut("/{id}", Update).Rule("volume:update_snapshot").Validate(Schemas.SnapshotUpdate);
        snapshots.MapDelete("/{id}", Delete).Rule("volume:delete_snapshot");
        return project;
    }

    static async Task<Results<Accepted<Dictionary<string, SnapshotView>>, ProblemHttpResult>> Create(
        CreateSnapshotBody body, Caller caller, AppDbContext db, VolumeHosts hosts, TimeProvider clock, CancellationToken ct)
    {
        if (body.Snapshot is not { } request) return CinderErrors.BadRequest("Missing required element 'snapshot' in request body.");
        if (request.VolumeId is null) return VolumesApi.VolumeNotFound("None");   // Cinder's schema allows null, then finds no volume None
        if (await db.FindVolumeAsync(caller, request.VolumeId, ct) is not { } volume) return VolumesApi.VolumeNotFound(request.VolumeId);
        if (volume.Status == VolumeStatus.InUse && request.Force != true || volume.Status is not (VolumeStatus.Available or VolumeStatus.InUse))
            return CinderErrors.BadRequest($"Invalid volume: Volume {volume.Id} status must be available or in-use, but current status is: {volume.Status}.");
        var snapshot = new Snapshot
        {
            Id = Guid.NewGuid(), ProjectId = volume.ProjectId, UserId = caller.UserId, VolumeId = volume.Id, Name = request.Name,
            Description = request.Description, Size = volume.Size, Metadata = request.Metadata ?? [], CreatedAt = clock.GetUtcNow(),
        };
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            if (await QuotasApi.CheckSnapshotAsync(db, snapshot.ProjectId, snapshot.Size, ct) is { } overQuota) return CinderErrors.OverLimit(overQuota);
            db.Snapshots.Add(snapshot);
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        try
        {
            await hosts.Client(volume.Host).CreateSnapshotAsync(new Host.CreateSnapshotRequest { SnapshotId = snapshot.Id.ToString(), VolumeId = volume.Id.ToString() }, deadline: hosts.Deadline, cancellationToken: ct);
            snapshot.Status = "available";
        }
        catch (RpcException)
        {
            snapshot.Status = "error";
        }
        snapshot.UpdatedAt = clock.GetUtcNow();
        await db.SaveChangesAsync(CancellationToken.None);
        return TypedResults.Accepted((string?)null, Wire.Wrap("snapshot", SnapshotView.From(snapshot)));
    }

    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> List(Caller caller, AppDbContext db, HttpContext http, CancellationToken ct) =>
        await Listing.PageAsync(Visible(db, caller, http.Request), SortKeys, s => SnapshotView.From(s), "snapshots", caller.ProjectId, http, ct);

    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> ListDetail(Caller caller, AppDbContext db, HttpContext http, CancellationToken ct) =>
        await Listing.PageAsync(Visible(db, caller, http.Request), SortKeys, SnapshotView.Extended, "snapshots/detail", caller.ProjectId, http, ct);

    // The snapshots table's columns Cinder's clients sort by ("name" is display_name).
    static readonly SortKeys<Snapshot> SortKeys = new SortKeys<Snapshot>(s => s.Id)
        .Add("created_at", s => s.CreatedAt).Add("updated_at", s => s.UpdatedAt).Add("id", s => s.Id).Add("status", s => s.Status)
        .Add("size", s => s.Size).Add("volume_id", s => s.VolumeId).Add("name", s => s.Name).Add("display_name", s => s.Name)
        .Add("display_description", s => s.Description).Add("project_id", s => s.ProjectId).Add("user_id", s => s.UserId);

    static IQueryable<Snapshot> Visible(AppDbContext db, Caller caller, HttpRequest http)
    {
        var query = db.Snapshots.AsNoTracking();
        if (!(caller.IsAdmin && Wire.Flag(http.Query, "all_tenants"))) query = query.Where(s => s.ProjectId == caller.ProjectId);
        else if (http.Query["project_id"] is [var project]) query = query.Where(s => s.ProjectId == project);   // an admin's filter
        if (http.Query["name"] is [var name]) query = query.Where(s => s.Name == name);
        if (http.Query["status"] is [var status]) query = query.Where(s => s.Status == status);
        if (http.Query["volume_id"] is [var volumeText]) query = Guid.TryParse(volumeText, out var volumeId) ? query.Where(s => s.VolumeId == volumeId) : query.Where(s => false);
        return query;
    }

    static async Task<Results<Ok<Dictionary<string, SnapshotView>>, ProblemHttpResult>> Get(string id, Caller caller, AppDbContext db, CancellationToken ct) =>
        await db.FindSnapshotAsync(caller, id, ct) is { } snapshot ? TypedResults.Ok(Wire.Wrap("snapshot", SnapshotView.Extended(snapshot))) : SnapshotNotFound(id);

    /// <summary>Name and description, as Cinder's snapshot update; 200 with the snapshot.</summary>
    static async Task<Results<Ok<Dictionary<string, SnapshotView>>, ProblemHttpResult>> Update(
        string id, JsonElement body, Caller caller, AppDbContext db, TimeProvider clock, CancellationToken ct)
    {
        if (await db.FindSnapshotAsync(caller, id, ct) is not { } snapshot) return SnapshotNotFound(id);
        var changes = body.GetProperty("snapshot");                                // the schema requires it
        foreach (var key in new[] { "display_name", "name" })
            if (changes.TryGetProperty(key, out var name)) snapshot.Name = name.GetString();
        foreach (var key in new[] { "display_description", "description" })
            if (changes.TryGetProperty(key, out var description)) snapshot.Description = description.GetString();
        snapshot.UpdatedAt = clock.GetUtcNow();
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(Wire.Wrap("snapshot", SnapshotView.From(snapshot)));
    }

    static async Task<Results<Accepted, ProblemHttpResult>> Delete(string id, Caller caller, AppDbContext db, VolumeHosts hosts, CancellationToken ct)
    {
        if (await db.FindSnapshotAsync(caller, id, ct) is not { } snapshot) return SnapshotNotFound(id);
        if (snapshot.Status is not ("available" or "error"))
            return CinderErrors.BadRequest("Invalid snapshot: Volume Snapshot status must be available or error.");
        var volume = await db.Volumes.FindAsync([snapshot.VolumeId], ct);
        if (volume is not null)
            await hosts.Client(volume.Host).DeleteSnapshotAsync(new Host.DeleteSnapshotRequest { SnapshotId = snapshot.Id.ToString() }, deadline: hosts.Deadline, cancellationToken: ct);
        db.Snapshots.Remove(snapshot);
        await db.SaveChangesAsync(ct);
        return TypedResults.Accepted((string?)null);
    }

    static ProblemHttpResult SnapshotNotFound(string id) => CinderErrors.NotFound($"Snapshot {id} could not be found.");
}
