using MassTransit;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

/// <summary>
/// Ends a restore. Each handler checks the rows are still in the state it ends, so a redelivered event changes nothing.
/// </summary>
public sealed class RestoreEventsConsumer(AppDbContext db, TimeProvider clock) : IConsumer<BackupRestored>, IConsumer<Fault<RestoreBackup>>
{
    public Task Consume(ConsumeContext<BackupRestored> context) =>
        EndRestore(context.Message.BackupId, context.Message.VolumeId, failed: false, context.CancellationToken);

    public Task Consume(ConsumeContext<Fault<RestoreBackup>> context) =>
        EndRestore(context.Message.Message.BackupId, context.Message.Message.VolumeId, failed: true, context.CancellationToken);

    async Task EndRestore(Guid backupId, Guid volumeId, bool failed, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (await db.Backups.FindAsync([backupId], ct) is { Status: BackupStatus.Restoring } backup && backup.RestoreVolumeId == volumeId)
        {
            backup.Status = BackupStatus.Available;           // a failed restore leaves the backup as good as it was
            backup.UpdatedAt = now;
            db.Outbox.Add(Notifications.Backup(backup, failed ? "backup.restore.error" : "backup.restore.end", now));
            backup.RestoreVolumeId = null;
        }
        if (await db.Volumes.FindAsync([volumeId], ct) is { Status: VolumeStatus.RestoringBackup } volume)
        {
            volume.Status = failed ? VolumeStatus.ErrorRestoring : VolumeStatus.Available;
            volume.UpdatedAt = now;
        }
        await db.SaveChangesAsync(ct);
    }
}

/// <summary>Ends a delete: the row goes, and the parent counts one dependent less.</summary>
public sealed class DeleteEventsConsumer(AppDbContext db, TimeProvider clock) : IConsumer<BackupDeleted>, IConsumer<Fault<DeleteBackup>>
{
    public async Task Consume(ConsumeContext<BackupDeleted> context)
    {
        var ct = context.CancellationToken;
        if (await db.Backups.FindAsync([context.Message.BackupId], ct) is not { Status: BackupStatus.Deleting } backup) return;
        if (backup.ParentId is { } parentId && await db.Backups.FindAsync([parentId], ct) is { NumDependentBackups: > 0 } parent)
            parent.NumDependentBackups--;
        db.Backups.Remove(backup);
        if (await db.BackupSagas.FindAsync([backup.Id], ct) is { } saga) db.BackupSagas.Remove(saga);
        db.Outbox.Add(Notifications.Backup(backup, "backup.delete.end", clock.GetUtcNow()));
        await db.SaveChangesAsync(ct);
    }

    public async Task Consume(ConsumeContext<Fault<DeleteBackup>> context)
    {
        var ct = context.CancellationToken;
        if (await db.Backups.FindAsync([context.Message.Message.BackupId], ct) is not { Status: BackupStatus.Deleting } backup) return;
        backup.Status = BackupStatus.ErrorDeleting;
        backup.FailReason = context.Message.Exceptions.FirstOrDefault()?.Message;
        backup.UpdatedAt = clock.GetUtcNow();
        db.Outbox.Add(Notifications.Backup(backup, "backup.delete.error", backup.UpdatedAt.Value));
        await db.SaveChangesAsync(ct);
    }
}
