using Microsoft.Extensions.Options;

namespace VolumeBackup.VolumeAgent;

/// <summary>
/// The volume files of this host. Names follow Cinder's drivers (<c>volume-{id}</c>, <c>snapshot-{id}</c>);
/// a backup's temporaries carry its id so a retried request finds and replaces its own; each restore device also carries
/// a nonce, so two deliveries of one restore never write into the same file.
/// </summary>
public sealed class VolumePool
{
    const int CopyBlock = 1024 * 1024;
    const string RestoreMark = ".restore-";                   // volume-<id>.restore-<restore id>-<nonce>
    readonly string root;
    readonly bool allowCopy;
    readonly ILogger<VolumePool> logger;

    public VolumePool(IOptions<VolumeOptions> options, ILogger<VolumePool> logger)
    {
        root = Path.GetFullPath(options.Value.PoolPath);
        allowCopy = options.Value.AllowCopyFallback;
        this.logger = logger;
        Directory.CreateDirectory(root);
        RemoveStaleTemporaries();
    }

    /// <summary>Temporaries a crash left behind: no device outlives the agent that handed it out (a job holding one retries).</summary>
    void RemoveStaleTemporaries()
    {
        foreach (var pattern in new[] { "tmp-*", "*.restore-*", "*.creating" })
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

    /// <summary>A device id is a file name in the pool; anything else is refused so ids never become paths outside it.</summary>
    public string? ResolveDevice(string deviceId)
    {
        if (deviceId.Length is 0 or > 200 || deviceId.Contains('/') || deviceId.Contains('\\') || deviceId.StartsWith('.'))
            return null;
        return Path.Combine(root, deviceId);
    }

    /// <summary>Creates a sparse raw file; an existing file of the same size is kept (a retried create).</summary>
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
        using (var file = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None))
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

    public bool DeleteVolume(Guid id) => DeleteFile(VolumePath(id));

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
    /// so it is free again at once; otherwise it is read in place.
    /// </summary>
    public (string Path, bool Temporary, string Method) GetBackupDevice(Guid backupId, Guid volumeId, Guid? snapshotId, bool inUse, CancellationToken ct)
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
        using (var file = new FileStream(device, FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite))
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
            return true;
        }
        return DeleteFile(path);
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
        using var to = new FileStream(target, FileMode.Create, FileAccess.Write, FileShare.None);
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
        using var to = new FileStream(target, FileMode.Create, FileAccess.Write, FileShare.None, 0);
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
        to.Flush(true);
    }

    static bool DeleteFile(string path)
    {
        if (!File.Exists(path)) return false;
        File.Delete(path);
        return true;
    }
}
