using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Volumes;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>The verify routes (ours, admin only), in-process over real PostgreSQL and RabbitMQ.</summary>
public sealed class VerifyApiTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public async Task A_verify_of_a_backup_not_available_is_refused_and_changes_nothing()
    {
        await Seed.BackupAgentAsync(api);
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, "verify-refused");
        await using (var db = api.NewDbContext())
        {
            (await db.Backups.SingleAsync(b => b.Id == backup.Id)).State = nameof(BackupSaga.Error);
            await db.SaveChangesAsync();
        }
        using var admin = api.ClientFor("verify-refused", "admin");
        await using var before = api.NewDbContext();
        var outbox = (await before.Outbox.Select(m => m.Body).ToListAsync()).Count(b => b.Contains(backup.Id.ToString()));   // other tests write to the outbox meanwhile

        var response = await admin.PostAsJsonAsync($"/v3/verify-refused/backups/{backup.Id}/action", new Dictionary<string, object?> { ["os-verify"] = null });

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("Invalid backup: Backup status must be available but is error.",
            (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["message"]);
        await using var after = api.NewDbContext();
        Assert.Equal(outbox, (await after.Outbox.Select(m => m.Body).ToListAsync()).Count(b => b.Contains(backup.Id.ToString())));
        Assert.Null((await after.Backups.SingleAsync(b => b.Id == backup.Id)).VerifyRequestedAt);
    }

    [Fact]
    public async Task A_container_verify_asks_for_every_available_backup_of_that_container_and_project_only()
    {
        await Seed.BackupAgentAsync(api);
        var (_, first) = await Seed.VolumeWithBackupAsync(api, "verify-all");
        var (_, second) = await Seed.VolumeWithBackupAsync(api, "verify-all");
        var (_, other) = await Seed.VolumeWithBackupAsync(api, "verify-other");         // same container "c", another project
        using var admin = api.ClientFor("verify-all", "admin");

        var response = await admin.PostAsJsonAsync("/v3/verify-all/backups/verify", new { verify = new { container = "c" } });

        Assert.Equal(202, (int)response.StatusCode);
        var listed = (await response.Content.ReadFromJsonAsync<JsonObject>())!["verify"]!["backups"]!.AsArray().Select(id => (string?)id).Order().ToArray();
        Assert.Equal(new[] { first.Id.ToString(), second.Id.ToString() }.Order().ToArray(), listed);
        await using var db = api.NewDbContext();
        var requests = await db.Outbox.Where(m => m.MessageType == nameof(BackupVerifyRequested)).Select(m => m.Body).ToListAsync();
        Assert.Contains(requests, body => body.Contains(first.Id.ToString(), StringComparison.Ordinal));
        Assert.Contains(requests, body => body.Contains(second.Id.ToString(), StringComparison.Ordinal));
        Assert.DoesNotContain(requests, body => body.Contains(other.Id.ToString(), StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_bad_container_name_is_refused()
    {
        using var admin = api.ClientFor("verify-bad", "admin");

        var response = await admin.PostAsJsonAsync("/v3/verify-bad/backups/verify", new { verify = new { container = "../etc" } });

        Assert.Equal(400, (int)response.StatusCode);
        Assert.StartsWith("Invalid container", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["message"]);
    }
}

/// <summary>An Api whose periodic verify job runs every 200 ms and re-verifies backups after an hour.</summary>
public sealed class VerifyScheduleFactory : ApiFactory
{
    protected override void Configure(IWebHostBuilder builder)
    {
        builder.UseSetting("Verify:Every", "01:00:00");
        builder.UseSetting("Verify:CheckInterval", "00:00:00.200");
        builder.UseSetting("Verify:Batch", "1");
    }
}

public sealed class VerifyScheduleTests(VerifyScheduleFactory api) : IClassFixture<VerifyScheduleFactory>
{
    [Fact]
    public async Task The_periodic_job_asks_once_for_each_available_backup_whose_last_verify_is_due_oldest_first()
    {
        await api.StartedAsync();
        var now = DateTimeOffset.UtcNow;
        Backup Row(string state, DateTimeOffset createdAt, DateTimeOffset? verifiedAt = null) => new()
        {
            Id = Guid.NewGuid(), ProjectId = "sched", UserId = "u", VolumeId = Guid.NewGuid(), Container = "c", AvailabilityZone = "nova",
            State = state, CreatedAt = createdAt, DataTimestamp = createdAt, VerifyRequestedAt = verifiedAt,
        };
        var oldest = Row(nameof(BackupSaga.Available), now.AddDays(-3));
        var due = Row(nameof(BackupSaga.Available), now.AddDays(-3), verifiedAt: now.AddHours(-2));
        var fresh = Row(nameof(BackupSaga.Available), now.AddDays(-3), verifiedAt: now.AddMinutes(-5));
        var young = Row(nameof(BackupSaga.Available), now.AddMinutes(-5));
        var failed = Row(nameof(BackupSaga.Error), now.AddDays(-3));
        await using (var db = api.NewDbContext())
        {
            db.AddRange(oldest, due, fresh, young, failed);
            await db.SaveChangesAsync();
        }

        await api.WaitUntilAsync(async db => await db.Backups.CountAsync(b => b.ProjectId == "sched" && b.VerifyRequestedAt > now) == 2,
            "the two due backups asked for");
        var job = api.Services.GetServices<IHostedService>().OfType<VerifySchedule>().Single();
        var from = job.Passes;
        await Eventually.UntilAsync(() => job.Passes >= from + 3, TimeSpan.FromSeconds(30), "three more looks of the job, with nothing else due");

        await using var after = api.NewDbContext();
        var stamped = await after.Backups.Where(b => b.ProjectId == "sched" && b.VerifyRequestedAt > now).OrderBy(b => b.VerifyRequestedAt).Select(b => b.Id).ToListAsync();
        Assert.Equal([oldest.Id, due.Id], stamped);               // one per look (Batch 1), the one never verified first
        var requests = await after.Outbox.Where(m => m.MessageType == nameof(BackupVerifyRequested)).Select(m => m.Body).ToListAsync();
        Assert.Equal(1, requests.Count(body => body.Contains(oldest.Id.ToString(), StringComparison.Ordinal)));
        Assert.Equal(1, requests.Count(body => body.Contains(due.Id.ToString(), StringComparison.Ordinal)));
        Assert.All(new[] { fresh, young, failed }, b => Assert.DoesNotContain(requests, body => body.Contains(b.Id.ToString(), StringComparison.Ordinal)));
    }
}
