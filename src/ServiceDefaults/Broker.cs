using MassTransit;
using Microsoft.Extensions.Configuration;
using RabbitMQ.Client;

namespace VolumeBackup.ServiceDefaults;

/// <summary>
/// Where the RabbitMQ broker is. <c>ConnectionStrings:RabbitMq</c> gives the credentials (each program its own user), the
/// virtual host and a first node; <c>RabbitMq:ClusterNodes</c> (a list of <c>host:port</c>) names every node of a cluster,
/// tried in order when connecting and again whenever a connection is lost, so the programs carry on through a node that
/// goes away. With <c>amqps://</c> every node's certificate must come from the deployment CA.
/// </summary>
public sealed record Broker(Uri Uri, IReadOnlyList<AmqpTcpEndpoint> Nodes)
{
    public const string ClusterNodesKey = "RabbitMq:ClusterNodes";

    public static Broker From(IConfiguration configuration)
    {
        var uri = new Uri(configuration.GetConnectionString("RabbitMq") ?? throw new InvalidOperationException("ConnectionStrings:RabbitMq is required"));
        var first = new AmqpTcpEndpoint(uri.Host, uri.IsDefaultPort ? AmqpTcpEndpoint.UseDefaultPort : uri.Port);
        var listed = configuration.GetSection(ClusterNodesKey).Get<string[]>() ?? [];
        // The connection string's node first, then the listed ones it is not already.
        var nodes = listed.Select(Parse).Prepend(first).DistinctBy(e => (e.HostName, e.Port)).ToList();
        return new Broker(uri, nodes);
    }

    public bool Tls => Uri.Scheme == "amqps";

    /// <summary>The wait before the next try of something that needs the broker: doubling from 1 s, at most 30 s.</summary>
    public static TimeSpan NextRetryDelay(TimeSpan? previous) =>
        previous is { } p ? TimeSpan.FromSeconds(Math.Min(p.TotalSeconds * 2, 30)) : TimeSpan.FromSeconds(1);

    static AmqpTcpEndpoint Parse(string node) =>
        node.Split(':') is [var host, var port] && host.Length > 0 && int.TryParse(port, out var p) && p is > 0 and < 65536
            ? new AmqpTcpEndpoint(host, p)
            : throw new InvalidOperationException($"{ClusterNodesKey} holds \"{node}\": each node must be host:port");

    /// <summary>A RabbitMQ.Client connection of its own (for what MassTransit does not do): to the first node that answers.</summary>
    public async Task<IConnection> ConnectAsync(string clientName, DeploymentTls tls, CancellationToken ct)
    {
        var factory = new ConnectionFactory { Uri = Uri, ClientProvidedName = clientName };
        if (factory.Ssl.Enabled) factory.Ssl.CertificateValidationCallback = tls.ValidateServer;
        if (Nodes.Count == 1)
            return await factory.CreateConnectionAsync(ct);
        // The listed nodes with the connection string's TLS settings, which endpoints do not take from the factory; in their
        // order, as the bus tries them (an endpoint list alone is shuffled), so a queue declared here leads where the programs are.
        var nodes = new InOrder([.. Nodes.Select(n => new AmqpTcpEndpoint(n.HostName, n.Port, WithServerName(factory.Ssl, n.HostName)))]);
        return await factory.CreateConnectionAsync(nodes, clientName, ct);
    }

    sealed class InOrder(IReadOnlyList<AmqpTcpEndpoint> endpoints) : IEndpointResolver
    {
        public IEnumerable<AmqpTcpEndpoint> All() => endpoints;
    }

    static SslOption WithServerName(SslOption ssl, string host) => new(host, ssl.CertPath, ssl.Enabled)
    {
        CertificateValidationCallback = ssl.CertificateValidationCallback, Version = ssl.Version,
    };

    /// <summary>A connection of <see cref="ConnectAsync"/> for a program's configuration.</summary>
    public static async Task<IConnection> ConnectAsync(IConfiguration configuration, DeploymentTls tls, string clientName, CancellationToken ct) =>
        await From(configuration).ConnectAsync(clientName, tls, ct);
}

public static class BrokerExtensions
{
    /// <summary>The bus's host: the broker of <see cref="Broker.From"/>, every cluster node, TLS to the deployment CA, and publisher confirms.</summary>
    public static void Host(this IRabbitMqBusFactoryConfigurator bus, Broker broker, DeploymentTls tls)
    {
        bus.Host(broker.Uri, h =>
        {
            h.PublisherConfirmation = true;             // a send completes once the broker holds the message (for a quorum queue: a majority of its nodes)
            if (broker.Tls)
                h.UseSsl(s =>
                {
                    s.ServerName = broker.Uri.Host;
                    s.CertificateValidationCallback = tls.ValidateServer;
                });
            if (broker.Nodes.Count > 1)
                h.UseCluster(c =>
                {
                    foreach (var node in broker.Nodes) c.Node($"{node.HostName}:{node.Port}");
                });
        });
    }
}

public static class QuorumQueueExtensions
{
    /// <summary>
    /// The endpoint's queue is a quorum queue: replicated on a majority of the cluster's nodes, so it and its messages outlive
    /// a node (and its _error and _skipped queues too, which copy its arguments). On one node it works the same, unreplicated.
    /// </summary>
    public static void QuorumQueue(this IEndpointRegistrationConfigurator endpoint) =>
        endpoint.AddRabbitMqConfigureEndpointCallback((_, queue) => queue.SetQuorumQueue());
}
