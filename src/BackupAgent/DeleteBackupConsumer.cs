using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent;

/// <summary>Removes a backup's manifest and the chunks no other backup references; a repeat finds nothing left to do.</summary>
public sealed class DeleteBackupConsumer(
    BackupRepository repository, VolumeHost.VolumeHostClient volumes, IOptions<AgentOptions> options, ILogger<DeleteBackupConsumer> logger)
    : IConsumer<DeleteBackup>
{
    public async Task Consume(ConsumeContext<DeleteBackup> context)
    {
        var m = context.Message;
        var dataId = m.ManifestId ?? m.BackupId;               // a row imported under another id names its manifest's
        var summary = await repository.DeleteAsync(m.Container, dataId, context.CancellationToken);
        logger.BackupDeleted(m.BackupId, summary.ChunksDeleted, summary.BytesFreed);
        // Best effort, and only on this host's VolumeAgent: a base left elsewhere is never used (an incremental's parent
        // must be the base's backup) and goes with the volume's next backup or the bound on base space.
        try
        {
            await volumes.DropBackupBaseAsync(new DropBackupBaseRequest { BackupId = dataId.ToString() },
                deadline: DateTime.UtcNow + options.Value.ReleaseCallTimeout, cancellationToken: context.CancellationToken);
        }
        catch (Grpc.Core.RpcException e)
        {
            logger.BaseNotDropped(m.BackupId, e);
        }
        await context.Publish(new BackupDeleted(m.BackupId, summary.ChunksDeleted, summary.BytesFreed), context.CancellationToken);
    }
}

public sealed class DeleteBackupConsumerDefinition(IOptions<AgentOptions> options) : ZoneQueueDefinition<DeleteBackupConsumer>(options, Queues.DeleteBackup);
