using System.Diagnostics;
using System.IO.Hashing;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Win32.SafeHandles;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.VolumeAgent;

/// <summary>
/// Device I/O for BackupAgents on other hosts. Flow control is gRPC's: WriteAsync waits while the reader's HTTP/2
/// window is full, and a write stream is read one message at a time, so each side holds one buffer of at most
/// <see cref="MaxSplit"/> bytes per call. Every message carries an XXH3 of its bytes, checked on arrival.
/// </summary>
public sealed partial class VolumeService
{
    const int MinSplit = 64 * 1024;
    const int MaxSplit = 4 * 1024 * 1024;

    public override Task<Capacity> GetCapacity(CapacityRequest request, ServerCallContext context)
    {
        var (total, free) = pool.Capacity();
        return Task.FromResult(new Capacity { TotalBytes = total, FreeBytes = free });
    }

    public override async Task ReadDevice(ReadDeviceRequest request, IServerStreamWriter<DeviceData> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var path = pool.ResolveDevice(request.DeviceId) ?? throw Invalid($"Invalid device_id '{request.DeviceId}'");
        if (request.SplitAt is < MinSplit or > MaxSplit) throw Invalid($"split_at must be between {MinSplit} and {MaxSplit}, got {request.SplitAt}");
        using var file = Open(path, FileAccess.Read, request.DeviceId);
        // A backup device is read once: O_DIRECT keeps it out of the host's page cache (which its VMs' volumes need) and
        // saves the copy through it. Pieces off the 4 KiB grid, and filesystems without O_DIRECT, read through `file`.
        using var direct = NativeFile.OpenDirect(path, FileAccess.Read);
        var length = RandomAccess.GetLength(file);
        var ranges = Ranges(request.Ranges, length);
        var startedAt = Stopwatch.GetTimestamp();
        long sent = 0, messages = 0;
        var buffer = NativeFile.AlignedBuffer(request.SplitAt);
        foreach (var (offset, end) in ranges)
        {
            for (var pos = offset; pos < end;)
            {
                if (NativeFile.NextData(file, pos) is not var (start, stop) || start >= end) break;
                stop = Math.Min(stop, end);
                for (var at = start; at < stop;)
                {
                    var n = (int)Math.Min(stop - at, request.SplitAt - at % request.SplitAt);
                    var data = buffer[..n];
                    await ReadExactlyAsync(direct, file, data, at, ct);
                    // WriteAsync has serialized the message when it returns: the buffer can be reused.
                    await responseStream.WriteAsync(new DeviceData { Offset = at, Data = UnsafeByteOperations.UnsafeWrap(data), Xxh3 = XxHash3.HashToUInt64(data.Span) }, ct);
                    sent += n;
                    messages++;
                    at += n;
                }
                pos = stop;
            }
        }
        Metrics.DeviceStreamed("read", sent);
        logger.DeviceRead(request.DeviceId, ranges.Count, sent, messages, Stopwatch.GetElapsedTime(startedAt).TotalMilliseconds);
    }

