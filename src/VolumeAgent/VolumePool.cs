using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.VolumeAgent;

/// <summary>
/// The volume files of this host. Names follow Cinder's drivers (<c>volume-{id}</c>, <c>snapshot-{id}</c>);
/// a backup's temporaries carry its id so a retried request finds and replaces its own; each restore device also carries
/// a nonce, so two deliveries of one restore never write into the same file.
/// <para>
/// Changed-block tracking: a backup device that was a reflink clone, released with commit (its backup's manifest is on
/// the share), is kept as <c>cbt-base-{volume id}</c>, the base of that volume's next incremental, which then gets the
/// ranges where its own device and the base no longer share blocks (<see cref="ChangedBlocks"/>). Each device carries a
/// generation, kept with its base and recorded in the backup's manifest by the BackupAgent, so that a base is used only
/// against the very copy its backup read. The base goes when a newer backup of the volume commits, when its backup is
/// deleted, when the volume is restored over or deleted, when the bound on base space drops it, and on a restart (the
/// agent cannot vouch for what happened to the pool while it was down). A failed backup keeps the old base.
/// </para>
/// </summary>
public sealed class VolumePool
{
    const int CopyBlock = 1024 * 1024;
    // Volumes hold tenants' data: only the agent's user may read them (0600), or list the pool it creates (0700).
    const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    const UnixFileMode OwnerOnlyFolder = OwnerOnly | UnixFileMode.UserExecute;
    const string RestoreMark = ".restore-";                   // volume-<id>.restore-<restore id>-<nonce>
    readonly string root;
    readonly bool allowCopy;
    readonly ILogger<VolumePool> logger;
    readonly long maxBaseBytes;
    readonly long capacity;
    readonly bool trackable;
    // Guards pending, bases and the base files: a commit may rename over a base another call is comparing against.
    readonly Lock cbt = new();
    readonly Dictionary<Guid, PendingDevice> pending = [];
    readonly Dictionary<Guid, KeptBase> bases = [];
    long basesKept;

    public VolumePool(IOptions<VolumeOptions> options, ILogger<VolumePool> logger, IMeterFactory? meters = null)
    {
        root = Path.GetFullPath(options.Value.PoolPath);
        allowCopy = options.Value.AllowCopyFallback;
        maxBaseBytes = options.Value.MaxBaseBytes;
        capacity = options.Value.CapacityBytes;
        this.logger = logger;
        Directory.CreateDirectory(root, OwnerOnlyFolder);
        trackable = ChangedBlocks.IsXfs(root);
        RemoveStaleTemporaries();
        meters?.Create(ServiceDefaultsExtensions.TelemetryName).CreateObservableGauge("volumeagent.cbt.base.size", BaseBytes, "By",
            "Bytes held only by the changed-block-tracking bases of this host's pool: blocks their volumes have overwritten since");
    }

    sealed record PendingDevice(Guid VolumeId, string Generation, bool Reflinked);

    sealed record KeptBase(Guid BackupId, string Generation, long Sequence);

    /// <summary>Temporaries a crash left behind: no device outlives the agent that handed it out (a job holding one retries).</summary>
    void RemoveStaleTemporaries()
    {
        foreach (var pattern in new[] { "tmp-*", "*.restore-*", "*.creating", "cbt-base-*" })
            foreach (var file in Directory.EnumerateFiles(root, pattern))
            {
                File.Delete(file);
                logger.StaleTemporaryRemoved(Path.GetFileName(file));
            }
    }

    public string VolumePath(Guid id) => Path.Combine(root, $"volume-{id}");
    public string SnapshotPath(Guid id) => Path.Combine(root, $"snapshot-{id}");
    public string BackupDevicePath(Guid backupId) => Path.Combine(root, $"tmp-backup-{backupId}");
    string TempSnapshotPath(Guid backupId) => Path.Combine(root, $"tmp-snapshot-{backupId}");
    public string BasePath(Guid volumeId) => Path.Combine(root, $"cbt-base-{volumeId}");

    /// <summary>A device id is a file name in the pool; anything else is refused so ids never become paths outside it.</summary>
    public string? ResolveDevice(string deviceId)
    {
        if (deviceId.Length is 0 or > 200 || deviceId.Contains('/') || deviceId.Contains('\\') || deviceId.StartsWith('.'))
            return null;
        return Path.Combine(root, deviceId);
    }

