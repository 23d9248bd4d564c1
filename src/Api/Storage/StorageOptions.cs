using System.ComponentModel.DataAnnotations;
using Grpc.Net.Client;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Storage;

/// <summary>The storage hosts this Api places volumes on: each runs a VolumeAgent and serves one availability zone.</summary>
public sealed class StorageOptions
{
    public const string Section = "Storage";

    [Required, MinLength(1)] public List<StorageHost> Hosts { get; init; } = [];

    /// <summary>How long a call to a VolumeAgent may take: a create from a snapshot on a pool that cannot reflink copies the data.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")] public TimeSpan CallTimeout { get; init; } = TimeSpan.FromMinutes(2);
}

public sealed class StorageHost
{
    [Required] public string Name { get; init; } = "";
    [Required] public string Zone { get; init; } = "nova";
    /// <summary>The VolumeAgent's https:// address: it speaks mutual TLS only, and the Api presents its own certificate.</summary>
    [Required, Url, RegularExpression("^https://.+", ErrorMessage = "Storage:Hosts:n:Address must be an https:// address: a VolumeAgent speaks mutual TLS only")]
    public string Address { get; init; } = "";
}

/// <summary>
/// One gRPC channel per VolumeAgent, made once: channels are meant to be long-lived and shared. Each presents the Api's
/// certificate and trusts only VolumeAgents with a server certificate of the deployment CA.
/// </summary>
public sealed class VolumeHosts(IOptions<StorageOptions> options, DeploymentTls tls) : IDisposable
{
    readonly Dictionary<string, GrpcChannel> channels = options.Value.Hosts.ToDictionary(h => h.Name,
        h => GrpcChannel.ForAddress(h.Address, new GrpcChannelOptions { HttpHandler = tls.ClientHandler() }));

    /// <summary>An HTTP/2 client of the VolumeAgents (their health endpoints), with the same certificates as the channels.</summary>
    public HttpClient CreateHttpClient(TimeSpan timeout) => new(tls.ClientHandler())
    {
        DefaultRequestVersion = System.Net.HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact, Timeout = timeout,
    };

    public IReadOnlyList<StorageHost> All => options.Value.Hosts;

    public bool ServesZone(string zone) => All.Any(h => h.Zone == zone);

    /// <summary>The host for a new volume in a zone: the first configured one (placement by capacity is future work).</summary>
    public StorageHost? PickHost(string zone) => All.FirstOrDefault(h => h.Zone == zone);

    /// <summary>The deadline of a VolumeAgent call starting now; every call has one, so a hung agent never holds a request.</summary>
    public DateTime Deadline => DateTime.UtcNow + options.Value.CallTimeout;

    public VolumeHost.VolumeHostClient Client(string host) =>
        new(channels.TryGetValue(host, out var channel) ? channel : throw new InvalidOperationException($"Unknown storage host {host}"));

    public void Dispose()
    {
        foreach (var channel in channels.Values) channel.Dispose();
    }
}
