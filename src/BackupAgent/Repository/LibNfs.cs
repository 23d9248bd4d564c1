using System.Runtime.InteropServices;
using System.Text;

namespace VolumeBackup.BackupAgent.Repository;

/// <summary>The sync API of libnfs 4.0 (libnfs.so.13). Calls return 0 (or a byte count) on success and
/// -errno on failure; <see cref="nfs_get_error"/> then holds the text. A context must not be used by two
/// threads at once.</summary>
internal static unsafe partial class LibNfs
{
    const string Lib = "libnfs.so.13";

    // Linux x86-64/arm64 values; libnfs takes the host's open(2) flags and maps them to NFS itself.
    public const int O_RDONLY = 0x0, O_WRONLY = 0x1, O_CREAT = 0x40, O_EXCL = 0x80, O_TRUNC = 0x200;

    // libnfs marks a file opened or created with O_SYNC and sends its WRITEs as FILE_SYNC (NFSv3 stable_how 2): the
    // server answers only once the data and the file's metadata are on stable storage.
    public const int O_SYNC = 0x101000;

    [LibraryImport(Lib)] public static partial nint nfs_init_context();
    [LibraryImport(Lib)] public static partial void nfs_destroy_context(nint nfs);
    [LibraryImport(Lib)] public static partial nint nfs_get_error(nint nfs);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial NfsUrl* nfs_parse_url_dir(nint nfs, string url);
    [LibraryImport(Lib)] public static partial void nfs_destroy_url(NfsUrl* url);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_mount(nint nfs, string server, string exportname);
    [LibraryImport(Lib)] public static partial ulong nfs_get_readmax(nint nfs);
    [LibraryImport(Lib)] public static partial ulong nfs_get_writemax(nint nfs);
    [LibraryImport(Lib)] public static partial void nfs_set_timeout(nint nfs, int milliseconds);
    [LibraryImport(Lib)] public static partial void nfs_set_autoreconnect(nint nfs, int numRetries);
    [LibraryImport(Lib)] public static partial void nfs_set_dircache(nint nfs, int enabled);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_stat64(nint nfs, string path, out NfsStat64 st);
    [LibraryImport(Lib)] public static partial int nfs_fstat64(nint nfs, nint fh, out NfsStat64 st);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_open(nint nfs, string path, int flags, out nint fh);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_create(nint nfs, string path, int flags, int mode, out nint fh);
    [LibraryImport(Lib)] public static partial int nfs_close(nint nfs, nint fh);
    [LibraryImport(Lib)] public static partial int nfs_pread(nint nfs, nint fh, ulong offset, ulong count, byte* buf);
    [LibraryImport(Lib)] public static partial int nfs_pwrite(nint nfs, nint fh, ulong offset, ulong count, byte* buf);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_rename(nint nfs, string oldpath, string newpath);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_unlink(nint nfs, string path);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_mkdir2(nint nfs, string path, int mode);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_rmdir(nint nfs, string path);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_utimes(nint nfs, string path, Timeval* times);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int nfs_opendir(nint nfs, string path, out nint dir);
    [LibraryImport(Lib)] public static partial NfsDirent* nfs_readdir(nint nfs, nint dir);
    [LibraryImport(Lib)] public static partial void nfs_closedir(nint nfs, nint dir);

    // The raw NFSv3 calls (libnfs-raw-nfs.h) and the event loop that drives them on a context's own connection.
    [LibraryImport(Lib)] public static partial nint nfs_get_rpc_context(nint nfs);
    [LibraryImport(Lib)] public static partial NfsFh3* nfs_get_rootfh(nint nfs);
    [LibraryImport(Lib)] public static partial int nfs_get_fd(nint nfs);
    [LibraryImport(Lib)] public static partial int nfs_which_events(nint nfs);
    [LibraryImport(Lib)] public static partial int nfs_service(nint nfs, int revents);
    [LibraryImport(Lib)] public static partial int rpc_nfs3_lookup_async(nint rpc, delegate* unmanaged<nint, int, void*, void*, void> callback, Lookup3Args* args, void* state);
    [LibraryImport(Lib)] public static partial int rpc_nfs3_read_async(nint rpc, delegate* unmanaged<nint, int, void*, void*, void> callback, Read3Args* args, void* state);
    [LibraryImport("libc", SetLastError = true)] public static partial int poll(PollFd* fds, ulong count, int timeoutMs);

