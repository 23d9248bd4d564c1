using System.ComponentModel.DataAnnotations;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Services;

/// <summary>An agent as Cinder lists services: one row per binary and host, kept fresh by heartbeats.</summary>
public sealed class AgentService
{
    public const string Backup = AgentHeartbeat.BackupBinary;
    public const string Volume = "cinder-volume";

    public int Id { get; init; }
    public required string Binary { get; init; }
    public required string Host { get; init; }
    public string Zone { get; set; } = "nova";
    public bool Disabled { get; set; }
    public string? DisabledReason { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset LastHeartbeat { get; set; }

    public bool IsUp(DateTimeOffset now, TimeSpan downTime) => now - LastHeartbeat < downTime;
}

public sealed class ServiceOptions
{
    public const string Section = "Services";

    /// <summary>Cinder's service_down_time: an agent (or a VolumeAgent's host) silent this long is down.</summary>
    [Range(typeof(TimeSpan), "00:00:05", "1.00:00:00")] public TimeSpan DownTime { get; init; } = TimeSpan.FromSeconds(60);
}
