using System.Text.Json;
using MassTransit;
using MassTransit.Events;
using MassTransit.Metadata;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>Each transition of the backup's one state machine, on the test harness and the real PostgreSQL repository.</summary>
public sealed class BackupSagaTests(SagaHarness saga) : IClassFixture<SagaHarness>
{
    [Fact]
    public async Task A_create_request_sends_the_command_to_the_volume_host_s_queue_and_the_backup_is_creating()
    {
        var (volume, backup) = await saga.RequestedAsync(VolumeStatus.InUse);
        Assert.Equal(BackupStatus.Creating, (await saga.BackupAsync(backup.Id)).Status);   // "Initial" reads creating too

        var request = new BackupCreateRequested(backup.Id, InUse: true);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => saga.FeedAsync(request)));     // redelivered, concurrently

        Assert.Equal(nameof(BackupSaga.Creating), (await saga.BackupAsync(backup.Id)).State);
        var command = Assert.Single(await saga.OutboxAsync<CreateBackup>(backup.Id));
        // The volume's host's queue, which spills into the zone's (see Queues).
        Assert.Equal("queue:create-backup-nova.host-a", command.Destination);
        var sent = JsonSerializer.Deserialize<CreateBackup>(command.Body)!;
        Assert.Equal((volume.Id, true, 1L << 30, "c", "host-a"), (sent.VolumeId, sent.InUse, sent.SizeBytes, sent.Container, sent.VolumeHost));
        Assert.Equal(["backup.create.start"], await NotificationsAsync(backup.Id));
    }

    [Fact]
    public async Task Started_on_a_copy_frees_the_volume_and_completion_makes_the_backup_available_and_counts_the_parent_once()
    {
        var (_, parent) = await AvailableAsync();
        var (volume, child) = await CreatingAsync(VolumeStatus.InUse, parent.Id);

        await saga.FeedAsync(new BackupStarted(child.Id, volume.Id, true, "host-a", DateTimeOffset.UtcNow));
        Assert.Equal(VolumeStatus.InUse, (await saga.VolumeAsync(volume.Id)).Status);
        Assert.Equal("host-a", (await saga.BackupAsync(child.Id)).Host);

        var completed = new BackupCompleted(child.Id, 1 << 30, 3, 100, 300, DateTimeOffset.UtcNow, Cbt: true, BytesRead: 4 << 20);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => saga.FeedAsync(completed)));   // concurrent duplicates

        var done = await saga.BackupAsync(child.Id);
        Assert.Equal((BackupStatus.Available, 3, 300L), (done.Status, done.ObjectCount, done.StoredBytes));
        Assert.Equal(1, (await saga.BackupAsync(parent.Id)).NumDependentBackups);
        Assert.Equal(["backup.create.start", "backup.create.end"], await NotificationsAsync(child.Id));
        var end = (await saga.OutboxAsync<BackupNotification>(child.Id)).Select(m => JsonSerializer.Deserialize<BackupNotification>(m.Body)!).Last();
        Assert.Equal((true, 4L << 20), (end.Cbt, end.BytesRead));                // what changed-block tracking spared, said to subscribers
    }

    [Fact]
    public async Task A_completion_that_overtakes_its_start_still_names_the_agent_and_the_late_start_changes_nothing_else()
    {
        var (volume, backup) = await CreatingAsync(VolumeStatus.InUse);
        var startedAt = new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

        await saga.FeedAsync(new BackupCompleted(backup.Id, 1 << 30, 3, 100, 300, startedAt.AddSeconds(1), AgentHost: "host-a-agent"));
        await saga.FeedAsync(new BackupStarted(backup.Id, volume.Id, true, "host-b-agent", startedAt));

        var done = await saga.BackupAsync(backup.Id);
        Assert.Equal((BackupStatus.Available, "host-a-agent", startedAt), (done.Status, done.Host, done.StartedAt));
        Assert.Equal(VolumeStatus.InUse, (await saga.VolumeAsync(volume.Id)).Status);
        Assert.Equal(["backup.create.start", "backup.create.end"], await NotificationsAsync(backup.Id));
    }

    [Fact]
    public async Task A_row_imported_under_another_id_restores_from_the_original_manifest_which_stays_while_either_row_lives()
    {
        var (_, original) = await AvailableAsync();
        var copy = await ImportedCopyAsync(original);

        var target = await TargetVolumeAsync();
        var restoreId = Guid.NewGuid();
        await saga.FeedAsync(new BackupRestoreRequested(copy.Id, restoreId, target.Id));
        Assert.Equal(original.Id, JsonSerializer.Deserialize<RestoreBackup>(Assert.Single(await saga.OutboxAsync<RestoreBackup>(copy.Id)).Body)!.ManifestId);
        await saga.FeedAsync(new BackupRestored(copy.Id, restoreId, target.Id, 1));

        // The original goes first: the copy still needs the manifest, so no agent is asked to delete it.
        await saga.FeedAsync(new BackupDeleteRequested(original.Id));
        Assert.Empty(await saga.OutboxAsync<DeleteBackup>(original.Id));
        Assert.Single(await saga.OutboxAsync<BackupDeleted>(original.Id));
        await saga.FeedAsync(new BackupDeleted(original.Id, 0, 0));
        Assert.Equal(BackupStatus.Deleted, (await saga.BackupAsync(original.Id)).Status);

        // The copy, now alone on it, has the manifest deleted under the original's id.
        await saga.FeedAsync(new BackupDeleteRequested(copy.Id));
        var delete = JsonSerializer.Deserialize<DeleteBackup>(Assert.Single(await saga.OutboxAsync<DeleteBackup>(copy.Id)).Body)!;
        Assert.Equal((copy.Id, (Guid?)original.Id), (delete.BackupId, delete.ManifestId));
        Assert.Equal(["backup.delete.start"], (await NotificationsAsync(copy.Id)).Where(e => e.StartsWith("backup.delete", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task An_incremental_of_a_row_imported_under_another_id_builds_on_the_original_manifest()
    {
        var (_, original) = await AvailableAsync();
        var copy = await ImportedCopyAsync(original);

        var (_, child) = await CreatingAsync(parentId: copy.Id);

        var sent = JsonSerializer.Deserialize<CreateBackup>(Assert.Single(await saga.OutboxAsync<CreateBackup>(child.Id)).Body)!;
        Assert.Equal(original.Id, sent.ParentId);
        Assert.Equal(copy.Id, (await saga.BackupAsync(child.Id)).ParentId);       // the rows' relation stays the copy's
    }

    [Fact]
    public async Task Progress_is_reported_forward_only()
    {
        var (_, backup) = await CreatingAsync();

        await saga.FeedAsync(new BackupProgressed(backup.Id, 512, 1024));
        await saga.FeedAsync(new BackupProgressed(backup.Id, 256, 1024));                  // late: older than what is known

        Assert.Equal(512, (await saga.BackupAsync(backup.Id)).BytesDone);
        Assert.Equal(["backup.create.start", "backup.createprogress"], await NotificationsAsync(backup.Id));
    }

    [Fact]
    public async Task A_fault_from_the_agent_fails_the_backup_restores_the_volume_and_a_late_completion_is_ignored()
    {
        var (volume, backup) = await CreatingAsync(VolumeStatus.InUse);

        await saga.FeedAsync(Fault(new CreateBackup(backup.Id, volume.Id, null, "c", null, true, 1 << 30, "p", "nova"), new IOException("NFS server unreachable")));
        await saga.FeedAsync(new BackupCompleted(backup.Id, 1, 1, 1, 1, DateTimeOffset.UtcNow));

        var failed = await saga.BackupAsync(backup.Id);
        Assert.Equal(BackupStatus.Error, failed.Status);
        Assert.Equal("IOException: NFS server unreachable", failed.FailReason);
        Assert.Equal(0, failed.ObjectCount);
        Assert.Equal(VolumeStatus.InUse, (await saga.VolumeAsync(volume.Id)).Status);
        Assert.Equal(["backup.create.start", "backup.create.error"], await NotificationsAsync(backup.Id));
    }

    [Fact]
    public async Task A_backup_not_taken_fails_and_an_agent_taking_it_later_is_told_to_cancel()
    {
        var (volume, backup) = await CreatingAsync();

        await saga.FeedAsync(new BackupNotTaken(backup.Id, "No cinder-backup service took it"));
        await saga.FeedAsync(new BackupStarted(backup.Id, volume.Id, true, "host-late", DateTimeOffset.UtcNow));

        Assert.Equal((BackupStatus.Error, "No cinder-backup service took it"), ((await saga.BackupAsync(backup.Id)).Status, (await saga.BackupAsync(backup.Id)).FailReason));
        Assert.Equal(VolumeStatus.Available, (await saga.VolumeAsync(volume.Id)).Status);
        Assert.Single(await saga.OutboxAsync<CancelBackup>(backup.Id));
    }

    [Fact]
    public async Task A_restore_sends_the_command_and_ends_available_with_its_volume_available()
    {
        var (_, backup) = await AvailableAsync();
        var target = await TargetVolumeAsync();
        var restoreId = Guid.NewGuid();

        await saga.FeedAsync(new BackupRestoreRequested(backup.Id, restoreId, target.Id));
        Assert.Equal(BackupStatus.Restoring, (await saga.BackupAsync(backup.Id)).Status);
        var row = Assert.Single(await saga.OutboxAsync<RestoreBackup>(backup.Id));
        Assert.Equal("queue:restore-backup-nova.host-a", row.Destination);
        var command = JsonSerializer.Deserialize<RestoreBackup>(row.Body)!;
        Assert.Equal((restoreId, target.Id, "host-a"), (command.RestoreId, command.VolumeId, command.VolumeHost));

        await saga.FeedAsync(new BackupRestored(backup.Id, Guid.NewGuid(), target.Id, 1));    // of another, earlier restore: ignored
        Assert.Equal(BackupStatus.Restoring, (await saga.BackupAsync(backup.Id)).Status);

        await saga.FeedAsync(new BackupRestored(backup.Id, restoreId, target.Id, 1));
        Assert.Equal(BackupStatus.Available, (await saga.BackupAsync(backup.Id)).Status);
        Assert.Equal(VolumeStatus.Available, (await saga.VolumeAsync(target.Id)).Status);
        Assert.Equal(["backup.create.start", "backup.create.end", "backup.restore.start", "backup.restore.end"], await NotificationsAsync(backup.Id));
    }

    [Fact]
    public async Task A_failed_restore_leaves_the_backup_available_and_its_volume_error_restoring()
    {
        var (_, backup) = await AvailableAsync();
        var target = await TargetVolumeAsync();
        var restoreId = Guid.NewGuid();
        await saga.FeedAsync(new BackupRestoreRequested(backup.Id, restoreId, target.Id));

        await saga.FeedAsync(Fault(new RestoreBackup(backup.Id, restoreId, target.Id, "c", "nova"), new InvalidOperationException("device vanished")));

        Assert.Equal(BackupStatus.Available, (await saga.BackupAsync(backup.Id)).Status);
        Assert.Equal(VolumeStatus.ErrorRestoring, (await saga.VolumeAsync(target.Id)).Status);
    }

    [Fact]
    public async Task A_restore_asked_while_the_backup_is_creating_is_refused_and_its_volume_freed()
    {
        var (_, backup) = await CreatingAsync();
        var target = await TargetVolumeAsync();

        await saga.FeedAsync(new BackupRestoreRequested(backup.Id, Guid.NewGuid(), target.Id));

        Assert.Equal(BackupStatus.Creating, (await saga.BackupAsync(backup.Id)).Status);
        Assert.Equal(VolumeStatus.Available, (await saga.VolumeAsync(target.Id)).Status);
        Assert.Empty(await saga.OutboxAsync<RestoreBackup>(backup.Id));
    }

    [Fact]
    public async Task A_delete_that_fails_on_the_share_ends_error_deleting_and_may_be_retried_until_deleted()
    {
        var (_, parent) = await AvailableAsync();
        var (_, child) = await CreatingAsync(parentId: parent.Id);
        await saga.FeedAsync(new BackupCompleted(child.Id, 1, 1, 1, 1, DateTimeOffset.UtcNow));
        Assert.Equal(1, (await saga.BackupAsync(parent.Id)).NumDependentBackups);

        await saga.FeedAsync(new BackupDeleteRequested(child.Id));
        Assert.Equal(BackupStatus.Deleting, (await saga.BackupAsync(child.Id)).Status);
        await saga.FeedAsync(Fault(new DeleteBackup(child.Id, "c", "nova"), new IOException("NFS3ERR_IO")));
        var failed = await saga.BackupAsync(child.Id);
        Assert.Equal((BackupStatus.ErrorDeleting, "IOException: NFS3ERR_IO"), (failed.Status, failed.FailReason));

        await saga.FeedAsync(new BackupDeleteRequested(child.Id));
        await saga.FeedAsync(new BackupDeleted(child.Id, 1, 1));
        await saga.FeedAsync(new BackupDeleted(child.Id, 1, 1));                             // a redelivery

        Assert.Equal(BackupStatus.Deleted, (await saga.BackupAsync(child.Id)).Status);
        Assert.Equal(0, (await saga.BackupAsync(parent.Id)).NumDependentBackups);
        Assert.Equal(2, (await saga.OutboxAsync<DeleteBackup>(child.Id)).Count);
        await using var db = saga.NewDbContext();
        Assert.False(await db.Backups.AnyAsync(b => b.Id == child.Id), "a deleted backup is gone from every query");
    }

    [Fact]
    public async Task A_reset_of_a_running_backup_cancels_it_frees_the_volume_and_its_late_completion_is_ignored()
    {
        var (volume, backup) = await CreatingAsync(VolumeStatus.InUse);

        await saga.FeedAsync(new BackupResetRequested(backup.Id, BackupStatus.Error));
        await saga.FeedAsync(new BackupCompleted(backup.Id, 1, 7, 1, 1, DateTimeOffset.UtcNow));

        var reset = await saga.BackupAsync(backup.Id);
        Assert.Equal((BackupStatus.Error, 0), (reset.Status, reset.ObjectCount));
        Assert.Equal(VolumeStatus.InUse, (await saga.VolumeAsync(volume.Id)).Status);
        Assert.Single(await saga.OutboxAsync<CancelBackup>(backup.Id));

        await saga.FeedAsync(new BackupResetRequested(backup.Id, BackupStatus.Available));
        Assert.Equal(BackupStatus.Available, (await saga.BackupAsync(backup.Id)).Status);
    }

    [Fact]
    public async Task A_force_delete_of_a_running_backup_cancels_it_frees_the_volume_and_deletes_it()
    {
        var (volume, backup) = await CreatingAsync();

        await saga.FeedAsync(new BackupForceDeleteRequested(backup.Id));
        await saga.FeedAsync(new BackupCompleted(backup.Id, 1, 7, 1, 1, DateTimeOffset.UtcNow));   // its completion must not revive it

        Assert.Equal(BackupStatus.Deleting, (await saga.BackupAsync(backup.Id)).Status);
        Assert.Equal(VolumeStatus.Available, (await saga.VolumeAsync(volume.Id)).Status);
        Assert.Single(await saga.OutboxAsync<CancelBackup>(backup.Id));
        Assert.Single(await saga.OutboxAsync<DeleteBackup>(backup.Id));
    }

    [Fact]
    public async Task An_imported_backup_becomes_available_without_any_command()
    {
        var now = DateTimeOffset.UtcNow;
        var backup = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", VolumeId = Guid.NewGuid(), Container = "c", AvailabilityZone = "nova", CreatedAt = now, DataTimestamp = now,
        };
        await using (var db = saga.NewDbContext())
        {
            db.Add(backup);
            await db.SaveChangesAsync();
        }

        await saga.FeedAsync(new BackupImportRequested(backup.Id));

        Assert.Equal(BackupStatus.Available, (await saga.BackupAsync(backup.Id)).Status);
        Assert.Empty(await saga.OutboxAsync<CreateBackup>(backup.Id));
    }

    [Fact]
    public async Task A_verify_sends_the_command_to_the_zone_queue_and_a_pass_keeps_the_backup_available()
    {
        var (_, backup) = await AvailableAsync();

        await saga.FeedAsync(new BackupVerifyRequested(backup.Id));
        var row = Assert.Single(await saga.OutboxAsync<VerifyBackup>(backup.Id));
        Assert.Equal("queue:verify-backup-nova", row.Destination);
        Assert.Equal(new VerifyBackup(backup.Id, "c", "nova"), JsonSerializer.Deserialize<VerifyBackup>(row.Body));
        Assert.Equal(BackupStatus.Available, (await saga.BackupAsync(backup.Id)).Status);

        await saga.FeedAsync(new BackupVerified(backup.Id, 3, 3000, DateTimeOffset.UtcNow));
        var after = await saga.BackupAsync(backup.Id);
        Assert.Equal(BackupStatus.Available, after.Status);
        Assert.Null(after.FailReason);
        Assert.Equal(["backup.create.start", "backup.create.end", "backup.verify.start", "backup.verify.end"], await NotificationsAsync(backup.Id));
    }

    [Fact]
    public async Task A_failed_verify_makes_the_backup_error_naming_the_chunk()
    {
        var (_, backup) = await AvailableAsync();
        await saga.FeedAsync(new BackupVerifyRequested(backup.Id));
        var hash = new string('a', 64);

        await saga.FeedAsync(new BackupVerifyFailed(backup.Id, 7, hash, 2, $"Backup {backup.Id} cannot be restored: chunk 7 ({hash}) is corrupt (2 of 9 chunks failed)"));

        var after = await saga.BackupAsync(backup.Id);
        Assert.Equal(BackupStatus.Error, after.Status);
        Assert.Contains($"chunk 7 ({hash})", after.FailReason);
        Assert.Equal(["backup.create.start", "backup.create.end", "backup.verify.start", "backup.verify.error"], await NotificationsAsync(backup.Id));
        var error = JsonSerializer.Deserialize<BackupNotification>((await saga.OutboxAsync<BackupNotification>(backup.Id))[^1].Body)!;
        Assert.Equal((BackupStatus.Error, after.FailReason), (error.Status, error.FailReason));

        await saga.FeedAsync(new BackupVerified(backup.Id, 9, 9000, DateTimeOffset.UtcNow));   // a late pass of an earlier verify changes nothing
        Assert.Equal(BackupStatus.Error, (await saga.BackupAsync(backup.Id)).Status);
    }

    [Fact]
    public async Task A_verify_failing_during_a_restore_makes_the_backup_error_and_the_restore_still_frees_its_volume()
    {
        var (_, backup) = await AvailableAsync();
        await saga.FeedAsync(new BackupVerifyRequested(backup.Id));
        var target = await TargetVolumeAsync();
        var restoreId = Guid.NewGuid();
        await saga.FeedAsync(new BackupRestoreRequested(backup.Id, restoreId, target.Id));

        await saga.FeedAsync(new BackupVerifyFailed(backup.Id, 0, new string('b', 64), 1, "chunk 0 is missing"));
        Assert.Equal(BackupStatus.Error, (await saga.BackupAsync(backup.Id)).Status);
        await saga.FeedAsync(Fault(new RestoreBackup(backup.Id, restoreId, target.Id, "c", "nova"), new InvalidDataException("chunk 0 is missing")));

        Assert.Equal(BackupStatus.Error, (await saga.BackupAsync(backup.Id)).Status);
        Assert.Equal(VolumeStatus.ErrorRestoring, (await saga.VolumeAsync(target.Id)).Status);
    }

    [Fact]
    public async Task A_verify_that_cannot_read_the_share_reports_an_error_and_keeps_the_backup_available()
    {
        var (_, backup) = await AvailableAsync();
        await saga.FeedAsync(new BackupVerifyRequested(backup.Id));

        await saga.FeedAsync(Fault(new VerifyBackup(backup.Id, "c", "nova"), new IOException("NFS server not responding")));

        var after = await saga.BackupAsync(backup.Id);
        Assert.Equal(BackupStatus.Available, after.Status);
        Assert.Null(after.FailReason);
        var error = JsonSerializer.Deserialize<BackupNotification>((await saga.OutboxAsync<BackupNotification>(backup.Id))[^1].Body)!;
        Assert.Equal("backup.verify.error", error.EventType);
        Assert.Contains("NFS server not responding", error.FailReason);
    }

    [Fact]
    public async Task A_verify_asked_of_a_backup_not_available_sends_nothing()
    {
        var (_, backup) = await CreatingAsync();

        await saga.FeedAsync(new BackupVerifyRequested(backup.Id));

        Assert.Empty(await saga.OutboxAsync<VerifyBackup>(backup.Id));
        Assert.Equal(BackupStatus.Creating, (await saga.BackupAsync(backup.Id)).Status);
    }

    [Fact]
    public async Task An_event_for_no_backup_of_ours_is_discarded()
    {
        var stranger = Guid.NewGuid();

        await saga.FeedAsync(new BackupCompleted(stranger, 1, 1, 1, 1, DateTimeOffset.UtcNow));

        await using var db = saga.NewDbContext();
        Assert.False(await db.Backups.IgnoreQueryFilters().AnyAsync(b => b.Id == stranger), "no instance is made for it");
    }

    async Task<(Volume, Backup)> CreatingAsync(string volumeStatus = VolumeStatus.Available, Guid? parentId = null)
    {
        var (volume, backup) = await saga.RequestedAsync(volumeStatus, parentId);
        await saga.FeedAsync(new BackupCreateRequested(backup.Id, volumeStatus == VolumeStatus.InUse));
        return (volume, backup);
    }

    async Task<(Volume, Backup)> AvailableAsync()
    {
        var (volume, backup) = await CreatingAsync();
        await saga.FeedAsync(new BackupCompleted(backup.Id, 1 << 30, 1, 1, 1, DateTimeOffset.UtcNow));
        return (volume, backup);
    }

    /// <summary>A row as import_record writes it for a record whose id was changed: its data under the original's manifest.</summary>
    async Task<Backup> ImportedCopyAsync(Backup original)
    {
        var now = DateTimeOffset.UtcNow;
        var copy = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", VolumeId = original.VolumeId, Container = original.Container, AvailabilityZone = "nova",
            Size = 1, ManifestId = original.Id, CreatedAt = now, DataTimestamp = now,
        };
        await using (var db = saga.NewDbContext())
        {
            db.Add(copy);
            await db.SaveChangesAsync();
        }
        await saga.FeedAsync(new BackupImportRequested(copy.Id));
        return copy;
    }

    /// <summary>A volume as the restore handler leaves it: reserved for the restore.</summary>
    async Task<Volume> TargetVolumeAsync()
    {
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a",
            Status = VolumeStatus.RestoringBackup, CreatedAt = DateTimeOffset.UtcNow,
        };
        await using var db = saga.NewDbContext();
        db.Add(volume);
        await db.SaveChangesAsync();
        return volume;
    }

    async Task<List<string>> NotificationsAsync(Guid backupId) =>
        (await saga.OutboxAsync<BackupNotification>(backupId)).Select(m => JsonSerializer.Deserialize<BackupNotification>(m.Body)!.EventType).ToList();

    static Fault<T> Fault<T>(T message, Exception exception) where T : class =>
        new FaultEvent<T>(message, Guid.NewGuid(), HostMetadataCache.Host, exception, [MessageUrn.ForTypeString<T>()]);
}
