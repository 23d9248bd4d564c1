namespace VolumeBackup.Contracts;

/// <summary>An agent took the backup from its zone's queue and asks for the device (a copy of a whole volume may take long).</summary>
public record BackupTaken(Guid BackupId, string AgentHost, DateTimeOffset TakenAt);

/// <summary>An agent holds the device; when <paramref name="DeviceIsCopy"/> the volume is free again.</summary>
public record BackupStarted(Guid BackupId, Guid VolumeId, bool DeviceIsCopy, string AgentHost, DateTimeOffset StartedAt);

/// <summary>Published every few tens of MiB, never per chunk.</summary>
public record BackupProgressed(Guid BackupId, long BytesDone, long BytesTotal);

/// <summary>The manifest is on the share.</summary>
/// <param name="ObjectCount">Non-zero chunks the backup references.</param>
/// <param name="BytesWritten">Stored bytes this backup added to the repository (dedup and compression applied).</param>
/// <param name="StoredBytes">Stored bytes of every chunk the backup references.</param>
/// <param name="Cbt">Changed-block tracking was used: only the ranges changed since the parent were read.</param>
/// <param name="BytesRead">Bytes read from the device.</param>
public record BackupCompleted(Guid BackupId, long SizeBytes, int ObjectCount, long BytesWritten, long StoredBytes, DateTimeOffset CompletedAt,
    bool Cbt = false, long BytesRead = 0, string? AgentHost = null);

/// <summary>No agent of the backup's zone took it in time (all of them gone); the Api gives it up and fails it.</summary>
public record BackupNotTaken(Guid BackupId, string Reason);

public record RestoreStarted(Guid BackupId, Guid RestoreId, Guid VolumeId, string AgentHost);

/// <summary>A restore's progress, every few hundred MiB like a backup's, never per chunk.</summary>
public record RestoreProgressed(Guid BackupId, Guid RestoreId, long BytesDone, long BytesTotal);

/// <summary>Every chunk was verified and the restored data is in place.</summary>
public record BackupRestored(Guid BackupId, Guid RestoreId, Guid VolumeId, long BytesRestored);

public record BackupDeleted(Guid BackupId, int ChunksFreed, long BytesFreed);

/// <summary>Every chunk of the backup was read back and matched its SHA-256.</summary>
public record BackupVerified(Guid BackupId, int ChunksChecked, long BytesChecked, DateTimeOffset VerifiedAt);

/// <summary>The backup cannot be restored whole: a chunk (the first failing, by position) is missing or corrupt, or the
/// manifest is (then <paramref name="ChunkIndex"/> is null). <paramref name="Reason"/> names backup, chunk index and hash.</summary>
public record BackupVerifyFailed(Guid BackupId, long? ChunkIndex, string? ChunkName, int ChunksFailed, string Reason);

/// <summary>An agent is alive and serving a zone; sent every few seconds, so a silent agent is seen as down.</summary>
/// <param name="Binary">The Cinder service it stands for, e.g. "cinder-backup".</param>
public record AgentHeartbeat(string Binary, string Host, string Zone, string Instance, DateTimeOffset At)
{
    /// <summary>The Cinder service a BackupAgent stands for.</summary>
    public const string BackupBinary = "cinder-backup";
}

/// <summary>
/// Cinder's backup notifications for any subscriber (billing, audit, dashboards): <c>backup.create.start</c>,
/// <c>backup.create.end</c>, <c>backup.create.error</c>, <c>backup.createprogress</c>, <c>backup.restore.start</c>,
/// <c>backup.restore.end</c>, <c>backup.restore.error</c>, <c>backup.delete.start</c>, <c>backup.delete.end</c>,
/// <c>backup.delete.error</c>. Published by the Api in the same transaction as the change it reports.
/// </summary>
public record BackupNotification(
    string EventType, Guid BackupId, string ProjectId, string UserId, Guid VolumeId, string Status, int Size,
    string AvailabilityZone, string? Host, string? Name, string? FailReason, Guid? RestoreVolumeId, long? BytesDone,
    DateTimeOffset CreatedAt, DateTimeOffset Timestamp, bool? Cbt = null, long? BytesRead = null);
