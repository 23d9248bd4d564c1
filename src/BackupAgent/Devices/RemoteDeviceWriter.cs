using System.IO.Hashing;
using Google.Protobuf;
using Grpc.Core;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent.Devices;

/// <summary>
/// Writes a restore device of another host through its VolumeAgent: <see cref="AgentOptions.RemoteStreams"/> WriteDevice
/// streams, each MiB of the device on stream (offset / 1 MiB) mod N, whose single writer the restore's workers take
/// turns on. A write returns once gRPC took the message, so a slow VolumeAgent slows the workers (HTTP/2 flow control)
/// instead of growing a queue here. Each message carries its XXH3; the calls have a deadline.
/// </summary>
public sealed class RemoteDeviceWriter : DeviceWriter
{
    const int MaxMessage = 1 << 20;
    readonly Stream[] streams;
    readonly string host;
    readonly Device device;

    public RemoteDeviceWriter(VolumeHost.VolumeHostClient client, string host, Device device, AgentOptions options, CancellationToken ct)
    {
        this.host = host;
        this.device = device;
        streams = [.. Enumerable.Range(0, options.RemoteStreams).Select(_ =>
            new Stream(client.WriteDevice(deadline: DateTime.UtcNow + options.RemoteStreamTimeout, cancellationToken: ct), device.DeviceId))];
    }

    public override string Describe => $"device {device.DeviceId} on {host}";

    public override long Length => device.SizeBytes;

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken ct)
    {
        foreach (var (start, end, zero) in Runs(data))
        {
            if (zero)
            {
                await ZeroAsync(offset + start, end - start, ct);
                continue;
            }
            for (var at = start; at < end; at += MaxMessage)
            {
                var piece = data[at..Math.Min(end, at + MaxMessage)];
                // WriteAsync serializes the message before it returns: the caller may reuse its buffer afterwards.
                await For(offset + at).SendAsync(new DeviceData { Offset = offset + at, Data = UnsafeByteOperations.UnsafeWrap(piece), Xxh3 = XxHash3.HashToUInt64(piece.Span) }, ct);
            }
        }
    }

    public override async ValueTask ZeroAsync(long offset, long length, CancellationToken ct) =>
        await For(offset).SendAsync(new DeviceData { Offset = offset, ZeroLength = length }, ct);

    public override async ValueTask FlushAsync(CancellationToken ct)
    {
        foreach (var stream in streams) await stream.CompleteAsync(ct);
    }

    Stream For(long offset) => streams[offset / MaxMessage % streams.Length];

    public override async ValueTask DisposeAsync()
    {
        foreach (var stream in streams) stream.Dispose();        // cancels unfinished calls: their restore is not committed anyway
        await base.DisposeAsync();
    }

    sealed class Stream(AsyncClientStreamingCall<DeviceData, WriteDeviceReply> call, string deviceId) : IDisposable
    {
        readonly SemaphoreSlim turn = new(1, 1);
        bool named;

        public async ValueTask SendAsync(DeviceData? message, CancellationToken ct)
        {
            await turn.WaitAsync(ct);
            try
            {
                if (!named)
                {
                    await call.RequestStream.WriteAsync(new DeviceData { DeviceId = deviceId }, ct);
                    named = true;
                }
                if (message is not null) await call.RequestStream.WriteAsync(message, ct);
            }
            catch (Exception e) when (e is RpcException or InvalidOperationException && call.ResponseAsync.IsCompleted)
            {
                await call.ResponseAsync;                       // the VolumeAgent's own error says why, not "the stream was closed"
                throw;
            }
            finally
            {
                turn.Release();
            }
        }

        /// <summary>Every byte sent is on the VolumeAgent's disk when this returns.</summary>
        public async ValueTask CompleteAsync(CancellationToken ct)
        {
            await SendAsync(null, ct);                          // a stream that carried nothing still names its device
            await call.RequestStream.CompleteAsync();
            await call.ResponseAsync.WaitAsync(ct);
        }

        public void Dispose()
        {
            call.Dispose();
            turn.Dispose();
        }
    }
}
