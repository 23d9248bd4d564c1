using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

/// <summary>
/// A backup's whole life: create, import, restore, delete, reset-status, force-delete and "not taken". The backup row is
/// the instance, so its state is the backup's one status. Steps change the backup, volume and snapshot rows and add outbox
/// rows in the saga's DbContext: all of it commits with the state in one transaction (PostgresSagaRepositoryContextFactory).
/// An event that does not apply in the state it meets (late, repeated, or of an earlier restore) changes nothing.
/// </summary>
public sealed class BackupSaga : MassTransitStateMachine<Backup>
{
    public BackupSaga(TimeProvider clock, IOptions<NotificationOptions> notificationOptions, ILogger<BackupSaga> logger)
    {
        var notifications = notificationOptions.Value;
        InstanceState(x => x.State);
        Event(() => CreateRequested, e => ById(e, m => m.BackupId));
        Event(() => ImportRequested, e => ById(e, m => m.BackupId));
        Event(() => RestoreRequested, e => ById(e, m => m.BackupId));
        Event(() => DeleteRequested, e => ById(e, m => m.BackupId));
        Event(() => ForceDeleteRequested, e => ById(e, m => m.BackupId));
        Event(() => ResetRequested, e => ById(e, m => m.BackupId));
        Event(() => Started, e => ById(e, m => m.BackupId));
        Event(() => Progressed, e => ById(e, m => m.BackupId));
        Event(() => Completed, e => ById(e, m => m.BackupId));
        Event(() => Faulted, e => ById(e, m => m.Message.BackupId));
        Event(() => NotTaken, e => ById(e, m => m.BackupId));
        Event(() => Restored, e => ById(e, m => m.BackupId));
        Event(() => RestoreFaulted, e => ById(e, m => m.Message.BackupId));
        Event(() => DataDeleted, e => ById(e, m => m.BackupId));
        Event(() => DeleteFaulted, e => ById(e, m => m.Message.BackupId));
        Event(() => VerifyRequested, e => ById(e, m => m.BackupId));
        Event(() => Verified, e => ById(e, m => m.BackupId));
        Event(() => VerifyFailed, e => ById(e, m => m.BackupId));
        Event(() => VerifyFaulted, e => ById(e, m => m.Message.BackupId));
        ConnectEventObserver(new EventCounter());
        OnUnhandledEvent(c =>
        {
            Metrics.SagaEvent(c.Event.Name, "ignored");
            logger.BackupEventIgnored(c.Saga.Id, c.Event.Name, c.Saga.State);
            return Task.CompletedTask;
        });

        Initially(
            When(CreateRequested).ThenAsync(async c =>
            {
                var b = c.Saga;
                var now = Touch(c, clock);
                var host = await VolumeHostAsync(c, b.VolumeId);
                // The agent builds on the parent's manifest: an imported parent's may carry another id than its row.
                var parentData = b.ParentId is { } parentId ? (await Db(c).Backups.FindAsync([parentId], c.CancellationToken))?.DataId ?? parentId : (Guid?)null;
                Db(c).Outbox.Add(OutboxMessage.Send(new CreateBackup(
                    b.Id, b.VolumeId, b.SnapshotId, b.Container, parentData, c.Message.InUse, (long)b.Size << 30, b.ProjectId, b.AvailabilityZone, host),
                    now, Route(c, Queues.CreateBackup(b.AvailabilityZone), host)));
                Notify(c, notifications, "backup.create.start", now);
            }).TransitionTo(Creating),
            When(ImportRequested).ThenAsync(async c =>
            {
                Touch(c, clock);
                // The import checked the parent is of the same project; it now counts this backup like one it made.
                if (c.Saga.ParentId is { } parentId && await Db(c).Backups.FindAsync([parentId], c.CancellationToken) is { } parent)
                    parent.NumDependentBackups++;
            }).TransitionTo(Available));

        During(Creating,
            When(Started).ThenAsync(async c =>
            {
                c.Saga.Host = c.Message.AgentHost;
                c.Saga.StartedAt = c.Message.StartedAt;
                if (c.Message.DeviceIsCopy) await ReleaseSourceAsync(c, clock.GetUtcNow());   // the copy is taken: the volume is free
            }),
            When(Progressed, c => c.Message.BytesDone > c.Saga.BytesDone).Then(c =>
            {
                c.Saga.BytesDone = c.Message.BytesDone;
                Db(c).Outbox.AddRange(Notifications.Backup(c.Saga, "backup.createprogress", clock.GetUtcNow(), notifications, c.Message.BytesDone));
            }),
            When(Completed).ThenAsync(async c =>
            {
                var now = clock.GetUtcNow();
                await ReleaseSourceAsync(c, now);
                var backup = c.Saga;
                backup.BytesDone = c.Message.SizeBytes;
                backup.Host ??= c.Message.AgentHost;        // its BackupStarted may still be on the way (events race)
                backup.ObjectCount = c.Message.ObjectCount;
                backup.StoredBytes = c.Message.StoredBytes;
                backup.BytesWritten = c.Message.BytesWritten;
                backup.UpdatedAt = now;
                if (backup.ParentId is { } parentId && await Db(c).Backups.FindAsync([parentId], c.CancellationToken) is { } parent)
                    parent.NumDependentBackups++;
                Metrics.BackupEnded(Metrics.Completed, now - backup.CreatedAt);
            }).TransitionTo(Available).Then(c => Notify(c, notifications, "backup.create.end", clock.GetUtcNow(), c.Message)),
            When(Faulted).ThenAsync(c => FailAsync(c, FailReason(c.Message.Exceptions), clock)).TransitionTo(Error).Then(c => Notify(c, notifications, "backup.create.error", clock.GetUtcNow())),
            When(NotTaken).ThenAsync(c => FailAsync(c, c.Message.Reason, clock)).TransitionTo(Error).Then(c => Notify(c, notifications, "backup.create.error", clock.GetUtcNow())),
            When(ForceDeleteRequested).ThenAsync(c => CancelAsync(c, clock)).ThenAsync(c => StartDeleteAsync(c, clock, notifications)).TransitionTo(Deleting),
            When(ResetRequested, c => c.Message.Status == BackupStatus.Available).ThenAsync(c => CancelAsync(c, clock)).TransitionTo(Available),
            When(ResetRequested, c => c.Message.Status == BackupStatus.Error).ThenAsync(c => CancelAsync(c, clock)).TransitionTo(Error),
            When(RestoreRequested).ThenAsync(c => RejectRestoreAsync(c, clock, notifications)),
            Ignore(CreateRequested));

        During(Available,
            When(RestoreRequested).ThenAsync(async c =>
            {
                var now = Touch(c, clock);
                c.Saga.RestoreId = c.Message.RestoreId;
                c.Saga.RestoreVolumeId = c.Message.VolumeId;
                var host = await VolumeHostAsync(c, c.Message.VolumeId);
                Db(c).Outbox.Add(OutboxMessage.Send(new RestoreBackup(c.Saga.Id, c.Message.RestoreId, c.Message.VolumeId, c.Saga.Container, c.Saga.AvailabilityZone, host, c.Saga.ManifestId),
                    now, Route(c, Queues.RestoreBackup(c.Saga.AvailabilityZone), host)));
            }).TransitionTo(Restoring).Then(c => Notify(c, notifications, "backup.restore.start", clock.GetUtcNow())),
            // A verify reads the share only: the backup stays available (and restorable) while it runs.
            When(VerifyRequested).Then(c =>
            {
                var now = Touch(c, clock);
                Db(c).Outbox.Add(OutboxMessage.Create(new VerifyBackup(c.Saga.Id, c.Saga.Container, c.Saga.AvailabilityZone, c.Saga.ManifestId), now,
                    Queues.VerifyBackup(c.Saga.AvailabilityZone)));
                Notify(c, notifications, "backup.verify.start", now);
            }),
            // A BackupStarted that lost the race to its BackupCompleted only fills in what it knows.
            When(Started).Then(c =>
            {
                c.Saga.Host ??= c.Message.AgentHost;
                c.Saga.StartedAt ??= c.Message.StartedAt;
            }),
            Ignore(CreateRequested), Ignore(ImportRequested));

        // A chunk that fails its check makes the backup error, named in fail_reason; a restore running meanwhile goes on
        // (it checks every chunk itself) and still ends its volume's restoring-backup from Error.
        During(Available, Restoring,
            When(Verified).Then(c => Notify(c, notifications, "backup.verify.end", clock.GetUtcNow())),
            When(VerifyFailed).Then(c =>
            {
                Touch(c, clock);
                c.Saga.FailReason = Truncate($"Verify failed: {c.Message.Reason}");
            }).TransitionTo(Error).Then(c => Notify(c, notifications, "backup.verify.error", clock.GetUtcNow())));
        During(Available, Restoring, Error,
            // The share could not be read at all: that says nothing about the backup, whose status stays.
            When(VerifyFaulted).Then(c => Db(c).Outbox.AddRange(Notifications.Backup(c.Saga, "backup.verify.error", clock.GetUtcNow(), notifications,
                failReason: Truncate($"Verify could not run: {FailReason(c.Message.Exceptions)}")))));

        // Cinder deletes an available or error backup, and retries a delete that failed on the share.
        During(Available, Error, ErrorDeleting,
            When(DeleteRequested).ThenAsync(c => StartDeleteAsync(c, clock, notifications)).TransitionTo(Deleting),
            When(ForceDeleteRequested).ThenAsync(c => StartDeleteAsync(c, clock, notifications)).TransitionTo(Deleting));

        During(Error,
            // An agent that comes back and takes a backup already given up is told to stop; its volume is no longer held.
            When(Started).Then(c => Db(c).Outbox.Add(OutboxMessage.Create(new CancelBackup(c.Message.BackupId), clock.GetUtcNow()))),
            // A verify found a bad chunk while this restore ran: the restore still frees its volume.
            When(Restored, c => c.Message.RestoreId == c.Saga.RestoreId).ThenAsync(c => EndRestoreAsync(c, c.Message.VolumeId, failed: false, clock))
                .Then(c => Notify(c, notifications, "backup.restore.end", clock.GetUtcNow())),
            When(RestoreFaulted, c => c.Message.Message.RestoreId == c.Saga.RestoreId).ThenAsync(c => EndRestoreAsync(c, c.Message.Message.VolumeId, failed: true, clock))
                .Then(c => Notify(c, notifications, "backup.restore.error", clock.GetUtcNow())),
            When(VerifyFailed).Then(c => Db(c).Outbox.AddRange(Notifications.Backup(c.Saga, "backup.verify.error", clock.GetUtcNow(), notifications,
                failReason: Truncate($"Verify failed: {c.Message.Reason}")))),
            When(RestoreRequested).ThenAsync(c => RejectRestoreAsync(c, clock, notifications)));

        During(Restoring,
            When(Restored, c => c.Message.RestoreId == c.Saga.RestoreId).ThenAsync(c => EndRestoreAsync(c, c.Message.VolumeId, failed: false, clock))
                .TransitionTo(Available).Then(c => Notify(c, notifications, "backup.restore.end", clock.GetUtcNow())),
            When(RestoreFaulted, c => c.Message.Message.RestoreId == c.Saga.RestoreId).ThenAsync(c => EndRestoreAsync(c, c.Message.Message.VolumeId, failed: true, clock))
                .TransitionTo(Available).Then(c => Notify(c, notifications, "backup.restore.error", clock.GetUtcNow())),
            When(RestoreRequested).ThenAsync(c => RejectRestoreAsync(c, clock, notifications)));

        During(Deleting,
            When(DataDeleted).ThenAsync(async c =>
            {
                Touch(c, clock);
                c.Saga.BytesFreed = c.Message.BytesFreed;
                if (c.Saga.ParentId is { } parentId && await Db(c).Backups.FindAsync([parentId], c.CancellationToken) is { NumDependentBackups: > 0 } parent)
                    parent.NumDependentBackups--;
            }).TransitionTo(Deleted).Then(c => Notify(c, notifications, "backup.delete.end", clock.GetUtcNow())),
            When(DeleteFaulted).Then(c =>
            {
                Touch(c, clock);
                c.Saga.FailReason = Truncate(FailReason(c.Message.Exceptions));
            }).TransitionTo(ErrorDeleting).Then(c => Notify(c, notifications, "backup.delete.error", clock.GetUtcNow())),
            Ignore(DeleteRequested), Ignore(ForceDeleteRequested));

        // An admin's reset: the state it names, whatever was going on (a late event of it is then ignored).
        During([Available, Error, Restoring, Deleting, ErrorDeleting],
            When(ResetRequested, c => c.Message.Status == BackupStatus.Available).Then(c => Reset(c, clock)).TransitionTo(Available),
            When(ResetRequested, c => c.Message.Status == BackupStatus.Error).Then(c => Reset(c, clock)).TransitionTo(Error));
    }

