using System.IO.Hashing;
using Google.Protobuf;
using Grpc.Core;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent.Devices;

/// <summary>
/// Writes a restore device of another host through its VolumeAgent: one WriteDevice stream, whose single writer the
/// restore's workers take turns on. A write returns once gRPC took the message, so a slow VolumeAgent slows the
/// workers (HTTP/2 flow control) instead of growing a queue here. Each message carries its XXH3; the call has a deadline.
/// </summary>
public sealed class RemoteDeviceWriter : DeviceWriter
{
    const int MaxMessage = 1 << 20;
    readonly AsyncClientStreamingCall<DeviceData, WriteDeviceReply> call;
    readonly SemaphoreSlim turn = new(1, 1);
    readonly string host;
    readonly Device device;
    bool named;

    public RemoteDeviceWriter(VolumeHost.VolumeHostClient client, string host, Device device, AgentOptions options, CancellationToken ct)
    {
        this.host = host;
        this.device = device;
        call = client.WriteDevice(deadline: DateTime.UtcNow + options.RemoteStreamTimeout, cancellationToken: ct);
    }

    public override string Describe => $"device {device.DeviceId} on {host}";

    public override long Length => device.SizeBytes;

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken ct)
    {
        foreach (var (start, end, zero) in Runs(data))
        {
            if (zero)
            {
                await SendAsync(new DeviceData { Offset = offset + start, ZeroLength = end - start }, ct);
                continue;
            }
            for (var at = start; at < end; at += MaxMessage)
            {
                var piece = data[at..Math.Min(end, at + MaxMessage)];
                // WriteAsync serializes the message before it returns: the caller may reuse its buffer afterwards.
                await SendAsync(new DeviceData { Offset = offset + at, Data = UnsafeByteOperations.UnsafeWrap(piece), Xxh3 = XxHash3.HashToUInt64(piece.Span) }, ct);
            }
        }
    }

    public override async ValueTask ZeroAsync(long offset, long length, CancellationToken ct) =>
        await SendAsync(new DeviceData { Offset = offset, ZeroLength = length }, ct);

    public override async ValueTask FlushAsync(CancellationToken ct)
    {
        await SendAsync(null, ct);                              // a device with nothing written is still named
        await call.RequestStream.CompleteAsync();
        await call.ResponseAsync.WaitAsync(ct);
    }

    async ValueTask SendAsync(DeviceData? message, CancellationToken ct)
    {
        await turn.WaitAsync(ct);
        try
        {
            if (!named)
            {
                await call.RequestStream.WriteAsync(new DeviceData { DeviceId = device.DeviceId }, ct);
                named = true;
            }
            if (message is not null) await call.RequestStream.WriteAsync(message, ct);
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException && call.ResponseAsync.IsCompleted)
        {
            await call.ResponseAsync;                           // the VolumeAgent's own error says why, not "the stream was closed"
            throw;
        }
        finally
        {
            turn.Release();
        }
    }

    public override async ValueTask DisposeAsync()
    {
        call.Dispose();                                         // cancels an unfinished call: its restore is not committed anyway
        turn.Dispose();
        await base.DisposeAsync();
    }
}
