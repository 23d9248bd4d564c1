using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Options;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.VolumeAgent;

/// <summary>
/// Who may call this VolumeAgent: mutual TLS on every endpoint, with client certificates of the deployment CA, from the
/// Api or from a BackupAgent of this host's zone. Anyone else is refused in the TLS handshake, before any call is read.
/// </summary>
public static class ClientCertificates
{
    /// <summary>Every Kestrel endpoint serves TLS, whatever scheme its URL names: a plain URL cannot open the pool to anyone.</summary>
    public static void RequireMutualTls(this IWebHostBuilder host) => host.ConfigureKestrel(kestrel => kestrel.ConfigureEndpointDefaults(listen =>
    {
        var services = listen.ApplicationServices;
        var tls = services.GetRequiredService<DeploymentTls>();
        var zone = services.GetRequiredService<IOptions<VolumeOptions>>().Value.Zone;
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(ClientCertificates));
        listen.UseHttps(https =>
        {
            https.ServerCertificate = tls.Certificate;
            https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
            https.ClientCertificateValidation = (certificate, _, _) => Accepts(tls, zone, certificate, logger);
        });
    }));

    /// <summary>A client certificate of the deployment CA for client authentication, of the Api or of a BackupAgent of <paramref name="zone"/>.</summary>
    public static bool Accepts(DeploymentTls tls, string zone, X509Certificate2 certificate, ILogger logger)
    {
        var refused = !tls.Issued(certificate, DeploymentTls.ClientAuth) ? "not a client certificate of the deployment CA, or expired"
            : DeploymentTls.IdentityOf(certificate) switch
            {
                ("api", _) => null,
                ("backup-agent", var z) when z == zone => null,
                ("backup-agent", var z) => $"a BackupAgent of zone {z}, not of this host's zone {zone}",
                (var role, _) => $"role {role ?? "(none)"} may not call a VolumeAgent",
            };
        if (refused is not null) logger.ClientRefused(refused, certificate.Subject);
        return refused is null;
    }
}
