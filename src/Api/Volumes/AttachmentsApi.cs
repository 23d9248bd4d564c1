using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Validation;
using VolumeBackup.Api.Versions;

namespace VolumeBackup.Api.Volumes;

/// <summary>
/// Cinder's attachments API (3.27), as far as backups care: creating one makes the volume in-use, deleting it makes it
/// available. There is no connector exchange: this service stores volumes, it does not export them to hypervisors.
/// </summary>
public static class AttachmentsApi
{
    public static RouteGroupBuilder MapAttachments(this RouteGroupBuilder project)
    {
        var attachments = project.MapGroup("/attachments").WithTags("Attachments");
        attachments.MapPost("", Create).Validate(Schemas.ForAttachmentCreate);
        attachments.MapGet("", List);
        attachments.MapGet("/detail", List);
        attachments.MapGet("/{id}", Get);
        attachments.MapDelete("/{id}", Delete);
        return project;
    }

    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object?>>>, ProblemHttpResult>> Create(
        JsonElement body, Caller caller, AppDbContext db, HttpContext http, TimeProvider clock, CancellationToken ct)
    {
        if (Microversion.Of(http) < Microversion.NewAttach) return CinderErrors.NotFound("The resource could not be found.");
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("attachment", out var request) || request.ValueKind != JsonValueKind.Object)
            return CinderErrors.BadRequest("Missing required element 'attachment' in request body.");
        if (!request.TryGetProperty("volume_uuid", out var volumeUuid) || volumeUuid.GetString() is not { } volumeId)
            return CinderErrors.BadRequest("Invalid input for field/attribute attachment. Value: 'volume_uuid' is a required property.");
        Guid? instance = request.TryGetProperty("instance_uuid", out var i) && Guid.TryParse(i.GetString(), out var parsed) ? parsed : null;
        if (await db.FindVolumeAsync(caller, volumeId, ct) is not { } volume) return VolumesApi.VolumeNotFound(volumeId);
        if (volume.Status != VolumeStatus.Available)
            return CinderErrors.BadRequest($"Invalid volume: Volume {volume.Id} status must be available or downloading to reserve, but the current status is {volume.Status}.");
        volume.Attach(instance, null, clock.GetUtcNow());
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(Wire.Wrap("attachment", View(volume)));
    }

    static async Task<Ok<Dictionary<string, List<Dictionary<string, object?>>>>> List(Caller caller, AppDbContext db, CancellationToken ct)
    {
        var attached = await db.Volumes.AsNoTracking().Where(v => v.ProjectId == caller.ProjectId && v.AttachmentId != null).ToListAsync(ct);
        return TypedResults.Ok(Wire.Wrap("attachments", attached.Select(View).ToList()));
    }

    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object?>>>, ProblemHttpResult>> Get(string id, Caller caller, AppDbContext db, CancellationToken ct) =>
        await FindAsync(db, caller, id, ct) is { } volume
            ? TypedResults.Ok(Wire.Wrap("attachment", View(volume)))
            : CinderErrors.NotFound($"VolumeAttachment {id} could not be found.");

    static async Task<Results<Ok<Dictionary<string, List<object>>>, ProblemHttpResult>> Delete(string id, Caller caller, AppDbContext db, TimeProvider clock, CancellationToken ct)
    {
        if (await FindAsync(db, caller, id, ct) is not { } volume) return CinderErrors.NotFound($"VolumeAttachment {id} could not be found.");
        if (volume.Status != VolumeStatus.InUse)
            return CinderErrors.BadRequest($"Invalid volume: Volume {volume.Id} is {volume.Status}; detach it when the backup or restore ends.");
        volume.Detach(clock.GetUtcNow());
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(Wire.Wrap("attachments", new List<object>()));
    }

    static async Task<Volume?> FindAsync(AppDbContext db, Caller caller, string id, CancellationToken ct) =>
        Guid.TryParse(id, out var attachmentId) && await db.Volumes.FirstOrDefaultAsync(v => v.AttachmentId == attachmentId, ct) is { } v && caller.CanSee(v.ProjectId) ? v : null;

    static Dictionary<string, object?> View(Volume v) => new()
    {
        ["id"] = v.AttachmentId.ToString(),
        ["status"] = "attached",
        ["instance"] = v.AttachedInstance?.ToString(),
        ["volume_id"] = v.Id.ToString(),
        ["attach_mode"] = "rw",
        ["attached_at"] = Wire.Time(v.UpdatedAt),
        ["detached_at"] = null,
        ["connection_info"] = new Dictionary<string, object>(),
    };
}
