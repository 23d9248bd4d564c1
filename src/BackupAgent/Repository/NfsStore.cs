using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using static VolumeBackup.BackupAgent.Repository.LibNfs;

namespace VolumeBackup.BackupAgent.Repository;

/// <summary>
/// A repository on <c>nfs://host/export/dir</c> (NFSv3, the real path; libnfs's URL options such as
/// <c>nfsport=</c> apply) through libnfs: no kernel client, no mount, no root.
/// libnfs's sync API blocks and a context must not be shared between threads, so each of
/// <c>connections</c> dedicated threads owns one context (one TCP connection) and takes work from one queue:
/// that many calls are in flight, and blocking calls never hold thread-pool threads.
/// </summary>
public sealed class NfsStore : IRepositoryStore
{
    // Chunks and manifests are tenants' data: only the agents' user may read them, or list their folders.
    const int FileMode = 0b110_000_000; // 0600; libnfs applies its own umask (022) on top
    const int DirectoryMode = 0b111_000_000; // 0700

    readonly string url;
    readonly string server;
    readonly string urlPath;
    readonly int timeoutMs;
    readonly BlockingCollection<NfsWork> queue = [];
    readonly Task[] workers;
    readonly Lock mountLock = new();
    int disposed;
    string? export; // what is mounted: the URL's folder, or its deepest ancestor that existed at the first mount
    string root = "/"; // the URL's folder inside the mount, ending in '/'

