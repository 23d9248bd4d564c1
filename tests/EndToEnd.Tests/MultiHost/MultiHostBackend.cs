using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests.MultiHost;

/// <summary>
/// Three storage hosts in two zones as real processes: host-a and host-b in zone-1, host-c in zone-2, each with its
/// own VolumeAgent and one BackupAgent, and one Api. Each host's pool is a folder of its own on the shared XFS pool
/// (a loop image per host, as deploy/run.sh --hosts makes, costs seconds per start for nothing these tests need), so
/// each VolumeAgent reports a capacity of its own (Volumes:CapacityBytes) for placement.
/// </summary>
public sealed class MultiHostBackend : IAsyncLifetime
{
    public const string Project = "mh-project";
    public static readonly (string Name, string Zone, long CapacityGib)[] Hosts = [("host-a", "zone-1", 100), ("host-b", "zone-1", 90), ("host-c", "zone-2", 50)];

    readonly List<HostProcess> processes = [];
    readonly Dictionary<string, HostProcess> volumeAgents = [];
    readonly Dictionary<string, HostProcess> backupAgents = [];
    readonly Dictionary<string, string> pools = [];
    string broker = "", repository = "", repositoryFolder = "";

    public string Database { get; private set; } = "";
    public HttpClient Http { get; private set; } = null!;
    public HttpClient Admin { get; private set; } = null!;
    public HostProcess Api { get; private set; } = null!;

    public HostProcess BackupAgentOf(string host) => backupAgents[host];
    public IEnumerable<HostProcess> BackupAgents => backupAgents.Values;
    public static string AgentName(string host) => $"{host}-agent-1";
    public string VolumeFile(string host, string volumeId) => Path.Combine(pools[host], $"volume-{volumeId}");

    public async Task InitializeAsync()
    {
        Database = await TestServices.CreateDatabaseAsync("mh");
        broker = await TestServices.CreateVirtualHostAsync("mh");
        var folder = $"mh-{Guid.NewGuid():N}"[..16];
        repository = $"{TestServices.NfsUrl}/{folder}";
        repositoryFolder = Path.Combine(TestServices.NfsExport, folder);
        foreach (var (name, _, _) in Hosts) pools[name] = TestServices.CreatePoolFolder($"mh-{name}");

        await Task.WhenAll(Hosts.Select(async h => volumeAgents[h.Name] = await StartVolumeAgentAsync(h.Name)));
        await Task.WhenAll(Hosts.Select(async h => backupAgents[h.Name] = await StartBackupAgentAsync(h.Name)));
        Dictionary<string, string> api = new()
        {
            ["ConnectionStrings__Postgres"] = Database,
            ["ConnectionStrings__RabbitMq"] = broker,
            ["Auth__Mode"] = "noauth",
            ["Services__DownTime"] = "00:00:15",             // Cinder's service_down_time, shortened: the test waits for a host to go down
            ["Messaging__SpillAfter"] = "00:00:02",
            ["Storage__MaxOverSubscriptionRatio"] = "1",       // thick: the placement test counts whole volume sizes against capacity
            ["Encryption__MasterKeyFile"] = TestServices.MasterKeyFile,
        };
        foreach (var (key, value) in Pki.Settings(Pki.Api)) api[key] = value;
        for (var i = 0; i < Hosts.Length; i++)
        {
            api[$"Storage__Hosts__{i}__Name"] = Hosts[i].Name;
            api[$"Storage__Hosts__{i}__Zone"] = Hosts[i].Zone;
            api[$"Storage__Hosts__{i}__Address"] = volumeAgents[Hosts[i].Name].Address;
        }
        Api = await StartAsync("Api", api, "Api-multihost");
        Http = new HttpClient { BaseAddress = new Uri(Api.Address), Timeout = TimeSpan.FromSeconds(60) };
        Http.DefaultRequestHeaders.Add("X-Auth-Token", $"tester:{Project}");
        Admin = new HttpClient { BaseAddress = Http.BaseAddress, Timeout = Http.Timeout };
        Admin.DefaultRequestHeaders.Add("X-Auth-Token", $"admin:{Project}");
        await Eventually.UntilAsync(async () =>
            (await ServicesAsync("cinder-backup")).Count(s => (string?)s["state"] == "up") == Hosts.Length,
            TimeSpan.FromSeconds(60), "every agent's heartbeat reaching the Api", every: TimeSpan.FromMilliseconds(250));
        var unlimited = await Admin.PutAsJsonAsync($"/v3/{Project}/os-quota-sets/{Project}", new { quota_set = new { backups = -1, backup_gigabytes = -1, volumes = -1, gigabytes = -1 } });
        unlimited.EnsureSuccessStatusCode();
    }