    /// <summary>Creates a sparse raw file; an existing file of the same size is kept (a retried create).</summary>
    /// <summary>A restore device's path, or null when the id names anything else: WriteDevice writes into nothing but these.</summary>
    public string? ResolveRestoreDevice(string deviceId) =>
        ResolveDevice(deviceId) is { } path && Path.GetFileName(path).StartsWith("volume-", StringComparison.Ordinal)
        && path.Contains(RestoreMark, StringComparison.Ordinal) ? path : null;

    /// <summary>The pool's size (its filesystem's, or the configured capacity) and the filesystem's free bytes.</summary>
    public (long Total, long Free) Capacity()
    {
        var drive = new DriveInfo(root);
        var total = capacity > 0 ? capacity : drive.TotalSize;
        return (total, Math.Min(total, drive.AvailableFreeSpace));
    }

    public long CreateVolume(Guid id, long sizeBytes)
    {
        var path = VolumePath(id);
        if (File.Exists(path))
        {
            var existing = new FileInfo(path).Length;
            if (existing != sizeBytes) throw new InvalidOperationException($"Volume {id} exists with {existing} bytes, not {sizeBytes}");
            return existing;
        }
        var partial = path + ".creating";
        using (var file = CreateFile(partial, FileMode.Create, FileShare.None))
            file.SetLength(sizeBytes);              // a hole of the whole size: no blocks allocated
        File.Move(partial, path);
        return sizeBytes;
    }

    public long CreateVolumeFromSnapshot(Guid id, Guid snapshotId, long sizeBytes, CancellationToken ct)
    {
        var source = SnapshotPath(snapshotId);
        if (!File.Exists(source)) throw new FileNotFoundException($"Snapshot {snapshotId} not found");
        var partial = VolumePath(id) + ".creating";
        Clone(source, partial, ct);
        using (var file = new FileStream(partial, FileMode.Open, FileAccess.Write))
            if (file.Length < sizeBytes) file.SetLength(sizeBytes);
        File.Move(partial, VolumePath(id), overwrite: true);
        return sizeBytes;
    }

    public bool DeleteVolume(Guid id)
    {
        DropBase(id, "volume deleted");
        return DeleteFile(VolumePath(id));
    }

    public string CreateSnapshot(Guid snapshotId, Guid volumeId, CancellationToken ct)
    {
        var source = VolumePath(volumeId);
        if (!File.Exists(source)) throw new FileNotFoundException($"Volume {volumeId} not found");
        var partial = SnapshotPath(snapshotId) + ".creating";
        var method = Clone(source, partial, ct);
        File.Move(partial, SnapshotPath(snapshotId), overwrite: true);
        return method;
    }

    public bool DeleteSnapshot(Guid id) => DeleteFile(SnapshotPath(id));

    /// <summary>
    /// The seed's temporary-clone flow: for an attached volume, a temporary snapshot, a clone of it, the snapshot
    /// deleted; for a snapshot, a clone of it. A detached volume is also cloned when reflink makes that instant,
    /// so it is free again at once; otherwise it is read in place. With <paramref name="baseBackupId"/>, the ranges
    /// changed since that backup's device, when it is this volume's base and the filesystem can tell.
    /// </summary>
    public BackupDevice GetBackupDevice(Guid backupId, Guid volumeId, Guid? snapshotId, bool inUse, Guid? baseBackupId, CancellationToken ct)
    {
        var (path, temporary, method) = TakeBackupDevice(backupId, volumeId, snapshotId, inUse, ct);
        var generation = Guid.NewGuid().ToString("N");
        lock (cbt)
        {
            if (temporary)
                pending[backupId] = new PendingDevice(volumeId, generation, method == "reflink");
            if (baseBackupId is not { } wanted)
                return new BackupDevice(path, temporary, method, generation, null, null);
            EnforceBaseBound();
            var kept = bases.GetValueOrDefault(volumeId);
            var why = method != "reflink" ? $"the device is {method}, not a reflink clone"
                : !trackable ? "the pool's filesystem is not XFS"
                : kept is null ? "no base kept for the volume"
                : kept.BackupId != wanted ? $"the base is of backup {kept.BackupId}, not of the parent {wanted}"
                : null;
            if (kept is not null && why is null)
            {
                var changed = ChangedBlocks.Compare(path, BasePath(volumeId));
                if (changed is not null)
                {
                    logger.ChangedBlocksFound(backupId, wanted, changed.Count, changed.Sum(r => r.Length));
                    return new BackupDevice(path, temporary, method, generation, changed, kept.Generation);
                }
                why = "the filesystem cannot tell which blocks changed";
            }
            logger.NoChangedBlocks(backupId, why ?? "no base kept for the volume");
            return new BackupDevice(path, temporary, method, generation, null, null);
        }
    }

