using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Auth;

/// <summary>The Api in keystone mode with a token cache bounded to 3 s, so a test can wait for an entry to lapse.</summary>
public sealed class ShortCacheKeystoneApiFactory : KeystoneApiFactory
{
    public const int CacheSeconds = 3;

    protected override void Configure(IWebHostBuilder builder)
    {
        base.Configure(builder);
        builder.UseSetting("Auth:Keystone:CacheSeconds", CacheSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>The Api in keystone mode reaching the real Keystone through a proxy the test can stop, as Keystone stopping would.</summary>
public sealed class ProxiedKeystoneApiFactory : KeystoneApiFactory
{
    public KeystoneProxy Proxy { get; } = new(new Uri(Keystone.Url));

    protected override string KeystoneUrl => Proxy.Url;

    protected override void Configure(IWebHostBuilder builder)
    {
        base.Configure(builder);
        builder.UseSetting("Auth:Keystone:CacheSeconds", "0");             // every request asks Keystone
    }

    public override async ValueTask DisposeAsync()
    {
        Proxy.Dispose();
        await base.DisposeAsync();
    }
}

/// <summary>
/// Forwards TCP connections to Keystone; <see cref="Stop"/> closes the listener and resets every open connection, as a
/// Keystone process that dies does; <see cref="DieMidRequest"/> makes it take the next request and then die without answering.
/// </summary>
// Hand-written: a proxy that can be killed at a chosen moment is the point, and no library offers that in a few lines.
public sealed class KeystoneProxy : IDisposable
{
    readonly TcpListener listener = new(IPAddress.Loopback, 0);
    readonly Uri target;
    readonly CancellationTokenSource stopped = new();
    readonly List<TcpClient> open = [];
    volatile bool dieMidRequest;

    public KeystoneProxy(Uri target)
    {
        this.target = target;
        listener.Start();
        _ = AcceptAsync();
    }

    public string Url => $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}{target.AbsolutePath}";

    /// <summary>The next connection's request is read, then every connection is reset and nothing listens any more.</summary>
    public void DieMidRequest() => dieMidRequest = true;

    async Task AcceptAsync()
    {
        while (!stopped.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await listener.AcceptTcpClientAsync(stopped.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            lock (open) open.Add(client);
            _ = ServeAsync(client);
        }
    }

    async Task ServeAsync(TcpClient client)
    {
        try
        {
            var stream = client.GetStream();
            if (dieMidRequest)
            {
                var read = await stream.ReadAsync(new byte[4096], stopped.Token);   // the request arrived; Keystone dies before answering
                Assert.True(read > 0, "the Api sent no request to Keystone");
                Stop();
                return;
            }
            using var upstream = new TcpClient();
            await upstream.ConnectAsync(target.Host, target.Port, stopped.Token);
            var other = upstream.GetStream();
            await Task.WhenAny(stream.CopyToAsync(other, stopped.Token), other.CopyToAsync(stream, stopped.Token));
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // the connection ended, from either side or by Stop: nothing to keep
        }
        finally { client.Dispose(); }
    }

    /// <summary>Keystone gone: no listener, every open connection reset.</summary>
    public void Stop()
    {
        stopped.Cancel();
        listener.Stop();
        lock (open)
        {
            foreach (var client in open.Where(c => c.Client is not null))
            {
                client.Client.LingerState = new LingerOption(true, 0);          // RST, as a killed process's sockets
                client.Dispose();
            }
            open.Clear();                                                       // Stop may come again (Dispose)
        }
    }

    public void Dispose() => Stop();       // the token source stays: connections still closing may read its token
}

/// <summary>A token that stops being valid after the Api validated it, as the issue's "Bad input and faults" lists it.</summary>
public sealed class KeystoneExpiryTests(ShortCacheKeystoneApiFactory api) : IClassFixture<ShortCacheKeystoneApiFactory>
{
    static async Task<HttpStatusCode> ListAsync(HttpClient client, string project) => (await client.GetAsync($"/v3/{project}/backups")).StatusCode;

    /// <summary>A user of project demo made for one test (deleted after it), with its password.</summary>
    static async Task<(string Id, string Name, string Password)> ThrowawayUserAsync(HttpClient admin, string demo)
    {
        var name = $"t-fault-{Guid.NewGuid():N}"[..20];
        var password = Guid.NewGuid().ToString("N");
        var created = await admin.PostAsJsonAsync("users", new { user = new { name, password, domain_id = "default", enabled = true } });
        created.EnsureSuccessStatusCode();
        var id = (string)(await created.Content.ReadFromJsonAsync<JsonObject>())!["user"]!["id"]!;
        var roles = await admin.GetFromJsonAsync<JsonObject>("roles?name=member");
        (await admin.PutAsync($"projects/{demo}/users/{id}/roles/{roles!["roles"]![0]!["id"]}", null)).EnsureSuccessStatusCode();
        return (id, name, password);
    }

    [Fact]
    public async Task A_user_disabled_after_its_token_was_validated_is_refused_once_the_cache_bound_lapses()
    {
        using var admin = await Keystone.AdminClientAsync();
        var (_, demo, _) = await Keystone.SharedLoginAsync("demo-reader");
        var user = await ThrowawayUserAsync(admin, demo);
        try
        {
            var (token, _, _) = await Keystone.LoginAsync(user.Name, user.Password, "demo");
            using var client = api.CreateClient();
            client.DefaultRequestHeaders.Add("X-Auth-Token", token);
            Assert.Equal(HttpStatusCode.OK, await ListAsync(client, demo));

            (await admin.PatchAsJsonAsync($"users/{user.Id}", new { user = new { enabled = false } })).EnsureSuccessStatusCode();

            // The bound: a validated token is trusted for Auth:Keystone:CacheSeconds (300 s by default, 3 s here) without asking
            // Keystone again, as keystonemiddleware's token_cache_time. Past it, Keystone says the token is gone.
            await Eventually.UntilAsync(async () => await ListAsync(client, demo) == HttpStatusCode.Unauthorized,
                TimeSpan.FromSeconds(ShortCacheKeystoneApiFactory.CacheSeconds + 30), "the disabled user's token refused once its cache entry lapsed");
        }
        finally { await admin.DeleteAsync($"users/{user.Id}"); }
    }
}

public sealed class KeystoneStoppedTests(ProxiedKeystoneApiFactory api) : IClassFixture<ProxiedKeystoneApiFactory>
{
    [Fact]
    public async Task Keystone_stopping_during_a_request_gets_503_and_changes_nothing_then_stopped_keystone_gets_503()
    {
        var (token, project, _) = await Keystone.LoginAsync("demo-member");
        var (volume, backup) = await Seed.VolumeWithBackupAsync(api, project);
        await Seed.BackupAgentAsync(api);
        using var client = api.CreateClient();
        client.DefaultRequestHeaders.Add("X-Auth-Token", token);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v3/{project}/backups")).StatusCode);    // through the proxy
        var before = await Seed.ChangesAboutAsync(api, volume, backup);

        // Keystone takes the validation and dies before it answers: the create is refused, not passed.
        api.Proxy.DieMidRequest();
        var during = await client.PostAsJsonAsync($"/v3/{project}/backups", new { backup = new { volume_id = volume.Id } });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, during.StatusCode);
        Assert.Equal(503, (int)(await during.Content.ReadFromJsonAsync<JsonObject>())!["serviceUnavailable"]!["code"]!);

        // And while it stays down.
        var after = await client.DeleteAsync($"/v3/{project}/backups/{backup.Id}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, after.StatusCode);
        Assert.Equal(before, await Seed.ChangesAboutAsync(api, volume, backup));
    }
}
