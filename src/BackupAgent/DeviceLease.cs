using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent;

/// <summary>A device from the VolumeAgent, released once: committed by a successful restore, dropped otherwise.</summary>
public sealed class DeviceLease(VolumeHost.VolumeHostClient volumes, Device device, ILogger logger) : IAsyncDisposable
{
    bool released;

    /// <summary>The restore succeeded: the device replaces its volume now, before anyone hears it is done.</summary>
    public async Task CommitAsync()
    {
        released = true;
        await volumes.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId, Commit = true }, cancellationToken: CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        if (released) return;
        released = true;
        try
        {
            // Not the job's token: a cancelled job must still remove its temporaries.
            await volumes.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId }, cancellationToken: CancellationToken.None);
        }
        catch (Grpc.Core.RpcException e)
        {
            logger.DeviceReleaseFailed(device.DeviceId, e);
        }
    }
}
