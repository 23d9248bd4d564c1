namespace VolumeBackup.Api.Backups;

/// <summary>Cinder's backup statuses, as they travel on the wire.</summary>
public static class BackupStatus
{
    public const string Creating = "creating";
    public const string Available = "available";
    public const string Restoring = "restoring";
    public const string Deleting = "deleting";
    public const string Error = "error";
    public const string ErrorDeleting = "error_deleting";
}

public sealed class Backup
{
    public Guid Id { get; init; }
    public required string ProjectId { get; init; }
    public required string UserId { get; init; }
    public Guid VolumeId { get; init; }
    public Guid? SnapshotId { get; init; }
    public string? Name { get; set; }
    public string? Description { get; set; }
    public required string Container { get; init; }
    public string Status { get; set; } = BackupStatus.Creating;
    public string? FailReason { get; set; }
    public int Size { get; set; }                                // GiB of the source volume, as Cinder reports
    public int ObjectCount { get; set; }
    public long StoredBytes { get; set; }
    public Guid? ParentId { get; init; }
    public int NumDependentBackups { get; set; }
    public required string AvailabilityZone { get; init; }
    public string? Host { get; set; }
    public DateTimeOffset DataTimestamp { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? UpdatedAt { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = [];
    /// <summary>The volume a running restore writes into.</summary>
    public Guid? RestoreVolumeId { get; set; }

    public bool IsIncremental => ParentId is not null;
    public bool HasDependentBackups => NumDependentBackups > 0;

    public void Fail(string reason, DateTimeOffset now)
    {
        Status = BackupStatus.Error;
        FailReason = reason.Length > 255 ? reason[..255] : reason;
        UpdatedAt = now;
    }
}
