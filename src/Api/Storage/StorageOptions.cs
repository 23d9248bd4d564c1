using System.ComponentModel.DataAnnotations;
using Grpc.Net.Client;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.Api.Storage;

/// <summary>The storage hosts this Api places volumes on: each runs a VolumeAgent and serves one availability zone.</summary>
public sealed class StorageOptions
{
    public const string Section = "Storage";

    [Required, MinLength(1)] public List<StorageHost> Hosts { get; init; } = [];
}

public sealed class StorageHost
{
    [Required] public string Name { get; init; } = "";
    [Required] public string Zone { get; init; } = "nova";
    [Required, Url] public string Address { get; init; } = "";
}

/// <summary>One gRPC channel per VolumeAgent, made once: channels are meant to be long-lived and shared.</summary>
public sealed class VolumeHosts(IOptions<StorageOptions> options) : IDisposable
{
    readonly Dictionary<string, GrpcChannel> channels = options.Value.Hosts.ToDictionary(h => h.Name, h => GrpcChannel.ForAddress(h.Address));

    public IReadOnlyList<StorageHost> All => options.Value.Hosts;

    public bool ServesZone(string zone) => All.Any(h => h.Zone == zone);

    /// <summary>The host for a new volume in a zone: the first configured one (placement by capacity is future work).</summary>
    public StorageHost? PickHost(string zone) => All.FirstOrDefault(h => h.Zone == zone);

    public VolumeHost.VolumeHostClient Client(string host) =>
        new(channels.TryGetValue(host, out var channel) ? channel : throw new InvalidOperationException($"Unknown storage host {host}"));

    public void Dispose()
    {
        foreach (var channel in channels.Values) channel.Dispose();
    }
}
