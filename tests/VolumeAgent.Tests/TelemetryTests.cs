using System.Collections.Concurrent;
using System.Text;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.TestSupport;

namespace VolumeBackup.VolumeAgent.Tests;

/// <summary>With OTEL_EXPORTER_OTLP_ENDPOINT set, a real process exports its traces, metrics and logs over OTLP.</summary>
public sealed class TelemetryTests
{
    [Fact]
    public async Task Traces_metrics_and_logs_go_to_the_configured_OTLP_endpoint()
    {
        var received = new ConcurrentQueue<(string Signal, string Body)>();
        var collector = WebApplication.CreateSlimBuilder();
        collector.WebHost.UseUrls("http://127.0.0.1:0");
        collector.Configuration["Kestrel:EndpointDefaults:Protocols"] = "Http1";   // not the VolumeAgent's HTTP/2-only setting beside this test
        await using var app = collector.Build();
        app.MapPost("/v1/{signal}", async (string signal, HttpRequest request) =>
        {
            using var body = new MemoryStream();
            await request.Body.CopyToAsync(body);
            received.Enqueue((signal, Encoding.UTF8.GetString(body.ToArray())));   // protobuf, but its strings are plain UTF-8
            return Results.Ok();
        });
        await app.StartAsync();
        var endpoint = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();

        var pki = TestPki.Deployment;
        await using var agent = await HostProcess.StartAsync("VolumeAgent", new Dictionary<string, string>(pki.Settings(pki.VolumeAgent))
        {
            ["Volumes__PoolPath"] = TestServices.CreatePoolFolder("otlp"),
            ["Telemetry__Instance"] = "otlp-test",
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["OTEL_BLRP_SCHEDULE_DELAY"] = "200",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "500",
        }, "VolumeAgent-otlp", tls: () => pki.Handler(pki.Api));
        using var channel = GrpcChannel.ForAddress(agent.Address, new GrpcChannelOptions { HttpHandler = pki.Handler(pki.Api) });
        var volumeId = Guid.NewGuid().ToString();
        await new VolumeHost.VolumeHostClient(channel).CreateVolumeAsync(new CreateVolumeRequest { VolumeId = volumeId, SizeBytes = 1 << 20 });

        bool Has(string signal, string text) => received.Any(r => r.Signal == signal && r.Body.Contains(text, StringComparison.Ordinal));
        await Eventually.UntilAsync(() => Task.FromResult(received.ToArray()), _ => Has("traces", "CreateVolume") && Has("logs", volumeId) && Has("metrics", "otlp-test"),
            TimeSpan.FromSeconds(30), $"a CreateVolume trace, a log naming the volume and the instance's metrics at {endpoint}",
            seen => "received " + string.Join(", ", seen.Select(r => $"{r.Signal} ({r.Body.Length} chars)")));

        Assert.True(Has("traces", "VolumeAgent") && Has("traces", "otlp-test"));   // the resource names the service and the instance
    }
}
