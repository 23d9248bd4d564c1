namespace VolumeBackup.Contracts;

/// <summary>An agent holds the device; when <paramref name="DeviceIsCopy"/> the volume is free again.</summary>
public record BackupStarted(Guid BackupId, Guid VolumeId, bool DeviceIsCopy, string AgentHost, DateTimeOffset StartedAt);

/// <summary>Published every few tens of MiB, never per chunk.</summary>
public record BackupProgressed(Guid BackupId, long BytesDone, long BytesTotal);

/// <summary>The manifest is on the share.</summary>
/// <param name="ObjectCount">Non-zero chunks the backup references.</param>
/// <param name="BytesWritten">Stored bytes this backup added to the repository (dedup and compression applied).</param>
/// <param name="StoredBytes">Stored bytes of every chunk the backup references.</param>
public record BackupCompleted(Guid BackupId, long SizeBytes, int ObjectCount, long BytesWritten, long StoredBytes, DateTimeOffset CompletedAt);

public record RestoreStarted(Guid BackupId, Guid RestoreId, Guid VolumeId, string AgentHost);

/// <summary>Every chunk was verified and the restored data is in place.</summary>
public record BackupRestored(Guid BackupId, Guid RestoreId, Guid VolumeId, long BytesRestored);

public record BackupDeleted(Guid BackupId, int ChunksFreed, long BytesFreed);

/// <summary>An agent is alive and serving a zone; sent every few seconds, so a silent agent is seen as down.</summary>
/// <param name="Binary">The Cinder service it stands for, e.g. "cinder-backup".</param>
public record AgentHeartbeat(string Binary, string Host, string Zone, string Instance, DateTimeOffset At);
