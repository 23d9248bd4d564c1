using System.ComponentModel.DataAnnotations;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Volumes;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Api.Storage;

/// <summary>The storage hosts this Api places volumes on: each runs a VolumeAgent and serves one availability zone.</summary>
public sealed class StorageOptions
{
    public const string Section = "Storage";

    [Required, MinLength(1)] public List<StorageHost> Hosts { get; init; } = [];

    /// <summary>
    /// Cinder's max_over_subscription_ratio (its default, 20): volumes are sparse files, so a pool may be provisioned this
    /// many times its size. 1 is thick accounting: no more volume GiB than the pool holds.
    /// </summary>
    [Range(1.0, 1000.0)] public double MaxOverSubscriptionRatio { get; init; } = 20.0;

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

    /// <summary>
    /// The host for a new volume in a zone, as Cinder's filter scheduler with its capacity filter and weigher for thin
    /// provisioning: of the zone's hosts whose VolumeAgent answers now, those with room for the volume, the one with the
    /// most room. Room is the pool's size (which its VolumeAgent reports) times the over-subscription ratio, less the
    /// sizes of the volumes placed there (from our own rows, so placements a moment ago count at once); and, as Cinder,
    /// its free space times the ratio must hold the volume too. Null when no host of the zone answers or has room.
    /// </summary>
    public async Task<StorageHost?> PickHostAsync(string zone, long sizeBytes, AppDbContext db, CancellationToken ct)
    {
        var candidates = All.Where(h => h.Zone == zone).ToList();
        var names = candidates.Select(h => h.Name).ToList();
        var placed = await db.Volumes.Where(v => names.Contains(v.Host) && v.Status != VolumeStatus.Deleting)
            .GroupBy(v => v.Host).Select(g => new { Host = g.Key, Gib = g.Sum(v => (long)v.Size) }).ToDictionaryAsync(g => g.Host, g => g.Gib << 30, ct);
        var capacities = await Task.WhenAll(candidates.Select(async h =>
        {
            try
            {
                return await Client(h.Name).GetCapacityAsync(new CapacityRequest(), deadline: DateTime.UtcNow + ProbeTimeout, cancellationToken: ct);
            }
            catch (RpcException)
            {
                return null;                                  // down: no volume goes there
            }
        }));
        var ratio = options.Value.MaxOverSubscriptionRatio;
        return candidates.Select((h, i) => (Host: h, Capacity: capacities[i]))
            .Where(c => c.Capacity is { } capacity && capacity.FreeBytes * ratio >= sizeBytes)
            .Select(c => (c.Host, Room: (long)(c.Capacity!.TotalBytes * ratio) - placed.GetValueOrDefault(c.Host.Name)))
            .Where(c => c.Room >= sizeBytes).OrderByDescending(c => c.Room).Select(c => c.Host).FirstOrDefault();
    }

    // A dead host refuses at once; this bounds a hung one, and leaves a slow (loaded) one time to answer.
    static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(20);

    /// <summary>The deadline of a VolumeAgent call starting now; every call has one, so a hung agent never holds a request.</summary>
    public DateTime Deadline => DateTime.UtcNow + options.Value.CallTimeout;

    public VolumeHost.VolumeHostClient Client(string host) =>
        new(channels.TryGetValue(host, out var channel) ? channel : throw new InvalidOperationException($"Unknown storage host {host}"));

    public void Dispose()
    {
        foreach (var channel in channels.Values) channel.Dispose();
    }
}