    public State Creating { get; private set; } = null!;
    public State Available { get; private set; } = null!;
    public State Error { get; private set; } = null!;
    public State Restoring { get; private set; } = null!;
    public State Deleting { get; private set; } = null!;
    public State ErrorDeleting { get; private set; } = null!;
    public State Deleted { get; private set; } = null!;

    public Event<BackupCreateRequested> CreateRequested { get; private set; } = null!;
    public Event<BackupImportRequested> ImportRequested { get; private set; } = null!;
    public Event<BackupRestoreRequested> RestoreRequested { get; private set; } = null!;
    public Event<BackupDeleteRequested> DeleteRequested { get; private set; } = null!;
    public Event<BackupForceDeleteRequested> ForceDeleteRequested { get; private set; } = null!;
    public Event<BackupResetRequested> ResetRequested { get; private set; } = null!;
    public Event<BackupStarted> Started { get; private set; } = null!;
    public Event<BackupProgressed> Progressed { get; private set; } = null!;
    public Event<BackupCompleted> Completed { get; private set; } = null!;
    public Event<Fault<CreateBackup>> Faulted { get; private set; } = null!;
    public Event<BackupNotTaken> NotTaken { get; private set; } = null!;
    public Event<BackupRestored> Restored { get; private set; } = null!;
    public Event<Fault<RestoreBackup>> RestoreFaulted { get; private set; } = null!;
    public Event<BackupDeleted> DataDeleted { get; private set; } = null!;
    public Event<Fault<DeleteBackup>> DeleteFaulted { get; private set; } = null!;
    public Event<BackupVerifyRequested> VerifyRequested { get; private set; } = null!;
    public Event<BackupVerified> Verified { get; private set; } = null!;
    public Event<BackupVerifyFailed> VerifyFailed { get; private set; } = null!;
    public Event<Fault<VerifyBackup>> VerifyFaulted { get; private set; } = null!;

