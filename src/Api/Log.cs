namespace VolumeBackup.Api;

internal static partial class Log
{
    [LoggerMessage(4001, LogLevel.Debug, "Outbox relayed {Count} messages")]
    public static partial void OutboxRelayed(this ILogger logger, int count);

    [LoggerMessage(4002, LogLevel.Warning, "Outbox relay failed; retrying")]
    public static partial void OutboxRelayFailed(this ILogger logger, Exception exception);
}
