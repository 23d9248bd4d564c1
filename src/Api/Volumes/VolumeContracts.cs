using System.Text.Json.Serialization;
using VolumeBackup.Api.Cinder;

namespace VolumeBackup.Api.Volumes;

public sealed record CreateVolumeBody(CreateVolumeRequest? Volume);
public sealed record CreateVolumeRequest(
    int? Size, string? Name, string? Description, string? AvailabilityZone, string? SnapshotId, Dictionary<string, string>? Metadata,
    string? VolumeType, string? SourceVolid);

public sealed record CreateSnapshotBody(CreateSnapshotRequest? Snapshot);
public sealed record CreateSnapshotRequest(string? VolumeId, string? Name, string? Description, bool? Force, Dictionary<string, string>? Metadata);

public sealed record AttachmentView(string Id, string AttachmentId, string VolumeId, string? ServerId, string? HostName, string? Device, string? AttachedAt);

public sealed record VolumeView(
    string Id, string Status, int Size, string AvailabilityZone, string CreatedAt, string? UpdatedAt,
    string? Name, string? Description, string? VolumeType, string? SnapshotId, string? SourceVolid,
    Dictionary<string, string> Metadata, IReadOnlyList<Link> Links, string UserId, string Bootable, bool Encrypted,
    bool Multiattach, IReadOnlyList<AttachmentView> Attachments, string? ReplicationStatus, string? ConsistencygroupId,
    [property: JsonPropertyName("os-vol-tenant-attr:tenant_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? TenantId,
    [property: JsonPropertyName("os-vol-host-attr:host"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Host)
{
    /// <summary>
    /// Cinder's detailed view. Show and detail (<paramref name="extended"/>) add the owner's project and, for an admin, the
    /// host as <c>host@backend#pool</c> (Cinder's volume_tenant_attribute and volume_host_attribute extensions); create and
    /// update answer without them, as Cinder does. A storage host has one back end with one pool here.
    /// </summary>
    public static VolumeView From(Volume v, string baseUrl, bool extended = false, bool admin = false) => new(
        v.Id.ToString(), v.Status, v.Size, v.AvailabilityZone, Wire.Time(v.CreatedAt), Wire.Time(v.UpdatedAt),
        v.Name, v.Description, VolumesApi.DefaultVolumeType, v.SnapshotId?.ToString(), null, v.Metadata,
        Wire.Links(baseUrl, v.ProjectId, "volumes", v.Id), v.UserId, "false", false, false,
        v.AttachmentId is { } a
            ? [new AttachmentView(a.ToString(), a.ToString(), v.Id.ToString(), v.AttachedInstance?.ToString(), null, v.Mountpoint, Wire.Time(v.UpdatedAt))]
            : [],
        null, null, extended ? v.ProjectId : null, extended && admin && v.Host.Length > 0 ? $"{v.Host}@{v.Host}#{v.Host}" : null);
}

public sealed record VolumeSummary(string Id, string? Name, IReadOnlyList<Link> Links)
{
    public static VolumeSummary From(Volume v, string baseUrl) => new(v.Id.ToString(), v.Name, Wire.Links(baseUrl, v.ProjectId, "volumes", v.Id));
}

public sealed record SnapshotView(
    string Id, string Status, int Size, string CreatedAt, string? UpdatedAt, string? Name, string? Description,
    string VolumeId, Dictionary<string, string> Metadata,
    [property: JsonPropertyName("os-extended-snapshot-attributes:project_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ProjectId,
    [property: JsonPropertyName("os-extended-snapshot-attributes:progress"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Progress)
{
    /// <summary>Cinder's snapshot view; show and detail (<paramref name="extended"/>) add the extended snapshot attributes.</summary>
    public static SnapshotView From(Snapshot s, bool extended = false) => new(
        s.Id.ToString(), s.Status, s.Size, Wire.Time(s.CreatedAt), Wire.Time(s.UpdatedAt), s.Name, s.Description,
        s.VolumeId.ToString(), s.Metadata, extended ? s.ProjectId : null, extended ? (s.Status == "available" ? "100%" : "0%") : null);

    public static SnapshotView Extended(Snapshot s) => From(s, extended: true);
}
