using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace VolumeBackup.TestSupport;

/// <summary>One of the service's hosts run as a real process from its build output, as deploy/run.sh runs it.</summary>
public sealed class HostProcess : IAsyncDisposable
{
    readonly Process process;
    readonly ConcurrentQueue<string> output = new();
    readonly Func<HttpMessageHandler>? tls;

    public string Name { get; }
    public int Port { get; }
    public string Address => $"{(tls is null ? "http" : "https")}://127.0.0.1:{Port}";

    HostProcess(string name, int port, Process process, Func<HttpMessageHandler>? tls)
    {
        Name = name;
        Port = port;
        this.process = process;
        this.tls = tls;
        // Each process's output also goes to a file, for reading after a failed run.
        var logFolder = Path.Combine(RepositoryRoot(), "tests", "TestResults", "hosts");
        Directory.CreateDirectory(logFolder);
        log = new StreamWriter(Path.Combine(logFolder, $"{name}-{port}.log")) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    readonly StreamWriter log;

    void Append(string? line)
    {
        if (line is null) return;
        output.Enqueue(line);
        lock (log) log.WriteLine(line);
    }

    /// <summary>Everything the process printed so far (logs, console-exported spans).</summary>
    public IReadOnlyList<string> Output => output.ToArray();

    public bool HasExited => process.HasExited;

    /// <summary>Starts <c>src/{project}</c>'s built dll with the given settings and waits until it reports ready.</summary>
    /// <param name="port">A port to listen on again (a restarted host keeps its address); a free one by default.</param>
    /// <param name="tls">For a host that serves TLS only (the VolumeAgent): a handler that can talk to it, to ask whether it is ready.</param>
    public static async Task<HostProcess> StartAsync(string project, IDictionary<string, string> settings, string? name = null, int? port = null,
        Func<HttpMessageHandler>? tls = null)
    {
        port ??= FreePort();
        var dll = Path.Combine(RepositoryRoot(), "src", project, "bin", BuildConfiguration(), "net10.0", $"{project}.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll} is missing: build the solution first", dll);
        var info = new ProcessStartInfo("dotnet", [dll, "--urls", $"{(tls is null ? "http" : "https")}://127.0.0.1:{port}"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        foreach (var (key, value) in settings) info.Environment[key] = value;
        var host = new HostProcess(name ?? project, port.Value, Process.Start(info)!, tls);
        await host.WaitForReadyAsync(TimeSpan.FromSeconds(60));
        return host;
    }

    // Ready, not just listening: /health/ready includes the bus, so its queues are bound before a test publishes.
    // The VolumeAgent speaks HTTP/2 only (gRPC), the others HTTP/1.1: each is asked in both.
    async Task WaitForReadyAsync(TimeSpan timeout)
    {
        using var http = new HttpClient(tls?.Invoke() ?? new SocketsHttpHandler()) { BaseAddress = new Uri(Address), Timeout = TimeSpan.FromSeconds(5) };
        await Eventually.UntilAsync(() => NotReadyBecauseAsync(http), notReady => notReady is null, timeout, $"{Name} to be ready on {Port}",
            notReady => $"{notReady}:\n{string.Join('\n', Output.TakeLast(40))}", every: TimeSpan.FromMilliseconds(200));
    }

    // Null once /health/ready answers success; else what it answered last. A process that exited fails the wait at once.
    async Task<string?> NotReadyBecauseAsync(HttpClient http)
    {
        if (process.HasExited)
        {
            process.WaitForExit();                              // also waits until its redirected output is all read
            throw new InvalidOperationException($"{Name} exited with {process.ExitCode}:\n{string.Join('\n', Output.TakeLast(40))}");
        }
        var last = "no answer";
        foreach (var version in new[] { HttpVersion.Version11, HttpVersion.Version20 })
        {
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "/health/ready") { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                using var response = await http.SendAsync(request);
                if (response.IsSuccessStatusCode) return null;
                last = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                last = e.Message;
            }
        }
        return last;
    }

    /// <summary>Kills the process as a crash would (no graceful shutdown).</summary>
    public async Task KillAsync()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        process.Dispose();
        lock (log) log.Dispose();
    }

    /// <summary>A loopback port nothing listens on now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Distributed.sln"))) return dir.FullName;
        throw new InvalidOperationException("Distributed.sln not found above the test's folder");
    }

    static string BuildConfiguration() =>
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}") ? "Release" : "Debug";
}