    // Every row is written by the Api before any event about it can exist: an event without one is not ours.
    static void ById<T>(IEventCorrelationConfigurator<Backup, T> e, Func<T, Guid> id) where T : class
    {
        e.CorrelateById(m => id(m.Message));
        e.OnMissingInstance(m => m.Discard());
    }

    static AppDbContext Db(ConsumeContext c) => c.GetServiceOrCreateInstance<AppDbContext>();

    /// <summary>The storage host of a volume; empty for one that is gone (its command then fails on any agent of the zone).</summary>
    static async Task<string> VolumeHostAsync(ConsumeContext c, Guid volumeId) =>
        (await Db(c).Volumes.FindAsync([volumeId], c.CancellationToken))?.Host ?? "";

    /// <summary>Locality: the volume's host's queue first (Queues explains the spill to the zone's); the zone's without a host.</summary>
    static string Route(ConsumeContext c, string zoneQueue, string host) =>
        CommandQueues.Route(c.GetServiceOrCreateInstance<IOptions<StorageOptions>>().Value, zoneQueue, host);

    static DateTimeOffset Touch(BehaviorContext<Backup> c, TimeProvider clock) => (c.Saga.UpdatedAt = clock.GetUtcNow()).Value;

    // After the transition, so the notification carries the new status.
    static void Notify(BehaviorContext<Backup> c, NotificationOptions notifications, string eventType, DateTimeOffset now, BackupCompleted? completed = null) =>
        Db(c).Outbox.AddRange(Notifications.Backup(c.Saga, eventType, now, notifications, completed: completed));

