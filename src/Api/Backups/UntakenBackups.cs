using System.ComponentModel.DataAnnotations;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Services;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

public sealed class BackupOptions
{
    public const string Section = "Backups";

    /// <summary>How long a backup may wait for an agent while its zone has none alive before it is failed.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")] public TimeSpan UntakenAfter { get; init; } = TimeSpan.FromMinutes(10);

    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")] public TimeSpan WatchdogInterval { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// A backup accepted just before the last agent of its zone went away would stay <c>creating</c>, and its volume
/// <c>backing-up</c>, until an agent came back. Once it has waited <see cref="BackupOptions.UntakenAfter"/> with no
/// live agent in the zone, the saga fails it and frees the volume; an agent that takes it later is told to cancel.
/// A backup queued behind others while agents are alive is left to wait: it will be taken.
/// </summary>
public sealed class UntakenBackupsWatchdog(
    IServiceScopeFactory scopes, IOptions<BackupOptions> options, IOptions<ServiceOptions> services, TimeProvider clock, ILogger<UntakenBackupsWatchdog> logger)
    : BackgroundService
{
    readonly BackupOptions settings = options.Value;
    long passes;

    /// <summary>Checks completed since start, so a test can tell the watchdog looked (and left a backup alone), not just waited.</summary>
    public long Passes => Interlocked.Read(ref passes);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(settings.WatchdogInterval, clock);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await GiveUpUntakenAsync(stoppingToken);
                Interlocked.Increment(ref passes);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.WatchdogFailed(e);           // the database is away: the next tick tries again
            }
        }
    }

    async Task GiveUpUntakenAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<AppDbContext>();
        var now = clock.GetUtcNow();
        var before = now - settings.UntakenAfter;
        var untaken = await db.Backups
            .Where(b => b.State == nameof(BackupSaga.Creating) && b.StartedAt == null && b.CreatedAt < before)
            .Select(b => new { b.Id, b.AvailabilityZone }).ToListAsync(ct);
        foreach (var zone in untaken.GroupBy(b => b.AvailabilityZone))
        {
            if (await ServicesApi.BackupServiceUpAsync(db, zone.Key, now, services.Value.DownTime, ct)) continue;
            var reason = $"No cinder-backup service in availability zone '{zone.Key}' took the backup within {settings.UntakenAfter}.";
            foreach (var backup in zone)
            {
                logger.BackupNotTaken(backup.Id, zone.Key);
                db.Outbox.Add(OutboxMessage.Create(new BackupNotTaken(backup.Id, reason), now));
            }
        }
        await db.SaveChangesAsync(ct);
    }
}
