using System.Diagnostics;
using System.Text.Json;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Messaging;

/// <summary>
/// Publishes unsent outbox rows. Replicas share the table: rows are claimed with FOR UPDATE SKIP LOCKED and
/// marked sent in the same transaction after the broker confirmed them, so a crash republishes (at least once,
/// with MessageId = row id, which consumers use to stay idempotent) and never loses a row.
/// </summary>
public sealed class OutboxRelay(IServiceScopeFactory scopes, OutboxSignal signal, TimeProvider clock, ILogger<OutboxRelay> logger) : BackgroundService
{
    const int BatchSize = 100;
    static readonly ActivitySource Source = new(ServiceDefaultsExtensions.TelemetryName);

    static readonly TimeSpan KeepSent = TimeSpan.FromDays(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var nextCleanup = clock.GetUtcNow();
        while (!stoppingToken.IsCancellationRequested)
        {
            int sent;
            try
            {
                sent = await RelayBatchAsync(stoppingToken);
                if (clock.GetUtcNow() >= nextCleanup)
                {
                    await DeleteOldSentAsync(stoppingToken);             // sent rows are kept a day, for operators to inspect
                    nextCleanup = clock.GetUtcNow().AddHours(1);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.OutboxRelayFailed(e);        // broker or database down: retry after a pause
                sent = 0;
                await Task.Delay(TimeSpan.FromSeconds(2), clock, stoppingToken);
            }
            if (sent < BatchSize)
                await signal.WaitAsync(TimeSpan.FromSeconds(1), stoppingToken);
        }
    }

    async Task DeleteOldSentAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<AppDbContext>();
        var before = clock.GetUtcNow() - KeepSent;
        await db.Outbox.Where(m => m.SentAt != null && m.SentAt < before).ExecuteDeleteAsync(ct);
    }

    async Task<int> RelayBatchAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<AppDbContext>();
        var bus = scope.ServiceProvider.GetRequiredService<IBus>();
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var rows = await db.Outbox
            .FromSql($"SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY created_at LIMIT {BatchSize} FOR UPDATE SKIP LOCKED")
            .ToListAsync(ct);
        foreach (var row in rows)
        {
            using var activity = Source.StartActivity("outbox relay", ActivityKind.Producer, row.TraceParent);
            activity?.SetTag("messaging.message.id", row.Id);
            var type = OutboxMessage.KnownTypes[row.MessageType];
            var message = JsonSerializer.Deserialize(row.Body, type)!;
            if (row.Destination is null)
                await bus.Publish(message, type, c => c.MessageId = row.Id, ct);
            else
                await (await bus.GetSendEndpoint(new Uri(row.Destination))).Send(message, type, c => c.MessageId = row.Id, ct);
            row.SentAt = clock.GetUtcNow();
            row.Attempts++;
        }
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        if (rows.Count > 0) logger.OutboxRelayed(rows.Count);
        return rows.Count;
    }
}

/// <summary>Wakes the relay as soon as a request commits a row, instead of waiting for the next poll.</summary>
public sealed class OutboxSignal
{
    readonly SemaphoreSlim semaphore = new(0);

    public void Notify()
    {
        if (semaphore.CurrentCount == 0) semaphore.Release();
    }

    public async Task WaitAsync(TimeSpan timeout, CancellationToken ct) => await semaphore.WaitAsync(timeout, ct);
}
