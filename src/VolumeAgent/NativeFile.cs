using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VolumeBackup.VolumeAgent;

/// <summary>The Linux calls .NET does not expose: FICLONE (reflink), st_blocks (allocated size), SEEK_DATA/SEEK_HOLE, hole punching, fsync.</summary>
internal static partial class NativeFile
{
    const ulong Ficlone = 0x40049409;     // _IOW(0x94, 9, int)
    const int SeekData = 3;
    const int SeekHole = 4;
    const int Enxio = 6;
    const int FallocKeepSize = 1;
    const int FallocPunchHole = 2;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(SafeFileHandle fd, ulong request, nint arg);

    [LibraryImport("libc", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* buffer);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(SafeFileHandle fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeFileHandle fd, int command, int arg);

    const int FGetFl = 3;
    const int FSetFl = 4;
    static readonly int ODirect = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;

    /// <summary>The alignment of offsets, lengths and buffers that O_DIRECT needs on every disk it is used on (512 or 4096).</summary>
    public const int DirectAlignment = 4096;

    /// <summary>A handle of <paramref name="path"/> whose reads and writes bypass the page cache (O_DIRECT); null where the filesystem has none.</summary>
    public static SafeFileHandle? OpenDirect(string path, FileAccess access)
    {
        var file = File.OpenHandle(path, FileMode.Open, access, FileShare.ReadWrite);
        var flags = fcntl(file, FGetFl, 0);
        if (flags >= 0 && fcntl(file, FSetFl, flags | ODirect) == 0) return file;
        file.Dispose();
        return null;
    }

    /// <summary>True when a piece at <paramref name="offset"/> of <paramref name="length"/> bytes lies on the O_DIRECT grid.</summary>
    public static bool OnDirectGrid(long offset, int length) => offset % DirectAlignment == 0 && length % DirectAlignment == 0;

    /// <summary>A pinned buffer of <paramref name="length"/> bytes starting on a <see cref="DirectAlignment"/> boundary.</summary>
    public static unsafe Memory<byte> AlignedBuffer(int length)
    {
        var array = GC.AllocateUninitializedArray<byte>(length + DirectAlignment, pinned: true);
        var address = (long)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        return array.AsMemory((int)((DirectAlignment - address % DirectAlignment) % DirectAlignment), length);
    }

    /// <summary>Makes <paramref name="target"/> share all blocks of <paramref name="source"/>; false when the filesystem cannot.</summary>
    public static bool TryReflink(SafeFileHandle source, SafeFileHandle target, out int errno)
    {
        var rc = ioctl(target, Ficlone, source.DangerousGetHandle());
        errno = rc == 0 ? 0 : Marshal.GetLastPInvokeError();
        return rc == 0;
    }

    /// <summary>Bytes the file occupies on disk (st_blocks × 512), so callers can see holes stayed holes.</summary>
    public static unsafe long AllocatedBytes(string path)
    {
        var buffer = stackalloc byte[256];   // struct stat is 144 bytes on x86_64/arm64; st_blocks at offset 64
        if (Stat(path, buffer) != 0)
            throw new IOException($"stat {path} failed: errno {Marshal.GetLastPInvokeError()}");
        return *(long*)(buffer + 64) * 512;
    }

    /// <summary>The data extent at or after <paramref name="offset"/>: its start and the next hole; null past the last one.</summary>
    public static (long Start, long End)? NextData(SafeFileHandle file, long offset)
    {
        var start = lseek(file, offset, SeekData);
        if (start < 0)
            return Marshal.GetLastPInvokeError() == Enxio ? null : throw new IOException($"lseek(SEEK_DATA) failed: errno {Marshal.GetLastPInvokeError()}");
        var end = lseek(file, start, SeekHole);
        return end >= 0 ? (start, end) : throw new IOException($"lseek(SEEK_HOLE) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Makes a range read as zeros without allocating it; false where the filesystem cannot punch holes.</summary>
    public static bool TryPunchHole(SafeFileHandle file, long offset, long length) => fallocate(file, FallocPunchHole | FallocKeepSize, offset, length) == 0;

    public static void Flush(SafeFileHandle file)
    {
        if (fsync(file) != 0)
            throw new IOException($"fsync failed: errno {Marshal.GetLastPInvokeError()}");
    }
}