    /// <summary>Drops the base kept for a backup, if any (the backup was deleted).</summary>
    public bool DropBackupBase(Guid backupId)
    {
        lock (cbt)
        {
            var volume = bases.FirstOrDefault(b => b.Value.BackupId == backupId).Key;
            return volume != Guid.Empty && DropBase(volume, "its backup was deleted");
        }
    }

    bool DropBase(Guid volumeId, string reason)
    {
        lock (cbt)
        {
            if (!bases.Remove(volumeId, out var kept))
                return false;
            DeleteFile(BasePath(volumeId));
            logger.BaseDropped(volumeId, kept.BackupId, reason);
            return true;
        }
    }

    // Past the bound, the oldest bases go first: their volumes have had the most time to diverge from them.
    void EnforceBaseBound()
    {
        if (bases.Count == 0)
            return;
        var sizes = bases.ToDictionary(b => b.Key, b => ChangedBlocks.ExclusiveBytes(BasePath(b.Key)) ?? new FileInfo(BasePath(b.Key)).Length);
        var total = sizes.Values.Sum();
        foreach (var (volume, kept) in bases.OrderBy(b => b.Value.Sequence).ToList())
        {
            if (total <= maxBaseBytes && maxBaseBytes > 0)
                break;
            total -= sizes[volume];
            DropBase(volume, $"bases hold more than {maxBaseBytes} bytes");
        }
    }

    long BaseBytes()
    {
        lock (cbt)
            return bases.Keys.Sum(volume => ChangedBlocks.ExclusiveBytes(BasePath(volume)) ?? 0);
    }

    (string Path, bool Temporary, string Method) TakeBackupDevice(Guid backupId, Guid volumeId, Guid? snapshotId, bool inUse, CancellationToken ct)
    {
        var device = BackupDevicePath(backupId);
        DeleteFile(device);                                   // a retry starts from a fresh point in time
        if (snapshotId is { } snap)
        {
            var snapshot = SnapshotPath(snap);
            if (!File.Exists(snapshot)) throw new FileNotFoundException($"Snapshot {snap} not found");
            return (device, true, Clone(snapshot, device, ct));
        }

        var volume = VolumePath(volumeId);
        if (!File.Exists(volume)) throw new FileNotFoundException($"Volume {volumeId} not found");
        if (inUse)
        {
            var tempSnapshot = TempSnapshotPath(backupId);
            try
            {
                var method = Clone(volume, tempSnapshot, ct);
                Clone(tempSnapshot, device, ct);
                return (device, true, method);
            }
            finally { DeleteFile(tempSnapshot); }
        }

        if (TryReflinkOnly(volume, device)) return (device, true, "reflink");
        return (volume, false, "none");
    }

    /// <summary>
    /// A sparse file of the volume's size beside it; committed by rename so a failed restore leaves the volume as it was.
    /// Each call makes a new file (restore id + nonce): a redelivered restore must not truncate a device an earlier
    /// delivery is still writing, and only the delivery that finished commits its own.
    /// </summary>
    public (string Path, long Size) GetRestoreDevice(Guid volumeId, Guid restoreId)
    {
        var volume = VolumePath(volumeId);
        if (!File.Exists(volume)) throw new FileNotFoundException($"Volume {volumeId} not found");
        var size = new FileInfo(volume).Length;
        var device = Path.Combine(root, $"volume-{volumeId}{RestoreMark}{restoreId}-{Guid.NewGuid():N}");
        using (var file = CreateFile(device, FileMode.CreateNew, FileShare.ReadWrite))
            file.SetLength(size);
        return (device, size);
    }

