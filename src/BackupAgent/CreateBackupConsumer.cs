using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Devices;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent;

/// <summary>
/// Takes a device from the VolumeAgent, streams it into the repository, releases it. Idempotent: a redelivered
/// command whose manifest is already on the share reports that backup (BackupCompleted only) without taking a device.
/// </summary>
public sealed class CreateBackupConsumer(
    VolumeAgents volumeAgents, BackupRepository repository, RunningJobs jobs, IOptions<AgentOptions> options, TimeProvider clock,
    ILogger<CreateBackupConsumer> logger) : IConsumer<CreateBackup>
{
    public async Task Consume(ConsumeContext<CreateBackup> context)
    {
        var m = context.Message;
        ZoneGuard.Check(options.Value, m.AvailabilityZone, m.BackupId);
        using var job = jobs.Start(m.BackupId, context.CancellationToken);
        var ct = job.Token;
        ct.ThrowIfCancellationRequested();                     // force-deleted while it waited in the queue
        // Checked before a device is taken: an earlier delivery finished but its BackupCompleted was lost, and cloning
        // the volume again or repeating BackupStarted would only disturb a backup that is done.
        var summary = await repository.FindBackupAsync(m.Container, m.BackupId, ct);
        if (summary is not null)
            logger.BackupAlreadyWritten(m.BackupId);
        else
            summary = await WriteAsync(context, ct);
        await context.Publish(new BackupCompleted(m.BackupId, summary.SizeBytes, summary.ObjectCount, summary.BytesWritten, summary.StoredBytes, clock.GetUtcNow(),
            summary.Cbt, summary.BytesRead, options.Value.ServiceName), ct);
    }

    async Task<BackupSummary> WriteAsync(ConsumeContext<CreateBackup> context, CancellationToken ct)
    {
        var m = context.Message;
        var agent = options.Value;
        await context.Publish(new BackupTaken(m.BackupId, agent.ServiceName, clock.GetUtcNow()), ct);
        var local = volumeAgents.IsLocal(m.VolumeHost);
        var host = local ? agent.Host : m.VolumeHost;
        var volumes = volumeAgents.Client(m.VolumeHost);
        var device = await VolumeAgents.CallAsync(host, () => volumes.GetBackupDeviceAsync(new GetBackupDeviceRequest
        {
            BackupId = m.BackupId.ToString(), VolumeId = m.VolumeId.ToString(), SnapshotId = m.SnapshotId?.ToString() ?? "", InUse = m.InUse,
            BaseBackupId = m.ParentId?.ToString() ?? "",
        }, deadline: DateTime.UtcNow + agent.DeviceCallTimeout, cancellationToken: ct).ResponseAsync);
        await using var lease = new DeviceLease(volumes, device, agent.ReleaseCallTimeout, logger);
        logger.BackupDeviceReady(m.BackupId, m.VolumeId, device.DeviceId, device.Method, host, local ? "locally" : "remotely");
        await context.Publish(new BackupStarted(m.BackupId, m.VolumeId, device.Temporary, agent.ServiceName, clock.GetUtcNow()), ct);
        using var remote = local ? null : new RemoteDeviceReader(volumes, host, device, agent);

        var progress = new ProgressReporter(agent.ProgressEveryBytes, done => context.Publish(new BackupProgressed(m.BackupId, done, device.SizeBytes), ct));
        var source = new BackupSource(local ? DevicePath.Check(agent.PoolPath, device.Path) : device.Path, device.SizeBytes, NullIfEmpty(device.Generation),
            device.Cbt ? [.. device.Changed.Select(r => (r.Offset, r.Length))] : null, NullIfEmpty(device.BaseGeneration), remote);
        var summary = await repository.BackupAsync(m.Container, m.BackupId, m.VolumeId, m.ParentId, source, progress.ReportAsync, ct);
        logger.BackupWritten(m.BackupId, summary.SizeBytes, summary.ObjectCount, summary.BytesWritten, summary.Cbt, summary.BytesRead);
        try
        {
            await lease.CommitAsync();                         // the manifest is on the share: the device becomes the volume's base
        }
        catch (Grpc.Core.RpcException e)
        {
            logger.BaseNotKept(m.BackupId, e);                 // only an optimisation lost: the backup itself is done
        }
        return summary;
    }

    static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;
}

public sealed class CreateBackupConsumerDefinition(IOptions<AgentOptions> options) : ZoneQueueDefinition<CreateBackupConsumer>(options, Queues.CreateBackup)
{
    // A cancelled backup (force-deleted) is not retried: the delete that follows removes what it wrote.
    protected override bool RetryCancelled => false;
}

/// <summary>Turns the repository's byte counts into an event every N bytes, never per chunk.</summary>
public sealed class ProgressReporter(long every, Func<long, Task> publish)
{
    long reported;

    public async Task ReportAsync(long done)
    {
        if (done - reported < every) return;
        reported = done;
        await publish(done);
    }
}
