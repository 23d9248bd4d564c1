using System.Text.Json.Serialization;
using VolumeBackup.Api.Cinder;

namespace VolumeBackup.Api.Volumes;

public sealed record CreateVolumeBody(CreateVolumeRequest? Volume);
public sealed record CreateVolumeRequest(int? Size, string? Name, string? Description, string? AvailabilityZone, string? SnapshotId, Dictionary<string, string>? Metadata);

public sealed record CreateSnapshotBody(CreateSnapshotRequest? Snapshot);
public sealed record CreateSnapshotRequest(string? VolumeId, string? Name, string? Description, bool? Force, Dictionary<string, string>? Metadata);

public sealed record AttachmentView(string Id, string AttachmentId, string VolumeId, string? ServerId, string? HostName, string? Device, string? AttachedAt);

public sealed record VolumeView(
    string Id, string Status, int Size, string AvailabilityZone, string CreatedAt, string? UpdatedAt,
    string? Name, string? Description, string? VolumeType, string? SnapshotId, string? SourceVolid,
    Dictionary<string, string> Metadata, IReadOnlyList<Link> Links, string UserId, string Bootable, bool Encrypted,
    bool Multiattach, IReadOnlyList<AttachmentView> Attachments, string? ReplicationStatus, string? ConsistencygroupId,
    [property: JsonPropertyName("os-vol-tenant-attr:tenant_id")] string TenantId,
    [property: JsonPropertyName("os-vol-host-attr:host")] string? Host)
{
    public static VolumeView From(Volume v, string baseUrl) => new(
        v.Id.ToString(), v.Status, v.Size, v.AvailabilityZone, Wire.Time(v.CreatedAt), Wire.Time(v.UpdatedAt),
        v.Name, v.Description, "__DEFAULT__", v.SnapshotId?.ToString(), null, v.Metadata,
        Wire.Links(baseUrl, v.ProjectId, "volumes", v.Id), v.UserId, "false", false, false,
        v.AttachmentId is { } a
            ? [new AttachmentView(a.ToString(), a.ToString(), v.Id.ToString(), v.AttachedInstance?.ToString(), null, v.Mountpoint, Wire.Time(v.UpdatedAt))]
            : [],
        null, null, v.ProjectId, $"{v.Host}#{v.AvailabilityZone}");
}

public sealed record VolumeSummary(string Id, string? Name, IReadOnlyList<Link> Links)
{
    public static VolumeSummary From(Volume v, string baseUrl) => new(v.Id.ToString(), v.Name, Wire.Links(baseUrl, v.ProjectId, "volumes", v.Id));
}

public sealed record SnapshotView(
    string Id, string Status, int Size, string CreatedAt, string? UpdatedAt, string? Name, string? Description,
    string VolumeId, Dictionary<string, string> Metadata,
    [property: JsonPropertyName("os-extended-snapshot-attributes:project_id")] string ProjectId,
    [property: JsonPropertyName("os-extended-snapshot-attributes:progress")] string Progress)
{
    public static SnapshotView From(Snapshot s) => new(
        s.Id.ToString(), s.Status, s.Size, Wire.Time(s.CreatedAt), Wire.Time(s.UpdatedAt), s.Name, s.Description,
        s.VolumeId.ToString(), s.Metadata, s.ProjectId, s.Status == "available" ? "100%" : "0%");
}
