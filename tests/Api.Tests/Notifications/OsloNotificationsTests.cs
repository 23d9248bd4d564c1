using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Api.Backups;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Notifications;

/// <summary>A real oslo.messaging notification listener (Debian's python3-oslo.messaging) hears one backup's whole life.</summary>
public sealed class OsloNotificationsTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public async Task An_oslo_listener_hears_a_backups_create_restore_and_delete_in_Cinders_format()
    {
        await api.StartedAsync();
        await using var listener = await OsloListener.StartAsync(TestServices.NotificationsBroker(api.Broker), "openstack", "notifications");
        var bus = api.Services.GetRequiredService<IBus>();
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var volumes = await api.VolumesWithLiveAgentAsync(project, 2);
        var (volume, target) = (volumes[0], volumes[1]);             // backed up, then restored into
        using var client = api.ClientFor(project);

        var created = await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id, name = "nightly" } });
        Assert.Equal(202, (int)created.StatusCode);
        var backupId = Guid.Parse((string)(await created.Content.ReadFromJsonAsync<JsonObject>())!["backup"]!["id"]!);
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).State == nameof(BackupSaga.Creating), "the create request handled");
        // Events of one saga may be handled out of order: each waits for the one before, as an agent's would in practice.
        await bus.Publish(new BackupStarted(backupId, volume.Id, true, "host-b", DateTimeOffset.UtcNow));
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).Host == "host-b", "the start handled");
        await bus.Publish(new BackupProgressed(backupId, 512L << 20, 1L << 30));
        await listener.WaitForAsync("backup.createprogress");
        await bus.Publish(new BackupCompleted(backupId, 1L << 30, 12, 1L << 29, 1L << 28, DateTimeOffset.UtcNow));
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).Status == BackupStatus.Available, "the backup available");

        Assert.Equal(202, (int)(await client.PostAsJsonAsync($"/v3/{project}/backups/{backupId}/restore", new { restore = new { volume_id = target.Id } })).StatusCode);
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).RestoreId is not null, "the restore request handled");
        await using (var db = api.NewDbContext())
            await bus.Publish(new BackupRestored(backupId, (await db.Backups.SingleAsync(b => b.Id == backupId)).RestoreId!.Value, target.Id, 1L << 30));
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).Status == BackupStatus.Available, "the restore ended");

        Assert.Equal(202, (int)(await client.DeleteAsync($"/v3/{project}/backups/{backupId}")).StatusCode);
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).Status == BackupStatus.Deleting, "the delete request handled");
        await bus.Publish(new BackupDeleted(backupId, 12, 1L << 28));
        await listener.WaitForAsync("backup.delete.end");

        var heard = listener.Heard.Where(n => (string?)n["payload"]!["backup_id"] == backupId.ToString()).ToList();
        Assert.Equal(
            ["backup.create.start", "backup.createprogress", "backup.create.end", "backup.restore.start", "backup.restore.end", "backup.delete.start", "backup.delete.end"],
            heard.Select(n => (string)n["event_type"]!));
        Assert.All(heard, n => Assert.Equal("INFO", (string?)n["priority"]));
        Assert.Equal("backup.host-b", (string?)heard[2]["publisher_id"]);    // the agent's host once one took the backup
        var end = heard[2]["payload"]!;
        Assert.Equal(project, (string?)end["tenant_id"]);
        Assert.Equal("u", (string?)end["user_id"]);
        Assert.Equal(volume.Id.ToString(), (string?)end["volume_id"]);
        Assert.Equal("nightly", (string?)end["display_name"]);
        Assert.Equal("nova", (string?)end["availability_zone"]);
        Assert.Equal("available", (string?)end["status"]);
        Assert.Equal(1, (int?)end["size"]);
        Assert.Equal(0, (int?)end["num_dependent_backups"]);
        Assert.Null(end["fail_reason"]);
        Assert.Null(end["snapshot_id"]);
        Assert.False(string.IsNullOrEmpty((string?)end["container"]));
        Assert.True(DateTimeOffset.TryParse((string?)end["created_at"], out _));
        Assert.Equal(50.0, (double?)heard[1]["payload"]!["backup_percent"]);
        Assert.Equal("creating", (string?)heard[0]["payload"]!["status"]);
        Assert.Equal(target.Id.ToString(), (string?)heard[4]["payload"]!["restore_volume_id"]);
        Assert.Equal("deleted", (string?)heard[6]["payload"]!["status"]);
        Assert.All(heard, n => Assert.False(string.IsNullOrEmpty((string?)n["metadata"]!["message_id"])));
    }

    [Fact]
    public async Task A_failed_backup_is_an_ERROR_notification_on_the_error_routing_key()
    {
        await api.StartedAsync();
        await using var listener = await OsloListener.StartAsync(TestServices.NotificationsBroker(api.Broker), "openstack", "notifications");
        var project = $"p-{Guid.NewGuid():N}"[..12];
        var volume = (await api.VolumesWithLiveAgentAsync(project)).Single();
        using var client = api.ClientFor(project);
        var created = await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id } });
        var backupId = Guid.Parse((string)(await created.Content.ReadFromJsonAsync<JsonObject>())!["backup"]!["id"]!);
        await api.WaitUntilAsync(async db => (await db.Backups.SingleAsync(b => b.Id == backupId)).State == nameof(BackupSaga.Creating), "the create request handled");
        await api.Services.GetRequiredService<IBus>().Publish(new BackupNotTaken(backupId, "No agent"));

        var error = await listener.WaitForAsync("backup.create.error");
        Assert.Equal("ERROR", (string?)error["priority"]);
        Assert.Equal("error", (string?)error["payload"]!["status"]);
        Assert.Equal("No agent", (string?)error["payload"]!["fail_reason"]);
    }
}