    /// <summary>
    /// Removes a temporary device; a committed restore device replaces its volume instead. Committing a restore device
    /// that is gone fails: the writer's data went with it (an agent restart removes stale temporaries while the
    /// writer still holds the unlinked file), so reporting success would leave the volume's old data in place.
    /// </summary>
    public bool ReleaseDevice(string deviceId, bool commit)
    {
        var path = ResolveDevice(deviceId) ?? throw new ArgumentException($"Invalid device id {deviceId}");
        var name = Path.GetFileName(path);
        var restoreMark = name.IndexOf(RestoreMark, StringComparison.Ordinal);
        if (name.StartsWith("volume-", StringComparison.Ordinal) && restoreMark < 0)
            return false;                                     // a volume read in place: nothing to release
        if (commit && restoreMark >= 0)
        {
            var volume = Path.Combine(root, name[..restoreMark]);
            if (!File.Exists(path))
                throw new InvalidOperationException($"Restore device {deviceId} no longer exists (removed as stale by a VolumeAgent restart?); what was written into it is lost and the restore must be redone");
            if (!File.Exists(volume))
                throw new InvalidOperationException($"Restore device {deviceId} cannot be committed: its volume was deleted");
            File.Move(path, volume, overwrite: true);
            if (name.StartsWith("volume-", StringComparison.Ordinal) && Guid.TryParse(name.AsSpan(7, restoreMark - 7), out var volumeId))
                DropBase(volumeId, "the volume was restored over");
            return true;
        }
        if (name.StartsWith("tmp-backup-", StringComparison.Ordinal) && Guid.TryParse(name.AsSpan("tmp-backup-".Length), out var backupId))
            return ReleaseBackupDevice(path, backupId, commit);
        return DeleteFile(path);
    }

    // Commit: the backup's manifest is on the share, so its device becomes the volume's base. A device that is gone (a
    // restart removed it) or was a copy leaves no base, and the backup is not failed for it: bases are an optimisation.
    bool ReleaseBackupDevice(string path, Guid backupId, bool commit)
    {
        lock (cbt)
        {
            if (!pending.Remove(backupId, out var device) || !commit)
                return DeleteFile(path);
            if (!device.Reflinked || maxBaseBytes == 0 || !File.Exists(path))
            {
                DropBase(device.VolumeId, "a newer backup succeeded without a base of its own");
                return DeleteFile(path);
            }
            File.Move(path, BasePath(device.VolumeId), overwrite: true);
            bases[device.VolumeId] = new KeptBase(backupId, device.Generation, ++basesKept);
            logger.BaseKept(device.VolumeId, backupId);
            EnforceBaseBound();
            return true;
        }
    }

    public long AllocatedBytes(string path) => NativeFile.AllocatedBytes(path);

    /// <summary>Reflink when the filesystem can; otherwise a sparse-preserving copy, if allowed.</summary>
    string Clone(string source, string target, CancellationToken ct)
    {
        if (TryReflinkOnly(source, target)) return "reflink";
        if (!allowCopy) throw new InvalidOperationException($"The pool {root} cannot reflink and copying is disabled");
        logger.CloneByCopy(source);
        try
        {
            CopySparse(source, target, ct);
        }
        catch (Exception)
        {
            File.Delete(target);                              // a partial copy is no device: never leave one to be mistaken for it
            throw;
        }
        return "copy";
    }

    static bool TryReflinkOnly(string source, string target)
    {
        using var from = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var to = CreateFile(target, FileMode.Create, FileShare.None);
        if (NativeFile.TryReflink(from.SafeFileHandle, to.SafeFileHandle, out _)) return true;
        to.Dispose();
        File.Delete(target);
        return false;
    }

    // Checks the token every block: a copy can take as long as reading the whole volume, and a caller that gave up
    // (its deadline passed) must not keep the disk busy.
    static void CopySparse(string source, string target, CancellationToken ct)
    {
        var buffer = new byte[CopyBlock];
        using var from = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 0);
        using var to = CreateFile(target, FileMode.Create, FileShare.None, bufferSize: 0);
        long offset = 0;
        for (int n; (n = from.Read(buffer)) > 0; offset += n)
        {
            ct.ThrowIfCancellationRequested();
            if (buffer.AsSpan(0, n).ContainsAnyExcept((byte)0))   // zero blocks stay holes
            {
                to.Position = offset;
                to.Write(buffer, 0, n);
            }
        }
        to.SetLength(from.Length);
        ct.ThrowIfCancellationRequested();                      // before the fsync, which may take as long as the copy did
        to.Flush(true);
    }

    // A file this agent makes in the pool: owner-only from its creation (an existing file keeps its mode).
    static FileStream CreateFile(string path, FileMode mode, FileShare share, int bufferSize = 4096) => new(path, new FileStreamOptions
    {
        Mode = mode, Access = FileAccess.Write, Share = share, BufferSize = bufferSize, UnixCreateMode = OwnerOnly,
    });

    static bool DeleteFile(string path)
    {
        if (!File.Exists(path)) return false;
        File.Delete(path);
        return true;
    }
}

/// <summary>A device handed out for a backup; with <see cref="Changed"/>, the ranges that differ from the base of generation <see cref="BaseGeneration"/>.</summary>
public sealed record BackupDevice(string Path, bool Temporary, string Method, string Generation, IReadOnlyList<ByteRange>? Changed, string? BaseGeneration);
