using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Quotas;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Tests.Limits;

/// <summary>
/// Volume and snapshot quotas (volumes, gigabytes, snapshots, per_volume_gigabytes) enforced as Cinder enforces them, with its
/// 413 messages; quota values bounded as its schema bounds them; usage summed without overflow.
/// </summary>
public sealed class QuotaLimitTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    static string NewProject() => $"q-{Guid.NewGuid():N}"[..12];

    async Task<Volume> VolumeAsync(string project, int size = 1)
    {
        await api.StartedAsync();
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", Size = size, AvailabilityZone = "nova", Host = "host-a",
            Status = VolumeStatus.Available, CreatedAt = DateTimeOffset.UtcNow,
        };
        await using var db = api.NewDbContext();
        db.Add(volume);
        await db.SaveChangesAsync();
        return volume;
    }

    async Task SetQuotaAsync(string project, object set)
    {
        using var admin = api.ClientFor(project, user: "admin");
        var response = await admin.PutAsJsonAsync($"/v3/{project}/os-quota-sets/{project}", new { quota_set = set });
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    async Task<(int Volumes, int Snapshots)> RowsAsync(string project)
    {
        await using var db = api.NewDbContext();
        return (await db.Volumes.CountAsync(v => v.ProjectId == project), await db.Snapshots.CountAsync(s => s.ProjectId == project));
    }

    static async Task AssertOverLimitAsync(HttpResponseMessage response, string message)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(413 == (int)response.StatusCode, text);
        var fault = JsonNode.Parse(text)!["overLimit"]!;
        Assert.Equal(413, (int)fault["code"]!);
        Assert.Equal(message, (string?)fault["message"]);
    }

    [Fact]
    public async Task A_volume_beyond_the_volumes_quota_is_overLimit_and_makes_no_row()
    {
        var project = NewProject();
        await VolumeAsync(project);
        await SetQuotaAsync(project, new { volumes = 1 });
        using var client = api.ClientFor(project);

        var response = await client.PostAsJsonAsync($"/v3/{project}/volumes", new { volume = new { size = 1 } });

        await AssertOverLimitAsync(response, "Maximum number of volumes allowed (1) exceeded for quota 'volumes'.");
        Assert.Equal((1, 0), await RowsAsync(project));
    }

    [Fact]
    public async Task Gigabytes_count_volumes_and_snapshots_and_a_volume_beyond_them_is_overLimit()
    {
        var project = NewProject();
        var volume = await VolumeAsync(project, size: 4);
        await using (var db = api.NewDbContext())
        {
            db.Add(new Snapshot { Id = Guid.NewGuid(), ProjectId = project, UserId = "u", VolumeId = volume.Id, Size = 4, Status = "available", CreatedAt = DateTimeOffset.UtcNow });
            await db.SaveChangesAsync();
        }
        await SetQuotaAsync(project, new { gigabytes = 10 });
        using var client = api.ClientFor(project);

        var response = await client.PostAsJsonAsync($"/v3/{project}/volumes", new { volume = new { size = 3 } });

        await AssertOverLimitAsync(response, "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 3G, quota is 10G and 8G has been consumed.");
        Assert.Equal((1, 1), await RowsAsync(project));
        var usage = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/os-quota-sets/{project}?usage=true"))!["quota_set"]!;
        Assert.Equal(8, (long)usage["gigabytes"]!["in_use"]!);
        Assert.Equal(1, (long)usage["snapshots"]!["in_use"]!);
    }

    [Fact]
    public async Task A_volume_larger_than_per_volume_gigabytes_is_overLimit()
    {
        var project = NewProject();
        await SetQuotaAsync(project, new { per_volume_gigabytes = 5 });
        using var client = api.ClientFor(project);

        var response = await client.PostAsJsonAsync($"/v3/{project}/volumes", new { volume = new { size = 6 } });

        await AssertOverLimitAsync(response, "Requested volume size 6G is larger than maximum allowed limit 5G.");
        Assert.Equal((0, 0), await RowsAsync(project));
    }

    [Fact]
    public async Task A_snapshot_beyond_the_snapshots_quota_is_overLimit_and_makes_no_row()
    {
        var project = NewProject();
        var volume = await VolumeAsync(project);
        await SetQuotaAsync(project, new { snapshots = 0 });
        using var client = api.ClientFor(project);

        var response = await client.PostAsJsonAsync($"/v3/{project}/snapshots", new { snapshot = new { volume_id = volume.Id } });

        await AssertOverLimitAsync(response, "Maximum number of snapshots allowed (0) exceeded");
        Assert.Equal((1, 0), await RowsAsync(project));
    }

    [Fact]
    public async Task A_snapshot_beyond_the_gigabytes_quota_is_overLimit()
    {
        var project = NewProject();
        var volume = await VolumeAsync(project, size: 6);
        await SetQuotaAsync(project, new { gigabytes = 10 });
        using var client = api.ClientFor(project);

        var response = await client.PostAsJsonAsync($"/v3/{project}/snapshots", new { snapshot = new { volume_id = volume.Id } });

        await AssertOverLimitAsync(response, "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 6G, quota is 10G and 6G has been consumed.");
        Assert.Equal((1, 0), await RowsAsync(project));
    }

    [Fact]
    public async Task A_restore_into_a_new_volume_beyond_the_volumes_quota_is_overLimit_and_leaves_the_backup_available()
    {
        var project = NewProject();
        var (_, backup) = await Seed.VolumeWithBackupAsync(api, project);
        await Seed.BackupAgentAsync(api);
        await SetQuotaAsync(project, new { volumes = 1 });
        using var client = api.ClientFor(project);

        var response = await client.PostAsJsonAsync($"/v3/{project}/backups/{backup.Id}/restore", new { restore = new { name = "r" } });

        await AssertOverLimitAsync(response, "Maximum number of volumes allowed (1) exceeded for quota 'volumes'.");
        Assert.Equal((1, 0), await RowsAsync(project));
        await using var db = api.NewDbContext();
        Assert.Equal(BackupStatus.Available, (await db.Backups.SingleAsync(b => b.Id == backup.Id)).Status);
        Assert.Equal(0, db.Outbox.AsEnumerable().Count(m => m.Body.Contains(backup.Id.ToString())));
    }

    [Fact]
    public async Task Usage_beyond_32_bits_is_summed_and_shown_and_an_unlimited_project_still_takes_backups()
    {
        var project = NewProject();
        await SetQuotaAsync(project, new { volumes = -1, gigabytes = -1, backups = -1, backup_gigabytes = -1 });
        var big = await VolumeAsync(project, size: int.MaxValue);
        await VolumeAsync(project, size: int.MaxValue);
        var small = await VolumeAsync(project, size: 1);
        await Seed.BackupAgentAsync(api);
        await using (var db = api.NewDbContext())
        {
            foreach (var _ in new[] { 1, 2 })
                db.Add(new Backup
                {
                    Id = Guid.NewGuid(), ProjectId = project, UserId = "u", VolumeId = big.Id, Container = "c", AvailabilityZone = "nova",
                    State = nameof(BackupSaga.Available), Size = int.MaxValue, CreatedAt = DateTimeOffset.UtcNow, DataTimestamp = DateTimeOffset.UtcNow,
                });
            await db.SaveChangesAsync();
        }
        using var client = api.ClientFor(project);

        var usage = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/os-quota-sets/{project}?usage=True"))!["quota_set"]!;
        var limits = (await client.GetFromJsonAsync<JsonObject>($"/v3/{project}/limits"))!["limits"]!["absolute"]!;
        var backup = await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = small.Id } });

        Assert.Equal(2L * int.MaxValue + 1, (long)usage["gigabytes"]!["in_use"]!);
        Assert.Equal(2L * int.MaxValue, (long)usage["backup_gigabytes"]!["in_use"]!);
        Assert.Equal(2L * int.MaxValue + 1, (long)limits["totalGigabytesUsed"]!);
        Assert.Equal(202, (int)backup.StatusCode);
    }

    // cinder/api/validation/validators.py _validate_quota_set: strutils.validate_integer(value, key, -1, db.MAX_INT).
    [Theory]
    [InlineData("2147483648", "backups must be <= 2147483647")]
    [InlineData("\"99999999999999999999\"", "backups must be <= 2147483647")]
    [InlineData("-2", "backups must be >= -1")]
    [InlineData("1.5", "backups must be an integer.")]
    [InlineData("true", "backups must be an integer.")]
    public async Task A_quota_outside_minus_1_to_MAX_INT_is_badRequest_and_changes_nothing(string value, string message)
    {
        var project = NewProject();
        using var admin = api.ClientFor(project, user: "admin");
        await api.StartedAsync();

        var response = await admin.PutAsync($"/v3/{project}/os-quota-sets/{project}",
            new StringContent($$$"""{"quota_set": {"backups": {{{value}}}}}""", System.Text.Encoding.UTF8, "application/json"));

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal(message, (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["message"]);
        await using var db = api.NewDbContext();
        Assert.False(await db.Quotas.AnyAsync(q => q.ProjectId == project));
    }

    [Fact]
    public async Task A_quota_of_MAX_INT_is_taken()
    {
        var project = NewProject();
        await SetQuotaAsync(project, new { gigabytes = int.MaxValue });
        await using var db = api.NewDbContext();
        Assert.Equal(int.MaxValue, (await db.Quotas.SingleAsync(q => q.ProjectId == project && q.Resource == "gigabytes")).HardLimit);
    }

    [Fact]
    public async Task A_quota_below_what_the_project_uses_is_badRequest()
    {
        var project = NewProject();
        await VolumeAsync(project, size: 3);
        await VolumeAsync(project, size: 3);
        using var admin = api.ClientFor(project, user: "admin");

        var response = await admin.PutAsJsonAsync($"/v3/{project}/os-quota-sets/{project}", new { quota_set = new { volumes = 5, gigabytes = 5 } });

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("Quota gigabytes limit must be equal or greater than existing resources. Current usage is 6 and the requested limit is 5.",
            (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["message"]);
        await using var db = api.NewDbContext();
        Assert.False(await db.Quotas.AnyAsync(q => q.ProjectId == project));         // the valid volumes=5 was not kept either
    }

    [Fact]
    public async Task A_quota_set_name_longer_than_255_is_badRequest()
    {
        await api.StartedAsync();
        var target = new string('p', 256);
        using var admin = api.ClientFor("p", user: "admin");

        var response = await admin.PutAsJsonAsync($"/v3/p/os-quota-sets/{target}", new { quota_set = new { backups = 1 } });

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("Invalid input received: quota_set_name has 256 characters, more than 255.",
            (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["message"]);
        await using var db = api.NewDbContext();
        Assert.False(await db.Quotas.AnyAsync(q => q.ProjectId == target));
    }

    [Fact]
    public async Task Usage_that_is_no_boolean_is_badRequest()
    {
        await api.StartedAsync();
        using var client = api.ClientFor("p");

        var response = await client.GetAsync("/v3/p/os-quota-sets/p?usage=maybe");

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("Value 'maybe' for 'usage' is not a boolean.", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["badRequest"]!["message"]);
    }

    [Fact]
    public async Task Another_projects_quota_defaults_are_forbidden_to_a_member()
    {
        await api.StartedAsync();
        using var client = api.ClientFor("p");

        var response = await client.GetAsync("/v3/p/os-quota-sets/other/defaults");

        Assert.Equal(403, (int)response.StatusCode);
        Assert.NotNull((await response.Content.ReadFromJsonAsync<JsonObject>())!["forbidden"]);
    }

    [Fact]
    public async Task Concurrent_creates_for_the_last_volume_slot_make_one_volume()
    {
        var project = NewProject();
        await SetQuotaAsync(project, new { volumes = 1 });
        using var client = api.ClientFor(project);

        var responses = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => client.PostAsJsonAsync($"/v3/{project}/volumes", new { volume = new { size = 1 } })));

        Assert.Equal(1, responses.Count(r => (int)r.StatusCode == 202));
        Assert.Equal(3, responses.Count(r => (int)r.StatusCode == 413));
        Assert.Equal((1, 0), await RowsAsync(project));
    }
}
