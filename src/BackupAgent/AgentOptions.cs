using System.ComponentModel.DataAnnotations;

namespace VolumeBackup.BackupAgent;

public sealed class AgentOptions
{
    public const string Section = "Agent";

    /// <summary>The storage host this agent serves; shown in backup rows and service lists.</summary>
    [Required] public string Host { get; init; } = Environment.MachineName;

    /// <summary>The availability zone whose backups this agent takes.</summary>
    [Required] public string Zone { get; init; } = "nova";

    /// <summary>The VolumeAgent beside this agent (same host: devices are local paths), at an https:// address: it speaks mutual TLS only.</summary>
    [Required, Url, RegularExpression("^https://.+", ErrorMessage = "Agent:VolumeAgentAddress must be an https:// address: a VolumeAgent speaks mutual TLS only")]
    public string VolumeAgentAddress { get; init; } = "";

    /// <summary>The pool of that VolumeAgent (its Volumes:PoolPath): the only place whose files this agent reads or writes as devices.</summary>
    [Required] public string PoolPath { get; init; } = "";

    /// <summary>Backups and restores at once per agent: each already runs on all cores, so more mostly adds memory.</summary>
    [Range(1, 16)] public int ConcurrentJobs { get; init; } = 2;

    /// <summary>Pauses between retries of a failed job (an NFS server restarting) before it is reported failed.</summary>
    public int[] RetryIntervalsMs { get; init; } = [1_000, 5_000, 30_000];

    /// <summary>
    /// Longest wait for a device from the VolumeAgent. Long, since on a pool that cannot reflink the device is a copy of
    /// the whole volume; the VolumeAgent stops the copy when the deadline passes.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")] public TimeSpan DeviceCallTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Longest wait for a device release or commit: a delete or a rename.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")] public TimeSpan ReleaseCallTimeout { get; init; } = TimeSpan.FromMinutes(1);

    [Range(1, 60)] public int HeartbeatSeconds { get; init; } = 10;

    /// <summary>Bytes between progress events.</summary>
    [Range(1 << 20, long.MaxValue)] public long ProgressEveryBytes { get; init; } = 256L << 20;
}
