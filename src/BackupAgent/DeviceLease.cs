using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent;

/// <summary>A device from the VolumeAgent, released (and for a restore, committed or dropped) when the job ends.</summary>
public sealed class DeviceLease(VolumeHost.VolumeHostClient volumes, Device device, ILogger logger) : IAsyncDisposable
{
    public Device Device => device;
    bool commit;

    /// <summary>The job succeeded: a restore device replaces its volume on release.</summary>
    public void Commit() => commit = true;

    public async ValueTask DisposeAsync()
    {
        try
        {
            // Not the job's token: a cancelled job must still remove its temporaries.
            await volumes.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId, Commit = commit }, cancellationToken: CancellationToken.None);
        }
        catch (Grpc.Core.RpcException e) when (!commit)
        {
            logger.DeviceReleaseFailed(device.DeviceId, e);
        }
    }
}
