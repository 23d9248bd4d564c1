using Microsoft.Extensions.Logging;

namespace VolumeBackup.BackupAgent.Repository;

// EventIds 3000-3099 belong to the repository.
static partial class RepositoryLog
{
    [LoggerMessage(3000, LogLevel.Information, "Backup {BackupId} of volume {VolumeId} into {Container}: {SizeBytes} bytes in chunks of {ChunkSize}, parent {ParentId}")]
    public static partial void BackupStarting(this ILogger logger, Guid backupId, Guid volumeId, string container, long sizeBytes, int chunkSize, Guid? parentId);

    [LoggerMessage(3001, LogLevel.Information, "Backup {BackupId} stored in {Container} in {ElapsedMs} ms: {ChangedChunks} chunks changed, {ChunksWritten} written ({BytesWritten} bytes), {ObjectCount} referenced ({StoredBytes} bytes), manifest {ManifestSha256}")]
    public static partial void BackupStored(this ILogger logger, Guid backupId, string container, long elapsedMs, int changedChunks, int chunksWritten, long bytesWritten, int objectCount, long storedBytes, string manifestSha256);

    [LoggerMessage(3002, LogLevel.Information, "Backup {BackupId} already has its manifest in {Container}; nothing written")]
    public static partial void BackupAlreadyStored(this ILogger logger, Guid backupId, string container);

    [LoggerMessage(3003, LogLevel.Warning, "Backup {BackupId}: a delete ran meanwhile and collected {Count} of its chunks; they were written again from the source")]
    public static partial void ChunksRewritten(this ILogger logger, Guid backupId, int count);

    [LoggerMessage(3004, LogLevel.Information, "Backup {BackupId}: changed-block tracking not used ({Reason}); the whole device is read")]
    public static partial void ChangedBlocksNotUsed(this ILogger logger, Guid backupId, string reason);

    [LoggerMessage(3010, LogLevel.Information, "Backup {BackupId} restored from {Container} to {TargetPath} in {ElapsedMs} ms: {SizeBytes} bytes, {ChunksRead} chunks read")]
    public static partial void RestoreCompleted(this ILogger logger, Guid backupId, string container, string targetPath, long elapsedMs, long sizeBytes, int chunksRead);

    [LoggerMessage(3011, LogLevel.Information, "Backup {BackupId} in {Container} verified in {ElapsedMs} ms: {Chunks} chunks, {Bytes} stored bytes read and checked")]
    public static partial void VerifyPassed(this ILogger logger, Guid backupId, string container, long elapsedMs, int chunks, long bytes);

    [LoggerMessage(3012, LogLevel.Warning, "Backup {BackupId} in {Container} failed verification: {Failed} of {Chunks} chunks missing or corrupt, the first at index {ChunkIndex} ({ChunkName})")]
    public static partial void VerifyFailed(this ILogger logger, Guid backupId, string container, int failed, int chunks, long? chunkIndex, string? chunkName);

    [LoggerMessage(3020, LogLevel.Information, "Backup {BackupId} deleted from {Container} (manifest found: {Existed}): {ChunksDeleted} chunks freed ({BytesFreed} bytes), {ChunksDeferred} kept for running backups")]
    public static partial void BackupDeleted(this ILogger logger, Guid backupId, string container, bool existed, int chunksDeleted, long bytesFreed, int chunksDeferred);

    [LoggerMessage(3021, LogLevel.Warning, "The manifest of backup {BackupId} in {Container} is unreadable; it is deleted, but the chunks only it referenced stay on the share")]
    public static partial void UnreadableManifestDeleted(this ILogger logger, Guid backupId, string container, Exception exception);

    [LoggerMessage(3023, LogLevel.Warning, "Backup {BackupId} failed and its {Count} new chunks could not be recorded for collection; they stay on the share")]
    public static partial void UnfinishedChunksNotRecorded(this ILogger logger, Guid backupId, int count, Exception exception);

    [LoggerMessage(3024, LogLevel.Information, "Container {Container} swept: all {Chunks} chunks checked against the manifests, {Temporaries} stale temporary files removed")]
    public static partial void ContainerSwept(this ILogger logger, string container, int chunks, int temporaries);

    [LoggerMessage(3022, LogLevel.Warning, "Writer marker {Path} was not refreshed since {Modified}: its backup is taken for dead and the marker removed")]
    public static partial void StaleWriterRemoved(this ILogger logger, string path, DateTimeOffset modified);

    [LoggerMessage(3030, LogLevel.Warning, "Lock {Path} was not refreshed since {Modified}: its holder is taken for dead and the lock broken")]
    public static partial void StaleLockBroken(this ILogger logger, string path, DateTimeOffset modified);

    [LoggerMessage(3033, LogLevel.Warning, "Lock {Path} was held by process {ProcessId} of this host, which is gone: the lock is broken")]
    public static partial void DeadHolderLockBroken(this ILogger logger, string path, int processId);

    [LoggerMessage(3035, LogLevel.Warning, "Lock {Path} with token {Token} is no longer this process's: it is held by {Holder}")]
    public static partial void LockLost(this ILogger logger, string path, string token, string holder);

    [LoggerMessage(3034, LogLevel.Debug, "Waiting for lock {Path}, held by {Holder}")]
    public static partial void LockWaiting(this ILogger logger, string path, string holder);

    [LoggerMessage(3031, LogLevel.Warning, "Heartbeat file {Path} is gone: another process took its owner for dead")]
    public static partial void HeartbeatLost(this ILogger logger, string path);

    [LoggerMessage(3032, LogLevel.Warning, "Heartbeat of {Path} failed")]
    public static partial void HeartbeatFailed(this ILogger logger, string path, Exception exception);

    [LoggerMessage(3040, LogLevel.Information, "Container {Container}: a new data key was made and wrapped under master key {MasterKeyId}")]
    public static partial void ContainerKeyCreated(this ILogger logger, string container, string masterKeyId);

    [LoggerMessage(3041, LogLevel.Information, "Container {Container}: data key re-wrapped from master key {FromKeyId} to {ToKeyId}")]
    public static partial void ContainerKeyRewrapped(this ILogger logger, string container, string fromKeyId, string toKeyId);
}