    static TestPki Pki => TestPki.Deployment;

    Task<HostProcess> StartVolumeAgentAsync(string host, int? port = null) => StartAsync("VolumeAgent", new(Pki.Settings(Pki.VolumeAgent))
    {
        ["Volumes__PoolPath"] = pools[host],
        ["Volumes__Zone"] = Hosts.Single(h => h.Name == host).Zone,
        ["Volumes__CapacityBytes"] = (Hosts.Single(h => h.Name == host).CapacityGib << 30).ToString(CultureInfo.InvariantCulture),
    }, $"VolumeAgent-{host}", port, () => Pki.Handler(Pki.Api));

    public Task<HostProcess> StartBackupAgentAsync(string host)
    {
        var zone = Hosts.Single(h => h.Name == host).Zone;
        Dictionary<string, string> settings = new(Pki.Settings(Pki.BackupAgent(zone)))
        {
            ["ConnectionStrings__RabbitMq"] = TestServices.AgentBroker(broker),
            ["Agent__Host"] = host,
            ["Agent__Name"] = AgentName(host),
            ["Agent__Zone"] = zone,
            ["Agent__VolumeAgentAddress"] = volumeAgents[host].Address,
            ["Agent__PoolPath"] = pools[host],
            ["Encryption__MasterKeyFile"] = TestServices.MasterKeyFile,
            ["Agent__HeartbeatSeconds"] = "2",
            ["Agent__RetryIntervalsMs__0"] = "200",
            ["Agent__RetryIntervalsMs__1"] = "500",
            ["Repository__Target"] = repository,
            ["Repository__ChunkSize"] = (1024 * 1024).ToString(CultureInfo.InvariantCulture),
        };
        foreach (var other in Hosts.Where(h => h.Zone == zone && h.Name != host))
            settings[$"Agent__VolumeAgents__{other.Name}"] = volumeAgents[other.Name].Address;
        return StartAsync("BackupAgent", settings, $"BackupAgent-{host}");
    }

    /// <summary>Kills a host's BackupAgent as a crash would.</summary>
    public async Task KillBackupAgentAsync(string host)
    {
        await backupAgents[host].KillAsync();
    }

    public async Task RestartBackupAgentAsync(string host)
    {
        await Stop(backupAgents[host]);
        backupAgents[host] = await StartBackupAgentAsync(host);
    }

    public async Task KillVolumeAgentAsync(string host) => await volumeAgents[host].KillAsync();

    /// <summary>Starts a host's VolumeAgent again on its address, as its supervisor would.</summary>
    public async Task RestartVolumeAgentAsync(string host)
    {
        var port = volumeAgents[host].Port;
        await Stop(volumeAgents[host]);
        volumeAgents[host] = await StartVolumeAgentAsync(host, port);
    }

    async Task Stop(HostProcess process)
    {
        await process.DisposeAsync();
        processes.Remove(process);
    }

    async Task<HostProcess> StartAsync(string project, Dictionary<string, string> settings, string name, int? port = null, Func<HttpMessageHandler>? tls = null)
    {
        settings["Telemetry__Instance"] = name;
        var process = await HostProcess.StartAsync(project, settings, name, port, tls);
        lock (processes) processes.Add(process);
        return process;
    }

