using VolumeBackup.Api.Services;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Tests;

/// <summary>An available volume with an available backup of it, in project "p" unless another is given.</summary>
public static class Seed
{
    public static async Task<(Volume Volume, Backup Backup)> VolumeWithBackupAsync(ApiFactory api, string project = "p")
    {
        await api.StartedAsync();                                  // migrations applied, bus bound
        await using var db = api.NewDbContext();
        var now = DateTimeOffset.UtcNow;
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a",
            Status = VolumeStatus.Available, CreatedAt = now,
        };
        var backup = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", VolumeId = volume.Id, Container = "c", AvailabilityZone = "nova",
            State = nameof(BackupSaga.Available), CreatedAt = now, DataTimestamp = now,
        };
        db.AddRange(volume, backup);
        await db.SaveChangesAsync();
        return (volume, backup);
    }

    /// <summary>A backup agent that is alive in zone nova, so a backup can be created.</summary>
    public static async Task BackupAgentAsync(ApiFactory api)
    {
        await api.StartedAsync();
        await using var db = api.NewDbContext();
        var now = DateTimeOffset.UtcNow;
        db.Add(new AgentService { Binary = AgentService.Backup, Host = $"agent-{Guid.NewGuid():N}"[..20], Zone = "nova", CreatedAt = now, LastHeartbeat = now });
        await db.SaveChangesAsync();
    }

    /// <summary>The rows a refused request must leave as they were.</summary>
    public static async Task<(int Volumes, int Snapshots, int Backups, int Quotas, int Outbox, string VolumeStatus, string BackupStatus)> StateAsync(
        ApiFactory api, Volume volume, Backup backup)
    {
        await using var db = api.NewDbContext();
        return (db.Volumes.Count(), db.Snapshots.Count(), db.Backups.Count(), db.Quotas.Count(), db.Outbox.Count(),
            db.Volumes.Single(v => v.Id == volume.Id).Status, db.Backups.Single(b => b.Id == backup.Id).Status);
    }

    /// <summary>
    /// What a refused request could have changed about the seeded rows: their states, rows made since, quotas, commands about
    /// them. Not global counts: an earlier test's allowed call may still be finishing in the background.
    /// </summary>
    public static async Task<string> ChangesAboutAsync(ApiFactory api, Volume volume, Backup backup)
    {
        await using var db = api.NewDbContext();
        var v = db.Volumes.Single(x => x.Id == volume.Id);
        var b = db.Backups.Single(x => x.Id == backup.Id);
        var (volumeId, backupId) = (volume.Id.ToString(), backup.Id.ToString());
        return string.Join(" ", v.Status, v.AttachmentId, b.Status, b.Name,
            db.Volumes.Count(x => x.CreatedAt > volume.CreatedAt), db.Backups.Count(x => x.CreatedAt > volume.CreatedAt), db.Snapshots.Count(x => x.VolumeId == volume.Id),
            string.Join(",", db.Quotas.OrderBy(q => q.ProjectId).ThenBy(q => q.Resource).Select(q => q.ProjectId + q.Resource + q.HardLimit)),
            db.Outbox.AsEnumerable().Count(m => m.Body.Contains(volumeId) || m.Body.Contains(backupId)));
    }
}
