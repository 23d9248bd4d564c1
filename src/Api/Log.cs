namespace VolumeBackup.Api;

internal static partial class Log
{
    [LoggerMessage(4001, LogLevel.Debug, "Outbox relayed {Count} messages")]
    public static partial void OutboxRelayed(this ILogger logger, int count);

    [LoggerMessage(4002, LogLevel.Warning, "Outbox relay failed; retrying")]
    public static partial void OutboxRelayFailed(this ILogger logger, Exception exception);

    [LoggerMessage(4003, LogLevel.Warning, "Untaken backups watchdog failed; retrying at the next tick")]
    public static partial void WatchdogFailed(this ILogger logger, Exception exception);

    [LoggerMessage(4004, LogLevel.Warning, "Backup {BackupId} was not taken by any agent of zone {Zone}, which has none alive: it is given up")]
    public static partial void BackupNotTaken(this ILogger logger, Guid backupId, string zone);

    [LoggerMessage(4005, LogLevel.Warning, "Recording the state of storage host {Host} failed")]
    public static partial void VolumeHostCheckFailed(this ILogger logger, string host, Exception exception);

    [LoggerMessage(4006, LogLevel.Information, "Backup {BackupId}: {Event} changes nothing in state {State}")]
    public static partial void BackupEventIgnored(this ILogger logger, Guid backupId, string @event, string state);

    [LoggerMessage(4007, LogLevel.Error, "Outbox row {MessageId} ({MessageType}) cannot be sent and is parked: {Reason}")]
    public static partial void OutboxRowParked(this ILogger logger, Guid messageId, string messageType, string reason);

    [LoggerMessage(4009, LogLevel.Warning, "Periodic verify job failed; retrying at the next tick")]
    public static partial void VerifyScheduleFailed(this ILogger logger, Exception exception);

    [LoggerMessage(4010, LogLevel.Information, "Periodic verify job: {Count} backups due, verifies requested")]
    public static partial void VerifiesScheduled(this ILogger logger, int count);

    [LoggerMessage(4008, LogLevel.Warning, "Keystone could not validate a token; answering 503: {Reason}")]
    public static partial void KeystoneUnavailable(this ILogger logger, string reason);

    [LoggerMessage(4030, LogLevel.Warning, "The command queues could not be declared (is the broker up?); trying again in {Delay}")]
    public static partial void CommandTopologyNotDeclared(this ILogger logger, TimeSpan delay, Exception exception);

    [LoggerMessage(4031, LogLevel.Warning, "Volume {VolumeId}: no valid backend was found (no storage host of availability zone {Zone} answers with room for {SizeGb} GiB); the volume is in error")]
    public static partial void NoValidBackend(this ILogger logger, Guid volumeId, string zone, int sizeGb);
}
