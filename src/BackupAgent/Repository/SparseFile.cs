using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VolumeBackup.BackupAgent.Repository;

// Holes in raw images: found with lseek(SEEK_DATA) when reading, made with fallocate(PUNCH_HOLE) when writing.
static partial class SparseFile
{
    const int SeekEnd = 2;
    const int SeekData = 3;
    const int Enxio = 6;
    const int FallocKeepSize = 1;
    const int FallocPunchHole = 2;
    const int Block = 4096;

    static readonly byte[] Zeros = new byte[1024 * 1024];

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

    // Makes the range read as zeros: a hole where the file system can punch one, written zeros elsewhere. A range that
    // is a hole already (a restore into a fresh device) costs one lseek: punching takes the inode's locks exclusively
    // and flushes the range, which stalls the other workers writing into the same file.
    public static async ValueTask ZeroAsync(SafeFileHandle file, long offset, long length, CancellationToken ct)
    {
        if (IsHole(file, offset, length))
            return;
        if (fallocate(file, FallocPunchHole | FallocKeepSize, offset, length) == 0)
            return;
        for (long done = 0; done < length;)
        {
            var n = (int)Math.Min(Zeros.Length, length - done);
            await RandomAccess.WriteAsync(file, Zeros.AsMemory(0, n), offset + done, ct);
            done += n;
        }
    }

    // Writes data at offset, leaving its all-zero 4 KiB blocks as holes (so a restored image is no less
    // sparse than its source) and punching them where the target held old data.
    public static async ValueTask WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> data, long offset, CancellationToken ct)
    {
        for (var start = 0; start < data.Length;)
        {
            var zero = IsZero(data.Span, start);
            var end = start;
            while (end < data.Length && IsZero(data.Span, end) == zero)
                end = Math.Min(end + Block, data.Length);
            if (zero)
                await ZeroAsync(file, offset + start, end - start, ct);
            else
                await RandomAccess.WriteAsync(file, data[start..end], offset + start, ct);
            start = end;
        }
    }

    public static void Flush(SafeFileHandle file)
    {
        if (fsync(file) != 0)
            throw new IOException($"fsync failed: errno {Marshal.GetLastPInvokeError()}");
    }

    static bool IsZero(ReadOnlySpan<byte> data, int start) =>
        !data.Slice(start, Math.Min(Block, data.Length - start)).ContainsAnyExcept((byte)0);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(SafeFileHandle fd);
}
