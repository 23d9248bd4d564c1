using System.Net.Http.Json;
using System.Text.Json.Nodes;
using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Services;
using VolumeBackup.Api.Tests.Auth;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Fuzz;

/// <summary>
/// The Api as it meets the network: on Kestrel (its real body limits and path handling), in keystone mode (reader, member and
/// admin tokens of the Keystone deploy/services.sh runs), placing volumes through a VolumeAgent process on a pool folder of its
/// own, so that what a request could change is in the database and in that folder. Demo's and alt's projects hold a volume,
/// an attached volume, a snapshot and a backup each.
/// </summary>
public sealed class HostileApi : IAsyncLifetime
{
    public sealed class Factory : KeystoneApiFactory
    {
        public string VolumeAgentAddress { get; set; } = "";

        protected override void Configure(IWebHostBuilder builder)
        {
            base.Configure(builder);
            builder.UseSetting("Storage:Hosts:0:Address", VolumeAgentAddress);
            builder.UseSetting("Auth:Keystone:TimeoutSeconds", "30");          // a shared, busy machine: a slow Keystone is not the test's subject
        }
    }

    public Factory Api { get; } = new();
    public string Pool { get; private set; } = "";
    public Uri Address { get; private set; } = null!;
    HostProcess? volumeAgent;

    /// <summary>Per role: its token, its project and the ids of what it owns (volume, attached, snapshot, backup, attachment).</summary>
    public Dictionary<string, Tenant> Tenants { get; } = [];

    public sealed record Tenant(string Token, string Project, Dictionary<string, string> Ids);

    public async Task InitializeAsync()
    {
        Pool = TestServices.CreatePoolFolder("fuzz");
        var pki = TestPki.Deployment;   // mutual TLS, as in a deployment: the Api presents its certificate (ApiFactory)
        volumeAgent = await HostProcess.StartAsync("VolumeAgent", new Dictionary<string, string>(pki.Settings(pki.VolumeAgent)) { ["Volumes__PoolPath"] = Pool },
            "VolumeAgent-fuzz", tls: () => pki.Handler(pki.Api));
        await ((IAsyncLifetime)Api).InitializeAsync();
        Api.VolumeAgentAddress = volumeAgent.Address;
        Api.UseKestrel(0);
        Api.StartServer();
        var bus = await Api.Services.GetRequiredService<IBusControl>().WaitForHealthStatus(BusHealthStatus.Healthy, TimeSpan.FromSeconds(60));
        if (bus != BusHealthStatus.Healthy) throw new InvalidOperationException($"The Api's bus is {bus} after 60 s");
        Address = new Uri(Api.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

        await using (var db = Api.NewDbContext())
        {
            // A backup agent that stays up for the whole run, so that no refusal is "no backup service" by accident of time.
            db.Add(new AgentService { Binary = AgentService.Backup, Host = "fuzz-agent", Zone = "nova", CreatedAt = DateTimeOffset.UtcNow, LastHeartbeat = DateTimeOffset.UtcNow.AddDays(1) });
            await db.SaveChangesAsync();
        }
        foreach (var (role, user) in new[] { ("reader", "demo-reader"), ("member", "demo-member"), ("admin", "admin"), ("other", "alt-member") })
        {
            var (token, project, _) = await Keystone.SharedLoginAsync(user);
            Tenants[role] = new Tenant(token, project, role is "member" or "other" ? await SeedAsync(token, project) : []);
        }
        Tenants["reader"].Ids.Clear();
        foreach (var (kind, id) in Tenants["member"].Ids) Tenants["reader"].Ids[kind] = id;   // the reader sees demo's things, as the member does
    }

    /// <summary>What a project owns, made through the Api as its member would, so the VolumeAgent made the files.</summary>
    async Task<Dictionary<string, string>> SeedAsync(string token, string project)
    {
        using var http = Client(token);
        http.DefaultRequestHeaders.Add("OpenStack-API-Version", "volume 3.44");
        async Task<JsonNode> Post(string path, object body)
        {
            var response = await http.PostAsJsonAsync($"/v3/{project}/{path}", body);
            var text = await response.Content.ReadAsStringAsync();
            if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"seeding {path}: {(int)response.StatusCode} {text}");
            return JsonNode.Parse(text)!;
        }
        var volume = (string)(await Post("volumes", new { volume = new { size = 1, name = "fuzz" } }))["volume"]!["id"]!;
        var attached = (string)(await Post("volumes", new { volume = new { size = 1, name = "fuzz-attached" } }))["volume"]!["id"]!;
        var snapshot = (string)(await Post("snapshots", new { snapshot = new { volume_id = volume, name = "fuzz" } }))["snapshot"]!["id"]!;
        var attachment = (string)(await Post("attachments", new { attachment = new { volume_uuid = attached, instance_uuid = Guid.NewGuid() } }))["attachment"]!["id"]!;
        var backup = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", VolumeId = Guid.Parse(volume), Container = "fuzz", AvailabilityZone = "nova",
            State = nameof(BackupSaga.Available), Size = 1, CreatedAt = DateTimeOffset.UtcNow, DataTimestamp = DateTimeOffset.UtcNow,
        };
        await using (var db = Api.NewDbContext())
        {
            db.Add(backup);
            await db.SaveChangesAsync();
        }
        return new() { ["volume"] = volume, ["attached"] = attached, ["snapshot"] = snapshot, ["attachment"] = attachment, ["backup"] = backup.Id.ToString() };
    }

    /// <summary>A client of the Api's Kestrel address, sending <paramref name="token"/> if given.</summary>
    public HttpClient Client(string? token = null)
    {
        // A refused body is never sent when the client waits for 100-continue (as curl does for large bodies): the answer comes first.
        var http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, Expect100ContinueTimeout = TimeSpan.FromSeconds(30) })
        {
            BaseAddress = Address, Timeout = TimeSpan.FromSeconds(60),
        };
        if (token is not null) http.DefaultRequestHeaders.Add("X-Auth-Token", token);
        return http;
    }

    /// <summary>
    /// Everything a request could have changed: every table's rows (hashed, the services' heartbeat time aside: the Api records
    /// its VolumeAgent's readiness every few seconds) and the pool's files with their sizes and times.
    /// </summary>
    public async Task<string> StateAsync()
    {
        await using var db = Api.NewDbContext();
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await connection.OpenAsync();
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename", connection))
        await using (var reader = await list.ExecuteReaderAsync())
            while (await reader.ReadAsync()) tables.Add(reader.GetString(0));
        var lines = new List<string>();
        foreach (var table in tables)
        {
            // Table names come from the catalog, not from input.
            await using var hash = new NpgsqlCommand(
                $"""SELECT count(*) || ' ' || coalesce(md5(string_agg((to_jsonb(t) - 'last_heartbeat')::text, ',' ORDER BY (to_jsonb(t) - 'last_heartbeat')::text)), '') FROM "{table}" t""", connection);
            lines.Add($"{table}: {await hash.ExecuteScalarAsync()}");
        }
        lines.AddRange(Directory.EnumerateFileSystemEntries(Pool, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => new FileInfo(f)).Select(f => $"{f.FullName[Pool.Length..]} {(f.Exists ? f.Length : -1)} {f.LastWriteTimeUtc:O}"));
        return string.Join('\n', lines);
    }

    public async Task DisposeAsync()
    {
        await ((IAsyncLifetime)Api).DisposeAsync();
        if (volumeAgent is not null) await volumeAgent.DisposeAsync();
        if (Directory.Exists(Pool)) Directory.Delete(Pool, recursive: true);
    }
}
