using MassTransit;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Volumes;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

public sealed class BackupSagaState : SagaStateMachineInstance
{
    public Guid CorrelationId { get; set; }
    public string CurrentState { get; set; } = "";
    public Guid VolumeId { get; set; }
    public Guid? SnapshotId { get; set; }
    public Guid? ParentId { get; set; }
    public string? AgentHost { get; set; }
    public long BytesDone { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? CompletedAt { get; set; }
    public uint Version { get; set; }

    /// <summary>An imported backup's instance: already done, so agent events about it are ignored.</summary>
    public static BackupSagaState Imported(Backup backup) => new()
    {
        CorrelationId = backup.Id, CurrentState = nameof(BackupSaga.Available), VolumeId = backup.VolumeId, ParentId = backup.ParentId,
    };

    /// <summary>The Api writes the instance with the backup row and the command, so no agent event can arrive before it.</summary>
    public static BackupSagaState Creating(Guid backupId, Guid volumeId, Guid? snapshotId, Guid? parentId) => new()
    {
        CorrelationId = backupId, CurrentState = nameof(BackupSaga.Creating), VolumeId = volumeId, SnapshotId = snapshotId, ParentId = parentId,
    };
}

/// <summary>
/// A backup's creation, from the agent's events to the rows users see. Steps change the backup and volume rows in the
/// saga's own DbContext, so the state, the rows and any outbox message commit in one transaction.
/// </summary>
public sealed class BackupSaga : MassTransitStateMachine<BackupSagaState>
{
    public BackupSaga(TimeProvider clock)
    {
        InstanceState(x => x.CurrentState);
        Event(() => Started, e => { e.CorrelateById(m => m.Message.BackupId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => Progressed, e => { e.CorrelateById(m => m.Message.BackupId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => Completed, e => { e.CorrelateById(m => m.Message.BackupId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => Faulted, e => { e.CorrelateById(m => m.Message.Message.BackupId); e.OnMissingInstance(m => m.Discard()); });
        Event(() => NotTaken, e => { e.CorrelateById(m => m.Message.BackupId); e.OnMissingInstance(m => m.Discard()); });

        During(Creating,
            When(Started).ThenAsync(async c =>
            {
                c.Saga.AgentHost = c.Message.AgentHost;
                c.Saga.StartedAt = c.Message.StartedAt;
                if (await Db(c).Backups.FindAsync([c.Saga.CorrelationId], c.CancellationToken) is { } backup) backup.Host = c.Message.AgentHost;
                if (c.Message.DeviceIsCopy) await ReleaseSource(c, clock.GetUtcNow());   // the copy is taken: the volume is free
            }),
            When(Progressed).ThenAsync(async c =>
            {
                if (c.Message.BytesDone <= c.Saga.BytesDone) return;            // a late or repeated report
                c.Saga.BytesDone = c.Message.BytesDone;
                if (await Db(c).Backups.FindAsync([c.Saga.CorrelationId], c.CancellationToken) is { } backup)
                    Db(c).Outbox.Add(Notifications.Backup(backup, "backup.createprogress", clock.GetUtcNow(), c.Message.BytesDone));
            }),
            When(Completed).ThenAsync(async c =>
            {
                var now = clock.GetUtcNow();
                c.Saga.CompletedAt = c.Message.CompletedAt;
                c.Saga.BytesDone = c.Message.SizeBytes;
                await ReleaseSource(c, now);
                if (await Db(c).Backups.FindAsync([c.Saga.CorrelationId], c.CancellationToken) is not { } backup) return;
                backup.Status = BackupStatus.Available;
                backup.ObjectCount = c.Message.ObjectCount;
                backup.StoredBytes = c.Message.StoredBytes;
                backup.UpdatedAt = now;
                if (backup.ParentId is { } parentId && await Db(c).Backups.FindAsync([parentId], c.CancellationToken) is { } parent)
                    parent.NumDependentBackups++;
                Db(c).Outbox.Add(Notifications.Backup(backup, "backup.create.end", now));
            }).TransitionTo(Available),
            When(Faulted).ThenAsync(c => FailAsync(c, FailReason(c.Message), clock.GetUtcNow())).TransitionTo(Error),
            When(NotTaken).ThenAsync(c => FailAsync(c, c.Message.Reason, clock.GetUtcNow())).TransitionTo(Error));

        // An agent that comes back and takes a backup already given up is told to stop; its volume is no longer held.
        During(Error, When(Started).Then(c => Db(c).Outbox.Add(OutboxMessage.Create(new CancelBackup(c.Message.BackupId), clock.GetUtcNow()))));
        During(Available, Ignore(Started));
        During(Available, Error, Ignore(Progressed), Ignore(Completed), Ignore(Faulted), Ignore(NotTaken));
    }

    public State Creating { get; private set; } = null!;
    public State Available { get; private set; } = null!;
    public State Error { get; private set; } = null!;

    public Event<BackupStarted> Started { get; private set; } = null!;
    public Event<BackupProgressed> Progressed { get; private set; } = null!;
    public Event<BackupCompleted> Completed { get; private set; } = null!;
    public Event<Fault<CreateBackup>> Faulted { get; private set; } = null!;
    public Event<BackupNotTaken> NotTaken { get; private set; } = null!;

    static AppDbContext Db(ConsumeContext c) => c.GetServiceOrCreateInstance<AppDbContext>();

    /// <summary>Returns the volume (or the snapshot backed up) to its status before the backup; repeated calls change nothing.</summary>
    public static async Task ReleaseSourceAsync(AppDbContext db, BackupSagaState saga, DateTimeOffset now, CancellationToken ct)
    {
        if (saga.SnapshotId is { } snapshotId)
        {
            if (await db.Snapshots.FindAsync([snapshotId], ct) is { Status: "backing-up" } snapshot)
            {
                snapshot.Status = "available";
                snapshot.UpdatedAt = now;
            }
        }
        else if (await db.Volumes.FindAsync([saga.VolumeId], ct) is { } volume)
            volume.EndBackup(now);
    }

    static Task ReleaseSource(BehaviorContext<BackupSagaState> c, DateTimeOffset now) => ReleaseSourceAsync(Db(c), c.Saga, now, c.CancellationToken);

    /// <summary>The backup ends in error: the source is released, the reason kept, subscribers told.</summary>
    static async Task FailAsync(BehaviorContext<BackupSagaState> c, string reason, DateTimeOffset now)
    {
        await ReleaseSource(c, now);
        if (await Db(c).Backups.FindAsync([c.Saga.CorrelationId], c.CancellationToken) is not { } backup) return;
        backup.Fail(reason, now);
        Db(c).Outbox.Add(Notifications.Backup(backup, "backup.create.error", now));
    }

    /// <summary>The innermost exception's message names the cause (an NFS server down, a missing volume), not a wrapper.</summary>
    static string FailReason(Fault<CreateBackup> fault)
    {
        var exception = fault.Exceptions.FirstOrDefault();
        while (exception?.InnerException is { } inner) exception = inner;
        return exception is null ? "Backup failed" : $"{exception.ExceptionType.Split('.').Last()}: {exception.Message}";
    }
}
