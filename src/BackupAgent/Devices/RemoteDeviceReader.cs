using System.Collections.Concurrent;
using System.IO.Hashing;
using Grpc.Core;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent.Devices;

/// <summary>
/// Reads a device of another host through its VolumeAgent: <see cref="AgentOptions.RemoteStreams"/> ReadDevice streams
/// over the chunks the backup needs (holes never travel), chunk i on stream i mod N, so the VolumeAgent reads and sends
/// several at once as a local backup's workers read. Each stream's pump copies every message straight into the buffer
/// of the worker that asked for its chunk, so at most one chunk per worker is held here; while no worker has asked for
/// a stream's next chunk its pump stops reading, and HTTP/2 flow control stops the VolumeAgent. Every message's XXH3
/// is checked; a stream silent for <see cref="AgentOptions.RemoteStallTimeout"/> fails, and each call has a deadline.
/// </summary>
public sealed class RemoteDeviceReader(VolumeHost.VolumeHostClient client, string host, Device device, AgentOptions options) : DeviceReader
{
    int chunkSize;
    readonly ConcurrentDictionary<long, Slot> slots = new();
    readonly CancellationTokenSource stop = new();
    readonly int streams = options.RemoteStreams;
    Task[] pumps = [];
    // Per stream: its chunks below passed[s] are done (one not asked for before its pump moved on is a hole).
    readonly long[] passed = new long[options.RemoteStreams];
    volatile Exception? failure;

    public override string Describe => $"device {device.DeviceId} on {host}";

    public override long Length => device.SizeBytes;

    public override void Start(int chunkSize, IReadOnlyList<(long Offset, int Length)> chunks, CancellationToken ct)
    {
        this.chunkSize = chunkSize;
        var ranges = Enumerable.Range(0, streams).Select(_ => new List<VolumeBackup.Contracts.Grpc.Range>()).ToArray();
        foreach (var (offset, length) in chunks)
        {
            var list = ranges[offset / chunkSize % streams];
            if (list.Count > 0 && list[^1] is var last && last.Offset + last.Length == offset)
                last.Length += length;
            else
                list.Add(new VolumeBackup.Contracts.Grpc.Range { Offset = offset, Length = length });
        }
        pumps = [.. ranges.Select((list, stream) => Task.Run(async () =>
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, stop.Token);
            try { await PumpAsync(stream, list, linked.Token); }
            catch (Exception e) { Fail(e); }
        }, CancellationToken.None))];
    }

    public override async ValueTask<bool> ReadChunkAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        var index = offset / chunkSize;
        var slot = slots.GetOrAdd(index, _ => new Slot());
        slot.Buffer.TrySetResult(buffer);
        // Checked after the slot is visible: either the pump sees the slot, or this sees that the pump is past it.
        if (failure is { } e) slot.Done.TrySetException(e);
        else if (index < Interlocked.Read(ref passed[index % streams])) slot.Done.TrySetResult(false);
        try
        {
            return await slot.Done.Task.WaitAsync(ct);
        }
        finally
        {
            slots.TryRemove(index, out _);
        }
    }

    public override async ValueTask ReadAgainAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        buffer.Span.Clear();
        var request = new ReadDeviceRequest { DeviceId = device.DeviceId, SplitAt = SplitAt(chunkSize) };
        request.Ranges.Add(new VolumeBackup.Contracts.Grpc.Range { Offset = offset, Length = buffer.Length });
        using var call = client.ReadDevice(request, deadline: DateTime.UtcNow + options.RemoteStallTimeout, cancellationToken: ct);
        await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
            Verified(message).CopyTo(buffer.Span[(int)(message.Offset - offset)..]);
    }

    // A call per batch of ranges keeps each request far below gRPC's 4 MiB message limit, whatever the volume's size.
    const int RangesPerCall = 16 * 1024;

    async Task PumpAsync(int stream, List<VolumeBackup.Contracts.Grpc.Range> ranges, CancellationToken ct)
    {
        Slot? current = null;
        Memory<byte> target = default;
        var currentIndex = -1L;
        var filled = 0;
        for (var from = 0; from < ranges.Count; from += RangesPerCall)
        {
            var request = new ReadDeviceRequest { DeviceId = device.DeviceId, SplitAt = SplitAt(chunkSize) };
            request.Ranges.AddRange(ranges.Skip(from).Take(RangesPerCall));
            using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var call = client.ReadDevice(request, deadline: DateTime.UtcNow + options.RemoteStreamTimeout, cancellationToken: stall.Token);
            while (true)
            {
                stall.CancelAfter(options.RemoteStallTimeout);       // only the wait for the VolumeAgent counts, not for our workers
                bool more;
                try
                {
                    more = await call.ResponseStream.MoveNext(stall.Token);
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && stall.IsCancellationRequested && !ct.IsCancellationRequested)
                {
                    throw new TimeoutException($"The VolumeAgent of {host} sent nothing of device {device.DeviceId} for {options.RemoteStallTimeout}.", e);
                }
                stall.CancelAfter(Timeout.InfiniteTimeSpan);
                if (!more) break;
                var message = call.ResponseStream.Current;
                Verified(message);
                var index = message.Offset / chunkSize;
                if (index != currentIndex)
                {
                    Finish(current, target, filled);
                    Interlocked.Exchange(ref passed[stream], index);
                    ReleaseHolesBelow(stream, index);
                    current = slots.GetOrAdd(index, _ => new Slot());
                    target = await current.Buffer.Task.WaitAsync(ct);   // the worker for this chunk: until it asks, the stream waits
                    currentIndex = index;
                    filled = 0;
                }
                var at = (int)(message.Offset - index * chunkSize);
                target.Span[filled..at].Clear();                          // a hole inside the chunk
                message.Data.Span.CopyTo(target.Span[at..]);
                filled = at + message.Data.Length;
            }
        }
        Finish(current, target, filled);
        Interlocked.Exchange(ref passed[stream], long.MaxValue);
        ReleaseHolesBelow(stream, long.MaxValue);
    }

    ReadOnlySpan<byte> Verified(DeviceData message)
    {
        var data = message.Data.Span;
        if (XxHash3.HashToUInt64(data) != message.Xxh3)
            throw new IOException($"Bytes at {message.Offset} of device {device.DeviceId} from {host} arrived corrupt (checksum mismatch).");
        return data;
    }

    static void Finish(Slot? slot, Memory<byte> target, int filled)
    {
        if (slot is null) return;
        target.Span[filled..].Clear();
        slot.Done.TrySetResult(true);
    }

    void ReleaseHolesBelow(int stream, long index)
    {
        foreach (var (i, slot) in slots)
            if (i < index && i % streams == stream) slot.Done.TrySetResult(false);
    }

    void Fail(Exception e)
    {
        failure = e;
        foreach (var slot in slots.Values) slot.Done.TrySetException(e);
    }

    /// <summary>The largest message size the chunk size is a multiple of, at most 1 MiB (well under gRPC's 4 MiB limit).</summary>
    static int SplitAt(int chunkSize)
    {
        var split = chunkSize;
        while (split > 1 << 20 && split % 2 == 0) split /= 2;
        return split;
    }

    public override void Dispose()
    {
        stop.Cancel();
        try { Task.WaitAll(pumps, TimeSpan.FromSeconds(10)); }
        catch (AggregateException) { }                          // Fail() recorded it for the workers
        stop.Dispose();
        base.Dispose();
    }

    sealed class Slot
    {
        public TaskCompletionSource<Memory<byte>> Buffer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource<bool> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
