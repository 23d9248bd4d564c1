using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>
/// The whole service as processes on the real services: an Api, a VolumeAgent on an XFS pool folder and two
/// BackupAgents writing through libnfs to the NFS server, on a database and virtual host of their own.
/// </summary>
public sealed class Backend : IAsyncLifetime
{
    public const string Project = "e2e-project";
    readonly List<HostProcess> hosts = [];

    /// <summary>The Api in keystone mode (validating with the Keystone deploy/services.sh runs) instead of noauth.</summary>
    public bool Keystone { get; init; }
    /// <summary>More settings for the Api (environment variable names), on top of the ones every test uses.</summary>
    public Dictionary<string, string> ApiSettings { get; init; } = [];
    /// <summary>The project the tests work in: <see cref="Project"/> in noauth, Keystone's demo project in keystone mode.</summary>
    public string ProjectId { get; private set; } = Project;

    public HostProcess Api { get; private set; } = null!;
    public HostProcess VolumeAgent { get; private set; } = null!;
    /// <summary>host:port of the VolumeAgent's Prometheus endpoint.</summary>
    public string VolumeAgentMetrics { get; private set; } = "";
    /// <summary>host:port of every process's Prometheus endpoint, for a scrape configuration.</summary>
    public IEnumerable<string> MetricsTargets => hosts.Where(h => h != VolumeAgent).Select(h => $"127.0.0.1:{h.Port}").Append(VolumeAgentMetrics);
    public IReadOnlyList<HostProcess> BackupAgents => hosts.Where(h => h.Name.StartsWith("BackupAgent", StringComparison.Ordinal)).ToList();
    public string Database { get; private set; } = "";
    public string Pool { get; private set; } = "";
    /// <summary>The repository's folder as the NFS server's export holds it.</summary>
    public string RepositoryFolder { get; private set; } = "";
    bool ownsRepository;
    public HttpClient Http { get; private set; } = null!;
    /// <summary>The AMQP URI of this deployment's virtual host.</summary>
    public string Broker => broker;
    /// <summary>A broker of the test's own (a cluster's AMQP URI) instead of a virtual host on the shared one.</summary>
    public string? OwnBroker { get; init; }
    /// <summary>host:port of every node of <see cref="OwnBroker"/>'s cluster, given to the programs as RabbitMq:ClusterNodes.</summary>
    public IReadOnlyList<string> ClusterNodes { get; init; } = [];
    /// <summary>Settings every process gets besides its own (log levels, say).</summary>
    public IReadOnlyDictionary<string, string> CommonSettings { get; init; } = new Dictionary<string, string>();
    string broker = "";
    string repositoryTarget = "";

    public async Task InitializeAsync()
    {
        Database = await TestServices.CreateDatabaseAsync("e2e");
        broker = OwnBroker ?? await TestServices.CreateVirtualHostAsync("e2e");
        Pool = TestServices.CreatePoolFolder("e2e");
        if (repositoryTarget.Length == 0)
        {
            var folder = $"e2e-{Guid.NewGuid():N}"[..16];
            RepositoryFolder = Path.Combine(TestServices.NfsExport, folder);
            ownsRepository = true;
            repositoryTarget = $"{TestServices.NfsUrl}/{folder}";
        }

        // The VolumeAgent serves HTTP/2 only: its metrics have an HTTP/1.1 listener of their own, as Prometheus needs.
        VolumeAgentMetrics = $"127.0.0.1:{HostProcess.FreePort()}";
        VolumeAgent = await Start("VolumeAgent", VolumeAgentSettings(), tls: VolumeAgentProbe);
        for (var i = 1; i <= 2; i++) await StartBackupAgentAsync($"BackupAgent{i}");
        Dictionary<string, string> api = new()
        {
            ["ConnectionStrings__Postgres"] = Database,
            ["ConnectionStrings__RabbitMq"] = broker,
            ["Auth__Mode"] = "noauth",
            ["Storage__Hosts__0__Name"] = "host-a",
            ["Storage__Hosts__0__Zone"] = "nova",
            ["Storage__Hosts__0__Address"] = VolumeAgent.Address,
            ["Encryption__MasterKeyFile"] = MasterKeyFile,
        };
        foreach (var (key, value) in Pki.Settings(Pki.Api)) api[key] = value;
        string token = $"tester:{Project}", adminToken = $"admin:{Project}";
        if (Keystone)
        {
            api["Auth__Mode"] = "keystone";
            api["Auth__Keystone__Url"] = TestSupport.Keystone.Url;
            api["Auth__Keystone__Username"] = "vb-api";
            api["Auth__Keystone__PasswordFile"] = TestSupport.Keystone.PasswordFile("vb-api");
            (token, ProjectId, _) = await TestSupport.Keystone.LoginAsync("demo-member");
            (adminToken, _, _) = await TestSupport.Keystone.LoginAsync("admin");
        }
        foreach (var (key, value) in ApiSettings) api[key] = value;
        Api = await Start("Api", WithClusterNodes(api));
        Http = new HttpClient { BaseAddress = new Uri(Api.Address), Timeout = TimeSpan.FromSeconds(60) };
        Http.DefaultRequestHeaders.Add("X-Auth-Token", token);
        Admin = new HttpClient { BaseAddress = Http.BaseAddress, Timeout = Http.Timeout };
        Admin.DefaultRequestHeaders.Add("X-Auth-Token", adminToken);
        await WaitForBackupServiceAsync();
        // The tests share one project and make dozens of backups: lift its quota as an operator would.
        var unlimited = await Admin.PutAsJsonAsync($"/v3/{ProjectId}/os-quota-sets/{ProjectId}", new { quota_set = new { backups = -1, backup_gigabytes = -1, volumes = -1, gigabytes = -1 } });
        unlimited.EnsureSuccessStatusCode();
    }

