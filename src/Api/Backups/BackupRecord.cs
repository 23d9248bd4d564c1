using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace VolumeBackup.Api.Backups;

public sealed record ImportRecordBody([property: JsonPropertyName("backup-record")] ImportRecord? BackupRecord);
public sealed record ImportRecord(string? BackupService, string? BackupUrl);

/// <summary>
/// What export_record hands out: the backup's row, base64-encoded JSON as Cinder does. With it, any deployment that
/// reaches the same share can import the backup and restore it (the data and manifest are on the share).
/// </summary>
public sealed record BackupRecord(
    Guid Id, Guid VolumeId, Guid? SnapshotId, string Container, int Size, int ObjectCount, long StoredBytes, Guid? ParentId,
    string AvailabilityZone, string? Name, string? Description, DateTimeOffset DataTimestamp, DateTimeOffset CreatedAt,
    Dictionary<string, string> Metadata)
{
    // Cinder names the backup driver's module here; clients and Tempest expect that prefix.
    public const string Service = "cinder.backup.drivers.volumebackup";
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static Dictionary<string, string> Export(Backup b)
    {
        var record = new BackupRecord(b.Id, b.VolumeId, b.SnapshotId, b.Container, b.Size, b.ObjectCount, b.StoredBytes, b.ParentId,
            b.AvailabilityZone, b.Name, b.Description, b.DataTimestamp, b.CreatedAt, b.Metadata);
        return new()
        {
            ["backup_service"] = Service,
            ["backup_url"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(record, Json))),
        };
    }

    public static BackupRecord? Decode(string url)
    {
        try { return JsonSerializer.Deserialize<BackupRecord>(Convert.FromBase64String(url), Json); }
        catch (Exception e) when (e is FormatException or JsonException) { return null; }
    }

    /// <summary>An imported backup's row, made available by the saga; an incremental's parent need not exist here (its manifest is complete).</summary>
    public Backup ToBackup(string projectId, string userId, DateTimeOffset now) => new()
    {
        Id = Id, ProjectId = projectId, UserId = userId, VolumeId = VolumeId, SnapshotId = SnapshotId, Container = Container, Size = Size,
        ObjectCount = ObjectCount, StoredBytes = StoredBytes, ParentId = ParentId, AvailabilityZone = AvailabilityZone, Name = Name,
        Description = Description, DataTimestamp = DataTimestamp, CreatedAt = CreatedAt, UpdatedAt = now, Metadata = Metadata ?? [],
    };
}
