namespace VolumeBackup.Api.Volumes;

/// <summary>Cinder's volume statuses, as they travel on the wire.</summary>
public static class VolumeStatus
{
    public const string Creating = "creating";
    public const string Available = "available";
    public const string Reserved = "reserved";
    public const string Attaching = "attaching";
    public const string InUse = "in-use";
    public const string BackingUp = "backing-up";
    public const string RestoringBackup = "restoring-backup";
    public const string ErrorRestoring = "error_restoring";
    public const string Deleting = "deleting";
    public const string ErrorDeleting = "error_deleting";
    public const string Error = "error";
}

public sealed class Volume
{
    public Guid Id { get; init; }
    public required string ProjectId { get; init; }
    public required string UserId { get; init; }
    public string? Name { get; set; }
    public string? Description { get; set; }
    public int Size { get; set; }                               // GiB, as Cinder counts
    public string Status { get; set; } = VolumeStatus.Creating;
    /// <summary>The status to return to after a backup (available or in-use).</summary>
    public string? PreviousStatus { get; set; }
    public required string AvailabilityZone { get; init; }
    /// <summary>The storage host it lives on; empty while it is being placed, and for one no host had room for (status error).</summary>
    public required string Host { get; set; }
    public Guid? SnapshotId { get; init; }
    public Guid? AttachmentId { get; set; }
    public Guid? AttachedInstance { get; set; }
    public string? Mountpoint { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = [];
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? UpdatedAt { get; set; }

    public long SizeBytes => (long)Size << 30;

    /// <summary>Marks the volume busy with a backup, remembering where to return.</summary>
    public void StartBackup(DateTimeOffset now)
    {
        PreviousStatus = Status;
        Status = VolumeStatus.BackingUp;
        UpdatedAt = now;
    }

    /// <summary>Attaches an available volume (os-attach, or an attachment); callers check the status first.</summary>
    public void Attach(Guid? instance, string? mountpoint, DateTimeOffset now)
    {
        Status = VolumeStatus.InUse;
        AttachmentId = Guid.NewGuid();
        AttachedInstance = instance;
        Mountpoint = mountpoint;
        UpdatedAt = now;
    }

    /// <summary>Reserves an available volume for an attachment (3.27): in-use only once the attachment completes.</summary>
    public void Reserve(Guid? instance, DateTimeOffset now)
    {
        Attach(instance, null, now);
        Status = VolumeStatus.Reserved;
    }

    /// <summary>The attach finished on the host (os-complete): a reserved volume becomes in-use; again is a no-op.</summary>
    public void CompleteAttach(DateTimeOffset now)
    {
        if (Status != VolumeStatus.Reserved) return;
        Status = VolumeStatus.InUse;
        UpdatedAt = now;
    }

    public void Detach(DateTimeOffset now)
    {
        Status = VolumeStatus.Available;
        AttachmentId = null;
        AttachedInstance = null;
        Mountpoint = null;
        UpdatedAt = now;
    }

    /// <summary>Returns a backing-up volume to its previous status; a no-op otherwise, so events may repeat.</summary>
    public void EndBackup(DateTimeOffset now)
    {
        if (Status != VolumeStatus.BackingUp) return;
        Status = PreviousStatus ?? VolumeStatus.Available;
        PreviousStatus = null;
        UpdatedAt = now;
    }
}

public sealed class Snapshot
{
    public Guid Id { get; init; }
    public required string ProjectId { get; init; }
    public required string UserId { get; init; }
    public Guid VolumeId { get; init; }
    public string? Name { get; set; }
    public string? Description { get; set; }
    public int Size { get; init; }
    public string Status { get; set; } = "creating";
    public Dictionary<string, string> Metadata { get; set; } = [];
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? UpdatedAt { get; set; }
}
