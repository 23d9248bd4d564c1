using MassTransit;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using VolumeBackup.Contracts;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.BackupAgent;

/// <summary>The broker's address (ConnectionStrings:RabbitMq, with the agents' own user) and, for amqps://, TLS trusting the deployment CA only.</summary>
public static class Broker
{
    public static Uri Uri(IConfiguration configuration) =>
        new(configuration.GetConnectionString("RabbitMq") ?? throw new InvalidOperationException("ConnectionStrings:RabbitMq is required"));

    public static void Secure(IRabbitMqHostConfigurator host, Uri broker, DeploymentTls tls)
    {
        if (broker.Scheme != "amqps") return;
        host.UseSsl(s =>
        {
            s.ServerName = broker.Host;
            s.CertificateValidationCallback = tls.ValidateServer;
        });
    }
}
