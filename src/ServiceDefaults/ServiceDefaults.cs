using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using OpenTelemetry;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace VolumeBackup.ServiceDefaults;

/// <summary>What every host of the service shares: telemetry, health checks and ProblemDetails.</summary>
public static class ServiceDefaultsExtensions
{
    /// <summary>The ActivitySource and Meter name every host uses for its own spans and instruments.</summary>
    public const string TelemetryName = "VolumeBackup";

    /// <summary>
    /// Adds OpenTelemetry traces and metrics (ASP.NET Core, HttpClient, gRPC client, Npgsql, MassTransit,
    /// runtime and the host's own source), exported by OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set
    /// and to the console when <c>Telemetry:Console</c> is true; metrics for Prometheus at <c>/metrics</c> (on
    /// the host's own port, or at <c>Telemetry:MetricsListener</c> (<c>http://host:port</c>, HTTP/1.1), for a host that
    /// serves only HTTP/2, which Prometheus cannot scrape); health checks; ProblemDetails.
    /// </summary>
    public static IHostApplicationBuilder AddServiceDefaults(this IHostApplicationBuilder builder, string serviceName)
    {
        var config = builder.Configuration;
        var otlp = !string.IsNullOrWhiteSpace(config["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var console = config.GetValue("Telemetry:Console", false);
        var instance = config["Telemetry:Instance"] ?? Environment.MachineName;
        var metricsListener = config["Telemetry:MetricsListener"];

        builder.Logging.AddOpenTelemetry(o => { o.IncludeScopes = true; o.IncludeFormattedMessage = true; });
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(serviceName, serviceInstanceId: instance))
            .WithTracing(t =>
            {
                t.AddSource(TelemetryName, "MassTransit")
                 .AddAspNetCoreInstrumentation(o => o.Filter = http => !http.Request.Path.StartsWithSegments("/health") && !http.Request.Path.StartsWithSegments("/metrics"))
                 .AddHttpClientInstrumentation()
                 .AddGrpcClientInstrumentation()
                 .AddNpgsql();
                if (console) t.AddConsoleExporter();
            })
            .WithMetrics(m =>
            {
                m.AddMeter(TelemetryName, "MassTransit")
                 .AddAspNetCoreInstrumentation()
                 .AddHttpClientInstrumentation()
                 .AddRuntimeInstrumentation();
                if (string.IsNullOrEmpty(metricsListener)) m.AddPrometheusExporter();
                else
                {
                    var url = new Uri(metricsListener);
                    m.AddPrometheusHttpListener(o => (o.Host, o.Port) = (url.Host, url.Port));
                }
            });
        if (otlp) otel.UseOtlpExporter();

        builder.Services.AddHealthChecks();
        builder.Services.AddProblemDetails();
        return builder;
    }

    /// <summary>Liveness at /health/live, readiness (all checks) at /health/ready, Prometheus metrics at /metrics.</summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        if (string.IsNullOrEmpty(app.Configuration["Telemetry:MetricsListener"])) app.MapPrometheusScrapingEndpoint();
        app.MapHealthChecks("/health/ready");
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
        return app;
    }
}
