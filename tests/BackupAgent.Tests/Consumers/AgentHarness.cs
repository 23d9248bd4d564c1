extern alias VolumeAgentHost;

using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using MassTransit;
using MassTransit.Testing;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Devices;
using VolumeBackup.BackupAgent.Tests.Repository;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.TestSupport;
using VolumeAgentProgram = VolumeAgentHost::Program;

namespace VolumeBackup.BackupAgent.Tests.Consumers;

/// <summary>
/// The BackupAgent's consumers on MassTransit's in-memory test harness, talking gRPC to a real VolumeAgent in process
/// (on a folder of the XFS pool), with the repository in a temp folder behind an <see cref="InterceptingStore"/>.
/// </summary>
public sealed class AgentHarness : IAsyncDisposable
{
    readonly WebApplicationFactory<VolumeAgentProgram> volumeAgent;
    readonly ServiceProvider provider;

    public AgentHarness()
    {
        volumeAgent = new WebApplicationFactory<VolumeAgentProgram>().WithWebHostBuilder(b =>
            b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(VolumeAgentSettings())));
        var channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = volumeAgent.Server.CreateHandler() });
        Volumes = new VolumeHost.VolumeHostClient(channel.Intercept(Devices).Intercept(Calls));
        Store = new InterceptingStore(Repository.Store);
        provider = new ServiceCollection()
            .AddLogging()
            .AddSingleton(Options.Create(new AgentOptions { Host = "host-test", VolumeAgentAddress = "https://localhost", PoolPath = Pool, RetryIntervalsMs = [10] }))
            .AddSingleton(TimeProvider.System)
            .AddSingleton<RunningJobs>()
            .AddSingleton(Repository.Repository(Store))
            .AddSingleton(Volumes)
            .AddSingleton<VolumeAgents>()
            .AddHttpClient()
            .AddMassTransitTestHarness(x =>
            {
                x.SetTestTimeouts(testTimeout: TimeSpan.FromSeconds(60), testInactivityTimeout: TimeSpan.FromSeconds(30));
                x.AddConsumer<CreateBackupConsumer, CreateBackupConsumerDefinition>();
                x.AddConsumer<RestoreBackupConsumer, RestoreBackupConsumerDefinition>();
                x.AddConsumer<VerifyBackupConsumer, VerifyBackupConsumerDefinition>();
            })
            .BuildServiceProvider(validateScopes: true);
    }

    public string Pool { get; } = TestServices.CreatePoolFolder("ba");
    public RepositoryFixture Repository { get; } = new();
    public InterceptingStore Store { get; }
    public CallCounter Calls { get; } = new();
    /// <summary>Rewrites the device paths the VolumeAgent answers, as a compromised or confused VolumeAgent would.</summary>
    public DeviceRewriter Devices { get; } = new();

    Dictionary<string, string?> VolumeAgentSettings()
    {
        var settings = new Dictionary<string, string?> { ["Volumes:PoolPath"] = Pool };
        foreach (var (key, value) in TestPki.Deployment.Settings(TestPki.Deployment.VolumeAgent, ":")) settings[key] = value;
        return settings;
    }
    public VolumeHost.VolumeHostClient Volumes { get; }
    public ITestHarness Bus => provider.GetRequiredService<ITestHarness>();

    public Task StartAsync() => Bus.Start();

    /// <summary>What was published so far, without waiting for more (a plain Select waits out the inactivity timeout); ask after a positive wait.</summary>
    public IReadOnlyList<T> PublishedSoFar<T>() where T : class =>
        [.. Bus.Published.Select<T>(new CancellationToken(canceled: true)).Select(x => x.Context.Message)];

    /// <summary>A volume of the pool holding <paramref name="data"/>.</summary>
    public async Task<(Guid Id, string Path)> VolumeAsync(byte[] data)
    {
        var id = Guid.NewGuid();
        await Volumes.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = id.ToString(), SizeBytes = data.Length });
        var path = System.IO.Path.Combine(Pool, $"volume-{id}");
        await File.WriteAllBytesAsync(path, data);
        return (id, path);
    }

    /// <summary>What a VolumeAgent restarting now does first: it removes every temporary of its pool as stale.</summary>
    public void RestartVolumeAgent() =>
        _ = new VolumeAgentHost::VolumeBackup.VolumeAgent.VolumePool(
            Options.Create(new VolumeAgentHost::VolumeBackup.VolumeAgent.VolumeOptions { PoolPath = Pool }),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<VolumeAgentHost::VolumeBackup.VolumeAgent.VolumePool>.Instance);

    public async ValueTask DisposeAsync()
    {
        await provider.DisposeAsync();
        await volumeAgent.DisposeAsync();
        Repository.Dispose();
        Directory.Delete(Pool, recursive: true);
    }
}

/// <summary>With <see cref="Path"/> set, every device the VolumeAgent hands out names that path instead of its own.</summary>
public sealed class DeviceRewriter : Interceptor
{
    public string? Path { get; set; }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
        AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        var call = continuation(request, context);
        if (Path is not { } path) return call;
        return new AsyncUnaryCall<TResponse>(Rewrite(call.ResponseAsync, path), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    static async Task<TResponse> Rewrite<TResponse>(Task<TResponse> response, string path)
    {
        var answer = await response;
        if (answer is Device device) device.Path = path;
        return answer;
    }
}

/// <summary>Counts the VolumeAgent calls by method name, so a test can say which were never made.</summary>
public sealed class CallCounter : Interceptor
{
    readonly Dictionary<string, int> calls = [];

    public int this[string method] { get { lock (calls) return calls.GetValueOrDefault(method); } }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
        AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        lock (calls) calls[context.Method.Name] = calls.GetValueOrDefault(context.Method.Name) + 1;
        return continuation(request, context);
    }
}
