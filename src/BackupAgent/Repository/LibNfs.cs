using System.Runtime.InteropServices;

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
    public const int ENOENT = 2, EIO = 5, EACCES = 13, EEXIST = 17, ENOTDIR = 20, EISDIR = 21, ENOTEMPTY = 39;

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
