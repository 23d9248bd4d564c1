using System.Text.Json.Nodes;
using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Tests.Messaging;

/// <summary>An Api whose notification exchange the broker refuses to declare (amq. names are reserved).</summary>
public sealed class RefusedNotificationsApiFactory : ApiFactory
{
    protected override void Configure(IWebHostBuilder builder) => builder.UseSetting("Notifications:Exchange", "amq.refused");
}

/// <summary>The oslo notifications' exchange refusing them holds back only them: commands and events still go out.</summary>
public sealed class OsloRelayTests(RefusedNotificationsApiFactory api) : IClassFixture<RefusedNotificationsApiFactory>
{
    [Fact]
    public async Task A_refused_oslo_notification_waits_with_its_error_and_the_rows_after_it_are_sent()
    {
        await api.StartedAsync();
        var backupId = Guid.NewGuid();
        var received = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var bus = api.Services.GetRequiredService<IBus>();
        var endpoint = bus.ConnectReceiveEndpoint($"test-relay-{Guid.NewGuid():N}", e =>
            e.Handler<BackupNotification>(c => { if (c.Message.BackupId == backupId) received.TrySetResult(); return Task.CompletedTask; }));
        await endpoint.Ready;

        var now = DateTimeOffset.UtcNow;
        var oslo = OutboxMessage.Create(new OsloNotification(Guid.NewGuid().ToString(), "backup.h", "backup.create.start", "INFO", new JsonObject(),
            "2026-01-01 00:00:00.000000", "p", "u", Guid.NewGuid().ToString("N")), now.AddSeconds(-2));
        var after = OutboxMessage.Create(new BackupNotification("backup.create.start", backupId, "p", "u", Guid.NewGuid(), "creating", 1, "nova",
            null, null, null, null, null, now, now), now.AddSeconds(-1));
        await using (var db = api.NewDbContext())
        {
            db.Outbox.AddRange(oslo, after);
            await db.SaveChangesAsync();
        }
        api.Services.GetRequiredService<OutboxSignal>().Notify();

        await received.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await api.WaitUntilAsync(async db => await db.Outbox.AnyAsync(m => m.Id == after.Id && m.SentAt != null), "the row after it marked sent");
        await api.WaitUntilAsync(async db => await db.Outbox.AnyAsync(m => m.Id == oslo.Id && m.LastError != null), "the refusal recorded");
        await using var check = api.NewDbContext();
        var waiting = await check.Outbox.AsNoTracking().SingleAsync(m => m.Id == oslo.Id);
        Assert.Null(waiting.SentAt);
        Assert.Null(waiting.ParkedAt);                            // not parked: it goes once the exchange is fixed
        Assert.Contains("amq.refused", waiting.LastError);
        await endpoint.StopAsync();
    }
}