/// <summary>tests/Api.Tests/Notifications/oslo_listener.py as a process: the notifications it printed, one JSON object each.</summary>
sealed class OsloListener : IAsyncDisposable
{
    readonly Process process;
    readonly ConcurrentQueue<JsonObject> heard = new();
    readonly ConcurrentQueue<string> errors = new();
    readonly TaskCompletionSource ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    OsloListener(Process process) => this.process = process;

    public IReadOnlyList<JsonObject> Heard => heard.ToArray();

    /// <summary>Listens on <paramref name="exchange"/> for <paramref name="topic"/>.info and .error on the broker of <paramref name="amqpUri"/>.</summary>
    public static async Task<OsloListener> StartAsync(string amqpUri, string exchange, string topic)
    {
        // oslo's transport URL names the same broker and virtual host as the AMQP URI, with its own scheme.
        var transportUrl = new UriBuilder(amqpUri) { Scheme = "rabbit" }.Uri.ToString();
        var script = Path.Combine(AppContext.BaseDirectory, "Notifications", "oslo_listener.py");
        // Debian's python, where python3-oslo.messaging is installed (a python3 earlier on PATH may not have it).
        var info = new ProcessStartInfo("/usr/bin/python3", [script, transportUrl, exchange, topic]) { RedirectStandardOutput = true, RedirectStandardError = true };
        var listener = new OsloListener(Process.Start(info)!);
        listener.process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (e.Data == "ready") listener.ready.TrySetResult();
            else
            {
                // An exception here would crash the test host: a line that is not one JSON object is reported instead.
                try { if (JsonNode.Parse(e.Data) is JsonObject n) listener.heard.Enqueue(n); }
                catch (JsonException) { listener.errors.Enqueue($"not one JSON object: {e.Data}"); }
            }
        };
        listener.process.ErrorDataReceived += (_, e) => { if (e.Data is not null) listener.errors.Enqueue(e.Data); };
        listener.process.BeginOutputReadLine();
        listener.process.BeginErrorReadLine();
        var exited = listener.process.WaitForExitAsync();
        if (await Task.WhenAny(listener.ready.Task, exited, Task.Delay(TimeSpan.FromSeconds(30))) != listener.ready.Task)
        {
            await listener.DisposeAsync();
            throw new InvalidOperationException($"The oslo listener is not ready: {string.Join('\n', listener.errors)}");
        }
        return listener;
    }

    public async Task<JsonObject> WaitForAsync(string eventType)
    {
        JsonObject? found = null;
        await Eventually.UntilAsync(() => Task.FromResult((found = heard.FirstOrDefault(n => (string?)n["event_type"] == eventType)) is not null),
            TimeSpan.FromSeconds(30), $"the oslo listener to hear {eventType}; it printed: {string.Join('\n', errors.TakeLast(20))}");
        return found!;
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
        process.Dispose();
    }
}
