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
/// Cinder's attachments API (3.27), as far as backups care: creating one reserves the volume (<c>reserved</c>),
/// <c>os-complete</c> (3.44, which clients and Nova send once the host attached it) makes it <c>in-use</c>, deleting the
/// attachment makes it available. A create with a connector (<c>attachment-create --connect True</c>) gets a <c>local</c>
/// connection_info naming the volume's storage host: this service stores volumes, it does not export them to hypervisors.
/// </summary>
public static class AttachmentsApi
{
    public static RouteGroupBuilder MapAttachments(this RouteGroupBuilder project)
    {
        var attachments = project.MapGroup("/attachments").WithTags("Attachments");
        attachments.MapPost("", Create).Rule("volume:attachment_create").Validate(Schemas.ForAttachmentCreate);
        attachments.MapGet("", List);
        attachments.MapGet("/detail", List);
        attachments.MapGet("/{id}", Get);
        attachments.MapDelete("/{id}", Delete).Rule("volume:attachment_delete");
        attachments.MapPost("/{id}/action", Action).Rules(new Dictionary<string, string> { ["os-complete"] = "volume:attachment_complete" });
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
        volume.Reserve(instance, clock.GetUtcNow());
        await db.SaveChangesAsync(ct);
        var connected = request.TryGetProperty("connector", out var connector) && connector.ValueKind == JsonValueKind.Object;
        return TypedResults.Ok(Wire.Wrap("attachment", View(volume, connected)));
    }

    /// <summary><c>{"os-complete": null}</c> (3.44): the attach finished on the host. Anything else is refused.</summary>
    static async Task<Results<NoContent, ProblemHttpResult>> Action(
        string id, JsonElement body, Caller caller, AppDbContext db, HttpContext http, TimeProvider clock, CancellationToken ct)
    {
        if (Microversion.Of(http) < Microversion.AttachmentComplete) return CinderErrors.NotFound("The resource could not be found.");
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("os-complete", out _) || body.EnumerateObject().Count() != 1)
            return CinderErrors.BadRequest("Invalid input: the only attachment action is os-complete.");
        if (await FindAsync(db, caller, id, ct) is not { } volume) return CinderErrors.NotFound($"VolumeAttachment {id} could not be found.");
        volume.CompleteAttach(clock.GetUtcNow());
        await db.SaveChangesAsync(ct);
        return TypedResults.NoContent();
    }

    /// <summary>Cinder's listing grammar (limit, marker, sort) over the project's attached volumes; the attachment's id is the marker.</summary>
    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> List(Caller caller, AppDbContext db, HttpContext http, CancellationToken ct)
    {
        if (Microversion.Of(http) < Microversion.NewAttach) return CinderErrors.NotFound("The resource could not be found.");
        var path = http.Request.Path.Value!.EndsWith("/detail", StringComparison.Ordinal) ? "attachments/detail" : "attachments";
        var attached = db.Volumes.AsNoTracking().Where(v => v.ProjectId == caller.ProjectId && v.AttachmentId != null);
        return await Listing.PageAsync(attached, SortKeys, View, path, caller.ProjectId, http, ct);
    }

    // An attachment's row is its volume's: created_at is when it was attached (the volume's last change).
    static readonly SortKeys<Volume> SortKeys = new SortKeys<Volume>(v => v.AttachmentId!.Value)
        .Add("created_at", v => v.UpdatedAt).Add("id", v => v.AttachmentId!.Value).Add("volume_id", v => v.Id).Add("instance_uuid", v => v.AttachedInstance);

    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object?>>>, ProblemHttpResult>> Get(string id, Caller caller, AppDbContext db, HttpContext http, CancellationToken ct) =>
        Microversion.Of(http) >= Microversion.NewAttach && await FindAsync(db, caller, id, ct) is { } volume
            ? TypedResults.Ok(Wire.Wrap("attachment", View(volume, connected: false)))
            : CinderErrors.NotFound($"VolumeAttachment {id} could not be found.");

    static async Task<Results<Ok<Dictionary<string, List<object>>>, ProblemHttpResult>> Delete(
        string id, Caller caller, AppDbContext db, HttpContext http, TimeProvider clock, CancellationToken ct)
    {
        if (Microversion.Of(http) < Microversion.NewAttach || await FindAsync(db, caller, id, ct) is not { } volume) return CinderErrors.NotFound($"VolumeAttachment {id} could not be found.");
        if (volume.Status is not (VolumeStatus.InUse or VolumeStatus.Reserved))
            return CinderErrors.BadRequest($"Invalid volume: Volume {volume.Id} is {volume.Status}; detach it when the backup or restore ends.");
        volume.Detach(clock.GetUtcNow());
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(Wire.Wrap("attachments", new List<object>()));
    }

    static async Task<Volume?> FindAsync(AppDbContext db, Caller caller, string id, CancellationToken ct) =>
        Wire.TryParseId(id, out var attachmentId) && await db.Volumes.FirstOrDefaultAsync(v => v.AttachmentId == attachmentId, ct) is { } v && caller.CanSee(v.ProjectId) ? v : null;

    static object View(Volume v) => View(v, connected: false);

    static Dictionary<string, object?> View(Volume v, bool connected) => new()
    {
        ["id"] = v.AttachmentId.ToString(),
        ["status"] = v.Status == VolumeStatus.Reserved ? "reserved" : "attached",
        ["instance"] = v.AttachedInstance?.ToString(),
        ["volume_id"] = v.Id.ToString(),
        ["attach_mode"] = "rw",
        ["attached_at"] = Wire.Time(v.UpdatedAt),
        ["detached_at"] = null,
        ["connection_info"] = connected
            ? new Dictionary<string, object?>
            {
                ["driver_volume_type"] = "local",
                ["data"] = new Dictionary<string, object?> { ["volume_id"] = v.Id.ToString(), ["host"] = v.Host, ["access_mode"] = "rw" },
                ["attachment_id"] = v.AttachmentId.ToString(),
            }
            : new Dictionary<string, object?>(),
    };
}
