using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using VolumeBackup.Api.Storage;
using VolumeBackup.Contracts;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Messaging;

public sealed class CommandQueueOptions
{
    public const string Section = "Messaging";

    /// <summary>How long a backup or restore waits on its volume's host's queue for one of that host's agents before any agent of the zone may take it.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")] public TimeSpan SpillAfter { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// The command topology (see <see cref="Queues"/>), declared by the Api alone: every command queue is a quorum queue bound
/// to a fanout exchange of its name, and a host queue dead-letters into its zone queue's exchange. The agents' broker
/// user may declare and read these queues but neither bind them nor name a dead-letter exchange (either would let an
/// agent put commands on them), so the Api declares every zone's and every configured host's queues at its start, and
/// any queue again before its first send. The relay sends to the exchange: a command waits in its queue while no agent
/// runs, and one sent to a host queue carries <see cref="CommandQueueOptions.SpillAfter"/> as its expiration.
/// </summary>
// RabbitMQ.Client rather than MassTransit: a send address cannot carry queue arguments, and this runs once per queue and process.
public sealed class CommandQueues(IConfiguration configuration, DeploymentTls tls, IOptions<StorageOptions> storage, IOptions<CommandQueueOptions> options)
{
    const string QueueScheme = "queue:";
    readonly ConcurrentDictionary<string, bool> declared = new();
    readonly Dictionary<string, string> hostQueues = HostQueues(storage.Value);

    /// <summary>Host queue → its zone queue, for every configured storage host.</summary>
    static Dictionary<string, string> HostQueues(StorageOptions storage) => storage.Hosts
        .SelectMany(h => Queues.HostRouted(h.Zone).Select(zoneQueue => (Host: Queues.OnHost(zoneQueue, h.Name), Zone: zoneQueue)))
        .ToDictionary(q => q.Host, q => q.Zone);

    /// <summary>Where a command for a zone queue goes first: its volume's host's queue when that host is configured, else the zone's.</summary>
    public static string Route(StorageOptions storage, string zoneQueue, string volumeHost) =>
        QueueScheme + (HostQueues(storage).ContainsKey(Queues.OnHost(zoneQueue, volumeHost)) ? Queues.OnHost(zoneQueue, volumeHost) : zoneQueue);

    /// <summary>The expiration of a command sent to this destination: the spill delay for a host queue, none for a zone queue.</summary>
    public TimeSpan? ExpirationOf(string destination) =>
        destination.StartsWith(QueueScheme, StringComparison.Ordinal) && hostQueues.ContainsKey(destination[QueueScheme.Length..]) ? options.Value.SpillAfter : null;

    /// <summary>The address to send to for an outbox row's destination (<c>queue:name</c>), declaring the queue first.</summary>
    public async Task<Uri> AddressAsync(string destination, CancellationToken ct)
    {
        if (!destination.StartsWith(QueueScheme, StringComparison.Ordinal))
            return new Uri(destination);
        var queue = destination[QueueScheme.Length..];
        if (!declared.ContainsKey(queue))
        {
            await using var connection = await Broker.ConnectAsync(configuration, tls, "volumebackup-api-command-queues", ct);
            await using var channel = await connection.CreateChannelAsync(cancellationToken: ct);
            await DeclareAsync(channel, queue, ct);           // declaring twice (two callers at once) is harmless: same arguments
        }
        return new Uri($"exchange:{queue}");
    }

    /// <summary>Every zone's and host's command queues of this Api's storage hosts: the agents wait for their host's.</summary>
    public async Task DeclareAllAsync(CancellationToken ct)
    {
        await using var connection = await Broker.ConnectAsync(configuration, tls, "volumebackup-api-command-queues", ct);
        await using var channel = await connection.CreateChannelAsync(cancellationToken: ct);
        foreach (var zone in storage.Value.Hosts.Select(h => h.Zone).Distinct())
            foreach (var queue in Queues.OfZone(zone))
                await DeclareAsync(channel, queue, ct);
        foreach (var queue in hostQueues.Keys)
            await DeclareAsync(channel, queue, ct);
    }

    /// <summary>After a failed send: the queue may have been deleted, so it is declared again before the next one.</summary>
    public void Forget() => declared.Clear();

    async Task DeclareAsync(IChannel channel, string queue, CancellationToken ct)
    {
        if (hostQueues.TryGetValue(queue, out var zoneQueue))
        {
            await DeclareAsync(channel, zoneQueue, ct);       // its dead-letter exchange must exist first
            await DeclareBoundAsync(channel, queue, CommandQueueArguments.Host(zoneQueue), ct);
        }
        else
        {
            await DeclareBoundAsync(channel, queue, CommandQueueArguments.Zone, ct);
        }
        declared[queue] = true;
    }

    static async Task DeclareBoundAsync(IChannel channel, string queue, Dictionary<string, object?> arguments, CancellationToken ct)
    {
        await channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: ct);
        await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: arguments, cancellationToken: ct);
        await channel.QueueBindAsync(queue, queue, routingKey: "", cancellationToken: ct);
    }
}

/// <summary>Declares the command topology at the Api's start, trying again while the broker is away.</summary>
public sealed class CommandTopology(CommandQueues queues, ILogger<CommandTopology> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        for (var delay = Broker.NextRetryDelay(null); ; delay = Broker.NextRetryDelay(delay))
        {
            try
            {
                await queues.DeclareAllAsync(stoppingToken);
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.CommandTopologyNotDeclared(delay, e);
                await Task.Delay(delay, stoppingToken);
            }
        }
    }
}
