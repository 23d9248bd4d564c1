using System.Text.Json;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Messaging;

/// <summary>The relay on the real broker: a row that can never be sent is parked, and the rows after it still go out.</summary>
public sealed class OutboxRelayTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public void A_message_type_the_relay_cannot_send_is_refused_when_the_row_is_written()
    {
        var error = Assert.Throws<ArgumentException>(() => OutboxMessage.Create(new Uri("http://not-a-message"), DateTimeOffset.UtcNow));
        Assert.Contains("Uri is not a message type the outbox relay sends", error.Message);
    }

    [Fact]
    public async Task A_command_for_a_zone_with_no_agent_yet_waits_in_a_quorum_queue_the_agents_can_declare()
    {
        await api.StartedAsync();
        var zone = $"zone-{Guid.NewGuid():N}"[..13];
        var command = new CreateBackup(Guid.NewGuid(), Guid.NewGuid(), null, ContainerName.Default, null, false, 1L << 30, "p", zone);
        var row = OutboxMessage.Create(command, DateTimeOffset.UtcNow, Queues.CreateBackup(zone));
        await using (var db = api.NewDbContext())
        {
            db.Outbox.Add(row);
            await db.SaveChangesAsync();
        }
        api.Services.GetRequiredService<OutboxSignal>().Notify();
        await api.WaitUntilAsync(async db => await db.Outbox.AnyAsync(m => m.Id == row.Id && m.SentAt != null), "the command confirmed by the broker");

        // The zone's first agent comes: its endpoint declares the queue as a quorum queue, as ZoneQueueDefinition does. Had the relay
        // declared it classic, this declaration would fail (PRECONDITION_FAILED) and the endpoint never become ready.
        var received = new TaskCompletionSource<CreateBackup>(TaskCreationOptions.RunContinuationsAsynchronously);
        var bus = api.Services.GetRequiredService<IBus>();
        var endpoint = bus.ConnectReceiveEndpoint(Queues.CreateBackup(zone), e =>
        {
            ((IRabbitMqReceiveEndpointConfigurator)e).SetQuorumQueue();
            e.Handler<CreateBackup>(c => { received.TrySetResult(c.Message); return Task.CompletedTask; });
        });
        await endpoint.Ready.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(command.BackupId, (await received.Task.WaitAsync(TimeSpan.FromSeconds(30))).BackupId);
        await endpoint.StopAsync();
    }

    [Fact]
    public async Task Unreadable_rows_are_parked_with_their_reason_and_the_rows_after_them_are_sent()
    {
        await api.StartedAsync();
        var backupId = Guid.NewGuid();
        var received = new TaskCompletionSource<BackupNotification>(TaskCreationOptions.RunContinuationsAsynchronously);
        var bus = api.Services.GetRequiredService<IBus>();
        var endpoint = bus.ConnectReceiveEndpoint($"test-relay-{Guid.NewGuid():N}", e =>
            e.Handler<BackupNotification>(c => { if (c.Message.BackupId == backupId) received.TrySetResult(c.Message); return Task.CompletedTask; }));
        await endpoint.Ready;

        var now = DateTimeOffset.UtcNow;
        var unknownType = new OutboxMessage { Id = Guid.NewGuid(), MessageType = "DropAllTables", Body = "{}", CreatedAt = now.AddSeconds(-3) };
        var badBody = new OutboxMessage { Id = Guid.NewGuid(), MessageType = nameof(BackupNotification), Body = "{\"EventType\": 42}", CreatedAt = now.AddSeconds(-2) };
        var good = OutboxMessage.Create(new BackupNotification("backup.create.start", backupId, "p", "u", Guid.NewGuid(), "creating", 1, "nova",
            null, null, null, null, null, now, now), now.AddSeconds(-1));
        await using (var db = api.NewDbContext())
        {
            db.Outbox.AddRange(unknownType, badBody, good);           // written by hand: Create would refuse the first
            await db.SaveChangesAsync();
        }
        api.Services.GetRequiredService<OutboxSignal>().Notify();

        Assert.Equal("backup.create.start", (await received.Task.WaitAsync(TimeSpan.FromSeconds(30))).EventType);
        // The relay marks the batch sent after the broker confirmed it: the message may arrive before that commits.
        await api.WaitUntilAsync(async db => await db.Outbox.AnyAsync(m => m.Id == good.Id && m.SentAt != null), "the good row marked sent");
        await using var check = api.NewDbContext();
        var rows = await check.Outbox.AsNoTracking().Where(m => m.Id == unknownType.Id || m.Id == badBody.Id || m.Id == good.Id).ToDictionaryAsync(m => m.Id);
        Assert.NotNull(rows[good.Id].SentAt);
        foreach (var (parked, reason) in new[] { (rows[unknownType.Id], "unknown message type DropAllTables"), (rows[badBody.Id], "does not read as BackupNotification") })
        {
            Assert.NotNull(parked.ParkedAt);
            Assert.Null(parked.SentAt);
            Assert.Equal(1, parked.Attempts);
            Assert.Contains(reason, parked.LastError);
        }
        await endpoint.StopAsync();
    }
}
