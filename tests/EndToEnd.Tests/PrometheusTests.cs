using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>A real Prometheus (Debian's) scrapes every process; what it reports is what the test did.</summary>
public sealed class PrometheusTests
{
    [Fact]
    public async Task Prometheus_reports_the_backups_completed_and_the_bytes_written_to_the_repository()
    {
        var backend = new Backend();                                  // a deployment of its own: no other test's backups in the counters
        await backend.InitializeAsync();
        try
        {
            await using var prometheus = await Prometheus.StartAsync(backend.MetricsTargets);
            var first = await backend.CreateVolumeAsync(1, "first");
            var second = await backend.CreateVolumeAsync(1, "second");
            TestFiles.WriteGuestData(backend.VolumeFile(first), seed: 11, offset: 0, bytes: 3 << 20);
            TestFiles.WriteGuestData(backend.VolumeFile(second), seed: 12, offset: 100L << 20, bytes: 2 << 20);
            await BackupAsync(backend, first, incremental: false);
            await BackupAsync(backend, second, incremental: false);
            TestFiles.WriteGuestData(backend.VolumeFile(first), seed: 13, offset: 1 << 20, bytes: 1 << 20);
            await BackupAsync(backend, first, incremental: true);     // writes the one changed chunk, reuses the others

            // Every chunk is written once, so the chunk files on the export are the bytes the agents wrote.
            var chunkFiles = Directory.GetFiles(Path.Combine(backend.RepositoryFolder, ContainerName.Default, "chunks"), "*", SearchOption.AllDirectories);
            var written = chunkFiles.Sum(f => new FileInfo(f).Length);
            Assert.Equal(6, chunkFiles.Length);                       // 3 + 2 MiB of distinct data, then 1 changed MiB, in 1 MiB chunks

            await prometheus.WaitForAsync("sum(volumebackup_backups_total{volumebackup_outcome=\"completed\"})", 3);
            await prometheus.WaitForAsync("sum(volumebackup_repository_written_bytes_total)", written);
            await prometheus.WaitForAsync("sum(volumebackup_chunks_total{volumebackup_chunk_kind=\"new\"})", 6);
            await prometheus.WaitForAsync("sum(volumebackup_chunks_total{volumebackup_chunk_kind=\"reused\"})", 2);
            await prometheus.WaitForAsync("count(up == 1)", backend.MetricsTargets.Count());
            await prometheus.WaitForAsync("sum(volumebackup_device_preparation_duration_seconds_count{volumebackup_device_purpose=\"backup\"})", 3);
        }
        finally { await backend.DisposeAsync(); }
    }

    static async Task BackupAsync(Backend backend, string volumeId, bool incremental)
    {
        var created = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, incremental } });
        var backup = await backend.WaitForAsync($"backups/{(string)created["backup"]!["id"]!}", "backup", "available", "error");
        Assert.Equal("available", (string?)backup["status"]);
    }
}

/// <summary>Debian's prometheus on a free loopback port, scraping the given targets every second, its data in a temporary folder.</summary>
sealed class Prometheus : IAsyncDisposable
{
    readonly Process process;
    readonly string folder;
    readonly HttpClient http;

    Prometheus(Process process, string folder, int port)
    {
        this.process = process;
        this.folder = folder;
        http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
    }

    public static async Task<Prometheus> StartAsync(IEnumerable<string> targets)
    {
        var folder = Directory.CreateTempSubdirectory("vb-prometheus-").FullName;
        var config = Path.Combine(folder, "prometheus.yml");
        await File.WriteAllTextAsync(config, $"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: volumebackup
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(t => $"'{t}'"))}]
            """);
        var port = HostProcess.FreePort();
        var info = new ProcessStartInfo("prometheus",
            [$"--config.file={config}", $"--storage.tsdb.path={Path.Combine(folder, "data")}", $"--web.listen-address=127.0.0.1:{port}"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        var prometheus = new Prometheus(Process.Start(info)!, folder, port);
        prometheus.process.OutputDataReceived += (_, _) => { };
        prometheus.process.ErrorDataReceived += (_, _) => { };
        prometheus.process.BeginOutputReadLine();
        prometheus.process.BeginErrorReadLine();
        await Eventually.UntilAsync(async () =>
        {
            try { return (await prometheus.http.GetAsync("/-/ready")).IsSuccessStatusCode; }
            catch (HttpRequestException) { return false; }
        }, TimeSpan.FromSeconds(30), "Prometheus ready");
        return prometheus;
    }

    /// <summary>Evaluates a PromQL expression of one value through the HTTP API; null while it has no value.</summary>
    public async Task<double?> QueryAsync(string promql)
    {
        var answer = JsonNode.Parse(await http.GetStringAsync($"/api/v1/query?query={Uri.EscapeDataString(promql)}"))!;
        var result = answer["data"]!["result"]!.AsArray();
        return result.Count == 0 ? null : double.Parse((string)result[0]!["value"]![1]!, CultureInfo.InvariantCulture);
    }

    /// <summary>Waits until <paramref name="promql"/> evaluates to <paramref name="expected"/> (scrapes run every second).</summary>
    public Task WaitForAsync(string promql, double expected) => Eventually.UntilAsync(
        () => QueryAsync(promql), value => value == expected, TimeSpan.FromSeconds(30), $"Prometheus: {promql} == {expected}",
        value => $"it is {value?.ToString(CultureInfo.InvariantCulture) ?? "absent"}");

    public async ValueTask DisposeAsync()
    {
        http.Dispose();
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
        process.Dispose();
        Directory.Delete(folder, recursive: true);
    }
}
