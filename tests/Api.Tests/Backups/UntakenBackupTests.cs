using System.Net.Http.Json;
using System.Text.Json.Nodes;
using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using VolumeBackup.TestSupport;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Services;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>An Api that gives up an untaken backup after two seconds instead of ten minutes.</summary>
public sealed class ImpatientApiFactory : ApiFactory
{
    protected override void Configure(IWebHostBuilder builder)
    {
        builder.UseSetting("Backups:UntakenAfter", "00:00:02");
        builder.UseSetting("Backups:WatchdogInterval", "00:00:00.500");
    }
}

/// <summary>The zone's last agent goes away after a backup was accepted: the backup must not stay creating for ever.</summary>
public sealed class UntakenBackupTests(ImpatientApiFactory api) : IClassFixture<ImpatientApiFactory>
{
    [Fact]
    public async Task A_backup_no_agent_takes_is_failed_and_an_agent_taking_it_late_is_told_to_cancel()
    {
        var (project, volumeId, backupId) = await BackupWithOneLiveAgentAsync();

        await using (var db = api.NewDbContext())                 // the agent dies before it takes the command
        {
            (await db.Services.SingleAsync(s => s.Host == project)).LastHeartbeat = DateTimeOffset.UtcNow.AddMinutes(-5);
            await db.SaveChangesAsync();
        }

        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).Status == BackupStatus.Error, $"untaken backup {backupId} to be failed");
        await using (var db = api.NewDbContext())
        {
            Assert.Contains("No cinder-backup service in availability zone 'nova' took the backup", (await db.Backups.SingleAsync(b => b.Id == backupId)).FailReason);
            Assert.Equal(VolumeStatus.Available, (await db.Volumes.SingleAsync(v => v.Id == volumeId)).Status);
        }

        // An agent comes back, finds the command still queued and starts on it: it is told to cancel.
        var cancels = new TaskCompletionSource<CancelBackup>(TaskCreationOptions.RunContinuationsAsynchronously);
        var bus = api.Services.GetRequiredService<IBus>();
        var endpoint = bus.ConnectReceiveEndpoint($"test-cancels-{Guid.NewGuid():N}", e =>
        {
            e.Handler<CancelBackup>(c => { if (c.Message.BackupId == backupId) cancels.TrySetResult(c.Message); return Task.CompletedTask; });
        });
        await endpoint.Ready;
        await bus.Publish(new BackupStarted(backupId, volumeId, true, "host-late", DateTimeOffset.UtcNow));

        await cancels.Task.WaitAsync(TimeSpan.FromSeconds(30));   // only a cancel of this backup completes it
        await using (var db = api.NewDbContext())                 // the cancel was written with the saga's step: it is done
            Assert.Equal(BackupStatus.Error, (await db.Backups.SingleAsync(b => b.Id == backupId)).Status);
        await endpoint.StopAsync();
    }

    [Fact]
    public async Task A_backup_waiting_while_an_agent_of_its_zone_is_alive_is_left_to_wait()
    {
        var (project, volumeId, backupId) = await BackupWithOneLiveAgentAsync();

        // The agent's heartbeat is fresh for a minute; the backup is made overdue at once (accepted a minute ago), and the
        // watchdog must look at least twice after that.
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).State == nameof(BackupSaga.Creating), "the backup creating");
        await using (var db = api.NewDbContext())
            await db.Backups.Where(b => b.Id == backupId).ExecuteUpdateAsync(u => u.SetProperty(b => b.CreatedAt, DateTimeOffset.UtcNow.AddMinutes(-1)));
        var watchdog = api.Services.GetServices<IHostedService>().OfType<UntakenBackupsWatchdog>().Single();
        var overdueFrom = watchdog.Passes;
        await Eventually.UntilAsync(() => watchdog.Passes >= overdueFrom + 2, TimeSpan.FromSeconds(30), "two watchdog passes over the overdue backup");

        await using var check = api.NewDbContext();
        Assert.Equal(BackupStatus.Creating, (await check.Backups.SingleAsync(b => b.Id == backupId)).Status);
        Assert.Equal(VolumeStatus.BackingUp, (await check.Volumes.SingleAsync(v => v.Id == volumeId)).Status);
    }

    // A project of its own, an available volume in zone nova, one live agent there (named after the project), and a backup accepted.
    async Task<(string Project, Guid VolumeId, Guid BackupId)> BackupWithOneLiveAgentAsync()
    {
        await api.StartedAsync();
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var now = DateTimeOffset.UtcNow;
        await using var db = api.NewDbContext();
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a",
            Status = VolumeStatus.Available, CreatedAt = now,
        };
        db.AddRange(volume, new AgentService { Binary = AgentService.Backup, Host = project, Zone = "nova", CreatedAt = now, LastHeartbeat = now });
        await db.SaveChangesAsync();

        using var client = api.ClientFor(project);
        var created = await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id } });
        Assert.Equal(202, (int)created.StatusCode);
        return (project, volume.Id, Guid.Parse((string)(await created.Content.ReadFromJsonAsync<JsonObject>())!["backup"]!["id"]!));
    }
}
