using Grpc.Net.Client;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.TestSupport;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>The VolumeAgent in process on a pool folder, and a gRPC client of it (in memory: no TLS to go through; see ClientCertificateTests).</summary>
public sealed class InProcessVolumeAgent : IDisposable
{
    readonly WebApplicationFactory<Program> factory;

    public InProcessVolumeAgent(string pool)
    {
        factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
            b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(Settings(pool))));
        Client = new VolumeHost.VolumeHostClient(GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = factory.Server.CreateHandler() }));
    }

    public VolumeHost.VolumeHostClient Client { get; }

    /// <summary>The VolumeAgent's configuration: its pool, and its certificate from the tests' deployment CA.</summary>
    public static Dictionary<string, string?> Settings(string pool)
    {
        var settings = new Dictionary<string, string?> { ["Volumes:PoolPath"] = pool };
        foreach (var (key, value) in TestPki.Deployment.Settings(TestPki.Deployment.VolumeAgent, ":")) settings[key] = value;
        return settings;
    }

    public void Dispose() => factory.Dispose();
}