    /// <summary>Returns the volume (or the snapshot backed up) to its status before the backup; repeated calls change nothing.</summary>
    static async Task ReleaseSourceAsync(BehaviorContext<Backup> c, DateTimeOffset now)
    {
        var db = Db(c);
        if (c.Saga.SnapshotId is { } snapshotId)
        {
            if (await db.Snapshots.FindAsync([snapshotId], c.CancellationToken) is { Status: "backing-up" } snapshot)
            {
                snapshot.Status = "available";
                snapshot.UpdatedAt = now;
            }
        }
        else if (await db.Volumes.FindAsync([c.Saga.VolumeId], c.CancellationToken) is { } volume)
            volume.EndBackup(now);
    }

    static async Task FailAsync(BehaviorContext<Backup> c, string reason, TimeProvider clock)
    {
        var now = Touch(c, clock);
        Metrics.BackupEnded(Metrics.Failed, now - c.Saga.CreatedAt);
        await ReleaseSourceAsync(c, now);
        c.Saga.FailReason = Truncate(reason);
    }

    /// <summary>A running backup is stopped (every agent hears the cancel) and its source freed.</summary>
    static async Task CancelAsync(BehaviorContext<Backup> c, TimeProvider clock)
    {
        var now = Touch(c, clock);
        Db(c).Outbox.Add(OutboxMessage.Create(new CancelBackup(c.Saga.Id), now));
        await ReleaseSourceAsync(c, now);
    }

