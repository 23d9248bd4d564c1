using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using VolumeBackup.BackupAgent.Devices;

namespace VolumeBackup.BackupAgent.Repository;

// The file or device a restore writes. Aligned data goes through a second handle opened with O_DIRECT: the disk takes
// it straight from the restore's buffer, so writing a volume costs no page-cache copy (the largest CPU cost of a
// buffered restore), no memory pressure, and leaves almost nothing for the final fsync. File systems without
// O_DIRECT (tmpfs) and unaligned pieces (a last block shorter than 4 KiB, a chunk size that is not a multiple of
// 4 KiB) go through the ordinary handle. Writes may come from several threads at once. A device of this host: a
// restore into another host's goes through RemoteDeviceWriter.
//
// A write blocks its thread until the disk has the data, so writes and hole punches run on the target's own threads:
// a restore worker awaiting its write leaves its core to decode the next chunk (on a thread-pool thread it held the
// core's thread, and a two-core host sat a fifth idle).
public sealed unsafe partial class RestoreTarget : DeviceWriter
{
    // Covers the logical block size of every disk and file system O_DIRECT is used on (512 or 4096).
    public const int Alignment = 4096;

    const int FGetFl = 3;
    const int FSetFl = 4;
    const int FallocKeepSize = 1;
    const int FallocPunchHole = 2;

    // Enough for disks that take writes in parallel; where the file system takes them one by one, the rest wait here.
    const int WriterThreads = 4;

    static readonly byte[] Zeros = new byte[1024 * 1024];
    static readonly int ODirect = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;

    readonly string path;
    readonly SafeFileHandle buffered;
    readonly SafeFileHandle? direct;
    readonly BlockingCollection<(Action Io, TaskCompletionSource Done)> queued = new();
    readonly Thread[] writers;

    RestoreTarget(string path, SafeFileHandle buffered, SafeFileHandle? direct)
    {
        this.path = path;
        this.buffered = buffered;
        this.direct = direct;
        writers = [.. Enumerable.Range(0, WriterThreads).Select(i => new Thread(WriteQueued) { IsBackground = true, Name = $"restore-write-{i}" })];
        foreach (var writer in writers)
            writer.Start();
    }

    public override string Describe => path;

    public override long Length => SparseFile.Length(buffered);

    // True when aligned writes bypass the page cache.
    public bool Direct => direct is not null;

    public static RestoreTarget Open(string path)
    {
        var buffered = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        SafeFileHandle? direct = null;
        try
        {
            direct = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            var flags = fcntl(direct, FGetFl);
            if (flags < 0 || fcntl(direct, FSetFl, flags | ODirect) < 0)
            {
                direct.Dispose();   // EINVAL: this file system has no O_DIRECT; every write is buffered
                direct = null;
            }
            return new RestoreTarget(path, buffered, direct);
        }
        catch
        {
            direct?.Dispose();
            buffered.Dispose();
            throw;
        }
    }

    // A buffer for Write: pinned and aligned, so that O_DIRECT can take it.
    public static Memory<byte> AlignedBuffer(int length)
    {
        var array = GC.AllocateUninitializedArray<byte>(length + Alignment, pinned: true);
        var address = (long)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        var skip = (int)((Alignment - address % Alignment) % Alignment);
        return array.AsMemory(skip, length);
    }

    // Writes data (from an AlignedBuffer) at offset, leaving its all-zero 4 KiB blocks (of the file, whatever the chunk
    // size) as holes, so that a restored image is no less sparse than its source, and punching them where the target
    // held old data.
    // The caller keeps data untouched until the returned task completes; once queued, a write is done whatever ct says.
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken ct) => Queue(() => Write(data.Span, offset), ct);

    public override ValueTask ZeroAsync(long offset, long length, CancellationToken ct) => Queue(() => Zero(offset, length), ct);

    public override ValueTask FlushAsync(CancellationToken ct)
    {
        Flush();
        return ValueTask.CompletedTask;
    }

    ValueTask Queue(Action io, CancellationToken ct)
    {
        // Asynchronous continuations: the awaiting worker's next decode must not run on a writer thread.
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        queued.Add((io, done), ct);
        return new ValueTask(done.Task);
    }

    void WriteQueued()
    {
        foreach (var (io, done) in queued.GetConsumingEnumerable())
        {
            try
            {
                io();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }
    }

    void Write(ReadOnlySpan<byte> data, long offset)
    {
        for (var start = 0; start < data.Length;)
        {
            var zero = IsZero(data, offset, start);
            var end = start;
            while (end < data.Length && IsZero(data, offset, end) == zero)
                end = BlockEnd(data, offset, end);
            if (zero)
                Zero(offset + start, end - start);
            else
                WriteData(data[start..end], offset + start);
            start = end;
        }
    }

    // Makes the range read as zeros: a hole where the file system can punch one, written zeros elsewhere. A range that
    // is a hole already (a restore into a fresh device) costs one lseek: punching takes the inode's locks exclusively
    // and flushes the range, which stalls the other workers writing into the same file.
    void Zero(long offset, long length)
    {
        if (SparseFile.IsHole(buffered, offset, length) || fallocate(buffered, FallocPunchHole | FallocKeepSize, offset, length) == 0)
            return;
        for (long done = 0; done < length;)
        {
            var n = (int)Math.Min(Zeros.Length, length - done);
            RandomAccess.Write(buffered, Zeros.AsSpan(0, n), offset + done);
            done += n;
        }
    }

    // The one fsync of a restore: the data O_DIRECT wrote may still sit in the disk's cache, and the file's extents
    // (allocated by those writes) are metadata; fsync of either handle covers the whole file.
    public void Flush()
    {
        if (fsync(buffered) != 0)
            throw new IOException($"fsync failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public override ValueTask DisposeAsync()
    {
        queued.CompleteAdding();
        foreach (var writer in writers)
            writer.Join();   // every queued write has finished: its handle may close
        queued.Dispose();
        direct?.Dispose();
        buffered.Dispose();
        return base.DisposeAsync();
    }

    void WriteData(ReadOnlySpan<byte> data, long offset)
    {
        var aligned = direct is not null && offset % Alignment == 0 && data.Length % Alignment == 0 && IsAligned(data);
        RandomAccess.Write(aligned ? direct! : buffered, data, offset);
    }

    static bool IsAligned(ReadOnlySpan<byte> data) =>
        (long)Unsafe.AsPointer(ref MemoryMarshal.GetReference(data)) % Alignment == 0;

    static bool IsZero(ReadOnlySpan<byte> data, long offset, int start) => !data[start..BlockEnd(data, offset, start)].ContainsAnyExcept((byte)0);

    // Where the file's 4 KiB block holding data[start] ends in data.
    static int BlockEnd(ReadOnlySpan<byte> data, long offset, int start) =>
        (int)Math.Min(data.Length, ((offset + start) / Alignment + 1) * Alignment - offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeFileHandle fd, int command);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeFileHandle fd, int command, int argument);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(SafeFileHandle fd);
}
