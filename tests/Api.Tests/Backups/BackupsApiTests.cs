using Microsoft.AspNetCore.Hosting;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Volumes;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>The backup handlers' refusals, in-process over real PostgreSQL and RabbitMQ: nothing changes when they refuse.</summary>
public sealed class BackupsApiTests(ApiFactory api) : IClassFixture<ApiFactory>
{
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
            State = nameof(BackupSaga.Available), CreatedAt = now.AddHours(-1), DataTimestamp = now.AddHours(-1),
        };
        var child = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", VolumeId = volume.Id, Container = "c", AvailabilityZone = "nova",
            ParentId = parent.Id, CreatedAt = now, DataTimestamp = now, State = nameof(BackupSaga.Creating),
        };
        db.AddRange(volume, parent, child);
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
        client.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.51");          // availability_zone is in the body from 3.51

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
            b.UseSetting("ConnectionStrings:RabbitMq", "amqp://nobody:nothing@127.0.0.1:5672/");
            b.UseSetting("Storage:Hosts:0:Name", "host-a");
            b.UseSetting("Storage:Hosts:0:Address", "https://127.0.0.1:9");
            foreach (var (key, value) in TestPki.Deployment.Settings(TestPki.Deployment.Api, ":")) b.UseSetting(key, value);
            b.UseSetting("Encryption:MasterKeyFile", TestServices.MasterKeyFile);
        });

        var error = Assert.ThrowsAny<Exception>(() => unconfigured.Server);
        Assert.Contains("Mode", error.ToString());
    }

    [Fact]
    public void The_Api_does_not_start_without_a_master_key()
    {
        using var unconfigured = new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("ConnectionStrings:Postgres", "Host=127.0.0.1;Database=none");
            b.UseSetting("ConnectionStrings:RabbitMq", "amqp://guest:guest@127.0.0.1:5672/");
            b.UseSetting("Auth:Mode", "noauth");
            b.UseSetting("Storage:Hosts:0:Name", "host-a");
            b.UseSetting("Storage:Hosts:0:Address", "http://127.0.0.1:9");
        });

        var error = Assert.ThrowsAny<Exception>(() => unconfigured.Server);
        Assert.Contains("Encryption:MasterKeyFile is required", error.ToString());
    }
}
