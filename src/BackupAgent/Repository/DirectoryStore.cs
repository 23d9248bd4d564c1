using System.Security.Cryptography;

namespace VolumeBackup.BackupAgent.Repository;

/// <summary>A repository in a local folder: a share the OS mounted (as Cinder's NFS driver uses), or a disk.</summary>
public sealed class DirectoryStore(string root) : IRepositoryStore
{
    // Chunks and manifests are tenants' data: only the agents' user may read them, or list the folders it creates.
    const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    const UnixFileMode OwnerOnlyFolder = OwnerOnly | UnixFileMode.UserExecute;

    public string Describe => root;

    public Task<bool> ExistsAsync(string path, CancellationToken ct) => Task.FromResult(Path.Exists(FilePath(path)));

    public async Task<byte[]?> ReadAllAsync(string path, CancellationToken ct)
    {
        try
        {
            return await File.ReadAllBytesAsync(FilePath(path), ct);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public async Task<int?> ReadIntoAsync(string path, Memory<byte> buffer, CancellationToken ct)
    {
        try
        {
            using var file = File.OpenHandle(FilePath(path), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.Asynchronous);
            var done = 0;
            for (int n; done < buffer.Length && (n = await RandomAccess.ReadAsync(file, buffer[done..], done, ct)) > 0;)
                done += n;
            return done;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public async Task WriteAtomicAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var full = FilePath(path);
        CreateFolders(Path.GetDirectoryName(full)!);
        var temp = RepositoryStores.TemporaryOf(full);
        try
        {
            await WriteNewAsync(temp, data, ct);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    public async Task<bool> TryCreateExclusiveAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var full = FilePath(path);
        CreateFolders(Path.GetDirectoryName(full)!);
        FileStream file;
        try
        {
            file = Open(full);
        }
        catch (IOException e) when (e.HResult == 17 || Path.Exists(full))   // EEXIST, even if the holder already removed it
        {
            return false;
        }
        try
        {
            await using (file) await WriteAndFlushAsync(file, data, ct);
        }
        catch
        {
            File.Delete(full); // so that a retry can create it; the caller sees the failure
            throw;
        }
        return true;
    }

    public Task<bool> RenameAsync(string from, string to, CancellationToken ct)
    {
        try
        {
            File.Move(FilePath(from), FilePath(to), overwrite: true);
            return Task.FromResult(true);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return Task.FromResult(false);
        }
    }

    public Task<bool> DeleteAsync(string path, CancellationToken ct)
    {
        // File.Delete does not say whether the file was there; a rename does, and only one of two racing
        // deleters wins it.
        var full = FilePath(path);
        var doomed = $"{full}.deleting-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}";
        try
        {
            File.Move(full, doomed);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return Task.FromResult(false);
        }
        File.Delete(doomed);
        return Task.FromResult(true);
    }

    public Task<bool> TouchAsync(string path, CancellationToken ct)
    {
        try
        {
            File.SetLastWriteTimeUtc(FilePath(path), DateTime.UtcNow);
            return Task.FromResult(true);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return Task.FromResult(false);
        }
    }

    public Task<StoreEntry?> StatAsync(string path, CancellationToken ct)
    {
        var file = new FileInfo(FilePath(path));
        return Task.FromResult(file.Exists ? new StoreEntry(file.Length, file.LastWriteTimeUtc) : null);
    }

    public IAsyncEnumerable<string> ListAsync(string directory, CancellationToken ct)
    {
        var folder = new DirectoryInfo(DirectoryPath(directory));
        var names = folder.Exists ? folder.EnumerateFileSystemInfos().Select(entry => entry.Name) : [];
        return names.ToAsyncEnumerable();
    }

    public Task<bool> DeleteDirectoryAsync(string directory, CancellationToken ct)
    {
        var full = DirectoryPath(directory);
        try
        {
            Directory.Delete(full, recursive: false);
            return Task.FromResult(true);
        }
        catch (DirectoryNotFoundException)
        {
            return Task.FromResult(false);
        }
        catch (IOException) when (Directory.Exists(full)) // not empty
        {
            return Task.FromResult(false);
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    string FilePath(string path) => Path.Join(root, RepositoryStores.CheckFilePath(path));

    string DirectoryPath(string path) => Path.Join(root, RepositoryStores.CheckDirectoryPath(path));

    // Directory.CreateDirectory(path, mode) gives the mode to the last folder only: its missing parents would be 0755.
    static void CreateFolders(string path)
    {
        if (Directory.Exists(path)) return;
        CreateFolders(Path.GetDirectoryName(path)!);
        Directory.CreateDirectory(path, OwnerOnlyFolder);
    }

    static FileStream Open(string path) => new(path, new FileStreamOptions
    {
        Mode = FileMode.CreateNew,
        Access = FileAccess.Write,
        Share = FileShare.None,
        BufferSize = 0,
        Options = FileOptions.Asynchronous,
        UnixCreateMode = OwnerOnly,
    });

    static async Task WriteNewAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await using var file = Open(path);
        await WriteAndFlushAsync(file, data, ct);
    }

    static async Task WriteAndFlushAsync(FileStream file, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await file.WriteAsync(data, ct);
        // fsync before the rename that names it: on a share the kernel mounted, its NFS client sends COMMIT and writes
        // again whatever a server restart lost (it checks the write verifier), so the file is stable before it is named.
        file.Flush(flushToDisk: true);
    }
}
