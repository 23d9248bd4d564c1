using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent;

/// <summary>A device from the VolumeAgent, released once: committed by a successful restore, dropped otherwise.</summary>
public sealed class DeviceLease(VolumeHost.VolumeHostClient volumes, Device device, ILogger logger) : IAsyncDisposable
{
    bool released;

    /// <summary>The restore succeeded: the device replaces its volume now, before anyone hears it is done.</summary>
    public Task CommitAsync() => ReleaseAsync(commit: true);

    public async ValueTask DisposeAsync()
    {
        if (released) return;
        try
        {
            await ReleaseAsync(commit: false);
        }
        catch (Grpc.Core.RpcException e)
        {
            logger.DeviceReleaseFailed(device.DeviceId, e);
        }
    }

    // Not the job's token: a cancelled job must still remove its temporaries.
    async Task ReleaseAsync(bool commit)
    {
        released = true;
        await volumes.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId, Commit = commit }, cancellationToken: CancellationToken.None);
    }
}
