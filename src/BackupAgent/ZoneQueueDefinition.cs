using MassTransit;
using Microsoft.Extensions.Options;

namespace VolumeBackup.BackupAgent;

/// <summary>What the three command consumers share: their zone's queue (the zone's agents compete on it), the job limit and the retry policy.</summary>
public abstract class ZoneQueueDefinition<TConsumer> : ConsumerDefinition<TConsumer> where TConsumer : class, IConsumer
{
    readonly AgentOptions agent;

    protected ZoneQueueDefinition(IOptions<AgentOptions> options, Func<string, string> queueOfZone)
    {
        agent = options.Value;
        EndpointName = queueOfZone(agent.Zone);
    }

    /// <summary>The job's kind in the jobs-running metric: create, restore or delete.</summary>
    string JobKind => typeof(TConsumer).Name.Replace("BackupConsumer", "").ToLowerInvariant();

    /// <summary>False where a cancelled job must end at once instead of being tried again.</summary>
    protected virtual bool RetryCancelled => true;

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpoint, IConsumerConfigurator<TConsumer> consumer, IRegistrationContext context)
    {
        endpoint.ConcurrentMessageLimit = agent.ConcurrentJobs;
        if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbit)
        {
            // The Api sends commands to the queue, never publishes them: nothing to bind. The agent's broker user may not bind
            // it either (that needs write on the queue's name, also its exchange's, and would let an agent publish commands):
            // CommandQueues declares the queue, the Api binds it.
            rabbit.ConfigureConsumeTopology = false;
            rabbit.BindQueue = false;
            rabbit.SetQuorumQueue();                        // a command outlives the broker node it was sent through
            rabbit.PrefetchCount = agent.ConcurrentJobs;    // a command this agent cannot start yet stays in the broker, free for others
        }
        consumer.UseFilter(new Metrics.RunningJobFilter<TConsumer>(JobKind));
        endpoint.UseMessageRetry(r =>
        {
            r.Intervals(agent.RetryIntervalsMs);
            r.Ignore<UntrustedDeviceException>();          // the same device path would be refused again
            if (!RetryCancelled) r.Ignore<OperationCanceledException>();
        });
    }
}
