using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent;

/// <summary>Removes a backup's manifest and the chunks no other backup references; a repeat finds nothing left to do.</summary>
public sealed class DeleteBackupConsumer(BackupRepository repository, ILogger<DeleteBackupConsumer> logger) : IConsumer<DeleteBackup>
{
    public async Task Consume(ConsumeContext<DeleteBackup> context)
    {
        var m = context.Message;
        var summary = await repository.DeleteAsync(m.Container, m.BackupId, context.CancellationToken);
        logger.BackupDeleted(m.BackupId, summary.ChunksDeleted, summary.BytesFreed);
        await context.Publish(new BackupDeleted(m.BackupId, summary.ChunksDeleted, summary.BytesFreed), context.CancellationToken);
    }
}

public sealed class DeleteBackupConsumerDefinition(IOptions<AgentOptions> options) : ZoneQueueDefinition<DeleteBackupConsumer>(options, Queues.DeleteBackup);
