using Grpc.Net.Client;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>The VolumeAgent in process on a pool folder, and a gRPC client of it.</summary>
public sealed class InProcessVolumeAgent : IDisposable
{
    readonly WebApplicationFactory<Program> factory;

    public InProcessVolumeAgent(string pool)
    {
        factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
            b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(new Dictionary<string, string?> { ["Volumes:PoolPath"] = pool })));
        Client = new VolumeHost.VolumeHostClient(GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = factory.Server.CreateHandler() }));
    }

    public VolumeHost.VolumeHostClient Client { get; }

    public void Dispose() => factory.Dispose();
}