    /// <summary>A client with the admin role, in the same project.</summary>
    public HttpClient Admin { get; private set; } = null!;

    /// <summary>Backups are refused until an agent's heartbeat reached the Api, as Cinder refuses them with no cinder-backup up.</summary>
    public Task WaitForBackupServiceAsync() => Eventually.UntilAsync(async () =>
            JsonNode.Parse(await Admin.GetStringAsync($"/v3/{ProjectId}/os-services?binary=cinder-backup"))!["services"]!.AsArray().Any(s => (string?)s!["state"] == "up"),
        TimeSpan.FromSeconds(60), "a cinder-backup service up (an agent's heartbeat reaching the Api)", every: TimeSpan.FromMilliseconds(250));

    /// <summary>The master key file the Api and the agents read (Encryption:MasterKeyFile).</summary>
    public string MasterKeyFile { get; init; } = TestServices.MasterKeyFile;

    /// <summary>A second, fresh deployment (its own database, broker and pool) on the same backup repository, with the
    /// same master key unless given another.</summary>
    public static async Task<Backend> SharingRepositoryWithAsync(Backend other, string? masterKeyFile = null)
    {
        var backend = new Backend { repositoryTarget = other.repositoryTarget, RepositoryFolder = other.RepositoryFolder, MasterKeyFile = masterKeyFile ?? other.MasterKeyFile };
        await backend.InitializeAsync();
        return backend;
    }

    /// <summary>The agents' Agent:ProgressEveryBytes, when a test needs progress events of a small volume.</summary>
    public long? ProgressEveryBytes { get; init; }

    public Task<HostProcess> StartBackupAgentAsync(string name, string? repositoryTarget = null) => Start("BackupAgent", WithClusterNodes(new(Pki.Settings(Pki.BackupAgent("nova")))
    {
        // The agents' own broker user, as deploy/run.sh runs them (a test's own cluster has one user for all).
        ["ConnectionStrings__RabbitMq"] = TestServices.AgentBroker(broker),   // the cluster has the single node's users too
        ["Agent__Host"] = "host-a",
        ["Agent__Zone"] = "nova",
        ["Agent__VolumeAgentAddress"] = VolumeAgent.Address,
        ["Agent__PoolPath"] = Pool,
        ["Agent__RetryIntervalsMs__0"] = "200",
        ["Agent__RetryIntervalsMs__1"] = "500",
        ["Repository__Target"] = repositoryTarget ?? this.repositoryTarget,
        ["Repository__ChunkSize"] = (1024 * 1024).ToString(),
        ["Encryption__MasterKeyFile"] = MasterKeyFile,
        ["Agent__ProgressEveryBytes"] = (ProgressEveryBytes ?? 256L << 20).ToString(CultureInfo.InvariantCulture),
    }), name);

    Dictionary<string, string> WithClusterNodes(Dictionary<string, string> settings)
    {
        for (var i = 0; i < ClusterNodes.Count; i++) settings[$"RabbitMq__ClusterNodes__{i}"] = ClusterNodes[i];
        return settings;
    }

    /// <summary>Kills the VolumeAgent as a crash would and starts it again on the same address, as its supervisor would.</summary>
    public async Task RestartVolumeAgentAsync()
    {
        var port = VolumeAgent.Port;
        await StopAsync(VolumeAgent);
        VolumeAgent = await Start("VolumeAgent", VolumeAgentSettings(), $"VolumeAgent-restarted-{Guid.NewGuid():N}"[..29], port, VolumeAgentProbe);
    }

    Dictionary<string, string> VolumeAgentSettings() => new(Pki.Settings(Pki.VolumeAgent))
    {
        ["Volumes__PoolPath"] = Pool,
        ["Volumes__Zone"] = "nova",
        ["Telemetry__MetricsListener"] = $"http://{VolumeAgentMetrics}",
    };

    /// <summary>The certificates of this deployment's processes (mutual TLS with the VolumeAgent), from the tests' CA.</summary>
    public static TestPki Pki => TestPki.Deployment;

