using System.Security.Claims;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Quotas;
using VolumeBackup.Api.Services;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Validation;
using VolumeBackup.Api.Versions;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

public static class BackupsApi
{
    public static RouteGroupBuilder MapBackups(this RouteGroupBuilder project)
    {
        var backups = project.MapGroup("/backups").WithTags("Backups");
        backups.MapPost("", Create).Rule("backup:create").Validate(Schemas.ForBackupCreate);
        backups.MapGet("", List).Rule("backup:get_all");
        backups.MapGet("/detail", ListDetail).Rule("backup:get_all");
        backups.MapGet("/{id}", Get).Rule("backup:get");
        backups.MapPut("/{id}", Update).Rule("backup:update").Validate(Schemas.ForBackupUpdate);
        backups.MapDelete("/{id}", Delete).Rule("backup:delete");
        backups.MapPost("/{id}/restore", Restore).Rule("backup:restore").Validate(Schemas.BackupRestore);
        backups.MapPost("/{id}/action", Action).Rules(ActionRules).Validate(BodyValidation.ByAction(Schemas.BackupActions));
        backups.MapGet("/{id}/export_record", ExportRecord).RequireAdmin("backup:export-import");
        backups.MapPost("/import_record", ImportRecord).RequireAdmin("backup:backup-import").Validate(Schemas.BackupImportRecord);
        backups.MapPost("/verify", VerifyContainer).RequireAdmin("backup:backup-verify").Validate(Schemas.BackupVerifyContainer);
        return project;
    }

    // Cinder's admin actions controller: volume_extension:<resource>_admin_actions:<action>.
    static readonly Dictionary<string, string> ActionRules = new()
    {
        ["os-reset_status"] = "volume_extension:backup_admin_actions:reset_status",
        ["os-force_delete"] = "volume_extension:backup_admin_actions:force_delete",
        ["os-verify"] = "backup:backup-verify",   // ours: Cinder has no verify
    };

