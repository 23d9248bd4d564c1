using Microsoft.AspNetCore.Hosting;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using MassTransit;
using MassTransit.Events;
using MassTransit.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>The saga on its PostgreSQL repository, fed over real RabbitMQ.</summary>
public sealed class BackupSagaTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public async Task Duplicate_completions_delivered_at_once_count_the_parent_once()
    {
        var (volume, parent, child) = await SeedIncrementalAsync();
        var bus = api.Services.GetRequiredService<IBus>();
        var completed = new BackupCompleted(child.Id, 1 << 30, 3, 100, 300, DateTimeOffset.UtcNow);

        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => bus.Publish(completed)));

        await api.WaitUntilAsync(async db => (await db.Backups.FindAsync(child.Id))!.Status == BackupStatus.Available);
        await Task.Delay(1500);                                   // let every duplicate be consumed
        await using var check = api.NewDbContext();
        Assert.Equal(1, (await check.Backups.SingleAsync(b => b.Id == parent.Id)).NumDependentBackups);
        Assert.Equal(3, (await check.Backups.SingleAsync(b => b.Id == child.Id)).ObjectCount);
        Assert.Equal(VolumeStatus.Available, (await check.Volumes.SingleAsync(v => v.Id == volume.Id)).Status);
        Assert.Equal("Available", (await check.BackupSagas.SingleAsync(s => s.CorrelationId == child.Id)).CurrentState);
    }

    [Fact]
    public async Task A_fault_from_the_agent_fails_the_backup_and_restores_the_volume_status()
    {
        var (volume, _, child) = await SeedIncrementalAsync(volumeStatusBefore: VolumeStatus.InUse);
        var bus = api.Services.GetRequiredService<IBus>();

        var command = new CreateBackup(child.Id, volume.Id, null, "c", null, true, 1 << 30, "p", "nova");
        await bus.Publish<Fault<CreateBackup>>(new FaultEvent<CreateBackup>(
            command, Guid.NewGuid(), HostMetadataCache.Host, new IOException("NFS server unreachable"), [MessageUrn.ForTypeString<CreateBackup>()]));

        await api.WaitUntilAsync(async db => (await db.Backups.FindAsync(child.Id))!.Status == BackupStatus.Error);
        await using var check = api.NewDbContext();
        Assert.Contains("NFS server unreachable", (await check.Backups.SingleAsync(b => b.Id == child.Id)).FailReason);
        Assert.Equal(VolumeStatus.InUse, (await check.Volumes.SingleAsync(v => v.Id == volume.Id)).Status);

        await bus.Publish(new BackupCompleted(child.Id, 1, 1, 1, 1, DateTimeOffset.UtcNow));   // late: ignored
        await Task.Delay(1000);
        await using var late = api.NewDbContext();
        Assert.Equal(BackupStatus.Error, (await late.Backups.SingleAsync(b => b.Id == child.Id)).Status);
    }

    // A volume with an available parent backup and a child being created; backingUp: false leaves the volume as it was.
    async Task<(Volume, Backup, Backup)> SeedIncrementalAsync(string volumeStatusBefore = VolumeStatus.Available, bool backingUp = true)
    {
        await api.StartedAsync();                                  // migrations applied, bus bound
        await using var db = api.NewDbContext();
        var now = DateTimeOffset.UtcNow;
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a",
            Status = volumeStatusBefore, CreatedAt = now,
        };
        if (backingUp) volume.StartBackup(now);
        var parent = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", VolumeId = volume.Id, Container = "c", AvailabilityZone = "nova",
            Status = BackupStatus.Available, CreatedAt = now.AddHours(-1), DataTimestamp = now.AddHours(-1),
        };
        var child = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", VolumeId = volume.Id, Container = "c", AvailabilityZone = "nova",
            ParentId = parent.Id, CreatedAt = now, DataTimestamp = now,
        };
        db.AddRange(volume, parent, child, BackupSagaState.Creating(child.Id, volume.Id, null, parent.Id));
        await db.SaveChangesAsync();
        return (volume, parent, child);
    }

    [Fact]
    public async Task With_no_live_backup_agent_a_backup_is_refused_and_nothing_changes()
    {
        var (volume, _, _) = await SeedIncrementalAsync(backingUp: false);
        using var client = api.ClientFor("p");
        await using var before = api.NewDbContext();
        var backups = await before.Backups.CountAsync();

        var response = await client.PostAsJsonAsync("/v3/p/backups", new { backup = new { volume_id = volume.Id } });

        Assert.Equal(500, (int)response.StatusCode);
        Assert.Equal("Service cinder-backup could not be found.", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["computeFault"]!["message"]);
        await using var after = api.NewDbContext();
        Assert.Equal(backups, await after.Backups.CountAsync());
        Assert.Equal(VolumeStatus.Available, (await after.Volumes.SingleAsync(v => v.Id == volume.Id)).Status);
    }

    [Fact]
    public async Task A_backup_asked_in_another_availability_zone_is_refused()
    {
        var (volume, _, _) = await SeedIncrementalAsync(backingUp: false);
        using var client = api.ClientFor("p");

        var response = await client.PostAsJsonAsync("/v3/p/backups", new { backup = new { volume_id = volume.Id, availability_zone = "elsewhere" } });

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Contains("its backups are made there, not in 'elsewhere'", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["message"]);
    }

    [Fact]
    public async Task With_no_live_backup_agent_a_restore_or_delete_is_refused_and_nothing_changes()
    {
        var (volume, parent, _) = await SeedIncrementalAsync();
        using var client = api.ClientFor("p");
        await using var before = api.NewDbContext();
        var (volumes, outbox) = (await before.Volumes.CountAsync(), await before.Outbox.CountAsync());

        var restore = await client.PostAsJsonAsync($"/v3/p/backups/{parent.Id}/restore", new { restore = new { } });
        var delete = await client.DeleteAsync($"/v3/p/backups/{parent.Id}");

        foreach (var response in new[] { restore, delete })
        {
            Assert.Equal(500, (int)response.StatusCode);
            Assert.Equal("Service cinder-backup could not be found.", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["computeFault"]!["message"]);
        }
        await using var after = api.NewDbContext();
        Assert.Equal(BackupStatus.Available, (await after.Backups.SingleAsync(b => b.Id == parent.Id)).Status);
        Assert.Equal((volumes, outbox), (await after.Volumes.CountAsync(), await after.Outbox.CountAsync()));
        Assert.Equal(VolumeStatus.BackingUp, (await after.Volumes.SingleAsync(v => v.Id == volume.Id)).Status);
    }

    [Fact]
    public void The_Api_does_not_start_without_an_auth_mode_chosen()
    {
        using var unconfigured = new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("ConnectionStrings:Postgres", "Host=127.0.0.1;Database=none");
            b.UseSetting("ConnectionStrings:RabbitMq", "amqp://guest:guest@127.0.0.1:5672/");
            b.UseSetting("Storage:Hosts:0:Name", "host-a");
            b.UseSetting("Storage:Hosts:0:Address", "http://127.0.0.1:9");
        });

        var error = Assert.ThrowsAny<Exception>(() => unconfigured.Server);
        Assert.Contains("Mode", error.ToString());
    }
}
