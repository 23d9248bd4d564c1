using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VolumeBackup.VolumeAgent;

/// <summary>The two Linux calls .NET does not expose: FICLONE (reflink) and st_blocks (allocated size).</summary>
internal static partial class NativeFile
{
    const ulong Ficlone = 0x40049409;     // _IOW(0x94, 9, int)

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(SafeFileHandle fd, ulong request, nint arg);

    [LibraryImport("libc", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* buffer);

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
}