    static async Task StartDeleteAsync(BehaviorContext<Backup> c, TimeProvider clock, NotificationOptions notifications)
    {
        var now = Touch(c, clock);
        c.Saga.FailReason = null;
        var (id, dataId) = (c.Saga.Id, c.Saga.DataId);
        // Another row on the same manifest (an import under another id, or the backup it came from) still needs the data:
        // only this row goes, through the same event an agent sends. Deleted rows are filtered out of Backups.
        if (await Db(c).Backups.AnyAsync(b => b.Id != id && (b.Id == dataId || b.ManifestId == dataId), c.CancellationToken))
            Db(c).Outbox.Add(OutboxMessage.Create(new BackupDeleted(id, 0, 0), now));
        else
            Db(c).Outbox.Add(OutboxMessage.Create(new DeleteBackup(id, c.Saga.Container, c.Saga.AvailabilityZone, c.Saga.ManifestId), now,
                Queues.DeleteBackup(c.Saga.AvailabilityZone)));
        Notify(c, notifications, "backup.delete.start", now);
    }

    static void Reset(BehaviorContext<Backup> c, TimeProvider clock)
    {
        Touch(c, clock);
        c.Saga.RestoreId = null;                                  // a late event of an abandoned restore is ignored
        c.Saga.RestoreVolumeId = null;
    }

    /// <summary>The restore's volume leaves restoring-backup: available with the backup's data, or error_restoring.</summary>
    static async Task EndRestoreAsync(BehaviorContext<Backup> c, Guid volumeId, bool failed, TimeProvider clock)
    {
        var requestedAt = c.Saga.UpdatedAt;                       // the restore's request: nothing else touches a restoring backup
        var now = Touch(c, clock);
        if (requestedAt is { } at) Metrics.RestoreEnded(failed ? Metrics.Failed : Metrics.Completed, now - at);
        c.Saga.RestoreId = null;
        if (await Db(c).Volumes.FindAsync([volumeId], c.CancellationToken) is { Status: VolumeStatus.RestoringBackup } volume)
        {
            volume.Status = failed ? VolumeStatus.ErrorRestoring : VolumeStatus.Available;
            volume.UpdatedAt = now;
        }
        c.Saga.RestoreVolumeId = volumeId;                        // for the notification; cleared with the next request
    }

    /// <summary>A restore asked while the backup could not serve it (two requests raced): its volume, untouched, is freed.</summary>
    static async Task RejectRestoreAsync(BehaviorContext<Backup, BackupRestoreRequested> c, TimeProvider clock, NotificationOptions notifications)
    {
        var now = clock.GetUtcNow();
        if (await Db(c).Volumes.FindAsync([c.Message.VolumeId], c.CancellationToken) is { Status: VolumeStatus.RestoringBackup } volume)
        {
            volume.Status = VolumeStatus.Available;
            volume.UpdatedAt = now;
        }
        Db(c).Outbox.AddRange(Notifications.Backup(c.Saga, "backup.restore.error", now, notifications,
            failReason: $"Backup status must be available but is {c.Saga.Status}.", restoreVolumeId: c.Message.VolumeId));
    }

    static string Truncate(string reason) => reason.Length > 255 ? reason[..255] : reason;

    /// <summary>The innermost exception's message names the cause (an NFS server down, a missing volume), not a wrapper.</summary>
    static string FailReason(ExceptionInfo[] exceptions)
    {
        var exception = exceptions.FirstOrDefault();
        while (exception?.InnerException is { } inner) exception = inner;
        return exception is null ? "Backup failed" : $"{exception.ExceptionType.Split('.').Last()}: {exception.Message}";
    }

    /// <summary>Counts the events the machine handled (their steps ran and committed with the saga) or that faulted.</summary>
    sealed class EventCounter : IEventObserver<Backup>
    {
        public Task PreExecute(BehaviorContext<Backup> context) => Task.CompletedTask;
        public Task PreExecute<T>(BehaviorContext<Backup, T> context) where T : class => Task.CompletedTask;
        public Task PostExecute(BehaviorContext<Backup> context) => Count(context, "handled");
        public Task PostExecute<T>(BehaviorContext<Backup, T> context) where T : class => Count(context, "handled");
        public Task ExecuteFault(BehaviorContext<Backup> context, Exception exception) => Count(context, "faulted");
        public Task ExecuteFault<T>(BehaviorContext<Backup, T> context, Exception exception) where T : class => Count(context, "faulted");

        static Task Count(BehaviorContext<Backup> context, string outcome)
        {
            Metrics.SagaEvent(context.Event.Name, outcome);
            return Task.CompletedTask;
        }
    }
}
