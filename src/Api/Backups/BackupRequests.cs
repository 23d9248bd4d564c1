namespace VolumeBackup.Api.Backups;

// What the Api's handlers ask of a backup. A handler validates, writes the rows it owns and one of these to the outbox in
// one transaction; BackupSaga then decides, in the backup's current state, what the request does.

/// <summary>Back up: the row was written in the machine's initial state, its volume (or snapshot) reserved.</summary>
public record BackupCreateRequested(Guid BackupId, bool InUse);

/// <summary>An imported record's row was written; its data is on the share already.</summary>
public record BackupImportRequested(Guid BackupId);

/// <summary>Restore into <paramref name="VolumeId"/>, which the handler set restoring-backup.</summary>
public record BackupRestoreRequested(Guid BackupId, Guid RestoreId, Guid VolumeId);

public record BackupDeleteRequested(Guid BackupId);

/// <summary>An admin's os-force_delete: a running backup is cancelled first.</summary>
public record BackupForceDeleteRequested(Guid BackupId);

/// <summary>An admin's os-reset_status, to <paramref name="Status"/> (available or error).</summary>
public record BackupResetRequested(Guid BackupId, string Status);

/// <summary>Read and check every chunk of an available backup (an admin's os-verify, or the periodic verify job).</summary>
public record BackupVerifyRequested(Guid BackupId);