    public AppDbContext NewDbContext() => new((DbContextOptions<AppDbContext>)AppDbContext.Configure(new DbContextOptionsBuilder<AppDbContext>(), Database).Options);

    public async Task<List<JsonObject>> ServicesAsync(string binary) =>
        [.. JsonNode.Parse(await Admin.GetStringAsync($"/v3/{Project}/os-services?binary={binary}"))!["services"]!.AsArray().Select(s => s!.AsObject())];

    public async Task<JsonObject> PostAsync(string path, object body, int expectedStatus = 202)
    {
        var response = await Http.PostAsJsonAsync($"/v3/{Project}/{path}", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == expectedStatus, $"POST {path}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? [] : JsonNode.Parse(text)!.AsObject();
    }

    // As an admin: only admins see a volume's host (os-vol-host-attr:host, host@backend#pool).
    public async Task<JsonObject> GetAsync(string path) => JsonNode.Parse(await Admin.GetStringAsync($"/v3/{Project}/{path}"))!.AsObject();

    /// <summary>The storage host of a volume as an admin reads it.</summary>
    public static string HostOf(JsonObject volume) => ((string?)volume["os-vol-host-attr:host"])?.Split('@', '#')[0] ?? "";

    /// <summary>A volume in a zone, with guest data written into its file; returns its id and host.</summary>
    public async Task<(string Id, string Host)> VolumeAsync(string zone, int sizeGb = 1, int dataMib = 4, int seed = 1)
    {
        var created = await PostAsync("volumes", new { volume = new { size = sizeGb, name = "mh", availability_zone = zone } });
        var id = (string)created["volume"]!["id"]!;
        var volume = await WaitForAsync($"volumes/{id}", "volume", "available");
        var host = HostOf(volume);
        if (dataMib > 0) TestFiles.WriteGuestData(VolumeFile(host, id), seed, 64L << 20, dataMib << 20);
        return (id, host);
    }

    public async Task<string> BackupAsync(string volumeId) =>
        (string)(await PostAsync("backups", new { backup = new { volume_id = volumeId, name = "mh" } }))["backup"]!["id"]!;

    public Task<JsonObject> WaitForAsync(string path, string key, params string[] statuses) => WaitForAsync(TimeSpan.FromSeconds(60), path, key, statuses);

    public Task<JsonObject> WaitForAsync(TimeSpan within, string path, string key, params string[] statuses) => Eventually.UntilAsync(
        async () => (await GetAsync(path))[key]!.AsObject(), last => statuses.Contains((string?)last["status"]),
        within, $"{path} to reach {string.Join('|', statuses)}",
        last => $"{last.ToJsonString()}\n{LogsAbout(path[(path.LastIndexOf('/') + 1)..])}", every: TimeSpan.FromMilliseconds(150));

    /// <summary>The agents whose output names an id (they took, or touched, that backup).</summary>
    public IEnumerable<string> AgentsMentioning(string id) => backupAgents.Where(a => a.Value.Output.Any(l => l.Contains(id, StringComparison.Ordinal))).Select(a => a.Key);

    string LogsAbout(string id) => string.Join('\n', processes.Select(h =>
        $"--- {h.Name}:\n" + string.Join('\n', h.Output.Where(l => l.Contains(id, StringComparison.Ordinal)).TakeLast(12))));

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        Admin?.Dispose();
        foreach (var process in processes.ToArray()) await process.DisposeAsync();
        foreach (var pool in pools.Values) if (Directory.Exists(pool)) Directory.Delete(pool, recursive: true);
        if (broker.Length > 0) await TestServices.DeleteVirtualHostAsync(broker);
        if (Database.Length > 0) await TestServices.DropDatabaseAsync(Database);
        if (repositoryFolder.Length > 0 && Directory.Exists(repositoryFolder)) Directory.Delete(repositoryFolder, recursive: true);
    }
}
