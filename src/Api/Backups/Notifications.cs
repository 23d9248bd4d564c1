using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

/// <summary>
/// Builds Cinder's backup notifications as outbox rows, so each one commits with the change it reports: our own
/// <see cref="BackupNotification"/> (MassTransit's envelope) and the same event in oslo.messaging's format, which
/// OpenStack's consumers (Ceilometer, a notification listener) read.
/// </summary>
public static class Notifications
{
    public static OutboxMessage[] Backup(Backup b, string eventType, DateTimeOffset now, NotificationOptions options,
        long? bytesDone = null, string? failReason = null, Guid? restoreVolumeId = null, BackupCompleted? completed = null)
    {
        failReason ??= b.FailReason;
        restoreVolumeId ??= b.RestoreVolumeId;
        return
        [
            OutboxMessage.Create(new BackupNotification(
                eventType, b.Id, b.ProjectId, b.UserId, b.VolumeId, b.Status, b.Size, b.AvailabilityZone, b.Host, b.Name, failReason,
                restoreVolumeId, bytesDone, b.CreatedAt, now, completed?.Cbt, completed?.BytesRead), now),
            OutboxMessage.Create(Oslo(b, eventType, now, options.Host, bytesDone, failReason, restoreVolumeId, completed), now),
        ];
    }

    /// <summary>Cinder's payload (volume_utils._usage_from_backup) plus the extras Cinder adds for progress, and ours for restores.</summary>
    static OsloNotification Oslo(Backup b, string eventType, DateTimeOffset now, string apiHost, long? bytesDone, string? failReason, Guid? restoreVolumeId,
        BackupCompleted? completed)
    {
        var host = b.Host ?? apiHost;
        var payload = new JsonObject
        {
            ["tenant_id"] = b.ProjectId,
            ["user_id"] = b.UserId,
            ["availability_zone"] = b.AvailabilityZone,
            ["backup_id"] = b.Id.ToString(),
            ["host"] = b.Host,
            ["display_name"] = b.Name,
            ["created_at"] = PythonTime(b.CreatedAt, isoformat: true),
            ["status"] = b.Status,
            ["volume_id"] = b.VolumeId.ToString(),
            ["size"] = b.Size,
            ["service_metadata"] = b.Container,
            ["service"] = "volumebackup",
            ["fail_reason"] = failReason,
            ["parent_id"] = b.ParentId?.ToString(),
            ["num_dependent_backups"] = b.NumDependentBackups,
            ["snapshot_id"] = b.SnapshotId?.ToString(),
            ["container"] = b.Container,
        };
        if (bytesDone is { } done)
        {
            payload["bytes_done"] = done;
            payload["backup_percent"] = b.Size > 0 ? Math.Min(100.0, done * 100.0 / ((long)b.Size << 30)) : 100.0;
        }
        if (completed is not null)                         // ours: whether changed-block tracking spared the full read, and what was read
        {
            payload["cbt"] = completed.Cbt;
            payload["bytes_read"] = completed.BytesRead;
        }
        if (eventType.StartsWith("backup.restore.", StringComparison.Ordinal) && restoreVolumeId is { } target)
            payload["restore_volume_id"] = target.ToString();
        var error = eventType.EndsWith(".error", StringComparison.Ordinal);
        // _unique_id is what oslo's listener drops duplicates by: fixed here, so a republished row is still one notification.
        var id = Guid.NewGuid();
        return new OsloNotification(id.ToString(), $"backup.{host}", eventType, error ? "ERROR" : "INFO", payload,
            PythonTime(now, isoformat: false), b.ProjectId, b.UserId, id.ToString("N"));
    }

    // Cinder's created_at is datetime.isoformat() of an aware UTC time; oslo's timestamp is str(timeutils.utcnow()), naive.
    static string PythonTime(DateTimeOffset t, bool isoformat) =>
        t.UtcDateTime.ToString(isoformat ? "yyyy-MM-dd'T'HH:mm:ss.ffffff'+00:00'" : "yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
}

/// <summary>
/// One oslo.messaging notification: the message inside the messaging v2 envelope, in oslo's own field names, with the
/// request context packed as oslo's <c>_context_</c> keys and its <c>_unique_id</c>. The relay wraps it and sends it to the <c>Notifications</c> exchange.
/// </summary>
public sealed record OsloNotification(
    [property: JsonPropertyName("message_id")] string MessageId,
    [property: JsonPropertyName("publisher_id")] string PublisherId,
    [property: JsonPropertyName("event_type")] string EventType,
    [property: JsonPropertyName("priority")] string Priority,
    [property: JsonPropertyName("payload")] JsonObject Payload,
    [property: JsonPropertyName("timestamp")] string Timestamp,
    [property: JsonPropertyName("_context_project_id")] string ProjectId,
    [property: JsonPropertyName("_context_user_id")] string UserId,
    [property: JsonPropertyName("_unique_id")] string UniqueId)
{
    /// <summary>oslo's routing key: the topic and the priority, lower case (notifications.info, notifications.error).</summary>
    public string RoutingKey(string topic) => $"{topic}.{Priority.ToLowerInvariant()}";
}

/// <summary>Where oslo.messaging notifications go: Cinder's defaults (control_exchange, notification topic).</summary>
public sealed class NotificationOptions
{
    public const string Section = "Notifications";
    /// <summary>The topic exchange (oslo's control_exchange).</summary>
    [Required] public string Exchange { get; init; } = "openstack";
    /// <summary>oslo's notification topic: messages go with routing key topic.priority.</summary>
    [Required] public string Topic { get; init; } = "notifications";
    /// <summary>Must match the consumers' amqp_durable_queues (false by default), or RabbitMQ refuses the redeclared exchange.</summary>
    public bool Durable { get; init; }
    /// <summary>The X in publisher_id backup.X when no agent took the backup yet (Cinder's CONF.host).</summary>
    [Required] public string Host { get; init; } = Environment.MachineName;
}
