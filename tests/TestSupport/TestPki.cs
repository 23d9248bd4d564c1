using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace VolumeBackup.TestSupport;

/// <summary>
/// A certificate authority and its certificates made in process, as deploy/pki.sh makes the deployment's: subject OU the
/// role, L the availability zone; servers for 127.0.0.1 and localhost. PEM files in a folder of their own (keys 0600).
/// <see cref="Deployment"/> is the one every test host of a run shares; a new instance is a stranger's CA.
/// </summary>
public sealed class TestPki
{
    static readonly Lazy<TestPki> deployment = new(() => new TestPki("deployment"));
    readonly string folder;
    readonly X509Certificate2 ca;
    readonly Dictionary<string, (string Certificate, string Key)> issued = [];

    /// <summary>The CA the test hosts trust.</summary>
    public static TestPki Deployment => deployment.Value;

    public TestPki(string name = "stranger")
    {
        folder = Directory.CreateTempSubdirectory($"vb-pki-{name}-").FullName;   // 0700
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Directory.Delete(folder, recursive: true);   // the keys go with the test run
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN=VolumeBackup {name} CA, O=VolumeBackup", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddYears(1));
        CaFile = Path.Combine(folder, "ca.crt");
        File.WriteAllText(CaFile, ca.ExportCertificatePem());
    }

    public string CaFile { get; }

    /// <summary>The VolumeAgent's server certificate.</summary>
    public (string Certificate, string Key) VolumeAgent => Issue("volume-agent", "volume-agent", server: true);

    /// <summary>A certificate (made once per name): a server's for 127.0.0.1 and localhost, else a client's.</summary>
    public (string Certificate, string Key) Issue(string name, string role, string? zone = null, bool server = false, bool expired = false)
    {
        lock (issued)
        {
            if (issued.TryGetValue(name, out var files)) return files;
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var subject = new X500DistinguishedNameBuilder();
            subject.AddOrganizationName("VolumeBackup");
            subject.AddOrganizationalUnitName(role);
            if (zone is not null) subject.AddLocalityName(zone);
            subject.AddCommonName(name);
            var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
            if (server)
            {
                var names = new SubjectAlternativeNameBuilder();
                names.AddIpAddress(IPAddress.Loopback);
                names.AddDnsName("localhost");
                request.CertificateExtensions.Add(names.Build());
            }
            var now = DateTimeOffset.UtcNow;
            using var certificate = request.Create(ca, now.AddDays(-7), expired ? now.AddHours(-1) : now.AddDays(30), RandomNumberGenerator.GetBytes(16));
            files = (Path.Combine(folder, $"{name}.crt"), Path.Combine(folder, $"{name}.key"));
            File.WriteAllText(files.Certificate, certificate.ExportCertificatePem());
            File.WriteAllText(files.Key, key.ExportPkcs8PrivateKeyPem(), new System.Text.UTF8Encoding(false));
            File.SetUnixFileMode(files.Key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            issued[name] = files;
            return files;
        }
    }

    /// <summary>A loaded client certificate with its key.</summary>
    public X509Certificate2 Load((string Certificate, string Key) files) => X509Certificate2.CreateFromPemFile(files.Certificate, files.Key);

    /// <summary>The Tls settings of a host presenting <paramref name="files"/>, as environment variables (<c>__</c>) or configuration keys (<c>:</c>).</summary>
    public Dictionary<string, string> Settings((string Certificate, string Key) files, string separator = "__") => new()
    {
        [$"Tls{separator}CaFile"] = CaFile,
        [$"Tls{separator}CertificateFile"] = files.Certificate,
        [$"Tls{separator}KeyFile"] = files.Key,
    };

    /// <summary>The Api's client certificate.</summary>
    public (string Certificate, string Key) Api => Issue("api", "api");

    /// <summary>A BackupAgent's client certificate for <paramref name="zone"/>.</summary>
    public (string Certificate, string Key) BackupAgent(string zone = "nova") => Issue($"backup-agent-{zone}", "backup-agent", zone);

    /// <summary>An HTTP/2 handler presenting <paramref name="client"/> (or nothing) and trusting this CA's servers only.</summary>
    public SocketsHttpHandler Handler((string Certificate, string Key)? client)
    {
        var handler = new SocketsHttpHandler();
        if (client is { } files) handler.SslOptions.ClientCertificates = [Load(files)];
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
        {
            if (certificate is null || (errors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return chain.Build(new X509Certificate2(certificate));
        };
        return handler;
    }
}
