using VolumeBackup.Api.Auth;
using VolumeBackup.Api.Cinder;

namespace VolumeBackup.Api.Volumes;

/// <summary>Volumes and snapshots as a caller may see them: another project's row (or a malformed id) reads as absent, Cinder's 404.</summary>
public static class VolumeQueries
{
    public static async Task<Volume?> FindVolumeAsync(this AppDbContext db, Caller caller, string id, CancellationToken ct) =>
        Wire.TryParseId(id, out var vid) && await db.Volumes.FindAsync([vid], ct) is { } v && caller.CanSee(v.ProjectId) ? v : null;

    public static async Task<Snapshot?> FindSnapshotAsync(this AppDbContext db, Caller caller, string id, CancellationToken ct) =>
        Wire.TryParseId(id, out var sid) && await db.Snapshots.FindAsync([sid], ct) is { } s && caller.CanSee(s.ProjectId) ? s : null;
}
