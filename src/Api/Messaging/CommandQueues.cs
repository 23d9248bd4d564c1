using System.Collections.Concurrent;
using RabbitMQ.Client;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Messaging;

/// <summary>
/// Where the relay sends a command for a zone's queue. The agents declare that queue as a quorum queue, and MassTransit's
/// <c>queue:</c> send address would declare it again without <c>x-queue-type</c>, which the broker refuses (PRECONDITION_FAILED).
/// So the queue is declared here the way the agents declare it (quorum, bound to a fanout exchange of its name) and the relay
/// sends to that exchange: a command still waits in its queue while no agent of the zone runs.
/// </summary>
// RabbitMQ.Client rather than MassTransit: a send address cannot carry queue arguments, and this runs once per queue and process.
public sealed class CommandQueues(IConfiguration configuration)
{
    const string QueueScheme = "queue:";
    readonly ConcurrentDictionary<string, bool> declared = new();

    /// <summary>The address to send to for an outbox row's destination (<c>queue:name</c>), declaring the queue first.</summary>
    public async Task<Uri> AddressAsync(string destination, CancellationToken ct)
    {
        if (!destination.StartsWith(QueueScheme, StringComparison.Ordinal))
            return new Uri(destination);
        var queue = destination[QueueScheme.Length..];
        if (!declared.ContainsKey(queue))
        {
            await DeclareAsync(queue, ct);                  // declaring twice (two callers at once) is harmless: same arguments
            declared[queue] = true;
        }
        return new Uri($"exchange:{queue}");
    }

    /// <summary>After a failed send: the queue may have been deleted, so it is declared again before the next one.</summary>
    public void Forget() => declared.Clear();

    async Task DeclareAsync(string queue, CancellationToken ct)
    {
        await using var connection = await Broker.From(configuration).ConnectAsync("volumebackup-api-command-queues", ct);
        await using var channel = await connection.CreateChannelAsync(cancellationToken: ct);
        await channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: ct);
        await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false,
            arguments: new Dictionary<string, object?> { ["x-queue-type"] = "quorum" }, cancellationToken: ct);
        await channel.QueueBindAsync(queue, queue, routingKey: "", cancellationToken: ct);
    }
}
