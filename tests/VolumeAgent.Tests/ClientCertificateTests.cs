using Grpc.Core;
using Grpc.Net.Client;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.TestSupport;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>A real VolumeAgent process of zone nova, serving mutual TLS, as deploy/run.sh runs it.</summary>
public sealed class MutualTlsAgent : IAsyncLifetime
{
    public TestPki Pki => TestPki.Deployment;
    public string Pool { get; } = TestServices.CreatePoolFolder("mtls");
    public HostProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync() => Agent = await HostProcess.StartAsync("VolumeAgent",
        new Dictionary<string, string>(Pki.Settings(Pki.VolumeAgent)) { ["Volumes__PoolPath"] = Pool, ["Volumes__Zone"] = "nova" },
        "VolumeAgent-mtls", tls: () => Pki.Handler(Pki.Api));

    public async Task DisposeAsync()
    {
        await Agent.DisposeAsync();
        Directory.Delete(Pool, recursive: true);
    }
}

/// <summary>Only the Api and the BackupAgents of the VolumeAgent's own zone may call it; everyone else is refused in the TLS handshake.</summary>
public sealed class ClientCertificateTests(MutualTlsAgent fixture) : IClassFixture<MutualTlsAgent>
{
    TestPki Pki => fixture.Pki;

    [Fact]
    public async Task The_Api_and_a_BackupAgent_of_its_zone_are_served()
    {
        foreach (var client in new[] { Pki.Api, Pki.BackupAgent("nova") })
        {
            var volume = Guid.NewGuid();

            await CreateVolumeAsync(Pki.Handler(client), volume);

            Assert.True(File.Exists(Path.Combine(fixture.Pool, $"volume-{volume}")), $"{client.Certificate} was not served");
        }
    }

    [Fact]
    public async Task A_client_without_a_certificate_is_refused()
    {
        await AssertRefusedAsync(Pki.Handler(null));
    }

    [Fact]
    public async Task A_BackupAgent_of_another_zone_is_refused()
    {
        await AssertRefusedAsync(Pki.Handler(Pki.BackupAgent("zone-b")), "a BackupAgent of zone zone-b, not of this host's zone nova");
    }

    [Fact]
    public async Task A_certificate_of_another_role_is_refused()
    {
        // A server's certificate (another VolumeAgent's, say) cannot act as a client, nor can a client certificate of an unknown role.
        await AssertRefusedAsync(Pki.Handler(Pki.Issue("volume-agent-b", "volume-agent", server: true)), "not a client certificate");
        await AssertRefusedAsync(Pki.Handler(Pki.Issue("tenant-tool", "tenant")), "role tenant may not call a VolumeAgent");
    }

    [Fact]
    public async Task An_Api_certificate_of_another_CA_or_expired_is_refused()
    {
        await AssertRefusedAsync(Pki.Handler(new TestPki().Api), "not a client certificate of the deployment CA");
        await AssertRefusedAsync(Pki.Handler(Pki.Issue("api-expired", "api", expired: true)), "or expired");
    }

    [Fact]
    public async Task A_plaintext_client_gets_no_answer()
    {
        var volume = Guid.NewGuid();
        using var channel = GrpcChannel.ForAddress(fixture.Agent.Address.Replace("https://", "http://", StringComparison.Ordinal));

        var error = await Assert.ThrowsAsync<RpcException>(() => new VolumeHost.VolumeHostClient(channel)
            .CreateVolumeAsync(new CreateVolumeRequest { VolumeId = volume.ToString(), SizeBytes = 1 << 20 }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);

        Assert.NotEqual(StatusCode.OK, error.StatusCode);
        Assert.False(File.Exists(Path.Combine(fixture.Pool, $"volume-{volume}")));
    }

    [Fact]
    public async Task A_VolumeAgent_without_its_certificate_does_not_start()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => HostProcess.StartAsync("VolumeAgent",
            new Dictionary<string, string> { ["Volumes__PoolPath"] = fixture.Pool }, "VolumeAgent-no-tls", tls: () => Pki.Handler(Pki.Api)));

        Assert.Contains("exited", error.Message);
        Assert.Contains("Tls", error.Message);
    }

    async Task AssertRefusedAsync(SocketsHttpHandler handler, string? logged = null)
    {
        var volume = Guid.NewGuid();

        var error = await Assert.ThrowsAsync<RpcException>(() => CreateVolumeAsync(handler, volume));

        // The handshake failed, so no call was read; with TLS 1.3 the client may hear it as it starts the call (Unavailable)
        // or as the server's alert resets the connection under it (Internal).
        Assert.True(error.StatusCode is StatusCode.Unavailable or StatusCode.Internal, error.ToString());
        Assert.False(File.Exists(Path.Combine(fixture.Pool, $"volume-{volume}")));
        if (logged is not null)
            await Eventually.UntilAsync(() => fixture.Agent.Output.Any(l => l.Contains(logged, StringComparison.Ordinal)), TimeSpan.FromSeconds(10),
                $"the VolumeAgent to log why it refused the client ({logged})");
    }

    async Task CreateVolumeAsync(SocketsHttpHandler handler, Guid volume)
    {
        using var channel = GrpcChannel.ForAddress(fixture.Agent.Address, new GrpcChannelOptions { HttpHandler = handler });
        await new VolumeHost.VolumeHostClient(channel).CreateVolumeAsync(new CreateVolumeRequest { VolumeId = volume.ToString(), SizeBytes = 1 << 20 },
            deadline: DateTime.UtcNow.AddSeconds(10));
    }
}
