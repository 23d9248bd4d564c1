using System.ComponentModel.DataAnnotations;

namespace VolumeBackup.VolumeAgent;

public sealed class VolumeOptions
{
    public const string Section = "Volumes";

    /// <summary>The folder holding this host's volume files; reflink-capable (XFS reflink=1, btrfs) for instant snapshots.</summary>
    [Required] public string PoolPath { get; init; } = "";

    /// <summary>The availability zone of this storage host: only the BackupAgents of this zone (and the Api) may call.</summary>
    [Required] public string Zone { get; init; } = "nova";

    /// <summary>When the pool cannot reflink, copy instead (slow, and not crash-consistent for an attached volume).</summary>
    public bool AllowCopyFallback { get; init; } = true;

    /// <summary>
    /// Bound on the space the changed-block-tracking bases of this host hold on their own (blocks their volumes have
    /// overwritten since): past it the oldest bases are dropped, and those volumes' next incrementals read the whole
    /// device. Zero keeps no bases at all.
    /// </summary>
    [Range(0, long.MaxValue)] public long MaxBaseBytes { get; init; } = 64L << 30;

    /// <summary>
    /// The pool's size as reported to the Api for placement, instead of its filesystem's: several pools sharing one
    /// filesystem, space kept for other uses, or thin pools over-subscribed on purpose. Zero reports the filesystem's size.
    /// </summary>
    [Range(0, long.MaxValue)] public long CapacityBytes { get; init; }
}
