namespace VolumeBackup.BackupAgent;

internal static partial class Log
{
    [LoggerMessage(2001, LogLevel.Information, "Backup {BackupId} of volume {VolumeId}: device {DeviceId} ready ({Method}) on host {VolumeHost}, read {Access}")]
    public static partial void BackupDeviceReady(this ILogger logger, Guid backupId, Guid volumeId, string deviceId, string method, string volumeHost, string access);

    [LoggerMessage(2002, LogLevel.Information, "Backup {BackupId} written: {Bytes} bytes, {Objects} objects, {Written} bytes new on the share; changed-block tracking {Cbt}, {BytesRead} bytes read")]
    public static partial void BackupWritten(this ILogger logger, Guid backupId, long bytes, int objects, long written, bool cbt, long bytesRead);

    [LoggerMessage(2003, LogLevel.Information, "Backup {BackupId} restored into volume {VolumeId}: {Bytes} bytes verified")]
    public static partial void BackupRestored(this ILogger logger, Guid backupId, Guid volumeId, long bytes);

    [LoggerMessage(2004, LogLevel.Information, "Backup {BackupId} deleted: {Chunks} chunks, {Bytes} bytes freed")]
    public static partial void BackupDeleted(this ILogger logger, Guid backupId, int chunks, long bytes);

    [LoggerMessage(2005, LogLevel.Warning, "Device {DeviceId} could not be released; the VolumeAgent removes stale temporaries at start")]
    public static partial void DeviceReleaseFailed(this ILogger logger, string deviceId, Exception exception);

    [LoggerMessage(2006, LogLevel.Warning, "Heartbeat could not be sent")]
    public static partial void HeartbeatFailed(this ILogger logger, Exception exception);

    [LoggerMessage(2007, LogLevel.Warning, "Backup {BackupId} cancelled: it was force-deleted")]
    public static partial void BackupCancelled(this ILogger logger, Guid backupId);

    [LoggerMessage(2009, LogLevel.Warning, "Backup {BackupId}: its device could not be kept as the volume's base; the next incremental reads the whole device")]
    public static partial void BaseNotKept(this ILogger logger, Guid backupId, Exception exception);

    [LoggerMessage(2010, LogLevel.Warning, "Backup {BackupId} deleted, but its changed-block-tracking base could not be dropped; the next backup of the volume replaces it")]
    public static partial void BaseNotDropped(this ILogger logger, Guid backupId, Exception exception);

    [LoggerMessage(2011, LogLevel.Information, "Backup {BackupId} verified: {Chunks} chunks, {Bytes} stored bytes read back and checked")]
    public static partial void BackupVerified(this ILogger logger, Guid backupId, int chunks, long bytes);

    [LoggerMessage(2008, LogLevel.Information, "Backup {BackupId} is already on the share (a redelivered command): reported from its manifest")]
    public static partial void BackupAlreadyWritten(this ILogger logger, Guid backupId);

    [LoggerMessage(2030, LogLevel.Information, "Restore {RestoreId} of backup {BackupId} into volume {VolumeId}: device {DeviceId} ready on host {VolumeHost}, written {Access}")]
    public static partial void RestoreDeviceReady(this ILogger logger, Guid restoreId, Guid backupId, Guid volumeId, string deviceId, string volumeHost, string access);

    [LoggerMessage(2031, LogLevel.Warning, "The zone's command queues could not be declared (is the broker up?); trying again in {Delay}")]
    public static partial void CommandQueuesNotDeclared(this ILogger logger, TimeSpan delay, Exception exception);

    [LoggerMessage(2032, LogLevel.Information, "The command queues of host {Host} are not declared yet (the Api declares them at its start); reading the zone's only, looking again in {Delay}")]
    public static partial void HostQueuesMissing(this ILogger logger, string host, TimeSpan delay);

    [LoggerMessage(2033, LogLevel.Information, "Reading the command queues of host {Host} as well as the zone's")]
    public static partial void HostQueuesConnected(this ILogger logger, string host);
}
