using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent;

/// <summary>A device from the VolumeAgent, released once: committed by a successful restore, dropped otherwise.</summary>
public sealed class DeviceLease(VolumeHost.VolumeHostClient volumes, Device device, TimeSpan timeout, ILogger logger) : IAsyncDisposable
{
    bool released;

    /// <summary>
    /// The restore succeeded: the device replaces its volume now, before anyone hears it is done. Throws when the
    /// VolumeAgent refuses (the device vanished); the lease then still drops whatever is left of it.
    /// </summary>
    public async Task CommitAsync()
    {
        await ReleaseAsync(commit: true);
        released = true;
    }

    public async ValueTask DisposeAsync()
    {
        if (released) return;
        released = true;
        try
        {
            await ReleaseAsync(commit: false);
        }
        catch (Grpc.Core.RpcException e)
        {
            logger.DeviceReleaseFailed(device.DeviceId, e);
        }
    }

    // Not the job's token: a cancelled job must still remove its temporaries. The deadline keeps a hung VolumeAgent
    // from holding the job forever.
    async Task ReleaseAsync(bool commit) =>
        await volumes.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId, Commit = commit },
            deadline: DateTime.UtcNow + timeout, cancellationToken: CancellationToken.None);
}
