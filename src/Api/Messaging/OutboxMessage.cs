using System.Diagnostics;
using System.Text.Json;
using VolumeBackup.Api.Backups;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Messaging;

/// <summary>A message written in the same transaction as the rows it is about; the relay publishes it.</summary>
public sealed class OutboxMessage
{
    public Guid Id { get; init; }
    public required string MessageType { get; init; }
    public required string Body { get; init; }
    /// <summary>A queue to send to (a zone's command queue); null to publish.</summary>
    public string? Destination { get; init; }
    /// <summary>W3C traceparent of the request that wrote it, so the trace runs on through the broker.</summary>
    public string? TraceParent { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? SentAt { get; set; }
    public int Attempts { get; set; }
    public string? LastError { get; set; }
    /// <summary>Set when the row can never be sent (its body or type cannot be read): the relay passes it by, an operator looks.</summary>
    public DateTimeOffset? ParkedAt { get; set; }

    /// <summary>A command sent to a send address (exchange:... or queue:...), not just a queue's name.</summary>
    public static OutboxMessage Send<T>(T message, DateTimeOffset now, string address) where T : class
    {
        var row = Create(message, now);
        return new()
        {
            Id = row.Id, MessageType = row.MessageType, Destination = address, Body = row.Body, TraceParent = row.TraceParent, CreatedAt = row.CreatedAt,
        };
    }

    /// <summary>Refuses, when the row is written, a message type the relay could not send.</summary>
    public static OutboxMessage Create<T>(T message, DateTimeOffset now, string? queue = null) where T : class => !KnownTypes.ContainsKey(typeof(T).Name)
        ? throw new ArgumentException($"{typeof(T).Name} is not a message type the outbox relay sends; add it to {nameof(OutboxMessage)}.{nameof(KnownTypes)}.")
        : new()
    {
        Id = Guid.NewGuid(),
        MessageType = typeof(T).Name,
        Destination = queue is null ? null : $"queue:{queue}",
        Body = JsonSerializer.Serialize(message),
        TraceParent = Activity.Current?.Id,
        CreatedAt = now,
    };

    /// <summary>Only contract types can be named by a row: a fixed list, never a type name looked up at run time.</summary>
    public static readonly IReadOnlyDictionary<string, Type> KnownTypes = new[]
    {
        typeof(CreateBackup), typeof(RestoreBackup), typeof(DeleteBackup), typeof(CancelBackup), typeof(BackupNotification), typeof(BackupNotTaken),
        typeof(BackupCreateRequested), typeof(BackupImportRequested), typeof(BackupRestoreRequested), typeof(BackupDeleteRequested),
        typeof(BackupForceDeleteRequested), typeof(BackupResetRequested), typeof(OsloNotification), typeof(VerifyBackup), typeof(BackupVerifyRequested),
        typeof(BackupDeleted),      // the saga's own, for a row whose manifest another row still uses
    }.ToDictionary(t => t.Name);
}
