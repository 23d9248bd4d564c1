namespace VolumeBackup.VolumeAgent;

internal static partial class Log
{
    [LoggerMessage(1001, LogLevel.Information, "Volume {VolumeId} created: {Bytes} bytes")]
    public static partial void VolumeCreated(this ILogger logger, Guid volumeId, long bytes);

    [LoggerMessage(1002, LogLevel.Information, "Snapshot {SnapshotId} of volume {VolumeId} created by {Method}")]
    public static partial void SnapshotCreated(this ILogger logger, Guid snapshotId, Guid volumeId, string method);

    [LoggerMessage(1003, LogLevel.Information, "Backup {BackupId}: device for volume {VolumeId} ready ({Method})")]
    public static partial void BackupDeviceReady(this ILogger logger, Guid backupId, Guid volumeId, string method);

    [LoggerMessage(1004, LogLevel.Information, "Device {DeviceId} released (commit: {Commit})")]
    public static partial void DeviceReleased(this ILogger logger, string deviceId, bool commit);

    [LoggerMessage(1005, LogLevel.Warning, "The pool cannot reflink: copying {Source}; an attached volume's copy is not crash-consistent")]
    public static partial void CloneByCopy(this ILogger logger, string source);

    [LoggerMessage(1006, LogLevel.Warning, "Removed {File}, a temporary left by an earlier run")]
    public static partial void StaleTemporaryRemoved(this ILogger logger, string file);

    [LoggerMessage(1007, LogLevel.Information, "Backup {BackupId}: changed-block tracking against the base of backup {BaseBackupId}: {Ranges} ranges, {Bytes} bytes changed")]
    public static partial void ChangedBlocksFound(this ILogger logger, Guid backupId, Guid baseBackupId, int ranges, long bytes);

    [LoggerMessage(1008, LogLevel.Information, "Backup {BackupId}: no changed-block tracking ({Reason}); the whole device is to be read")]
    public static partial void NoChangedBlocks(this ILogger logger, Guid backupId, string reason);

    [LoggerMessage(1009, LogLevel.Information, "Volume {VolumeId}: the device of backup {BackupId} kept as its changed-block-tracking base")]
    public static partial void BaseKept(this ILogger logger, Guid volumeId, Guid backupId);

    [LoggerMessage(1010, LogLevel.Information, "Volume {VolumeId}: changed-block-tracking base of backup {BackupId} dropped ({Reason})")]
    public static partial void BaseDropped(this ILogger logger, Guid volumeId, Guid backupId, string reason);

    [LoggerMessage(1011, LogLevel.Warning, "Refused a TLS client: {Reason} (certificate {Subject})")]
    public static partial void ClientRefused(this ILogger logger, string reason, string subject);

    [LoggerMessage(1012, LogLevel.Information, "Device {DeviceId} read by a remote agent: {Ranges} ranges, {Bytes} data bytes in {Messages} messages, {Milliseconds} ms")]
    public static partial void DeviceRead(this ILogger logger, string deviceId, int ranges, long bytes, long messages, double milliseconds);

    [LoggerMessage(1013, LogLevel.Information, "Device {DeviceId} written by a remote agent: {Bytes} data bytes, {Milliseconds} ms")]
    public static partial void DeviceWritten(this ILogger logger, string deviceId, long bytes, double milliseconds);
}
