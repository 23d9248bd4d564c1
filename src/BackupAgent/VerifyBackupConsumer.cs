using MassTransit;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent;

/// <summary>
/// Reads every chunk of a backup back from the share and checks it. A chunk that fails is the verify's finding, not a
/// failure of the job: it is reported as <see cref="BackupVerifyFailed"/> (the saga marks the backup error). A share that
/// cannot be read at all is retried, then faults like any job, and says nothing about the backup.
/// </summary>
public sealed class VerifyBackupConsumer(BackupRepository repository, ILogger<VerifyBackupConsumer> logger) : IConsumer<VerifyBackup>
{
    public async Task Consume(ConsumeContext<VerifyBackup> context)
    {
        var m = context.Message;
        try
        {
            var summary = await repository.VerifyAsync(m.Container, m.ManifestId ?? m.BackupId, context.CancellationToken);
            logger.BackupVerified(m.BackupId, summary.ChunksChecked, summary.BytesChecked);
            await context.Publish(new BackupVerified(m.BackupId, summary.ChunksChecked, summary.BytesChecked, DateTimeOffset.UtcNow), context.CancellationToken);
        }
        catch (BackupDataException e)
        {
            await context.Publish(new BackupVerifyFailed(m.BackupId, e.ChunkIndex, e.ChunkName, e.ChunksFailed, e.Message), context.CancellationToken);
        }
    }
}

public sealed class VerifyBackupConsumerDefinition(IOptions<AgentOptions> options) : ZoneQueueDefinition<VerifyBackupConsumer>(options, Queues.VerifyBackup);
