using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Devices;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent;

/// <summary>
/// Restores into a fresh device beside the volume, verifying every chunk; only a complete restore is swapped in,
/// so a failure leaves the volume as it was.
/// </summary>
public sealed class RestoreBackupConsumer(
    VolumeAgents volumeAgents, BackupRepository repository, IOptions<AgentOptions> options, ILogger<RestoreBackupConsumer> logger)
    : IConsumer<RestoreBackup>
{
    public async Task Consume(ConsumeContext<RestoreBackup> context)
    {
        var m = context.Message;
        var ct = context.CancellationToken;
        var agent = options.Value;
        ZoneGuard.Check(agent, m.AvailabilityZone, m.BackupId);
        var local = volumeAgents.IsLocal(m.VolumeHost);
        var host = local ? agent.Host : m.VolumeHost;
        var volumes = volumeAgents.Client(m.VolumeHost);
        var device = await VolumeAgents.CallAsync(host, () => volumes.GetRestoreDeviceAsync(
            new GetRestoreDeviceRequest { VolumeId = m.VolumeId.ToString(), RestoreId = m.RestoreId.ToString() },
            deadline: DateTime.UtcNow + agent.DeviceCallTimeout, cancellationToken: ct).ResponseAsync);
        await using var lease = new DeviceLease(volumes, device, agent.ReleaseCallTimeout, logger);
        logger.RestoreDeviceReady(m.RestoreId, m.BackupId, m.VolumeId, device.DeviceId, host, local ? "locally" : "remotely");
        await context.Publish(new RestoreStarted(m.BackupId, m.RestoreId, m.VolumeId, agent.ServiceName), ct);
        var progress = new ProgressReporter(agent.ProgressEveryBytes, done => context.Publish(new RestoreProgressed(m.BackupId, m.RestoreId, done, device.SizeBytes), ct));
        await using var target = local ? DeviceWriter.Local(DevicePath.Check(agent.PoolPath, device.Path)) : new RemoteDeviceWriter(volumes, host, device, agent, ct);
        var summary = await repository.RestoreAsync(m.Container, m.ManifestId ?? m.BackupId, target, progress.ReportAsync, ct);
        await lease.CommitAsync();                             // fails if the device vanished meanwhile: the retry restores again
        logger.BackupRestored(m.BackupId, m.VolumeId, summary.SizeBytes);
        await context.Publish(new BackupRestored(m.BackupId, m.RestoreId, m.VolumeId, summary.SizeBytes), ct);
    }
}

public sealed class RestoreBackupConsumerDefinition(IOptions<AgentOptions> options) : ZoneQueueDefinition<RestoreBackupConsumer>(options, Queues.RestoreBackup);