    // The VolumeAgent serves mutual TLS only: its readiness is asked as the Api asks it.
    static HttpMessageHandler VolumeAgentProbe() => Pki.Handler(Pki.Api);

    async Task<HostProcess> Start(string project, Dictionary<string, string> settings, string? name = null, int? port = null, Func<HttpMessageHandler>? tls = null)
    {
        foreach (var (key, value) in CommonSettings) settings[key] = value;
        settings["Telemetry__Console"] = "true";           // the tracing test reads spans from each process's output
        settings["Telemetry__Instance"] = name ?? project;
        var host = await HostProcess.StartAsync(project, settings, name, port, tls);
        hosts.Add(host);
        return host;
    }

    public async Task StopAsync(HostProcess host)
    {
        await host.DisposeAsync();
        hosts.Remove(host);
    }

    /// <summary>The chunk files on the share now (not the temporary files of writes under way).</summary>
    public string[] ChunkFiles() => !Directory.Exists(RepositoryFolder) ? [] :
        [.. Directory.EnumerateFiles(RepositoryFolder, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(f))) == "chunks" && !Path.GetFileName(f).Contains(".tmp", StringComparison.Ordinal))];

    public AppDbContext NewDbContext() => new((DbContextOptions<AppDbContext>)AppDbContext.Configure(new DbContextOptionsBuilder<AppDbContext>(), Database).Options);

    public string VolumeFile(string volumeId) => Path.Combine(Pool, $"volume-{volumeId}");

    // ---- small REST helpers the tests share ----

    public async Task<JsonObject> PostAsync(string path, object body, int expectedStatus = 202)
    {
        var response = await Http.PostAsJsonAsync($"/v3/{ProjectId}/{path}", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == expectedStatus, $"POST {path}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? [] : JsonNode.Parse(text)!.AsObject();
    }

    public async Task<JsonObject> GetAsync(string path)
    {
        var response = await Http.GetAsync($"/v3/{ProjectId}/{path}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    public async Task<string> CreateVolumeAsync(int sizeGb = 1, string? name = null)
    {
        var created = await PostAsync("volumes", new { volume = new { size = sizeGb, name = name ?? "v" } });
        var id = (string)created["volume"]!["id"]!;
        await WaitForAsync($"volumes/{id}", "volume", "available");
        return id;
    }

    /// <summary>Polls a resource until its status is one of <paramref name="statuses"/>; fails after 60 s.</summary>
    public Task<JsonObject> WaitForAsync(string path, string key, params string[] statuses) => WaitForAsync(TimeSpan.FromSeconds(60), path, key, statuses);

    public Task<JsonObject> WaitForAsync(TimeSpan within, string path, string key, params string[] statuses) => Eventually.UntilAsync(
        async () => (await GetAsync(path))[key]!.AsObject(), last => statuses.Contains((string?)last["status"]),
        within, $"{path} to reach {string.Join('|', statuses)}",
        last => $"{last.ToJsonString()}\n{LogsAbout(path[(path.LastIndexOf('/') + 1)..])}", every: TimeSpan.FromMilliseconds(150));

    /// <summary>What each process logged about one id: a timed-out wait says where the work stopped.</summary>
    string LogsAbout(string id) => string.Join('\n', hosts.Select(h =>
        $"--- {h.Name}:\n" + string.Join('\n', h.Output.Where(l => l.Contains(id, StringComparison.Ordinal) && !l.TrimStart().StartsWith("Activity", StringComparison.Ordinal)).TakeLast(12))));

    /// <summary>Waits until one of the BackupAgents logged a line containing <paramref name="text"/>; returns that agent.</summary>
    public async Task<HostProcess> WaitForLogAsync(string text) => (await Eventually.UntilAsync(
        () => Task.FromResult(BackupAgents.FirstOrDefault(a => a.Output.Any(l => l.Contains(text, StringComparison.Ordinal)))), agent => agent is not null,
        TimeSpan.FromSeconds(30), $"a BackupAgent to log \"{text}\"", every: TimeSpan.FromMilliseconds(20)))!;   // soon enough to kill it mid-job

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        Admin?.Dispose();
        foreach (var host in hosts.ToArray()) await host.DisposeAsync();
        if (Directory.Exists(Pool)) Directory.Delete(Pool, recursive: true);
        if (broker.Length > 0 && OwnBroker is null) await TestServices.DeleteVirtualHostAsync(broker);
        // What the fixture made on the real services goes with it: a day of test runs would fill the disk.
        if (Database.Length > 0) await TestServices.DropDatabaseAsync(Database);
        if (ownsRepository && Directory.Exists(RepositoryFolder)) Directory.Delete(RepositoryFolder, recursive: true);
    }

    public static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web);
}

[CollectionDefinition(Name)]
public sealed class BackendCollection : ICollectionFixture<Backend>
{
    public const string Name = "backend";
}
