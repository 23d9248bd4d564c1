using MassTransit;

namespace VolumeBackup.Api.Backups;

/// <summary>
/// Cinder's backup statuses, as they travel on the wire. They are derived from the backup's one state, the state of its
/// <see cref="BackupSaga"/>: the machine needs "requested, not yet picked up" apart from "an agent may be at work"
/// (both read <c>creating</c>), so the machine's names are stored and Cinder's words computed, never kept in step by hand.
/// </summary>
public static class BackupStatus
{
    public const string Creating = "creating";
    public const string Available = "available";
    public const string Restoring = "restoring";
    public const string Deleting = "deleting";
    public const string Error = "error";
    public const string ErrorDeleting = "error_deleting";
    public const string Deleted = "deleted";

    static readonly Dictionary<string, string> OfState = new()
    {
        ["Initial"] = Creating, [nameof(BackupSaga.Creating)] = Creating, [nameof(BackupSaga.Available)] = Available,
        [nameof(BackupSaga.Error)] = Error, [nameof(BackupSaga.Restoring)] = Restoring, [nameof(BackupSaga.Deleting)] = Deleting,
        [nameof(BackupSaga.ErrorDeleting)] = ErrorDeleting, [nameof(BackupSaga.Deleted)] = Deleted,
    };

    public static string Of(string state) => OfState.GetValueOrDefault(state, Error);

    /// <summary>The machine states that read as <paramref name="status"/> (none for a word Cinder does not use).</summary>
    public static List<string> StatesOf(string status) => OfState.Where(p => p.Value == status).Select(p => p.Key).ToList();
}

/// <summary>
/// A backup. The row is its saga's instance: <see cref="State"/> is written only by <see cref="BackupSaga"/>, in the
/// transaction of the event that changed it, and <see cref="Status"/> is what Cinder calls that state.
/// </summary>
public sealed class Backup : SagaStateMachineInstance
{
    public Guid Id { get; set; }
    Guid ISaga.CorrelationId { get => Id; set => Id = value; }
    /// <summary>The machine's state; a new row starts in MassTransit's "Initial" until its request event is handled.</summary>
    public string State { get; set; } = "Initial";
    public string Status => BackupStatus.Of(State);
    public required string ProjectId { get; init; }
    public required string UserId { get; init; }
    public Guid VolumeId { get; init; }
    public Guid? SnapshotId { get; init; }
    public string? Name { get; set; }
    public string? Description { get; set; }
    public required string Container { get; init; }
    public string? FailReason { get; set; }
    public int Size { get; set; }                                // GiB of the source volume, as Cinder reports
    public int ObjectCount { get; set; }
    public long StoredBytes { get; set; }
    /// <summary>Stored bytes this backup added to the share (chunks no earlier backup had), and those its delete freed:
    /// their sums over every row, deleted ones included, are what the share holds.</summary>
    public long BytesWritten { get; set; }
    public long BytesFreed { get; set; }
    public Guid? ParentId { get; init; }
    /// <summary>The backup whose manifest on the share holds this one's data, when that is not this row's own id: a row
    /// imported under another id (Cinder's users change the record's id to import a second row of the same backup).</summary>
    public Guid? ManifestId { get; init; }
    /// <summary>The id the agents find this backup's data under on the share.</summary>
    public Guid DataId => ManifestId ?? Id;
    public int NumDependentBackups { get; set; }
    public required string AvailabilityZone { get; init; }
    /// <summary>The storage host of the agent that took the backup.</summary>
    public string? Host { get; set; }
    public DateTimeOffset DataTimestamp { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? UpdatedAt { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = [];
    /// <summary>When an agent took it (BackupStarted); null while it waits in the queue.</summary>
    public DateTimeOffset? StartedAt { get; set; }
    public long BytesDone { get; set; }
    /// <summary>The running restore: its id (late events of an earlier one are ignored) and the volume it writes into.</summary>
    public Guid? RestoreId { get; set; }
    public Guid? RestoreVolumeId { get; set; }
    /// <summary>When a verify was last asked for it (an admin's os-verify or the periodic job, in the transaction of the
    /// request): the periodic job takes the backups asked longest ago first.</summary>
    public DateTimeOffset? VerifyRequestedAt { get; set; }

    public bool IsIncremental => ParentId is not null;
    public bool HasDependentBackups => NumDependentBackups > 0;
}
