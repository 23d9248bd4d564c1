using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VolumeBackup.VolumeAgent;

/// <summary>A byte range of a file.</summary>
public readonly record struct ByteRange(long Offset, long Length)
{
    public long End => Offset + Length;
}

/// <summary>
/// Changed-block tracking from the filesystem's own block map. Why it is trustworthy on XFS with reflink: a clone
/// (FICLONE) makes the new file point at the very same physical blocks, reference-counted; XFS never writes into a
/// shared block but copies on write to a newly allocated one, and a block stays allocated while any file still
/// points at it, so it cannot be freed and reused meanwhile. So where the new device and the kept base map a logical
/// offset to the same physical block, the bytes there are equal; where they map it differently, or one side has a hole
/// and the other not, the range is reported changed (possibly equal data, never the reverse). Anything the filesystem
/// does not state plainly gives up instead: a filesystem other than XFS, a failing FIEMAP, and extents flagged
/// UNKNOWN, DELALLOC (asked for with FIEMAP_FLAG_SYNC, so none should remain), ENCODED, ENCRYPTED, NOT_ALIGNED,
/// INLINE or TAIL, or a data extent at physical 0. The caller then reads the whole device.
/// </summary>
public static partial class ChangedBlocks
{
    const ulong FsIocFiemap = 0xC020660B;         // _IOWR('f', 11, struct fiemap)
    const uint FiemapFlagSync = 0x1;
    const uint ExtentLast = 0x1;
    const uint ExtentUnwritten = 0x800;
    const uint ExtentShared = 0x2000;
    // UNKNOWN, DELALLOC, ENCODED, DATA_ENCRYPTED, NOT_ALIGNED, DATA_INLINE, DATA_TAIL
    const uint ExtentUntrusted = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400;
    const long XfsMagic = 0x58465342;
    const int HeaderSize = 32;                    // struct fiemap without its extents
    const int ExtentSize = 56;                    // struct fiemap_extent
    const int Batch = 512;

    readonly record struct Extent(long Logical, long Physical, long Length, uint Flags)
    {
        public long End => Logical + Length;
    }

    /// <summary>True when the folder is on XFS, the filesystem whose FIEMAP this class relies on.</summary>
    public static unsafe bool IsXfs(string path)
    {
        var buffer = stackalloc byte[256];        // struct statfs is 120 bytes on x86_64/arm64; f_type first
        return StatFs(path, buffer) == 0 && *(long*)buffer == XfsMagic;
    }

    /// <summary>The ranges where <paramref name="device"/> differs from <paramref name="baseFile"/>; null when the filesystem cannot tell.</summary>
    public static List<ByteRange>? Compare(string device, string baseFile)
    {
        using var current = File.OpenHandle(device, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var previous = File.OpenHandle(baseFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var length = RandomAccess.GetLength(current);
        if (RandomAccess.GetLength(previous) != length)
            return null;                          // a resized volume: chunk boundaries of the parent no longer line up
        var a = Extents(current, length, sync: true);
        var b = Extents(previous, length, sync: true);
        return a is null || b is null ? null : Diff(a, b, length);
    }

    /// <summary>Bytes of the file in blocks no other file shares: what dropping it would free. Null when the filesystem cannot tell.</summary>
    public static long? ExclusiveBytes(string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var extents = Extents(file, RandomAccess.GetLength(file), sync: false);
        return extents?.Where(e => (e.Flags & ExtentShared) == 0).Sum(e => e.Length);
    }

    // Both lists sorted and not overlapping (FIEMAP returns them so); walks every boundary of either.
    static List<ByteRange> Diff(List<Extent> a, List<Extent> b, long length)
    {
        var changed = new List<ByteRange>();
        int i = 0, j = 0;
        for (long pos = 0; pos < length;)
        {
            while (i < a.Count && a[i].End <= pos) i++;
            while (j < b.Count && b[j].End <= pos) j++;
            Extent? x = i < a.Count && a[i].Logical <= pos ? a[i] : null;
            Extent? y = j < b.Count && b[j].Logical <= pos ? b[j] : null;
            var end = Math.Min(length, Math.Min(
                x?.End ?? (i < a.Count ? a[i].Logical : long.MaxValue),
                y?.End ?? (j < b.Count ? b[j].Logical : long.MaxValue)));
            var differs = x is { } p && y is { } q
                ? p.Physical - p.Logical != q.Physical - q.Logical || (p.Flags & ExtentUnwritten) != (q.Flags & ExtentUnwritten)
                : x.HasValue != y.HasValue;
            if (differs)
            {
                if (changed.Count > 0 && changed[^1].End == pos)
                    changed[^1] = changed[^1] with { Length = end - changed[^1].Offset };
                else
                    changed.Add(new ByteRange(pos, end - pos));
            }
            pos = end;
        }
        return changed;
    }

    static unsafe List<Extent>? Extents(SafeFileHandle file, long length, bool sync)
    {
        var extents = new List<Extent>();
        var buffer = new byte[HeaderSize + Batch * ExtentSize];
        fixed (byte* map = buffer)
        {
            for (long start = 0; start < length;)
            {
                Array.Clear(buffer, 0, HeaderSize);
                *(ulong*)map = (ulong)start;                        // fm_start
                *(ulong*)(map + 8) = (ulong)(length - start);       // fm_length
                *(uint*)(map + 16) = sync ? FiemapFlagSync : 0;     // fm_flags
                *(uint*)(map + 24) = Batch;                         // fm_extent_count
                if (ioctl(file, FsIocFiemap, (nint)map) != 0)
                    return null;
                var mapped = *(uint*)(map + 20);                    // fm_mapped_extents
                if (mapped == 0)
                    break;
                var last = false;
                for (var k = 0; k < mapped; k++)
                {
                    var e = map + HeaderSize + k * ExtentSize;
                    var extent = new Extent(*(long*)e, *(long*)(e + 8), *(long*)(e + 16), *(uint*)(e + 40));
                    if ((extent.Flags & ExtentUntrusted) != 0 || extent.Physical == 0 || extent.Length <= 0
                        || extents.Count > 0 && extent.Logical < extents[^1].End)
                        return null;
                    extents.Add(extent);
                    last |= (extent.Flags & ExtentLast) != 0;
                }
                if (last)
                    break;
                start = extents[^1].End;
            }
        }
        return extents;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(SafeFileHandle fd, ulong request, nint arg);

    [LibraryImport("libc", EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatFs(string path, byte* buffer);
}
