using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>
/// A three-node RabbitMQ cluster of the test's own, started and stopped by the repository's deploy/services.sh
/// (start-cluster, stop-cluster) on free ports, node names and a state folder of its own, never the shared broker's.
/// </summary>
public sealed partial class BrokerCluster : IAsyncLifetime
{
    readonly Dictionary<string, string> environment = new();
    string Script => Path.Combine(HostProcess.RepositoryRoot(), "deploy", "services.sh");

    /// <summary>The AMQP URI (the Api's user, node 1, virtual host /); the agents' is <c>TestServices.AgentBroker</c> of it.</summary>
    public string ConnectionString { get; private set; } = "";
    /// <summary>host:port of every node, in node order.</summary>
    public IReadOnlyList<string> Nodes { get; private set; } = [];
    /// <summary>The name prefix of the nodes: node N is {Name}N@localhost.</summary>
    public string Name { get; private set; } = "";

    public async Task InitializeAsync()
    {
        var amqp = FreeBase();
        Name = $"vbt{amqp}";
        environment["VB_CLUSTER_NAME"] = Name;
        environment["VB_CLUSTER_AMQP_PORT"] = amqp.ToString();
        environment["VB_CLUSTER_DIST_PORT"] = (amqp + 20000).ToString();
        environment["VB_CLUSTER_DIR"] = Path.Combine(Path.GetTempPath(), $"vb-cluster-{Guid.NewGuid():N}"[..23]);
        await RunAsync("start-cluster");
        var settings = ExportLine().Matches(await RunAsync("cluster-env")).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        ConnectionString = settings["ConnectionStrings__RabbitMq"];
        Nodes = settings.Where(s => s.Key.StartsWith("RabbitMq__ClusterNodes__", StringComparison.Ordinal)).OrderBy(s => s.Key).Select(s => s.Value).ToList();
    }

    public Task StopNodeAsync(int node) => RunAsync("stop-cluster-node", node.ToString());
    /// <summary>Kills a node's Erlang VM (SIGKILL), as a crash or a lost machine would.</summary>
    public Task KillNodeAsync(int node) => RunAsync("kill-cluster-node", node.ToString());
    public Task StartNodeAsync(int node) => RunAsync("start-cluster-node", node.ToString());

    /// <summary>deploy/services.sh cluster-status: the nodes, the members and each queue's leader.</summary>
    public Task<string> StatusAsync() => RunAsync("cluster-status", allowFailure: true);

    /// <summary>The node (1-3) that leads a quorum queue, as cluster-status reports it.</summary>
    public async Task<int> LeaderOfAsync(string queue)
    {
        var status = await StatusAsync();
        var line = status.Split('\n').Select(l => l.Trim().Split(' ')).FirstOrDefault(f => f.Length >= 3 && f[0] == queue)
            ?? throw new InvalidOperationException($"queue {queue} not in the cluster's status:\n{status}");
        Assert.Equal("quorum", line[1]);
        return int.Parse(line[2][Name.Length..line[2].IndexOf('@')]);
    }

    public async Task DisposeAsync()
    {
        if (!environment.TryGetValue("VB_CLUSTER_DIR", out var dir)) return;
        await RunAsync("stop-cluster");
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    // Three AMQP ports (5721 + 20k ...), their AMQPS ports (+10) and distribution ports (+20000) that nothing listens on;
    // 5701-5713 are the default cluster's (deploy/run.sh with VB_BROKER=cluster).
    static int FreeBase()
    {
        for (var port = 5721; port < 5900; port += 20)
            if (Enumerable.Range(port, 3).All(p => Free(p) && Free(p + 10) && Free(p + 20000))) return port;
        throw new InvalidOperationException("no free ports for a test cluster between 5721 and 5900");
    }

    static bool Free(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException) { return false; }
    }

    async Task<string> RunAsync(string command, string? argument = null, bool allowFailure = false)
    {
        var info = new ProcessStartInfo(Script) { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(command);
        if (argument is not null) info.ArgumentList.Add(argument);
        foreach (var (key, value) in environment) info.Environment[key] = value;
        info.Environment.Remove("VB_STARTED_FILE");
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0 && !allowFailure)
            throw new InvalidOperationException($"services.sh {command} {argument} failed ({process.ExitCode}): {await output}{await error}");
        return await output;
    }

    [GeneratedRegex("^export ([A-Za-z_0-9]+)=\"([^\"]*)\"$", RegexOptions.Multiline)]
    private static partial Regex ExportLine();
}