    public const int RpcStatusSuccess = 0;
    public const int Nfs3Ok = 0, Nfs3ErrNoEnt = 2, Nfs3ErrNotDir = 20, Nfs3ErrStale = 70, Nfs3ErrBadHandle = 10001;

    /// <summary><c>nfs_fh3</c>, and libnfs's <c>struct nfs_fh</c> (the same layout).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct NfsFh3
    {
        public uint Length;
        public byte* Value;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Lookup3Args
    {
        public NfsFh3 Directory;
        public byte* Name;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Read3Args
    {
        public NfsFh3 File;
        public ulong Offset;
        public uint Count;
    }

    // The heads of LOOKUP3res and READ3res: the status, then resok. fattr3 is 88 bytes (8-aligned), so post_op_attr is
    // 96: LOOKUP3resok's object handle comes first; READ3resok's count, eof and data follow its file_attributes.
    [StructLayout(LayoutKind.Explicit)]
    public struct Lookup3Res
    {
        [FieldOffset(0)] public int Status;
        [FieldOffset(8)] public NfsFh3 Object;
    }

    [StructLayout(LayoutKind.Explicit)]
    public struct Read3Res
    {
        [FieldOffset(0)] public int Status;
        [FieldOffset(8 + 96)] public uint Count;
        [FieldOffset(8 + 100)] public uint Eof;
        [FieldOffset(8 + 104)] public uint DataLength;
        [FieldOffset(8 + 112)] public byte* Data;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct NfsUrl
    {
        public nint Server, Path, File;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct NfsStat64
    {
        public ulong Dev, Ino, Mode, Nlink, Uid, Gid, Rdev, Size, Blksize, Blocks;
        public ulong Atime, Mtime, Ctime, AtimeNsec, MtimeNsec, CtimeNsec, Used;
    }

    /// <summary>The head of <c>struct nfsdirent</c>: only the fields read here.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct NfsDirent
    {
        public NfsDirent* Next;
        public nint Name;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Timeval
    {
        public long Seconds, Microseconds;
    }
}

/// <summary>A failed libnfs call: the operation, the path and libnfs's own explanation.</summary>
public sealed class NfsException(string operation, string path, int errno, string detail)
    : IOException($"NFS {operation} '{path}' failed: {detail} (errno {errno})")
{
    public const int ENOENT = 2, EIO = 5, EACCES = 13, EEXIST = 17, ENOTDIR = 20, EISDIR = 21, ENOTEMPTY = 39, ESTALE = 116;

    public string Operation { get; } = operation;
    public string Path { get; } = path;
    public int Errno { get; } = errno;
    public bool IsNotFound => Errno is ENOENT or ENOTDIR;

    /// <summary>An answer from the file system (the context is healthy), as opposed to a lost connection,
    /// a timeout or a stale handle after which the context is replaced.</summary>
    public bool IsFileSystemError => IsFileSystemErrno(Errno);

    internal static bool IsFileSystemErrno(int errno) => errno is
        1 /* EPERM */ or ENOENT or EACCES or EEXIST or 18 /* EXDEV */ or ENOTDIR or EISDIR or 22 /* EINVAL */
        or 27 /* EFBIG */ or 28 /* ENOSPC */ or 30 /* EROFS */ or 31 /* EMLINK */ or 36 /* ENAMETOOLONG */
        or ENOTEMPTY or 122 /* EDQUOT */;
}

/// <summary>One mounted libnfs context (one TCP connection). Not thread safe: the owner serialises calls.
/// Methods return libnfs's code (0 or -errno) where the caller expects some failures, and throw otherwise.</summary>
internal sealed unsafe class NfsContext : IDisposable
{
    nint handle;

    NfsContext(nint handle) => this.handle = handle;

    public ulong ReadMax { get; private set; }
    public ulong WriteMax { get; private set; }

    /// <summary>Parses <paramref name="url"/> (its query, such as <c>version=4</c>, configures the context) and
    /// mounts <paramref name="export"/>, or the URL's own path when null.</summary>
    public static NfsContext Mount(string url, string? export, int timeoutMs)
    {
        var handle = LibNfs.nfs_init_context();
        if (handle == 0) throw new NfsException("init", url, 12, "nfs_init_context returned NULL");
        var context = new NfsContext(handle);
        try
        {
            var parsed = LibNfs.nfs_parse_url_dir(handle, url);
            if (parsed == null) throw new NfsException("parse", url, 22, context.ErrorText());
            string server, path;
            try
            {
                server = Marshal.PtrToStringUTF8(parsed->Server) ?? "";
                path = Marshal.PtrToStringUTF8(parsed->Path) ?? "/";
            }
            finally { LibNfs.nfs_destroy_url(parsed); }

            // Whole seconds only (libnfs); without a timeout a dead server blocks a call forever.
            LibNfs.nfs_set_timeout(handle, timeoutMs / 1000 * 1000);
            // libnfs's default is to reconnect forever; a few tries ride over a server restart, and after
            // that the error reaches the pool, which replaces the context.
            LibNfs.nfs_set_autoreconnect(handle, 3);
            // Other contexts and other agents change the same folders: a per-context listing cache goes stale.
            LibNfs.nfs_set_dircache(handle, 0);

            var mountPath = export ?? path;
            context.Check(LibNfs.nfs_mount(handle, server, mountPath), "mount", $"{server}:{mountPath}");
            context.ReadMax = LibNfs.nfs_get_readmax(handle);
            context.WriteMax = LibNfs.nfs_get_writemax(handle);
            return context;
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>Splits an <c>nfs://</c> URL into server and path without mounting.</summary>
    public static (string Server, string Path) ParseUrl(string url)
    {
        var handle = LibNfs.nfs_init_context();
        if (handle == 0) throw new NfsException("init", url, 12, "nfs_init_context returned NULL");
        using var context = new NfsContext(handle);
        var parsed = LibNfs.nfs_parse_url_dir(handle, url);
        if (parsed == null) throw new ArgumentException($"Not a valid NFS URL '{url}': {context.ErrorText()}", nameof(url));
        try { return (Marshal.PtrToStringUTF8(parsed->Server) ?? "", Marshal.PtrToStringUTF8(parsed->Path) ?? "/"); }
        finally { LibNfs.nfs_destroy_url(parsed); }
    }

    public int Stat(string path, out LibNfs.NfsStat64 st) => LibNfs.nfs_stat64(handle, path, out st);

    public int Open(string path, int flags, out NfsFile file)
    {
        var rc = LibNfs.nfs_open(handle, path, flags, out var fh);
        file = new NfsFile(this, path, fh);
        return rc;
    }

    public int Create(string path, int flags, int mode, out NfsFile file)
    {
        var rc = LibNfs.nfs_create(handle, path, flags, mode, out var fh);
        file = new NfsFile(this, path, fh);
        return rc;
    }

    public int Rename(string from, string to) => LibNfs.nfs_rename(handle, from, to);
    public int Unlink(string path) => LibNfs.nfs_unlink(handle, path);
    public int Mkdir(string path, int mode) => LibNfs.nfs_mkdir2(handle, path, mode);
    public int Rmdir(string path) => LibNfs.nfs_rmdir(handle, path);

    /// <summary>Sets access and modification time to the server's clock (a NULL <c>times</c>).</summary>
    public int TouchNow(string path) => LibNfs.nfs_utimes(handle, path, null);

    /// <summary>Adds the names in <paramref name="path"/> (without "." and "..") to <paramref name="names"/>.</summary>
    public int ReadDirectory(string path, List<string> names)
    {
        var rc = LibNfs.nfs_opendir(handle, path, out var dir);
        if (rc < 0) return rc;
        try
        {
            for (var entry = LibNfs.nfs_readdir(handle, dir); entry != null; entry = LibNfs.nfs_readdir(handle, dir))
            {
                var name = Marshal.PtrToStringUTF8(entry->Name);
                if (name is not (null or "." or "..")) names.Add(name);
            }
        }
        finally { LibNfs.nfs_closedir(handle, dir); }
        return 0;
    }

    /// <summary>
    /// Reads the first <c>buffer.Length</c> bytes of <paramref name="path"/> (fewer at its end) in two round trips: a
    /// LOOKUP of the name in its folder, whose handle this context keeps, then every READ at once. nfs_open walks the
    /// path from the export's root on each call, one LOOKUP per folder, and the READs follow one by one: about six
    /// round trips for a chunk. Returns the bytes read, or -errno (-ENOENT when the file or a folder is missing).
    /// </summary>
    public int ReadByHandle(string path, Span<byte> buffer)
    {
        var slash = path.LastIndexOf('/');
        var (folder, name) = (path[..Math.Max(slash, 0)], path[(slash + 1)..]);
        for (var attempt = 1; ; attempt++)
        {
            var file = Array.Empty<byte>();
            var rc = DirectoryHandle(folder, path, out var directory);
            if (rc >= 0)
                rc = Lookup(directory, name, path, out file);
            if (rc >= 0)
                rc = ReadAll(file, buffer, path);
            // A folder removed and made again since it was looked up: look it up afresh, once.
            if (rc != -NfsException.ESTALE || attempt > 1)
                return rc;
            directories.Clear();
        }
    }

    // Folder (absolute in the mount, "" for the root) to handle, for ReadByHandle: chunk folders are never renamed, and
    // a folder removed meanwhile answers STALE, which clears this.
    readonly Dictionary<string, byte[]> directories = new(StringComparer.Ordinal);

    int DirectoryHandle(string folder, string path, out byte[] found)
    {
        if (directories.TryGetValue(folder, out found!))
            return 0;
        if (folder.Length == 0)
        {
            var root = LibNfs.nfs_get_rootfh(handle);
            found = new ReadOnlySpan<byte>(root->Value, (int)root->Length).ToArray();
        }
        else
        {
            var slash = folder.LastIndexOf('/');
            var rc = DirectoryHandle(folder[..slash], path, out var parent);
            if (rc >= 0)
                rc = Lookup(parent, folder[(slash + 1)..], path, out found);
            if (rc < 0)
                return rc;
        }
        directories[folder] = found;
        return 0;
    }

    int Lookup(byte[] directory, string name, string path, out byte[] handle)
    {
        handle = [];
        var reply = new RawReply();
        var encoded = Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* dir = directory)
        fixed (byte* text = encoded)
        {
            var args = new LibNfs.Lookup3Args { Directory = new LibNfs.NfsFh3 { Length = (uint)directory.Length, Value = dir }, Name = text };
            if (LibNfs.rpc_nfs3_lookup_async(Rpc, &OnLookup, &args, &reply) != 0)
                throw Broken("lookup", path, null);
        }
        Wait(&reply, 1, "lookup", path);
        if (reply.NfsStatus != LibNfs.Nfs3Ok)
            return -Errno(reply.NfsStatus);
        handle = new ReadOnlySpan<byte>(reply.Handle, (int)reply.HandleLength).ToArray();
        return 0;
    }

    int ReadAll(byte[] file, Span<byte> buffer, string path)
    {
        var max = (int)Math.Clamp(ReadMax, 4096, 1 << 30);
        const int Batch = 64;
        var replies = stackalloc RawReply[Batch];
        var done = 0;
        fixed (byte* fh = file)
        fixed (byte* start = buffer)
        {
            while (done < buffer.Length)
            {
                var sent = 0;
                for (var at = done; at < buffer.Length && sent < Batch; at += max, sent++)
                {
                    replies[sent] = new RawReply { Destination = start + at, Capacity = (uint)Math.Min(max, buffer.Length - at) };
                    var args = new LibNfs.Read3Args { File = new LibNfs.NfsFh3 { Length = (uint)file.Length, Value = fh }, Offset = (ulong)at, Count = replies[sent].Capacity };
                    if (LibNfs.rpc_nfs3_read_async(Rpc, &OnRead, &args, &replies[sent]) != 0)
                    {
                        Wait(replies, sent, "read", path);   // what was sent still writes into buffer: let it finish first
                        throw Broken("read", path, null);
                    }
                }
                Wait(replies, sent, "read", path);
                for (var i = 0; i < sent; i++)
                {
                    if (replies[i].NfsStatus != LibNfs.Nfs3Ok)
                        return -Errno(replies[i].NfsStatus);
                    done += (int)replies[i].Count;
                    if (replies[i].Count < replies[i].Capacity)
                    {
                        if (replies[i].Eof != 0 || replies[i].Count == 0)
                            return done;   // the file ends here
                        break;             // a short READ: ask again from where it stopped
                    }
                }
            }
        }
        return done;
    }

    // Runs the context's event loop until every reply has come. When the connection fails, the context is destroyed here,
    // while the replies still exist: libnfs completes the calls still pending (cancelled) into live memory.
    void Wait(RawReply* replies, int count, string operation, string path)
    {
        var fd = new LibNfs.PollFd();
        for (var i = 0; i < count;)
        {
            if (replies[i].Done != 0)
            {
                i++;
                continue;
            }
            fd.Fd = LibNfs.nfs_get_fd(handle);
            fd.Events = (short)LibNfs.nfs_which_events(handle);
            fd.Revents = 0;
            if (LibNfs.poll(&fd, 1, 100) < 0 && Marshal.GetLastPInvokeError() != 4 /* EINTR */)
                throw Broken(operation, path, $"poll failed: errno {Marshal.GetLastPInvokeError()}");
            if (LibNfs.nfs_service(handle, fd.Revents) < 0)
                throw Broken(operation, path, null);
        }
        for (var i = 0; i < count; i++)
            if (replies[i].RpcStatus != LibNfs.RpcStatusSuccess)
                throw Broken(operation, path, $"RPC status {replies[i].RpcStatus} (error, timeout or cancelled)");
    }

    // A connection-level failure: not a file system answer, so the store's worker replaces this context and retries.
    NfsException Broken(string operation, string path, string? detail)
    {
        var text = detail ?? ErrorText();
        Dispose();
        return new NfsException(operation, path, NfsException.EIO, $"{text} (connection reset)");
    }

    // NFSv3 status numbers are the errno values for everything a read can meet; STALE and BADHANDLE are ESTALE.
    static int Errno(int status) => status is LibNfs.Nfs3ErrStale or LibNfs.Nfs3ErrBadHandle ? NfsException.ESTALE : status is > 0 and < 100 ? status : NfsException.EIO;

    nint Rpc => rpc != 0 ? rpc : rpc = LibNfs.nfs_get_rpc_context(handle);
    nint rpc;

    [UnmanagedCallersOnly]
    static void OnLookup(nint context, int status, void* data, void* state)
    {
        var reply = (RawReply*)state;
        reply->RpcStatus = status;
        if (status == LibNfs.RpcStatusSuccess)
        {
            var result = (LibNfs.Lookup3Res*)data;
            reply->NfsStatus = result->Status;
            if (result->Status == LibNfs.Nfs3Ok)
            {
                reply->HandleLength = Math.Min(result->Object.Length, RawReply.MaxHandle);
                Buffer.MemoryCopy(result->Object.Value, reply->Handle, RawReply.MaxHandle, reply->HandleLength);
            }
        }
        reply->Done = 1;
    }

    [UnmanagedCallersOnly]
    static void OnRead(nint context, int status, void* data, void* state)
    {
        var reply = (RawReply*)state;
        reply->RpcStatus = status;
        if (status == LibNfs.RpcStatusSuccess)
        {
            var result = (LibNfs.Read3Res*)data;
            reply->NfsStatus = result->Status;
            if (result->Status == LibNfs.Nfs3Ok)
            {
                reply->Count = Math.Min(result->DataLength, reply->Capacity);
                reply->Eof = result->Eof;
                Buffer.MemoryCopy(result->Data, reply->Destination, reply->Capacity, reply->Count);
            }
        }
        reply->Done = 1;
    }

    // One raw call's outcome, on the caller's stack while the event loop runs.
    struct RawReply
    {
        public const int MaxHandle = 64;   // NFS3_FHSIZE
        public int Done, RpcStatus, NfsStatus;
        public uint Count, Eof, Capacity, HandleLength;
        public byte* Destination;
        public fixed byte Handle[MaxHandle];
    }

    public NfsException Error(string operation, string path, int rc) => new(operation, path, -rc, ErrorText());

    public int Check(int rc, string operation, string path) => rc < 0 ? throw Error(operation, path, rc) : rc;

    string ErrorText() => Marshal.PtrToStringUTF8(LibNfs.nfs_get_error(handle)) ?? "unknown error";

    internal nint Handle => handle;

    public void Dispose()
    {
        if (handle != 0) LibNfs.nfs_destroy_context(handle);
        handle = 0;
    }
}

/// <summary>An open file on an <see cref="NfsContext"/>; closed once, by <see cref="Close"/> or Dispose.</summary>
internal sealed unsafe class NfsFile(NfsContext context, string path, nint fh) : IDisposable
{
    nint fh = fh;

    public long Size()
    {
        context.Check(LibNfs.nfs_fstat64(context.Handle, fh, out var st), "fstat", path);
        return (long)st.Size;
    }

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="offset"/>: libnfs may write less than
    /// asked, and one call never sends more than the server's WRITE size.</summary>
    public void WriteAll(long offset, ReadOnlySpan<byte> data, CancellationToken ct)
    {
        var max = (int)Math.Clamp(context.WriteMax, 4096, 1 << 30);
        fixed (byte* start = data)
        {
            for (var done = 0; done < data.Length;)
            {
                ct.ThrowIfCancellationRequested();
                var count = Math.Min(max, data.Length - done);
                var n = context.Check(LibNfs.nfs_pwrite(context.Handle, fh, (ulong)(offset + done), (ulong)count, start + done), "write", path);
                if (n == 0) throw new NfsException("write", path, NfsException.EIO, "server wrote 0 bytes");
                done += n;
            }
        }
    }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>; fewer bytes only at end of file.</summary>
    public int ReadAll(long offset, Span<byte> buffer, CancellationToken ct)
    {
        var max = (int)Math.Clamp(context.ReadMax, 4096, 1 << 30);
        fixed (byte* start = buffer)
        {
            var done = 0;
            while (done < buffer.Length)
            {
                ct.ThrowIfCancellationRequested();
                var count = Math.Min(max, buffer.Length - done);
                var n = context.Check(LibNfs.nfs_pread(context.Handle, fh, (ulong)(offset + done), (ulong)count, start + done), "read", path);
                if (n == 0) break;
                done += n;
            }
            return done;
        }
    }

    public void Close()
    {
        var rc = fh == 0 ? 0 : LibNfs.nfs_close(context.Handle, fh);
        fh = 0;
        context.Check(rc, "close", path);
    }

    public void Dispose()
    {
        // The error path: the file is abandoned (and usually removed), so its close result does not matter.
        if (fh != 0) LibNfs.nfs_close(context.Handle, fh);
        fh = 0;
    }
}
