using System.Text;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using VolumeBackup.ServiceDefaults;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Messaging;

/// <summary>
/// The broker deploy/services.sh runs: no guest, a user per role, and permissions that keep a BackupAgent's credentials
/// from publishing the Api's commands (a forged restore or delete) while the Api's may. AMQP over TLS with the deployment CA.
/// </summary>
public sealed class BrokerPermissionsTests : IAsyncLifetime
{
    static readonly string[] Commands = ["CreateBackup", "RestoreBackup", "DeleteBackup", "VerifyBackup", "CancelBackup"];
    string api = "";
    string agent = "";

    public async Task InitializeAsync()
    {
        api = await TestServices.CreateVirtualHostAsync("perm");
        agent = TestServices.AgentBroker(api);
        Assert.NotEqual(new Uri(api).UserInfo, new Uri(agent).UserInfo);   // deploy/services.sh env exports the agents' own user
    }

    public Task DisposeAsync() => TestServices.DeleteVirtualHostAsync(api);

    [Fact]
    public async Task An_agent_cannot_publish_a_command_where_the_Api_can()
    {
        await using var asApi = await ConnectAsync(api);
        await using (var setup = await asApi.CreateChannelAsync())
        {
            // The topology MassTransit makes as the Api sends a command to a zone's queue, and publishes CancelBackup.
            await setup.ExchangeDeclareAsync("create-backup-nova", ExchangeType.Fanout, durable: true);
            await setup.QueueDeclareAsync("create-backup-nova", durable: true, exclusive: false, autoDelete: false);
            await setup.QueueBindAsync("create-backup-nova", "create-backup-nova", "");
            await setup.ExchangeDeclareAsync("verify-backup-nova", ExchangeType.Fanout, durable: true);
            foreach (var command in Commands)
            {
                await setup.ExchangeDeclareAsync($"VolumeBackup.Contracts:{command}", ExchangeType.Fanout, durable: true);
                await setup.ExchangeBindAsync("create-backup-nova", $"VolumeBackup.Contracts:{command}", "");   // the worst case: every command reaches the queue
            }
        }
        await PublishAsync(asApi, "create-backup-nova", "");                            // the Api's command is accepted
        await using var asAgent = await ConnectAsync(agent);

        foreach (var (exchange, routingKey) in Commands.Select(c => ($"VolumeBackup.Contracts:{c}", "")).Append(("create-backup-nova", "")).Append(("", "create-backup-nova")).Append(("verify-backup-nova", "")))
        {
            var refused = await Assert.ThrowsAnyAsync<Exception>(() => PublishAsync(asAgent, exchange, routingKey));
            Assert.Contains("ACCESS_REFUSED", refused.ToString());
        }
        await using (var bind = await asAgent.CreateChannelAsync())                       // nor can it route a queue of its own into the commands
        {
            var refused = await Assert.ThrowsAnyAsync<OperationInterruptedException>(() => bind.QueueBindAsync("create-backup-nova", "amq.fanout", ""));
            Assert.Contains("ACCESS_REFUSED", refused.ToString());
        }

        await using var check = await asApi.CreateChannelAsync();
        Assert.Equal(1u, (await check.QueueDeclarePassiveAsync("create-backup-nova")).MessageCount);   // only the Api's command is queued
        await using var take = await asAgent.CreateChannelAsync();
        Assert.NotNull(await take.BasicGetAsync("create-backup-nova", autoAck: true));    // and the agent may take it
    }

    [Fact]
    public async Task An_agent_publishes_its_own_events()
    {
        await using var asAgent = await ConnectAsync(agent);
        await using (var declare = await asAgent.CreateChannelAsync())
            await declare.ExchangeDeclareAsync("VolumeBackup.Contracts:BackupCompleted", ExchangeType.Fanout, durable: true);

        await PublishAsync(asAgent, "VolumeBackup.Contracts:BackupCompleted", "");
    }

    [Fact]
    public async Task The_guest_user_is_gone()
    {
        var guest = new UriBuilder(api) { UserName = "guest", Password = "guest" }.Uri;

        var error = await Assert.ThrowsAsync<BrokerUnreachableException>(() => ConnectAsync(guest.ToString()));

        Assert.IsType<AuthenticationFailureException>(error.InnerException);
    }

    [Fact]
    public async Task AMQP_over_TLS_answers_with_a_certificate_of_the_deployment_CA_and_no_other()
    {
        var broker = TestServices.Required("VB_RABBITMQ_TLS");
        var pki = TestServices.Required("VB_PKI");
        var deployment = new DeploymentTls(Options.Create(new TlsOptions
        {
            CaFile = Path.Combine(pki, "ca.crt"), CertificateFile = Path.Combine(pki, "api.crt"), KeyFile = Path.Combine(pki, "api.key"),
        }));
        var strangerPki = new TestPki();
        var stranger = new DeploymentTls(Options.Create(new TlsOptions
        {
            CaFile = strangerPki.CaFile, CertificateFile = strangerPki.Api.Certificate, KeyFile = strangerPki.Api.Key,
        }));

        await using (var trusted = await ConnectAsync(broker, deployment))
            Assert.True(trusted.IsOpen);
        await Assert.ThrowsAsync<BrokerUnreachableException>(() => ConnectAsync(broker, stranger));
    }

    static Task<IConnection> ConnectAsync(string uri, DeploymentTls? tls = null)
    {
        var factory = new ConnectionFactory { Uri = new Uri(uri), AutomaticRecoveryEnabled = false };
        if (tls is not null) factory.Ssl.CertificateValidationCallback = tls.ValidateServer;
        return factory.CreateConnectionAsync();
    }

    // Publisher confirms: the publish returns once the broker took it, and throws when it refused (the channel closes).
    static async Task PublishAsync(IConnection connection, string exchange, string routingKey)
    {
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await channel.BasicPublishAsync(exchange, routingKey, mandatory: false, new BasicProperties(), Encoding.UTF8.GetBytes("{}"));
    }
}
