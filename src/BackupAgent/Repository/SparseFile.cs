using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VolumeBackup.BackupAgent.Repository;

// Holes in raw images, found with lseek(SEEK_DATA); RestoreTarget makes them.
static partial class SparseFile
{
    const int SeekEnd = 2;
    const int SeekData = 3;
    const int Enxio = 6;

    // The size of a file or of a block device (whose st_size, and so RandomAccess.GetLength, is 0).
    public static long Length(SafeFileHandle file)
    {
        var end = lseek(file, 0, SeekEnd);
        return end >= 0 ? end : throw new IOException($"lseek failed: errno {Marshal.GetLastPInvokeError()}");
    }

    // True when [offset, offset + length) holds no data; false when it does or the file system cannot tell.
    public static bool IsHole(SafeFileHandle file, long offset, long length)
    {
        var data = lseek(file, offset, SeekData);
        return data >= 0 ? data >= offset + length : Marshal.GetLastPInvokeError() == Enxio;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(SafeFileHandle fd, long offset, int whence);
}
