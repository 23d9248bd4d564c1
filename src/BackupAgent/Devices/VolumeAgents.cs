using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Options;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.BackupAgent.Devices;

/// <summary>
/// The VolumeAgents this agent may call: its own host's (the VolumeHost gRPC client) and those listed in
/// Agent:VolumeAgents, one long-lived channel each, on the HTTP handler configured for that same client, so its
/// transport settings (TLS) apply to all.
/// </summary>
public sealed class VolumeAgents(IOptions<AgentOptions> options, VolumeHost.VolumeHostClient own, IHttpMessageHandlerFactory handlers) : IDisposable
{
    readonly AgentOptions agent = options.Value;
    readonly Dictionary<string, GrpcChannel> channels = [];

    /// <summary>True when the volume's host is this agent's: its devices are files here.</summary>
    public bool IsLocal(string host) => host.Length == 0 || host == agent.Host;

    /// <summary>The client of a host's VolumeAgent; an unknown host is a configuration error, reported in the job's failure.</summary>
    public VolumeHost.VolumeHostClient Client(string host)
    {
        if (IsLocal(host)) return own;
        var address = agent.VolumeAgents.GetValueOrDefault(host)
              ?? throw new InvalidOperationException($"Storage host '{host}' is not among this agent's VolumeAgents (Agent:VolumeAgents); it cannot reach that host's volumes.");
        lock (channels)
        {
            if (!channels.TryGetValue(address, out var channel))
                channels[address] = channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
                {
                    HttpHandler = handlers.CreateHandler(typeof(VolumeHost.VolumeHostClient).Name), DisposeHttpClient = true,
                });
            return new VolumeHost.VolumeHostClient(channel);
        }
    }

    /// <summary>Runs a call to a host's VolumeAgent; one that does not answer fails with a message naming the host.</summary>
    public static async Task<T> CallAsync<T>(string host, Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            // No inner exception: the saga's fail_reason is the innermost message, and this one names the host.
            throw new VolumeHostUnavailableException($"The VolumeAgent of storage host '{host}' did not answer ({e.StatusCode}: {e.Status.Detail}).");
        }
    }

    public void Dispose()
    {
        foreach (var channel in channels.Values) channel.Dispose();
    }
}

/// <summary>A storage host's VolumeAgent is down or unreachable: its volumes cannot be backed up or restored now.</summary>
public sealed class VolumeHostUnavailableException(string message) : Exception(message);
