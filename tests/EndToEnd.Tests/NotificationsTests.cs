using System.Collections.Concurrent;
using MassTransit;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>Cinder's backup notifications reach any subscriber on the broker.</summary>
[Collection(BackendCollection.Name)]
public sealed class NotificationsTests(Backend backend)
{
    [Fact]
    public async Task A_subscriber_hears_create_restore_and_delete_start_and_end()
    {
        var heard = new ConcurrentQueue<BackupNotification>();
        var subscriber = Bus.Factory.CreateUsingRabbitMq(bus =>
        {
            bus.Host(new Uri(backend.Broker));
            bus.ReceiveEndpoint($"test-notifications-{Guid.NewGuid():N}", e =>
            {
                e.AutoDelete = true;
                e.Handler<BackupNotification>(c => { heard.Enqueue(c.Message); return Task.CompletedTask; });
            });
        });
        await subscriber.StartAsync();
        try
        {
            var volumeId = await backend.CreateVolumeAsync();
            var backupId = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, name = "heard" } }))["backup"]!["id"]!;
            await backend.WaitForAsync($"backups/{backupId}", "backup", "available");
            var restoredId = (string)(await backend.PostAsync($"backups/{backupId}/restore", new { restore = new { } }))["restore"]!["volume_id"]!;
            await backend.WaitForAsync($"volumes/{restoredId}", "volume", "available");
            Assert.Equal(202, (int)(await backend.Http.DeleteAsync($"/v3/{Backend.Project}/backups/{backupId}")).StatusCode);

            string[] expected =
            [
                "backup.create.start", "backup.create.end", "backup.restore.start", "backup.restore.end", "backup.delete.start", "backup.delete.end",
            ];
            await Eventually.UntilAsync(() => Task.FromResult(expected.Where(t => !heard.Any(n => n.EventType == t && n.BackupId == Guid.Parse(backupId))).ToList()),
                missing => missing.Count == 0, TimeSpan.FromSeconds(30), $"every notification of backup {backupId}",
                missing => $"none of {string.Join(", ", missing)}", every: TimeSpan.FromMilliseconds(200));

            var end = heard.First(n => n.EventType == "backup.create.end" && n.BackupId == Guid.Parse(backupId));
            Assert.Equal("available", end.Status);
            Assert.Equal("heard", end.Name);
            Assert.Equal(Backend.Project, end.ProjectId);
            Assert.Equal(Guid.Parse(volumeId), end.VolumeId);
        }
        finally
        {
            await subscriber.StopAsync();
        }
    }
}
