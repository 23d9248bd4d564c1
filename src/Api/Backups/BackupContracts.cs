using System.Text.Json.Serialization;
using VolumeBackup.Api.Cinder;
using VolumeBackup.Api.Versions;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Backups;

public sealed record CreateBackupBody(CreateBackupRequest? Backup);
public sealed record CreateBackupRequest(
    string? VolumeId, string? Container, string? Name, string? Description, bool? Incremental, bool? Force,
    string? SnapshotId, Dictionary<string, string>? Metadata, string? AvailabilityZone);

public sealed record RestoreBody(RestoreRequest? Restore);
public sealed record RestoreRequest(string? VolumeId, string? Name);
public sealed record RestoreView(string BackupId, string VolumeId, string? VolumeName);

public sealed record VerifyContainerBody(VerifyContainerRequest? Verify);
public sealed record VerifyContainerRequest(string? Container);
public sealed record VerifyView(string Container, IReadOnlyList<string> Backups);

public sealed record BackupSummary(string Id, string? Name, IReadOnlyList<Link> Links)
{
    public static BackupSummary From(Backup b, string baseUrl) => new(b.Id.ToString(), b.Name, Wire.Links(baseUrl, b.ProjectId, "backups", b.Id));
}

/// <summary>Cinder's detailed backup view; which attributes appear depends on the request's microversion.</summary>
public static class BackupView
{
    public static Dictionary<string, object?> From(Backup b, string baseUrl, Microversion version)
    {
        var view = new Dictionary<string, object?>
        {
            ["id"] = b.Id.ToString(),
            ["status"] = b.Status,
            ["size"] = b.Size,
            ["object_count"] = b.ObjectCount,
            ["availability_zone"] = b.AvailabilityZone,
            ["container"] = b.Container,
            ["created_at"] = Wire.Time(b.CreatedAt),
            ["updated_at"] = Wire.Time(b.UpdatedAt),
            ["name"] = b.Name,
            ["description"] = b.Description,
            ["fail_reason"] = b.FailReason,
            ["volume_id"] = b.VolumeId.ToString(),
            ["links"] = Wire.Links(baseUrl, b.ProjectId, "backups", b.Id),
            ["is_incremental"] = b.IsIncremental,
            ["has_dependent_backups"] = b.HasDependentBackups,
            ["snapshot_id"] = b.SnapshotId?.ToString(),
            ["data_timestamp"] = Wire.Time(b.DataTimestamp),
        };
        if (version >= Microversion.BackupProject) view["os-backup-project-attr:project_id"] = b.ProjectId;
        if (version >= Microversion.BackupMetadata) view["metadata"] = b.Metadata;
        if (version >= Microversion.BackupProjectUserId) view["user_id"] = b.UserId;
        return view;
    }
}

public sealed record UpdateBackupBody(UpdateBackupRequest? Backup);
public sealed record UpdateBackupRequest(string? Name, string? Description, Dictionary<string, string>? Metadata);