    public override async Task<WriteDeviceReply> WriteDevice(IAsyncStreamReader<DeviceData> requestStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        SafeFileHandle? file = null, direct = null;
        Memory<byte> aligned = default;
        string deviceId = "";
        long length = 0, written = 0;
        var startedAt = Stopwatch.GetTimestamp();
        try
        {
            await foreach (var message in requestStream.ReadAllAsync(ct))
            {
                if (file is null)
                {
                    deviceId = message.DeviceId;
                    var path = pool.ResolveRestoreDevice(deviceId) ?? throw Invalid($"device_id '{deviceId}' names no restore device");
                    file = Open(path, FileAccess.ReadWrite, deviceId);
                    length = RandomAccess.GetLength(file);
                    // As a local restore writes (RestoreTarget): pieces on the 4 KiB grid go to the disk without the page
                    // cache (no copy into it, no writeback left for the fsync); the rest through it.
                    direct = NativeFile.OpenDirect(path, FileAccess.Write);
                }
                else if (message.DeviceId.Length > 0 && message.DeviceId != deviceId)
                    throw Invalid($"One WriteDevice call writes one device: '{deviceId}', not '{message.DeviceId}'");
                if (message.Data.IsEmpty && message.ZeroLength == 0) continue;   // the first message may only name the device
                var size = message.ZeroLength > 0 ? message.ZeroLength : message.Data.Length;
                if (message.Offset < 0 || size > length - message.Offset)
                    throw Invalid($"Bytes {message.Offset}..{message.Offset + size} lie outside device {deviceId} of {length} bytes");
                if (message.ZeroLength > 0)
                {
                    if (message.Data.Length > 0) throw Invalid("A message carries data or zero_length, not both");
                    await ZeroAsync(file, message.Offset, message.ZeroLength, ct);
                    continue;
                }
                if (XxHash3.HashToUInt64(message.Data.Span) != message.Xxh3)
                    throw new RpcException(new Status(StatusCode.DataLoss, $"Bytes at {message.Offset} of device {deviceId} arrived corrupt (checksum mismatch)"));
                if (direct is not null && NativeFile.OnDirectGrid(message.Offset, message.Data.Length) && message.Data.Length <= MaxSplit)
                {
                    if (aligned.IsEmpty) aligned = NativeFile.AlignedBuffer(MaxSplit);
                    message.Data.Memory.CopyTo(aligned);          // the message's bytes are not aligned in memory, as O_DIRECT needs
                    await RandomAccess.WriteAsync(direct, aligned[..message.Data.Length], message.Offset, ct);
                }
                else
                    await RandomAccess.WriteAsync(file, message.Data.Memory, message.Offset, ct);
                written += message.Data.Length;
            }
            if (file is null) throw Invalid("WriteDevice received no message");
            NativeFile.Flush(file);                            // the reply promises the bytes are on disk
        }
        finally
        {
            direct?.Dispose();
            file?.Dispose();
        }
        Metrics.DeviceStreamed("write", written);
        logger.DeviceWritten(deviceId, written, Stopwatch.GetElapsedTime(startedAt).TotalMilliseconds);
        return new WriteDeviceReply { BytesWritten = written };
    }

    static SafeFileHandle Open(string path, FileAccess access, string deviceId)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, access, FileShare.ReadWrite, FileOptions.Asynchronous);
        }
        catch (FileNotFoundException)
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"Device {deviceId} not found"));
        }
    }

    // In order and inside the device, so the stream comes out in offset order and every byte at most once.
    static List<(long Offset, long End)> Ranges(IEnumerable<VolumeBackup.Contracts.Grpc.Range> requested, long length)
    {
        var ranges = requested.Select(r => (r.Offset, End: r.Offset + r.Length)).ToList();
        if (ranges.Count == 0) return [(0, length)];
        var previousEnd = 0L;
        foreach (var (offset, end) in ranges)
        {
            if (offset < previousEnd || end <= offset || end > length)
                throw Invalid($"Ranges must be in order, not overlapping, not empty and inside the device of {length} bytes; got {offset}..{end}");
            previousEnd = end;
        }
        return ranges;
    }

    // One read through `direct` when the piece lies on its grid (buffer aligned by the caller); the rest, if any, through `file`.
    static async Task ReadExactlyAsync(SafeFileHandle? direct, SafeFileHandle file, Memory<byte> buffer, long offset, CancellationToken ct)
    {
        var done = direct is not null && NativeFile.OnDirectGrid(offset, buffer.Length)
            ? await RandomAccess.ReadAsync(direct, buffer, offset, ct)
            : 0;
        while (done < buffer.Length)
        {
            var n = await RandomAccess.ReadAsync(file, buffer[done..], offset + done, ct);
            if (n == 0) throw new RpcException(new Status(StatusCode.FailedPrecondition, $"The device ended at {offset + done} while it was read"));
            done += n;
        }
    }

    static async Task ZeroAsync(SafeFileHandle file, long offset, long length, CancellationToken ct)
    {
        if (NativeFile.NextData(file, offset) is not var (start, _) || start >= offset + length) return;   // a hole already
        if (NativeFile.TryPunchHole(file, offset, length)) return;
        var zeros = new byte[Math.Min(length, MinSplit)];     // a filesystem without hole punching: rare, so no pooling
        for (long done = 0; done < length; done += zeros.Length)
            await RandomAccess.WriteAsync(file, zeros.AsMemory(0, (int)Math.Min(zeros.Length, length - done)), offset + done, ct);
    }
}
