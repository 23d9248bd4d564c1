namespace VolumeBackup.BackupAgent.Repository;

/// <summary>
/// Where a backup repository lives: a plain directory (a share the OS mounted, as Cinder's NFS driver
/// uses) or an <c>nfs://host/export/dir</c> target reached through libnfs with no mount.
/// Paths are relative to the store's root and use '/'; callers validate user-supplied parts first.
/// A real seam: two implementations, chosen by configuration.
/// </summary>
public interface IRepositoryStore : IAsyncDisposable
{
    /// <summary>A readable name of the root (for logs and error messages).</summary>
    string Describe { get; }

    Task<bool> ExistsAsync(string path, CancellationToken ct);

    /// <summary>Reads a whole file; null when it does not exist.</summary>
    Task<byte[]?> ReadAllAsync(string path, CancellationToken ct);

    /// <summary>
    /// Reads the first <c>buffer.Length</c> bytes of a file into <paramref name="buffer"/> (fewer when it is shorter),
    /// for callers that know the size (a chunk's, from its manifest) and must not allocate an array per file: no size
    /// query, no allocation. Null when the file does not exist; else the bytes read. The default goes through
    /// <see cref="ReadAllAsync"/>.
    /// </summary>
    async Task<int?> ReadIntoAsync(string path, Memory<byte> buffer, CancellationToken ct)
    {
        if (await ReadAllAsync(path, ct) is not { } data)
            return null;
        var n = Math.Min(data.Length, buffer.Length);
        data.AsMemory(0, n).CopyTo(buffer);
        return n;
    }

    /// <summary>Writes to a temporary name in the same directory, flushes, then renames over
    /// <paramref name="path"/>: readers see the old file, nothing, or the whole new file. Creates parents.</summary>
    Task WriteAtomicAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct);

    /// <summary>Creates <paramref name="path"/> only if it does not exist (O_EXCL); false when it did.</summary>
    Task<bool> TryCreateExclusiveAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct);

    /// <summary>Renames a file, replacing <paramref name="to"/> if it exists (one atomic step on the server); false when
    /// <paramref name="from"/> was not there.</summary>
    Task<bool> RenameAsync(string from, string to, CancellationToken ct);

    /// <summary>Removes a file; false when it was not there.</summary>
    Task<bool> DeleteAsync(string path, CancellationToken ct);

    /// <summary>Sets the file's modification time to now; false when it does not exist.</summary>
    Task<bool> TouchAsync(string path, CancellationToken ct);

    /// <summary>The file's size and modification time; null when it does not exist.</summary>
    Task<StoreEntry?> StatAsync(string path, CancellationToken ct);

    /// <summary>Names (not paths) of the files and folders directly in a folder; empty when it does not exist.</summary>
    IAsyncEnumerable<string> ListAsync(string directory, CancellationToken ct);

    /// <summary>Removes an empty folder; false when missing or not empty.</summary>
    Task<bool> DeleteDirectoryAsync(string directory, CancellationToken ct);
}

public sealed record StoreEntry(long Size, DateTimeOffset Modified);