    static async Task<Results<Accepted<Dictionary<string, BackupSummary>>, ProblemHttpResult>> Create(
        CreateBackupBody body, Caller caller, AppDbContext db, OutboxSignal outbox, HttpRequest http, IOptions<ServiceOptions> services, TimeProvider clock,
        CancellationToken ct)
    {
        if (body.Backup is not { } request) return CinderErrors.BadRequest("Missing required element 'backup' in request body.");
        if (request.VolumeId is null) return CinderErrors.BadRequest("Invalid input for field/attribute backup. Value: 'volume_id' is a required property.");
        string container;
        try { container = ContainerName.Validate(request.Container); }
        catch (ArgumentException e) { return CinderErrors.BadRequest($"Invalid container: {e.Message}"); }
        if (await db.FindVolumeAsync(caller, request.VolumeId, ct) is not { } volume) return VolumesApi.VolumeNotFound(request.VolumeId);

        Snapshot? snapshot = null;
        if (request.SnapshotId is not null)
        {
            if (!Wire.TryParseId(request.SnapshotId, out var sid) || await db.Snapshots.FindAsync([sid], ct) is not { } s || !caller.CanSee(s.ProjectId))
                return CinderErrors.NotFound($"Snapshot {request.SnapshotId} could not be found.");
            if (s.VolumeId != volume.Id) return CinderErrors.BadRequest($"Invalid snapshot: Snapshot {s.Id} is not a snapshot of volume {volume.Id}.");
            if (s.Status != "available") return CinderErrors.BadRequest($"Invalid snapshot: Snapshot to be backed up must be available, but the current status is \"{s.Status}\".");
            snapshot = s;
        }
        if (volume.Status is not (VolumeStatus.Available or VolumeStatus.InUse))
            return CinderErrors.BadRequest($"Invalid volume: Volume to be backed up must be available or in-use, but the current status is \"{volume.Status}\".");
        if (volume.Status == VolumeStatus.InUse && request.Force != true && snapshot is null)
            return CinderErrors.BadRequest("Invalid volume: Backing up an in-use volume must use the force flag.");
        // An agent reads volumes through the VolumeAgent of its own zone, so a backup is made in its volume's zone.
        if (request.AvailabilityZone is { Length: > 0 } zone && zone != volume.AvailabilityZone)
            return CinderErrors.BadRequest($"Invalid input received: Volume {volume.Id} is in availability zone '{volume.AvailabilityZone}'; its backups are made there, not in '{zone}'.");

        Guid? parentId = null;
        if (request.Incremental == true)
        {
            // As Cinder: the parent is the caller's project's latest backup of the volume (an admin's backups of a member's volume
            // are the admin's project's, and neither builds on the other's).
            var candidates = db.Backups.Where(b => b.VolumeId == volume.Id && b.ProjectId == caller.ProjectId);
            if (snapshot is not null) candidates = candidates.Where(b => b.DataTimestamp < snapshot.CreatedAt);
            var latest = await candidates.OrderByDescending(b => b.DataTimestamp).FirstOrDefaultAsync(ct);
            if (latest is null) return CinderErrors.BadRequest("Invalid backup: No backups available to do an incremental backup.");
            if (latest.Status != BackupStatus.Available) return CinderErrors.BadRequest("Invalid backup: The parent backup must be available for incremental backup.");
            parentId = latest.Id;
        }

        var now = clock.GetUtcNow();
        if (await NoBackupServiceAsync(db, volume.AvailabilityZone, now, services, ct) is { } noService) return noService;
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        if (await QuotasApi.CheckBackupAsync(db, caller.ProjectId, volume.Size, ct) is { } overQuota)
            return CinderErrors.OverLimit(overQuota);
        var backup = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = caller.ProjectId, UserId = caller.UserId, VolumeId = volume.Id, SnapshotId = snapshot?.Id,
            Name = request.Name, Description = request.Description, Container = container, Size = volume.Size, ParentId = parentId,
            AvailabilityZone = volume.AvailabilityZone, DataTimestamp = snapshot?.CreatedAt ?? now, CreatedAt = now,
            Metadata = request.Metadata ?? [],
        };
        var inUse = volume.Status == VolumeStatus.InUse;
        if (snapshot is not null) snapshot.Status = "backing-up";
        else volume.StartBackup(now);
        db.Backups.Add(backup);
        db.Outbox.Add(OutboxMessage.Create(new BackupCreateRequested(backup.Id, inUse && snapshot is null), now));
        await db.SaveChangesAsync(ct);                      // row, volume status and request commit together; the saga sends the command
        await tx.CommitAsync(ct);
        outbox.Notify();
        var baseUrl = Wire.BaseUrl(http);
        return TypedResults.Accepted($"{baseUrl}/v3/{backup.ProjectId}/backups/{backup.Id}", Wire.Wrap("backup", BackupSummary.From(backup, baseUrl)));
    }

    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> List(Caller caller, AppDbContext db, HttpContext http, CancellationToken ct) =>
        await ListAsync(caller, db, http, "backups", (b, baseUrl, _) => BackupSummary.From(b, baseUrl), ct);

    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> ListDetail(Caller caller, AppDbContext db, HttpContext http, CancellationToken ct) =>
        await ListAsync(caller, db, http, "backups/detail", (b, baseUrl, version) => BackupView.From(b, baseUrl, version), ct);

    // Cinder sorts by any column of its backups table (the CLI sends display_name for "name"); "name" itself from 3.37.
    static readonly SortKeys<Backup> SortKeys = new SortKeys<Backup>(b => b.Id)
        .Add("created_at", b => b.CreatedAt).Add("updated_at", b => b.UpdatedAt).Add("id", b => b.Id)
        // Orders by the machine's state name (Available, Creating, ..., Initial, Restoring), the stored column, not by
        // Cinder's derived word: the two orders agree except that a not-yet-handled backup ("Initial") sorts apart from "Creating".
        .Add("status", b => b.State)
        .Add("size", b => b.Size).Add("volume_id", b => b.VolumeId)
        .Add("name", b => b.Name, since: Microversion.BackupSortName).Add("display_name", b => b.Name).Add("display_description", b => b.Description)
        .Add("data_timestamp", b => b.DataTimestamp).Add("container", b => b.Container).Add("availability_zone", b => b.AvailabilityZone)
        .Add("object_count", b => b.ObjectCount).Add("project_id", b => b.ProjectId).Add("user_id", b => b.UserId).Add("host", b => b.Host);

    /// <summary>Cinder's backup listing: its filters and all_tenants for admins, then the listing grammar (<see cref="Listing"/>).</summary>
    static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> ListAsync(
        Caller caller, AppDbContext db, HttpContext http, string path, Func<Backup, string, Microversion, object> view, CancellationToken ct)
    {
        var q = http.Request.Query;
        var allTenants = Wire.Flag(q, "all_tenants");
        if (allTenants && !caller.IsAdmin) allTenants = false;           // Cinder ignores the flag for non-admins
        var query = db.Backups.AsNoTracking();
        if (!allTenants) query = query.Where(b => b.ProjectId == caller.ProjectId);
        else if (q["project_id"] is [var project]) query = query.Where(b => b.ProjectId == project);
        if (q["name"] is [var name]) query = query.Where(b => b.Name == name);
        if (q["status"] is [{ } status])
        {
            var states = BackupStatus.StatesOf(status);
            query = query.Where(b => states.Contains(b.State));
        }
        if (q["volume_id"] is [var volumeText])
        {
            if (!Guid.TryParse(volumeText, out var volumeId)) return TypedResults.Ok(new Dictionary<string, object> { ["backups"] = Array.Empty<object>() });
            query = query.Where(b => b.VolumeId == volumeId);
        }
        var baseUrl = Wire.BaseUrl(http.Request);
        var version = Microversion.Of(http);
        return await Listing.PageAsync(query, SortKeys, b => view(b, baseUrl, version), path, caller.ProjectId, http, ct);
    }

    static async Task<Results<Ok<Dictionary<string, Dictionary<string, object?>>>, ProblemHttpResult>> Get(string id, Caller caller, AppDbContext db, HttpContext http, CancellationToken ct) =>
        await FindAsync(db, caller, id, ct) is { } backup
            ? TypedResults.Ok(Wire.Wrap("backup", BackupView.From(backup, Wire.BaseUrl(http.Request), Microversion.Of(http))))
            : BackupNotFound(id);

    /// <summary>Renames or re-describes a backup (3.9), and replaces its metadata (3.43).</summary>
    static async Task<Results<Ok<Dictionary<string, BackupSummary>>, ProblemHttpResult>> Update(
        string id, UpdateBackupBody body, Caller caller, AppDbContext db, HttpContext http, TimeProvider clock, CancellationToken ct)
    {
        var version = Microversion.Of(http);
        if (version < Microversion.BackupUpdate) return CinderErrors.NotFound("The resource could not be found.");
        if (body.Backup is not { } request) return CinderErrors.BadRequest("Missing required element 'backup' in request body.");
        if (await FindAsync(db, caller, id, ct) is not { } backup) return BackupNotFound(id);
        if (request.Name is not null) backup.Name = request.Name;
        if (request.Description is not null) backup.Description = request.Description;
        if (request.Metadata is not null) backup.Metadata = request.Metadata;
        backup.UpdatedAt = clock.GetUtcNow();
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(Wire.Wrap("backup", BackupSummary.From(backup, Wire.BaseUrl(http.Request))));
    }

    /// <summary>Admin actions: os-reset_status, os-force_delete and (ours) os-verify.</summary>
    static async Task<Results<Accepted, ProblemHttpResult>> Action(
        string id, System.Text.Json.JsonElement body, Caller caller, ClaimsPrincipal user, IAuthorizationService authorization, AppDbContext db,
        OutboxSignal outbox, IOptions<ServiceOptions> services, TimeProvider clock, CancellationToken ct)
    {
        if (body.ValueKind != System.Text.Json.JsonValueKind.Object || body.EnumerateObject().FirstOrDefault() is not { Name: not null } action)
            return CinderErrors.BadRequest("Malformed request body");
        if (action.Name is not ("os-reset_status" or "os-force_delete" or "os-verify")) return CinderErrors.BadRequest($"There is no such action: {action.Name}");
        if (await authorization.AuthorizeAdminAsync(user, ActionRules[action.Name]) is { } denied) return denied;
        if (await FindAsync(db, caller, id, ct) is not { } backup) return BackupNotFound(id);
        var now = clock.GetUtcNow();
        if (action.Name == "os-reset_status")
        {
            var status = action.Value.TryGetProperty("status", out var s) ? s.GetString() : null;
            if (status is not (BackupStatus.Available or BackupStatus.Error))
                return CinderErrors.BadRequest($"Invalid input received: Backup status {status} is not valid; use available or error.");
            db.Outbox.Add(OutboxMessage.Create(new BackupResetRequested(backup.Id, status), now));
            await db.SaveChangesAsync(ct);
            outbox.Notify();
            return TypedResults.Accepted((string?)null);
        }
        if (action.Name == "os-verify")
        {
            if (backup.Status != BackupStatus.Available)
                return CinderErrors.BadRequest($"Invalid backup: Backup status must be available but is {backup.Status}.");
            if (await NoBackupServiceAsync(db, backup.AvailabilityZone, now, services, ct) is { } noService) return noService;
            RequestVerify(db, backup, now);
            await db.SaveChangesAsync(ct);
            outbox.Notify();
            return TypedResults.Accepted((string?)null);
        }
        if (backup.HasDependentBackups) return CinderErrors.BadRequest("Invalid backup: Incremental backups exist for this backup.");
        if (backup.Status == BackupStatus.Restoring) return CinderErrors.BadRequest("Invalid backup: Backup is being restored; wait for the restore to end.");
        // A running backup is stopped by the cancel every agent hears; the delete waits until its writer is gone.
        db.Outbox.Add(OutboxMessage.Create(new BackupForceDeleteRequested(backup.Id), now));
        await db.SaveChangesAsync(ct);
        outbox.Notify();
        return TypedResults.Accepted((string?)null);
    }

    /// <summary>Ours: verifies every available backup of a container of the project, each through its own saga (one
    /// VerifyBackup command per backup, so chunks shared by several backups are read once per backup).</summary>
    static async Task<Results<Accepted<Dictionary<string, VerifyView>>, ProblemHttpResult>> VerifyContainer(
        VerifyContainerBody body, Caller caller, HttpContext http, AppDbContext db, OutboxSignal outbox, IOptions<ServiceOptions> services, TimeProvider clock,
        CancellationToken ct)
    {
        var project = http.GetRouteValue("project_id") as string ?? caller.ProjectId;   // an admin names any project in the URL
        string container;
        try { container = ContainerName.Validate(body.Verify?.Container); }
        catch (ArgumentException e) { return CinderErrors.BadRequest($"Invalid container: {e.Message}"); }
        var available = await db.Backups
            .Where(b => b.ProjectId == project && b.Container == container && b.State == nameof(BackupSaga.Available))
            .OrderBy(b => b.CreatedAt).ToListAsync(ct);
        var now = clock.GetUtcNow();
        foreach (var zone in available.Select(b => b.AvailabilityZone).Distinct())
            if (await NoBackupServiceAsync(db, zone, now, services, ct) is { } noService) return noService;
        foreach (var backup in available)
            RequestVerify(db, backup, now);
        await db.SaveChangesAsync(ct);
        outbox.Notify();
        return TypedResults.Accepted((string?)null, Wire.Wrap("verify", new VerifyView(container, [.. available.Select(b => b.Id.ToString())])));
    }

    /// <summary>Asks the saga to verify; the same transaction stamps the request, which the periodic job orders by.</summary>
    internal static void RequestVerify(AppDbContext db, Backup backup, DateTimeOffset now)
    {
        backup.VerifyRequestedAt = now;
        db.Outbox.Add(OutboxMessage.Create(new BackupVerifyRequested(backup.Id), now));
    }

    /// <summary>The record that lets another deployment on the same share import and restore this backup.</summary>
    static async Task<Results<Ok<Dictionary<string, Dictionary<string, string>>>, ProblemHttpResult>> ExportRecord(
        string id, Caller caller, AppDbContext db, RecordSigner signer, CancellationToken ct)
    {
        if (await FindAsync(db, caller, id, ct) is not { } backup) return BackupNotFound(id);
        if (backup.Status != BackupStatus.Available) return CinderErrors.BadRequest($"Invalid backup: Backup status must be available and not {backup.Status}.");
        return TypedResults.Ok(Wire.Wrap("backup-record", BackupRecord.Export(backup, signer)));
    }

    static async Task<Results<Created<Dictionary<string, BackupSummary>>, ProblemHttpResult>> ImportRecord(
        ImportRecordBody body, Caller caller, AppDbContext db, RecordSigner signer, OutboxSignal outbox, HttpRequest http, TimeProvider clock, CancellationToken ct)
    {
        if (body.BackupRecord is not { BackupService: { } service, BackupUrl: { } url }) return CinderErrors.BadRequest("Incorrect request body format.");
        if (service != BackupRecord.Service) return CinderErrors.BadRequest($"Invalid input received: Backup service {service} is not supported; this service imports {BackupRecord.Service}.");
        var (record, refused) = BackupRecord.Decode(url, signer);
        if (record is null) return CinderErrors.BadRequest(refused!);
        if (record.Problem() is { } problem) return CinderErrors.BadRequest($"Invalid input received: Can't parse backup record: {problem}");
        try { ContainerName.Validate(record.Container); }
        catch (ArgumentException e) { return CinderErrors.BadRequest($"Invalid container: {e.Message}"); }
        if (await db.Backups.AnyAsync(b => b.Id == record.Id, ct)) return CinderErrors.BadRequest("Invalid backup: Backup already exists in database.");
        // An incremental hangs off its parent (dependent counts, delete order): only ever one of the importer's project.
        if (record.ParentId is { } parentId && await db.Backups.Where(b => b.Id == parentId).Select(b => new { b.ProjectId, b.Container }).FirstOrDefaultAsync(ct) is { } parent
            && (parent.ProjectId != caller.ProjectId || parent.Container != record.Container))
            return CinderErrors.BadRequest($"Invalid backup: The parent backup {parentId} of this incremental backup belongs to another project or container.");
        if (await db.Backups.AnyAsync(b => b.ParentId == record.Id && b.ProjectId != caller.ProjectId, ct))
            return CinderErrors.BadRequest($"Invalid backup: Backup {record.Id} is the parent of another project's backup.");
        var now = clock.GetUtcNow();
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // Cinder imports over a deleted backup's record: the deleted row makes way for the imported one.
        await db.Backups.IgnoreQueryFilters().Where(b => b.Id == record.Id && b.State == nameof(BackupSaga.Deleted)).ExecuteDeleteAsync(ct);
        var backup = record.ToBackup(caller.ProjectId, caller.UserId, now);
        db.Backups.Add(backup);
        db.Outbox.Add(OutboxMessage.Create(new BackupImportRequested(backup.Id), now));
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        outbox.Notify();
        var baseUrl = Wire.BaseUrl(http);
        return TypedResults.Created($"{baseUrl}/v3/{backup.ProjectId}/backups/{backup.Id}", Wire.Wrap("backup", BackupSummary.From(backup, baseUrl)));
    }

    static async Task<Results<Accepted, ProblemHttpResult>> Delete(
        string id, Caller caller, AppDbContext db, OutboxSignal outbox, IOptions<ServiceOptions> services, TimeProvider clock, CancellationToken ct)
    {
        if (await FindAsync(db, caller, id, ct) is not { } backup) return BackupNotFound(id);
        if (backup.Status is not (BackupStatus.Available or BackupStatus.Error or BackupStatus.ErrorDeleting))
            return CinderErrors.BadRequest("Invalid backup: Backup status must be available or error");
        if (backup.HasDependentBackups)
            return CinderErrors.BadRequest("Invalid backup: Incremental backups exist for this backup.");
        var now = clock.GetUtcNow();
        if (await NoBackupServiceAsync(db, backup.AvailabilityZone, now, services, ct) is { } noService) return noService;
        db.Outbox.Add(OutboxMessage.Create(new BackupDeleteRequested(backup.Id), now));
        await db.SaveChangesAsync(ct);
        outbox.Notify();
        return TypedResults.Accepted((string?)null);
    }

    static async Task<Results<Accepted<Dictionary<string, RestoreView>>, ProblemHttpResult>> Restore(
        string id, RestoreBody body, Caller caller, AppDbContext db, VolumeHosts hosts, OutboxSignal outbox, IOptions<ServiceOptions> services, TimeProvider clock,
        CancellationToken ct)
    {
        if (body.Restore is not { } request) return CinderErrors.BadRequest("Missing required element 'restore' in request body.");
        if (await FindAsync(db, caller, id, ct) is not { } backup) return BackupNotFound(id);
        if (backup.Status != BackupStatus.Available)
            return CinderErrors.BadRequest($"Invalid backup: Backup status must be available but is {backup.Status}.");
        var now = clock.GetUtcNow();
        if (await NoBackupServiceAsync(db, backup.AvailabilityZone, now, services, ct) is { } noService) return noService;
        Volume volume;
        if (request.VolumeId is not null)
        {
            if (await db.FindVolumeAsync(caller, request.VolumeId, ct) is not { } target) return VolumesApi.VolumeNotFound(request.VolumeId);
            if (target.Status != VolumeStatus.Available)
                return CinderErrors.BadRequest($"Invalid volume: Volume to be restored to must be available, but the current status is \"{target.Status}\".");
            if (target.Size < backup.Size)
                return CinderErrors.BadRequest($"Invalid volume: volume size {target.Size} is too small to restore backup of size {backup.Size}.");
            volume = target;
        }
        else
        {
            if (!hosts.ServesZone(backup.AvailabilityZone))
                return CinderErrors.BadRequest($"Availability zone '{backup.AvailabilityZone}' has no storage host.");
            // Cinder restores the source volume's metadata with the data; this takes the source's metadata as it is now (the
            // backup record keeps no copy), none when the source is gone.
            var source = await db.Volumes.AsNoTracking().FirstOrDefaultAsync(v => v.Id == backup.VolumeId, ct);
            // Quota before placement, as Cinder reserves before it schedules (and again below, where the row is written).
            if (await QuotasApi.CheckVolumeAsync(db, caller.ProjectId, backup.Size, ct) is { } overQuotaNow) return CinderErrors.OverLimit(overQuotaNow);
            if (await hosts.PickHostAsync(backup.AvailabilityZone, (long)backup.Size << 30, db, ct) is not { } host)
                return VolumesApi.NoValidBackend(backup.AvailabilityZone, backup.Size);
            volume = new Volume
            {
                Id = Guid.NewGuid(), ProjectId = caller.ProjectId, UserId = caller.UserId, Size = backup.Size, Host = host.Name,
                AvailabilityZone = backup.AvailabilityZone, Name = request.Name ?? $"restore_backup_{backup.Id}",
                Description = $"auto-created_from_restore_from_backup", CreatedAt = now, Metadata = new(source?.Metadata ?? []),
            };
            await using (var tx = await db.Database.BeginTransactionAsync(ct))
            {
                if (await QuotasApi.CheckVolumeAsync(db, volume.ProjectId, volume.Size, ct) is { } overQuota) return CinderErrors.OverLimit(overQuota);
                db.Volumes.Add(volume);
                await db.SaveChangesAsync(ct);
                await tx.CommitAsync(ct);
            }
            await VolumesApi.CreateOnHostAsync(volume, hosts, db, clock, ct);
            if (volume.Status != VolumeStatus.Available) return CinderErrors.ServerError($"The volume for the restore of backup {backup.Id} could not be created.");
        }

        volume.Status = VolumeStatus.RestoringBackup;             // the volume is reserved here; the backup's state is the saga's
        volume.UpdatedAt = now;
        db.Outbox.Add(OutboxMessage.Create(new BackupRestoreRequested(backup.Id, Guid.NewGuid(), volume.Id), now));
        await db.SaveChangesAsync(ct);
        outbox.Notify();
        return TypedResults.Accepted((string?)null, Wire.Wrap("restore", new RestoreView(backup.Id.ToString(), volume.Id.ToString(), volume.Name)));
    }

    /// <summary>Cinder refuses a create, restore or delete when no cinder-backup of the zone is up, so no work queues for nobody.</summary>
    static async Task<ProblemHttpResult?> NoBackupServiceAsync(AppDbContext db, string zone, DateTimeOffset now, IOptions<ServiceOptions> services, CancellationToken ct) =>
        await ServicesApi.BackupServiceUpAsync(db, zone, now, services.Value.DownTime, ct) ? null : CinderErrors.ServerError("Service cinder-backup could not be found.");

    static async Task<Backup?> FindAsync(AppDbContext db, Caller caller, string id, CancellationToken ct) =>
        Wire.TryParseId(id, out var bid) && await db.Backups.FindAsync([bid], ct) is { } b && caller.CanSee(b.ProjectId) ? b : null;

    static ProblemHttpResult BackupNotFound(string id) => CinderErrors.NotFound($"Backup {id} could not be found.");
}
