using VolumeBackup.BackupAgent.Repository;

namespace VolumeBackup.BackupAgent.Devices;

/// <summary>
/// Where a restore writes: the device file itself when this host's VolumeAgent owns it, or the owning VolumeAgent's
/// WriteDevice stream (<see cref="RemoteDeviceWriter"/>). Several workers write at once, each its own chunks.
/// </summary>
public abstract class DeviceWriter : IAsyncDisposable
{
    protected const int Block = 4096;

    public abstract string Describe { get; }

    /// <summary>The device's size in bytes.</summary>
    public abstract long Length { get; }

    /// <summary>Writes data at offset, leaving its all-zero 4 KiB blocks as holes (a restore is no less sparse than its source).</summary>
    public abstract ValueTask WriteAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken ct);

    /// <summary>Makes the range read as zeros: a hole where the filesystem can punch one.</summary>
    public abstract ValueTask ZeroAsync(long offset, long length, CancellationToken ct);

    /// <summary>Every byte written is on disk when this returns.</summary>
    public abstract ValueTask FlushAsync(CancellationToken ct);

    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    public static DeviceWriter Local(string path) => RestoreTarget.Open(path);

    /// <summary>The runs of <paramref name="data"/>: (start, end, all zero), each a whole number of 4 KiB blocks but the last.</summary>
    protected static IEnumerable<(int Start, int End, bool Zero)> Runs(ReadOnlyMemory<byte> data)
    {
        for (var start = 0; start < data.Length;)
        {
            var zero = IsZero(data.Span, start);
            var end = start;
            while (end < data.Length && IsZero(data.Span, end) == zero)
                end = Math.Min(end + Block, data.Length);
            yield return (start, end, zero);
            start = end;
        }
    }

    static bool IsZero(ReadOnlySpan<byte> data, int start) => !data.Slice(start, Math.Min(Block, data.Length - start)).ContainsAnyExcept((byte)0);
}
