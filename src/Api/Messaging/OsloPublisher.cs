using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using VolumeBackup.Api.Backups;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Messaging;

/// <summary>
/// Sends oslo.messaging notifications as the rabbit driver does (impl_rabbit notify_send): a plain JSON body, the messaging
/// v2 envelope, to a topic exchange with routing key topic.priority, after declaring the default queue of that routing key
/// so that nothing is lost before a consumer binds. Publisher confirms, like the rest of the outbox.
/// </summary>
// RabbitMQ.Client (already under MassTransit.RabbitMQ) rather than a MassTransit send endpoint: oslo needs a bare body and
// its own exchange, queue and durability, which MassTransit's topology and headers would only have to be talked out of.
public sealed class OsloPublisher(IConfiguration configuration, IOptions<NotificationOptions> options, DeploymentTls tls) : IAsyncDisposable
{
    readonly SemaphoreSlim gate = new(1);
    readonly HashSet<string> declared = [];
    IConnection? connection;
    IChannel? channel;

    public async Task PublishAsync(OsloNotification notification, Guid rowId, CancellationToken ct)
    {
        var o = options.Value;
        var routingKey = notification.RoutingKey(o.Topic);
        var body = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new JsonObject
        {
            ["oslo.version"] = "2.0",
            ["oslo.message"] = JsonSerializer.Serialize(notification),
        }));
        await gate.WaitAsync(ct);
        try
        {
            var ch = await ChannelAsync(ct);
            if (!declared.Contains(routingKey))
            {
                await ch.ExchangeDeclareAsync(o.Exchange, ExchangeType.Topic, o.Durable, autoDelete: false, cancellationToken: ct);
                await ch.QueueDeclareAsync(routingKey, o.Durable, exclusive: false, autoDelete: false, cancellationToken: ct);
                await ch.QueueBindAsync(routingKey, o.Exchange, routingKey, cancellationToken: ct);
                declared.Add(routingKey);
            }
            var properties = new BasicProperties
            {
                ContentType = "application/json", ContentEncoding = "utf-8", DeliveryMode = DeliveryModes.Persistent, MessageId = rowId.ToString(),
            };
            await ch.BasicPublishAsync(o.Exchange, routingKey, mandatory: false, properties, body, ct);   // returns once confirmed
        }
        catch
        {
            await ResetAsync();                              // a closed channel or connection is opened anew on the next try
            throw;
        }
        finally { gate.Release(); }
    }

    async Task<IChannel> ChannelAsync(CancellationToken ct)
    {
        if (channel is { IsOpen: true }) return channel;
        await ResetAsync();
        connection = await Broker.From(configuration).ConnectAsync("volumebackup-api-oslo-notifications", tls, ct);   // any node of a cluster
        channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), ct);
        return channel;
    }

    async Task ResetAsync()
    {
        declared.Clear();
        if (channel is not null) await channel.DisposeAsync();
        if (connection is not null) await connection.DisposeAsync();
        channel = null;
        connection = null;
    }

    public async ValueTask DisposeAsync()
    {
        await ResetAsync();
        gate.Dispose();
    }
}
