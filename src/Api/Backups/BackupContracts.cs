using System.Text.Json.Serialization;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Backups;

public sealed record CreateBackupBody(CreateBackupRequest? Backup);
public sealed record CreateBackupRequest(
    string? VolumeId, string? Container, string? Name, string? Description, bool? Incremental, bool? Force,
    string? SnapshotId, Dictionary<string, string>? Metadata, string? AvailabilityZone);

public sealed record RestoreBody(RestoreRequest? Restore);
public sealed record RestoreRequest(string? VolumeId, string? Name);
public sealed record RestoreView(string BackupId, string VolumeId, string? VolumeName);

public sealed record BackupSummary(string Id, string? Name, IReadOnlyList<Link> Links)
{
    public static BackupSummary From(Backup b, string baseUrl) => new(b.Id.ToString(), b.Name, Wire.Links(baseUrl, b.ProjectId, "backups", b.Id));
}

public sealed record BackupView(
    string Id, string Status, int Size, int ObjectCount, string AvailabilityZone, string Container, string CreatedAt, string? UpdatedAt,
    string? Name, string? Description, string? FailReason, string VolumeId, IReadOnlyList<Link> Links, bool IsIncremental,
    bool HasDependentBackups, string? SnapshotId, string DataTimestamp, Dictionary<string, string> Metadata, string UserId,
    [property: JsonPropertyName("os-backup-project-attr:project_id")] string ProjectId)
{
    public static BackupView From(Backup b, string baseUrl) => new(
        b.Id.ToString(), b.Status, b.Size, b.ObjectCount, b.AvailabilityZone, b.Container, Wire.Time(b.CreatedAt), Wire.Time(b.UpdatedAt),
        b.Name, b.Description, b.FailReason, b.VolumeId.ToString(), Wire.Links(baseUrl, b.ProjectId, "backups", b.Id), b.IsIncremental,
        b.HasDependentBackups, b.SnapshotId?.ToString(), Wire.Time(b.DataTimestamp), b.Metadata, b.UserId, b.ProjectId);
}
