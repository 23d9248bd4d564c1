using VolumeBackup.Api.Messaging;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

/// <summary>Builds Cinder's backup notifications as outbox rows, so each one commits with the change it reports.</summary>
public static class Notifications
{
    public static OutboxMessage Backup(Backup b, string eventType, DateTimeOffset now, long? bytesDone = null) =>
        OutboxMessage.Create(new BackupNotification(
            eventType, b.Id, b.ProjectId, b.UserId, b.VolumeId, b.Status, b.Size, b.AvailabilityZone, b.Host, b.Name, b.FailReason,
            b.RestoreVolumeId, bytesDone, b.CreatedAt, now), now);
}
