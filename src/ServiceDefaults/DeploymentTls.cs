using System.ComponentModel.DataAnnotations;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace VolumeBackup.ServiceDefaults;

/// <summary>
/// This program's certificate and the deployment's own CA (deploy/pki.sh makes both): the CA is the only root trusted on
/// the service's internal channels (the VolumeAgent's gRPC, AMQP over TLS), never the system's store.
/// </summary>
public sealed class TlsOptions
{
    public const string Section = "Tls";

    /// <summary>The deployment CA's certificate (PEM).</summary>
    [Required] public string CaFile { get; init; } = "";

    /// <summary>This program's certificate (PEM): the VolumeAgent's server certificate, the Api's or a BackupAgent's client one.</summary>
    [Required] public string CertificateFile { get; init; } = "";

    /// <summary>The certificate's private key (PEM, mode 0600).</summary>
    [Required] public string KeyFile { get; init; } = "";
}

/// <summary>The loaded <see cref="TlsOptions"/>: checks peers against the deployment CA, and presents this program's certificate.</summary>
public sealed class DeploymentTls
{
    /// <summary>The extended key usages deploy/pki.sh puts in server and client certificates.</summary>
    public const string ServerAuth = "1.3.6.1.5.5.7.3.1", ClientAuth = "1.3.6.1.5.5.7.3.2";

    readonly X509Certificate2 ca;

    public DeploymentTls(IOptions<TlsOptions> options)
    {
        var o = options.Value;
        ca = X509Certificate2.CreateFromPem(Read(o.CaFile, "Tls:CaFile"));
        var key = Read(o.KeyFile, "Tls:KeyFile");
        Certificate = X509Certificate2.CreateFromPem(Read(o.CertificateFile, "Tls:CertificateFile"), key);
        if (!Issued(Certificate, null))
            throw new InvalidOperationException($"Tls:CertificateFile {o.CertificateFile} is not issued by the CA in Tls:CaFile {o.CaFile} (or has expired)");
    }

    /// <summary>This program's certificate, with its key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The certificate chains to the deployment CA alone, is valid now and, when given, allows <paramref name="usage"/>.</summary>
    public bool Issued(X509Certificate2 certificate, string? usage)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;   // the deployment publishes no CRL: rotation re-issues instead
        if (usage is not null) chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid(usage));
        return chain.Build(certificate);
    }

    /// <summary>
    /// A <see cref="RemoteCertificateValidationCallback"/> for clients: the server's name must match (the system checked
    /// it) and its certificate must be a server certificate of the deployment CA; the system's roots count for nothing.
    /// </summary>
    public bool ValidateServer(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors) =>
        certificate is not null
        && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None
        && Issued(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()), ServerAuth);

    /// <summary>An HTTP/2 handler that presents this program's certificate and trusts only the deployment CA's servers.</summary>
    public SocketsHttpHandler ClientHandler() => new()
    {
        SslOptions = new SslClientAuthenticationOptions
        {
            ClientCertificates = [Certificate],
            RemoteCertificateValidationCallback = ValidateServer,
        },
        EnableMultipleHttp2Connections = true,
        InitialHttp2StreamWindowSize = 8 << 20,     // a remote backup's ReadDevice streams: MiBs in flight, not 64 KiB to start
    };

    /// <summary>The role (subject OU) and availability zone (subject L) deploy/pki.sh writes into a certificate.</summary>
    public static (string? Role, string? Zone) IdentityOf(X509Certificate2 certificate)
    {
        string? role = null, zone = null;
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            var oid = rdn.GetSingleElementType().Value;
            if (oid == "2.5.4.11") role = rdn.GetSingleElementValue();      // OU
            else if (oid == "2.5.4.7") zone = rdn.GetSingleElementValue();  // L
        }
        return (role, zone);
    }

    static string Read(string file, string key)
    {
        if (string.IsNullOrEmpty(file) || !File.Exists(file))
            throw new InvalidOperationException($"{key} names no readable file ({file}); deploy/pki.sh makes the deployment's certificates");
        return File.ReadAllText(file);
    }
}

public static class DeploymentTlsExtensions
{
    /// <summary>The Tls section, validated at start, and its <see cref="DeploymentTls"/>.</summary>
    public static IServiceCollection AddDeploymentTls(this IServiceCollection services)
    {
        services.AddOptions<TlsOptions>().BindConfiguration(TlsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<DeploymentTls>();
        return services;
    }
}
