using System.ComponentModel.DataAnnotations;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Messaging;

namespace VolumeBackup.Api.Backups;

public sealed class VerifyOptions
{
    public const string Section = "Verify";

    /// <summary>Each available backup is verified again once its last verify was asked this long ago (its creation, if
    /// never); zero turns the periodic job off (the default: a verify reads every chunk of every backup, which costs the
    /// share as much as restoring them all).</summary>
    [Range(typeof(TimeSpan), "00:00:00", "3650.00:00:00")] public TimeSpan Every { get; init; } = TimeSpan.Zero;

    /// <summary>How often the job looks for backups due.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "1.00:00:00")] public TimeSpan CheckInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>The most backups one look hands out, so a first run over a large cloud spreads over many looks.</summary>
    [Range(1, 10_000)] public int Batch { get; init; } = 10;
}

/// <summary>
/// The periodic verify job (PBS's verify jobs, with "re-verify after"): every <see cref="VerifyOptions.CheckInterval"/>
/// it asks the saga to verify the available backups whose last verify is older than <see cref="VerifyOptions.Every"/>,
/// oldest first. The rows are picked FOR UPDATE SKIP LOCKED and stamped in the transaction that writes the requests, so
/// several Api replicas never hand out the same backup twice.
/// </summary>
public sealed class VerifySchedule(
    IServiceScopeFactory scopes, IOptions<VerifyOptions> options, OutboxSignal outbox, TimeProvider clock, ILogger<VerifySchedule> logger) : BackgroundService
{
    readonly VerifyOptions settings = options.Value;
    long passes;

    /// <summary>Looks the job has finished (with or without a backup due).</summary>
    public long Passes => Interlocked.Read(ref passes);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (settings.Every == TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(settings.CheckInterval, clock);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await RequestDueAsync(stoppingToken);
                Interlocked.Increment(ref passes);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.VerifyScheduleFailed(e);     // the database is away or a row changed under us: the next tick tries again
            }
        }
    }

    async Task RequestDueAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<AppDbContext>();
        var now = clock.GetUtcNow();
        var due = now - settings.Every;
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var backups = await db.Backups
            .FromSql($"""
                SELECT *, xmin FROM backups
                WHERE state = 'Available' AND COALESCE(verify_requested_at, created_at) < {due}
                ORDER BY COALESCE(verify_requested_at, created_at) LIMIT {settings.Batch}
                FOR UPDATE SKIP LOCKED
                """)
            .ToListAsync(ct);
        foreach (var backup in backups)
            BackupsApi.RequestVerify(db, backup, now);
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        if (backups.Count == 0) return;
        outbox.Notify();
        logger.VerifiesScheduled(backups.Count);
    }
}
