using Microsoft.Win32.SafeHandles;
using VolumeBackup.BackupAgent.Repository;

namespace VolumeBackup.BackupAgent.Devices;

/// <summary>
/// Where a backup reads its device from: the file itself when this host's VolumeAgent owns it, or the owning
/// VolumeAgent's ReadDevice stream (<see cref="RemoteDeviceReader"/>). The repository asks for chunks through it.
/// </summary>
public abstract class DeviceReader : IDisposable
{
    public abstract string Describe { get; }

    /// <summary>The device's size in bytes.</summary>
    public abstract long Length { get; }

    /// <summary>Called once, before any read: the backup's chunk size and the chunks (offset, length) it will read, in order.</summary>
    public virtual void Start(int chunkSize, IReadOnlyList<(long Offset, int Length)> chunks, CancellationToken ct) { }

    /// <summary>
    /// Fills <paramref name="buffer"/> with the chunk at <paramref name="offset"/>, one of those given to
    /// <see cref="Start"/>, asked in their order (by several workers at once); false when it is all hole (and left unread).
    /// </summary>
    public abstract ValueTask<bool> ReadChunkAsync(long offset, Memory<byte> buffer, CancellationToken ct);

    /// <summary>Reads a range again, in any order (a concurrent delete collected a chunk the backup relied on).</summary>
    public abstract ValueTask ReadAgainAsync(long offset, Memory<byte> buffer, CancellationToken ct);

    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>Opens the device file on this host.</summary>
    public static DeviceReader Local(string path) => new LocalDeviceReader(path);

    sealed class LocalDeviceReader(string path) : DeviceReader
    {
        readonly SafeFileHandle file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.Asynchronous);

        public override string Describe => path;

        public override long Length => SparseFile.Length(file);

        public override async ValueTask<bool> ReadChunkAsync(long offset, Memory<byte> buffer, CancellationToken ct)
        {
            if (SparseFile.IsHole(file, offset, buffer.Length)) return false;
            await ReadAgainAsync(offset, buffer, ct);
            return true;
        }

        public override async ValueTask ReadAgainAsync(long offset, Memory<byte> buffer, CancellationToken ct)
        {
            for (var done = 0; done < buffer.Length;)
            {
                var n = await RandomAccess.ReadAsync(file, buffer[done..], offset + done, ct);
                if (n == 0) throw new EndOfStreamException($"{path} ends at byte {offset + done}.");
                done += n;
            }
        }

        public override void Dispose()
        {
            file.Dispose();
            base.Dispose();
        }
    }
}
