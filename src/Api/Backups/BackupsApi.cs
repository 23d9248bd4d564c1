using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

public static class BackupsApi
{
    public const string DefaultContainer = "volumebackups";

    public static RouteGroupBuilder MapBackups(this RouteGroupBuilder project)
    {
        var backups = project.MapGroup("/backups").WithTags("Backups");
        backups.MapPost("", Create);
        backups.MapGet("", List);
        backups.MapGet("/detail", ListDetail);
        backups.MapGet("/{id}", Get);
        backups.MapDelete("/{id}", Delete);
        backups.MapPost("/{id}/restore", Restore);
        return project;
    }

    static async Task<Results<Accepted<Dictionary<string, BackupSummary>>, ProblemHttpResult>> Create(
        CreateBackupBody body, Caller caller, AppDbContext db, OutboxSignal outbox, HttpRequest http, TimeProvider clock, CancellationToken ct)
    {
        if (body.Backup is not { } request) return CinderErrors.BadRequest("Missing required element 'backup' in request body.");
        if (request.VolumeId is null) return CinderErrors.BadRequest("Invalid input for field/attribute backup. Value: 'volume_id' is a required property.");
        if (request.Name is { Length: > 255 } || request.Description is { Length: > 255 })
            return CinderErrors.BadRequest("Invalid input for field/attribute backup. Value: name and description must be at most 255 characters.");
        if (ContainerNames.Validate(request.Container) is { Error: { } containerError }) return CinderErrors.BadRequest(containerError);
        var container = ContainerNames.Validate(request.Container).Name!;
        if (await VolumesApi.FindAsync(db, caller, request.VolumeId, ct) is not { } volume) return VolumesApi.VolumeNotFound(request.VolumeId);

        Snapshot? snapshot = null;
        if (request.SnapshotId is not null)
        {
            if (!Guid.TryParse(request.SnapshotId, out var sid) || await db.Snapshots.FindAsync([sid], ct) is not { } s || !caller.CanSee(s.ProjectId))
                return CinderErrors.NotFound($"Snapshot {request.SnapshotId} could not be found.");
            if (s.VolumeId != volume.Id) return CinderErrors.BadRequest($"Invalid snapshot: Snapshot {s.Id} is not a snapshot of volume {volume.Id}.");
            if (s.Status != "available") return CinderErrors.BadRequest($"Invalid snapshot: Snapshot to be backed up must be available, but the current status is \"{s.Status}\".");
            snapshot = s;
        }
        if (volume.Status is not (VolumeStatus.Available or VolumeStatus.InUse))
            return CinderErrors.BadRequest($"Invalid volume: Volume to be backed up must be available or in-use, but the current status is \"{volume.Status}\".");
        if (volume.Status == VolumeStatus.InUse && request.Force != true && snapshot is null)
            return CinderErrors.BadRequest("Invalid volume: Backing up an in-use volume must use the force flag.");

        Guid? parentId = null;
        if (request.Incremental == true)
        {
            var candidates = db.Backups.Where(b => b.VolumeId == volume.Id);
            if (snapshot is not null) candidates = candidates.Where(b => b.DataTimestamp < snapshot.CreatedAt);
            var latest = await candidates.OrderByDescending(b => b.DataTimestamp).FirstOrDefaultAsync(ct);
            if (latest is null) return CinderErrors.BadRequest("Invalid backup: No backups available to do an incremental backup.");
            if (latest.Status != BackupStatus.Available) return CinderErrors.BadRequest("Invalid backup: The parent backup must be available for incremental backup.");
            parentId = latest.Id;
        }

        var now = clock.GetUtcNow();
        var backup = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = volume.ProjectId, UserId = caller.UserId, VolumeId = volume.Id, SnapshotId = snapshot?.Id,
            Name = request.Name, Description = request.Description, Container = container, Size = volume.Size, ParentId = parentId,
            AvailabilityZone = volume.AvailabilityZone, DataTimestamp = snapshot?.CreatedAt ?? now, CreatedAt = now,
            Metadata = request.Metadata ?? [],
        };
        var inUse = volume.Status == VolumeStatus.InUse;
        if (snapshot is not null) snapshot.Status = "backing-up";
        else volume.StartBackup(now);
        db.Backups.Add(backup);
        db.BackupSagas.Add(BackupSagaState.Creating(backup.Id, volume.Id, snapshot?.Id, parentId));
        db.Outbox.Add(OutboxMessage.Create(new CreateBackup(
            backup.Id, volume.Id, snapshot?.Id, container, parentId, inUse && snapshot is null, volume.SizeBytes, volume.ProjectId, volume.AvailabilityZone), now));
        await db.SaveChangesAsync(ct);                      // row, volume status and command commit together; the relay publishes
        outbox.Notify();
        var baseUrl = Wire.BaseUrl(http);
        return TypedResults.Accepted($"{baseUrl}/v3/{backup.ProjectId}/backups/{backup.Id}", VolumesApi.Wrap("backup", BackupSummary.From(backup, baseUrl)));
    }

    static async Task<Ok<Dictionary<string, List<BackupSummary>>>> List(Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct)
    {
        var rows = await Visible(db, caller).ToListAsync(ct);
        return TypedResults.Ok(VolumesApi.Wrap("backups", rows.Select(b => BackupSummary.From(b, Wire.BaseUrl(http))).ToList()));
    }

    static async Task<Ok<Dictionary<string, List<BackupView>>>> ListDetail(Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct)
    {
        var rows = await Visible(db, caller).ToListAsync(ct);
        return TypedResults.Ok(VolumesApi.Wrap("backups", rows.Select(b => BackupView.From(b, Wire.BaseUrl(http))).ToList()));
    }

    static IQueryable<Backup> Visible(AppDbContext db, Caller caller) =>
        db.Backups.AsNoTracking().Where(b => b.ProjectId == caller.ProjectId).OrderByDescending(b => b.CreatedAt);

    static async Task<Results<Ok<Dictionary<string, BackupView>>, ProblemHttpResult>> Get(string id, Caller caller, AppDbContext db, HttpRequest http, CancellationToken ct) =>
        await FindAsync(db, caller, id, ct) is { } backup
            ? TypedResults.Ok(VolumesApi.Wrap("backup", BackupView.From(backup, Wire.BaseUrl(http))))
            : BackupNotFound(id);

    static async Task<Results<Accepted, ProblemHttpResult>> Delete(string id, Caller caller, AppDbContext db, OutboxSignal outbox, TimeProvider clock, CancellationToken ct)
    {
        if (await FindAsync(db, caller, id, ct) is not { } backup) return BackupNotFound(id);
        if (backup.Status is not (BackupStatus.Available or BackupStatus.Error))
            return CinderErrors.BadRequest("Invalid backup: Backup status must be available or error");
        if (backup.HasDependentBackups)
            return CinderErrors.BadRequest("Invalid backup: Incremental backups exist for this backup.");
        var now = clock.GetUtcNow();
        backup.Status = BackupStatus.Deleting;
        backup.UpdatedAt = now;
        db.Outbox.Add(OutboxMessage.Create(new DeleteBackup(backup.Id, backup.Container, backup.AvailabilityZone), now));
        await db.SaveChangesAsync(ct);
        outbox.Notify();
        return TypedResults.Accepted((string?)null);
    }

    static async Task<Results<Accepted<Dictionary<string, RestoreView>>, ProblemHttpResult>> Restore(
        string id, RestoreBody body, Caller caller, AppDbContext db, VolumeHosts hosts, OutboxSignal outbox, TimeProvider clock, CancellationToken ct)
    {
        if (body.Restore is not { } request) return CinderErrors.BadRequest("Missing required element 'restore' in request body.");
        if (await FindAsync(db, caller, id, ct) is not { } backup) return BackupNotFound(id);
        if (backup.Status != BackupStatus.Available)
            return CinderErrors.BadRequest($"Invalid backup: Backup status must be available but is {backup.Status}.");
        var now = clock.GetUtcNow();
        Volume volume;
        if (request.VolumeId is not null)
        {
            if (await VolumesApi.FindAsync(db, caller, request.VolumeId, ct) is not { } target) return VolumesApi.VolumeNotFound(request.VolumeId);
            if (target.Status != VolumeStatus.Available)
                return CinderErrors.BadRequest($"Invalid volume: Volume to be restored to must be available, but the current status is \"{target.Status}\".");
            if (target.Size < backup.Size)
                return CinderErrors.BadRequest($"Invalid volume: volume size {target.Size} is too small to restore backup of size {backup.Size}.");
            volume = target;
        }
        else
        {
            if (request.Name is { Length: > 255 }) return CinderErrors.BadRequest("Name must be at most 255 characters.");
            if (hosts.PickHost(backup.AvailabilityZone) is not { } host)
                return CinderErrors.BadRequest($"Availability zone '{backup.AvailabilityZone}' has no storage host.");
            volume = new Volume
            {
                Id = Guid.NewGuid(), ProjectId = caller.ProjectId, UserId = caller.UserId, Size = backup.Size, Host = host.Name,
                AvailabilityZone = backup.AvailabilityZone, Name = request.Name ?? $"restore_backup_{backup.Id}",
                Description = $"auto-created_from_restore_from_backup", CreatedAt = now,
            };
            db.Volumes.Add(volume);
            await db.SaveChangesAsync(ct);
            await VolumesApi.CreateOnHostAsync(volume, hosts, db, clock, ct);
            if (volume.Status != VolumeStatus.Available) return CinderErrors.ServerError($"The volume for the restore of backup {backup.Id} could not be created.");
        }

        volume.Status = VolumeStatus.RestoringBackup;
        volume.UpdatedAt = now;
        backup.Status = BackupStatus.Restoring;
        backup.RestoreVolumeId = volume.Id;
        backup.UpdatedAt = now;
        db.Outbox.Add(OutboxMessage.Create(new RestoreBackup(backup.Id, Guid.NewGuid(), volume.Id, backup.Container, backup.AvailabilityZone), now));
        await db.SaveChangesAsync(ct);
        outbox.Notify();
        return TypedResults.Accepted((string?)null, VolumesApi.Wrap("restore", new RestoreView(backup.Id.ToString(), volume.Id.ToString(), volume.Name)));
    }

    static async Task<Backup?> FindAsync(AppDbContext db, Caller caller, string id, CancellationToken ct) =>
        Guid.TryParse(id, out var bid) && await db.Backups.FindAsync([bid], ct) is { } b && caller.CanSee(b.ProjectId) ? b : null;

    static ProblemHttpResult BackupNotFound(string id) => CinderErrors.NotFound($"Backup {id} could not be found.");
}