    public NfsStore(string url, int connections = 4, TimeSpan? timeout = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(connections, 1);
        this.url = url;
        (server, urlPath) = NfsContext.ParseUrl(url);
        // libnfs 4.0 calls its NFSv4 "not yet functional", and it is: no READ/WRITE size is negotiated,
        // writes over a few bytes fail to encode, and a read can crash the process.
        if (url.Split('?', 2) is [_, var query] && query.Split('&').Contains("version=4"))
            throw new ArgumentException($"NFSv4 is not supported by libnfs 4.0 (libnfs.so.13); use NFSv3: nfs://host/real/path in '{url}'.", nameof(url));
        timeoutMs = (int)(timeout ?? TimeSpan.FromSeconds(60)).TotalMilliseconds;
        Describe = url;
        workers = new Task[connections];
        for (var i = 0; i < connections; i++)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            workers[i] = done.Task;
            new Thread(() => Work(done)) { IsBackground = true, Name = $"nfs-{i}" }.Start();
        }
    }

    public string Describe { get; }

    public Task<bool> ExistsAsync(string path, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        return Run((nfs, _) =>
        {
            var full = Full(relative);
            var rc = nfs.Stat(full, out var _);
            return rc >= 0 || (IsNotFound(rc) ? false : throw nfs.Error("stat", Label(full), rc));
        }, retry: true, ct);
    }

    public Task<byte[]?> ReadAllAsync(string path, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        return Run((nfs, ct) =>
        {
            var full = Full(relative);
            var rc = nfs.Open(full, O_RDONLY, out var file);
            if (IsNotFound(rc)) return null;
            nfs.Check(rc, "open", Label(full));
            using (file)
            {
                var data = new byte[file.Size()];
                var read = file.ReadAll(0, data, ct);
                return read == data.Length ? data : data[..read];
            }
        }, retry: true, ct);
    }

    public Task<int?> ReadIntoAsync(string path, Memory<byte> buffer, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        return Run<int?>((nfs, ct) =>
        {
            var full = Full(relative);
            var rc = nfs.ReadByHandle(full, buffer.Span);   // no open, no fstat: a LOOKUP and the READs
            return IsNotFound(rc) ? null : nfs.Check(rc, "read", Label(full));
        }, retry: true, ct);
    }

    public Task WriteAtomicAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        // A fresh temporary name per attempt makes the whole write safe to repeat on a new connection.
        return Run((nfs, ct) =>
        {
            var full = Full(relative);
            var temp = RepositoryStores.TemporaryOf(full);
            nfs.Check(CreateWithParents(nfs, temp, out var file), "create", Label(temp));
            try
            {
                using (file)
                {
                    file.WriteAll(0, data.Span, ct);   // FILE_SYNC: stable when each WRITE returns (see CreateFlags)
                    file.Close();
                }
                // Only now does the name appear: a chunk or manifest present under its name is whole and stable.
                nfs.Check(nfs.Rename(temp, full), "rename", Label(full));
            }
            catch
            {
                nfs.Unlink(temp); // best effort: after a lost connection it stays for the repository's clean-up
                throw;
            }
            return true;
        }, retry: true, ct);
    }

    public Task<bool> TryCreateExclusiveAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        return Run((nfs, ct) =>
        {
            var full = Full(relative);
            var rc = CreateWithParents(nfs, full, out var file);
            if (rc == -NfsException.EEXIST) return false;
            nfs.Check(rc, "create", Label(full));
            try
            {
                using (file)
                {
                    file.WriteAll(0, data.Span, ct);
                    file.Close();
                }
            }
            catch
            {
                nfs.Unlink(full); // so that a retry can create it; the caller sees the failure
                throw;
            }
            return true;
        }, retry: false, ct);
    }

    public Task<bool> RenameAsync(string from, string to, CancellationToken ct)
    {
        var (source, target) = (RepositoryStores.CheckFilePath(from), RepositoryStores.CheckFilePath(to));
        return Run((nfs, _) =>
        {
            var rc = nfs.Rename(Full(source), Full(target));
            return rc >= 0 || (IsNotFound(rc) ? false : throw nfs.Error("rename", Label(Full(source)), rc));
        }, retry: false, ct);
    }

    public Task<bool> DeleteAsync(string path, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        return Run((nfs, _) =>
        {
            var full = Full(relative);
            var rc = nfs.Unlink(full);
            return rc >= 0 || (IsNotFound(rc) ? false : throw nfs.Error("unlink", Label(full), rc));
        }, retry: false, ct);
    }

    public Task<bool> TouchAsync(string path, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        return Run((nfs, _) =>
        {
            var full = Full(relative);
            var rc = nfs.TouchNow(full);
            return rc >= 0 || (IsNotFound(rc) ? false : throw nfs.Error("utimes", Label(full), rc));
        }, retry: true, ct);
    }

    public Task<StoreEntry?> StatAsync(string path, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckFilePath(path);
        return Run((nfs, _) =>
        {
            var full = Full(relative);
            var rc = nfs.Stat(full, out var st);
            if (IsNotFound(rc)) return null;
            nfs.Check(rc, "stat", Label(full));
            var modified = DateTimeOffset.FromUnixTimeSeconds((long)st.Mtime).AddTicks((long)st.MtimeNsec / 100);
            return new StoreEntry((long)st.Size, modified);
        }, retry: true, ct);
    }

    public async IAsyncEnumerable<string> ListAsync(string directory, [EnumeratorCancellation] CancellationToken ct)
    {
        var relative = RepositoryStores.CheckDirectoryPath(directory);
        var names = await Run((nfs, _) =>
        {
            var full = Full(relative);
            var names = new List<string>();
            var rc = nfs.ReadDirectory(full, names);
            if (!IsNotFound(rc)) nfs.Check(rc, "opendir", Label(full));
            return names;
        }, retry: true, ct);
        foreach (var name in names) yield return name;
    }

    public Task<bool> DeleteDirectoryAsync(string directory, CancellationToken ct)
    {
        var relative = RepositoryStores.CheckDirectoryPath(directory);
        return Run((nfs, _) =>
        {
            var full = Full(relative);
            var rc = nfs.Rmdir(full);
            // Servers answer a folder that is not empty with NOTEMPTY or EXIST.
            var refused = IsNotFound(rc) || rc is -NfsException.ENOTEMPTY or -NfsException.EEXIST;
            return rc >= 0 || (refused ? false : throw nfs.Error("rmdir", Label(full), rc));
        }, retry: false, ct);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1) return;
        queue.CompleteAdding(); // workers finish what is queued, then close their contexts
        await Task.WhenAll(workers);
        queue.Dispose();
    }

    static bool IsNotFound(int rc) => rc is -NfsException.ENOENT or -NfsException.ENOTDIR;

    /// <summary>The libnfs path of a store path: known only once the first mount has found the root.</summary>
    string Full(string relative) => relative.Length > 0 ? root + relative : root.Length > 1 ? root[..^1] : root;

    /// <summary>What an error message names: the server and the path that was really used.</summary>
    string Label(string full) => $"nfs://{server}{(export is null or "/" ? "" : export)}{full}";

    /// <summary>Creates a new file (O_EXCL), and its missing parents when the first try says they are missing
    /// (the common case costs one call).</summary>
    int CreateWithParents(NfsContext nfs, string full, out NfsFile file)
    {
        var rc = nfs.Create(full, CreateFlags, FileMode, out file);
        if (rc != -NfsException.ENOENT) return rc;
        MakeDirectories(nfs, full[..full.LastIndexOf('/')]);
        return nfs.Create(full, CreateFlags, FileMode, out file);
    }

    // Stable writes: every file is created O_SYNC, so libnfs sends its WRITEs FILE_SYNC and the server answers each only
    // once the data is on its stable storage; a chunk is durable before its rename, and so before any manifest or later
    // backup can rely on it. Not UNSTABLE + COMMIT (nfs_fsync): libnfs 4.0 keeps no write verifier, neither the WRITE
    // replies' nor COMMIT's (nfs_fsync_cb looks at the status only), so a server that restarted between the WRITEs and
    // the COMMIT (and lost them) would answer the COMMIT with a new verifier and libnfs would report success. Cost,
    // measured (bench/README.md): one RPC fewer per file (no COMMIT), and one more server fsync for a file larger than the
    // server's WRITE size (an incompressible 1 MiB chunk is two WRITEs).
    const int CreateFlags = O_WRONLY | O_CREAT | O_EXCL | O_SYNC;

    /// <summary>mkdir -p from the deepest folder up: EEXIST is success, since agents race to create the same folders.</summary>
    void MakeDirectories(NfsContext nfs, string directory)
    {
        if (directory.Length == 0) return;
        var rc = nfs.Mkdir(directory, DirectoryMode);
        if (rc == -NfsException.ENOENT)
        {
            MakeDirectories(nfs, directory[..directory.LastIndexOf('/')]);
            rc = nfs.Mkdir(directory, DirectoryMode);
        }
        if (rc < 0 && rc != -NfsException.EEXIST) throw nfs.Error("mkdir", Label(directory), rc);
    }

    NfsContext Connect()
    {
        if (Volatile.Read(ref export) is { } known) return NfsContext.Mount(url, known, timeoutMs);
        lock (mountLock)
        {
            if (export is not null) return NfsContext.Mount(url, export, timeoutMs);
            // The URL's folder may not exist yet (a new repository): mount its deepest existing ancestor and
            // let writes create the rest. NFSv3 servers refuse a missing folder with ACCES (ganesha) or NOENT.
            var mount = urlPath.TrimEnd('/');
            var rest = "/";
            NfsException? first = null;
            while (true)
            {
                try
                {
                    var context = NfsContext.Mount(url, mount.Length == 0 ? "/" : mount, timeoutMs);
                    root = rest;
                    Volatile.Write(ref export, mount.Length == 0 ? "/" : mount);
                    return context;
                }
                catch (NfsException e) when (e.Errno is NfsException.ENOENT or NfsException.EACCES && mount.Length > 0)
                {
                    first ??= e;
                    var slash = mount.LastIndexOf('/');
                    rest = $"/{mount[(slash + 1)..]}{rest}";
                    mount = mount[..slash];
                }
                catch (NfsException e) when (first is not null && e.IsFileSystemError)
                {
                    throw first;
                }
            }
        }
    }

    Task<T> Run<T>(Func<NfsContext, CancellationToken, T> operation, bool retry, CancellationToken ct, [CallerMemberName] string name = "")
    {
        var work = new NfsWork<T>(operation, retry, ct, name.Replace("Async", "").ToLowerInvariant());
        try { queue.Add(work, ct); }
        catch (InvalidOperationException) when (queue.IsAddingCompleted) { throw new ObjectDisposedException(nameof(NfsStore)); }
        return work.Task;
    }

    void Work(TaskCompletionSource done)
    {
        NfsContext? context = null;
        try
        {
            foreach (var work in queue.GetConsumingEnumerable())
                work.Run(this, ref context);
        }
        finally
        {
            context?.Dispose();
            done.SetResult();
        }
    }

    abstract class NfsWork
    {
        public abstract void Run(NfsStore store, ref NfsContext? context);
    }

    /// <summary>One call on a worker's context. A connection-level failure destroys the context (the next
    /// call mounts a new one) and is retried once on a fresh context when the operation is safe to repeat,
    /// or when it failed before it started.</summary>
    sealed class NfsWork<T> : NfsWork
    {
        const int Queued = 0, Started = 1, Cancelled = 2;
        readonly Func<NfsContext, CancellationToken, T> operation;
        readonly bool retry;
        readonly CancellationToken ct;
        readonly TaskCompletionSource<T> result = new(TaskCreationOptions.RunContinuationsAsynchronously);
        readonly CancellationTokenRegistration registration;
        int state;

        readonly string name;

        public NfsWork(Func<NfsContext, CancellationToken, T> operation, bool retry, CancellationToken ct, string name)
        {
            this.name = name;
            this.operation = operation;
            this.retry = retry;
            this.ct = ct;
            // Only a queued call may end early: a running one uses the caller's buffer until libnfs returns,
            // so it sees the token between its RPCs instead.
            registration = ct.Register(() =>
            {
                if (Interlocked.CompareExchange(ref state, Cancelled, Queued) == Queued) result.TrySetCanceled(ct);
            });
        }

        public Task<T> Task => result.Task;

        public override void Run(NfsStore store, ref NfsContext? context)
        {
            if (Interlocked.CompareExchange(ref state, Started, Queued) != Queued) return;
            registration.Dispose();
            for (var attempt = 1; ; attempt++)
            {
                var started = false;
                try
                {
                    context ??= store.Connect();
                    started = true;
                    var startedAt = Stopwatch.GetTimestamp();
                    var value = operation(context, ct);
                    Metrics.NfsCall(name, startedAt);
                    result.SetResult(value);
                    return;
                }
                catch (NfsException e) when (!e.IsFileSystemError)
                {
                    context?.Dispose();
                    context = null;
                    if (attempt > 1 || (started && !retry))
                    {
                        result.SetException(e);
                        return;
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    result.SetCanceled(ct);
                    return;
                }
                catch (Exception e)
                {
                    result.SetException(e);
                    return;
                }
            }
        }
    }
}
