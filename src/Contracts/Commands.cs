namespace VolumeBackup.Contracts;

/// <summary>Back up a volume (or one of its snapshots) into a container of the repository.</summary>
/// <param name="ParentId">The backup an incremental builds on, by the id its data is found under on the share (its manifest's); null for a full backup.</param>
/// <param name="InUse">The volume is attached: the agent must back up a temporary clone.</param>
/// <param name="VolumeHost">The storage host whose VolumeAgent owns the volume; an agent elsewhere reads it through that VolumeAgent.</param>
public record CreateBackup(
    Guid BackupId, Guid VolumeId, Guid? SnapshotId, string Container, Guid? ParentId,
    bool InUse, long SizeBytes, string ProjectId, string AvailabilityZone, string VolumeHost = "");

/// <summary>Restore a backup into an existing volume (created for it or chosen by the user).</summary>
/// <param name="VolumeHost">The storage host whose VolumeAgent owns the target volume.</param>
/// <param name="ManifestId">The manifest that holds the backup's data when it is not the backup's own (an import under another id).</param>
public record RestoreBackup(Guid BackupId, Guid RestoreId, Guid VolumeId, string Container, string AvailabilityZone, string VolumeHost = "", Guid? ManifestId = null);

/// <summary>Remove a backup's manifest and the chunks no other backup references.</summary>
public record DeleteBackup(Guid BackupId, string Container, string AvailabilityZone, Guid? ManifestId = null);

/// <summary>Stop a running backup at once (an admin force-deleted it); every agent hears it, the one running it stops.</summary>
public record CancelBackup(Guid BackupId);

/// <summary>Read and check every chunk of a backup (decode and SHA-256), as Proxmox Backup Server's verify jobs do.</summary>
public record VerifyBackup(Guid BackupId, string Container, string AvailabilityZone, Guid? ManifestId = null);
