using System.ComponentModel.DataAnnotations;

namespace VolumeBackup.BackupAgent;

public sealed class AgentOptions
{
    public const string Section = "Agent";

    /// <summary>The storage host this agent runs on: its VolumeAgent's volumes are read in place, and their commands come to it first.</summary>
    [Required] public string Host { get; init; } = Environment.MachineName;

    /// <summary>This agent's name in service lists and backup rows (several agents may share a host); the host's name by default.</summary>
    public string? Name { get; init; }

    /// <summary>The name heartbeats and events carry.</summary>
    public string ServiceName => string.IsNullOrEmpty(Name) ? Host : Name;

    /// <summary>
    /// The VolumeAgents of the zone's other hosts, by host name (Agent:VolumeAgents:host-b=https://...): volumes there
    /// are read and restored through them. Only these are ever called, whatever a command names.
    /// </summary>
    public Dictionary<string, string> VolumeAgents { get; init; } = [];

    /// <summary>ReadDevice streams a remote backup reads at once (chunk i on stream i mod N), as a local one reads with several workers.</summary>
    [Range(1, 16)] public int RemoteStreams { get; init; } = 4;

    /// <summary>Longest whole remote read or write of a device (ReadDevice, WriteDevice).</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")] public TimeSpan RemoteStreamTimeout { get; init; } = TimeSpan.FromHours(6);

    /// <summary>Longest wait for the next message of a remote read: a VolumeAgent that hangs fails the job instead of holding it.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")] public TimeSpan RemoteStallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The availability zone whose backups this agent takes.</summary>
    [Required] public string Zone { get; init; } = "nova";

    /// <summary>The VolumeAgent beside this agent (same host: its devices are local paths), at an https:// address: it speaks mutual TLS only.</summary>
    [Required, Url, RegularExpression("^https://.+", ErrorMessage = "Agent:VolumeAgentAddress must be an https:// address: a VolumeAgent speaks mutual TLS only")]
    public string VolumeAgentAddress { get; init; } = "";

    /// <summary>The pool of that VolumeAgent (its Volumes:PoolPath): the only place whose files this agent reads or writes as devices.</summary>
    [Required] public string PoolPath { get; init; } = "";

    /// <summary>
    /// Jobs at once per queue the agent reads (each also prefetches no more): backups and restores come from its host's
    /// queues and its zone's, so an agent may run twice this many of them. Each already runs on all cores, so more mostly adds memory.
    /// </summary>
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
