using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Backups;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Messaging;

/// <summary>
/// Publishes unsent outbox rows. Replicas share the table: rows are claimed with FOR UPDATE SKIP LOCKED and
/// marked sent in the same transaction after the broker confirmed them, so a crash republishes (at least once,
/// with MessageId = row id, which consumers use to stay idempotent) and never loses a row.
/// </summary>
public sealed class OutboxRelay(IServiceScopeFactory scopes, OutboxSignal signal, OsloPublisher oslo, CommandQueues commandQueues, TimeProvider clock,
    ILogger<OutboxRelay> logger) : BackgroundService
{
    const int BatchSize = 100;
    static readonly ActivitySource Source = new(ServiceDefaultsExtensions.TelemetryName);

    static readonly TimeSpan KeepSent = TimeSpan.FromDays(1);
    // A send whose confirm never comes (seen when the broker node holding the channel was killed mid-send) held up every
    // row behind it for good. After this it counts as a broker error and is tried again: consumers are idempotent by
    // MessageId, so a message the broker did take meanwhile costs a duplicate, never a loss.
    static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(15);
    static readonly TimeSpan ObserveEvery = TimeSpan.FromSeconds(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var nextCleanup = clock.GetUtcNow();
        var nextObservation = clock.GetUtcNow();
        while (!stoppingToken.IsCancellationRequested)
        {
            int sent;
            try
            {
                sent = await RelayBatchAsync(stoppingToken);
                if (clock.GetUtcNow() >= nextObservation)
                {
                    await ObserveBacklogAsync(stoppingToken);                // the metrics' gauges read this, never the database
                    nextObservation = clock.GetUtcNow() + ObserveEvery;
                }
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

    async Task ObserveBacklogAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<AppDbContext>();
        var unsent = db.Outbox.Where(m => m.SentAt == null && m.ParkedAt == null);
        var count = await unsent.LongCountAsync(ct);
        var oldest = await unsent.MinAsync(m => (DateTimeOffset?)m.CreatedAt, ct);
        var parked = await db.Outbox.LongCountAsync(m => m.ParkedAt != null, ct);
        var queued = await db.Backups.Where(b => (b.State == "Initial" || b.State == nameof(BackupSaga.Creating)) && b.StartedAt == null)
            .GroupBy(b => b.AvailabilityZone).Select(g => new { Zone = g.Key, Count = g.LongCount() }).ToDictionaryAsync(g => g.Zone, g => g.Count, ct);
        Metrics.Observe(new Backlog(count, parked, oldest is { } at ? Math.Max(0, (clock.GetUtcNow() - at).TotalSeconds) : 0, queued));
    }

    /// <summary>
    /// Sends a batch; a row that can never be sent is parked and the rows after it go on; a broker error ends the batch, and an
    /// error of the oslo notifications' exchange holds back only those notifications.
    /// </summary>
    async Task<int> RelayBatchAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<AppDbContext>();
        var bus = scope.ServiceProvider.GetRequiredService<IBus>();
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var rows = await db.Outbox
            .FromSql($"SELECT * FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL ORDER BY created_at LIMIT {BatchSize} FOR UPDATE SKIP LOCKED")
            .ToListAsync(ct);
        Exception? brokerError = null, osloError = null;
        foreach (var row in rows)
        {
            if (osloError is not null && row.MessageType == nameof(OsloNotification))
                continue;                                       // oslo's notifications keep their order: the rest wait too
            using var activity = Source.StartActivity("outbox relay", ActivityKind.Producer, row.TraceParent);
            activity?.SetTag("messaging.message.id", row.Id);
            row.Attempts++;
            if (Read(row) is not ({ } type, { } message))
                continue;
            try
            {
                await SendAsync(bus, row, type, message, ct).WaitAsync(SendTimeout, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException && message is OsloNotification)
            {
                row.LastError = e.Message;                      // the notification exchange alone refuses (a conflicting declare): commands still go
                osloError = e;
                continue;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                row.LastError = e.Message;                      // the broker is away: this row and those after it wait for the next try
                brokerError = e;
                commandQueues.Forget();
                break;
            }
            row.SentAt = clock.GetUtcNow();
        }
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        if ((brokerError ?? osloError) is { } error) throw new InvalidOperationException("The broker refused an outbox row", error);   // then a pause
        if (rows.Count > 0) logger.OutboxRelayed(rows.Count);
        return rows.Count;
    }

    async Task SendAsync(IBus bus, OutboxMessage row, Type type, object message, CancellationToken ct)
    {
        if (message is OsloNotification notification)
            await oslo.PublishAsync(notification, row.Id, ct);
        else if (row.Destination is null)
            await bus.Publish(message, type, c => c.MessageId = row.Id, ct);
        else
            await (await bus.GetSendEndpoint(await commandQueues.AddressAsync(row.Destination, ct))).Send(message, type, c =>
            {
                c.MessageId = row.Id;
                // Unroutable (its queue deleted): returned and tried again, never dropped.
                if (!c.TryGetPayload<RabbitMqSendContext>(out var rabbit)) return;
                rabbit.Mandatory = true;
                // On a host queue: expires into the zone's queue unless one of the host's agents takes it first.
                if (commandQueues.ExpirationOf(row.Destination) is { } spill)
                    rabbit.BasicProperties.Expiration = ((long)spill.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
            }, ct);
    }

    /// <summary>The row's message, or null after parking a row that no retry could send (an unknown type, a body that does not read).</summary>
    (Type?, object?) Read(OutboxMessage row)
    {
        string reason;
        if (!OutboxMessage.KnownTypes.TryGetValue(row.MessageType, out var type))
            reason = $"unknown message type {row.MessageType}";
        else
        {
            try { return (type, JsonSerializer.Deserialize(row.Body, type) ?? throw new JsonException("the body is null")); }
            catch (JsonException e) { reason = $"the body does not read as {row.MessageType}: {e.Message}"; }
        }
        row.ParkedAt = clock.GetUtcNow();
        row.LastError = reason;
        logger.OutboxRowParked(row.Id, row.MessageType, reason);
        return (null, null);
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
