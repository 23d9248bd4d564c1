using System.Diagnostics;
using System.Security.Cryptography;

namespace VolumeBackup.TestSupport;

/// <summary>
/// An NFS server of a test's own, to kill and restart while the shared one keeps serving everyone else.
/// ganesha cannot run beside the shared one in the same namespaces: it needs port 2049 and, worse, it unregisters
/// every NFS program from rpcbind at start (rpcb_unset), through rpcbind's Unix socket /run/rpcbind.sock, which is a
/// path, not a port. So it runs in a network namespace of its own (its own loopback, 2049 and 111), with a private
/// /run (its own rpcbind socket), reached over a veth pair from here: nfs://10.231.x.2/... No port options are needed,
/// so the client side is exactly what the agents use. Needs root and iproute2, as deploy/test.sh has.
/// </summary>
public sealed class PrivateNfsServer : IAsyncDisposable
{
    readonly string name;
    readonly string folder;
    readonly string hostSide;
    readonly Process rpcbind;
    Process? ganesha;

    PrivateNfsServer(string name, string folder, string hostSide, string address, Process rpcbind)
    {
        this.name = name;
        this.folder = folder;
        this.hostSide = hostSide;
        this.rpcbind = rpcbind;
        Address = address;
    }

    /// <summary>The server's address, seen from here.</summary>
    public string Address { get; }

    /// <summary>The exported folder (on this machine's file system: tests read and damage files here directly).</summary>
    public string Export => Path.Combine(folder, "export");

    public string Url => $"nfs://{Address}{Export}";

    public string Log => Path.Combine(folder, "ganesha.log");

    public static async Task<PrivateNfsServer> StartAsync()
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
        var name = $"vbnfs-{id}";
        var subnet = await FreeSubnetAsync();                      // 10.231.<subnet>.0/30
        var (hostAddress, serverAddress) = ($"10.231.{subnet}.1", $"10.231.{subnet}.2");
        var folder = Path.Combine(Path.GetTempPath(), name);
        Directory.CreateDirectory(Path.Combine(folder, "export"));
        Directory.CreateDirectory(Path.Combine(folder, "recovery"));
        var hostSide = $"{name}a";
        await RunAsync("ip", "netns", "add", name);
        try
        {
            await RunAsync("ip", "link", "add", hostSide, "type", "veth", "peer", "name", $"{name}b");
            await RunAsync("ip", "link", "set", $"{name}b", "netns", name);
            await RunAsync("ip", "addr", "add", $"{hostAddress}/30", "dev", hostSide);
            await RunAsync("ip", "link", "set", hostSide, "up");
            await RunAsync("ip", "netns", "exec", name, "ip", "addr", "add", $"{serverAddress}/30", "dev", $"{name}b");
            await RunAsync("ip", "netns", "exec", name, "ip", "link", "set", $"{name}b", "up");
            await RunAsync("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up");
            await File.WriteAllTextAsync(Path.Combine(folder, "ganesha.conf"), Config(folder, serverAddress, hostAddress));
            // ip netns exec gives the command a mount namespace of its own: a tmpfs on /run there hides the shared rpcbind's socket.
            var rpcbind = Start("ip", "netns", "exec", name, "sh", "-c", "mount -t tmpfs tmpfs /run && exec rpcbind -f -w");
            var server = new PrivateNfsServer(name, folder, hostSide, serverAddress, rpcbind);
            try
            {
                await server.StartGaneshaAsync();
            }
            catch
            {
                await server.DisposeAsync();
                throw;
            }
            return server;
        }
        catch
        {
            await RunQuietAsync("ip", "netns", "del", name);
            await RunQuietAsync("ip", "link", "del", hostSide);
            throw;
        }
    }

    /// <summary>Starts ganesha in the namespaces of the private rpcbind and waits until the export answers.</summary>
    public async Task StartGaneshaAsync()
    {
        var deadline = Stopwatch.StartNew();
        // rpcbind needs a moment after its own start; ganesha exits when it cannot register.
        while (true)
        {
            ganesha = Start("nsenter", "-t", rpcbind.Id.ToString(), "-m", "-n", "ganesha.nfsd", "-F", "-f", Path.Combine(folder, "ganesha.conf"),
                "-L", Log, "-p", Path.Combine(folder, "ganesha.pid"), "-N", "NIV_WARN");
            while (deadline.Elapsed < TimeSpan.FromSeconds(60) && !ganesha.HasExited)
            {
                if (await AnswersAsync()) return;
                await Task.Delay(200);
            }
            if (deadline.Elapsed >= TimeSpan.FromSeconds(60))
                throw new InvalidOperationException($"The private ganesha at {Url} did not answer within 60 s; see {Log}.");
            await Task.Delay(500);
        }
    }

    /// <summary>SIGKILL: the server dies at once, with whatever it had in flight (no clean shutdown, no grace).</summary>
    public async Task KillGaneshaAsync()
    {
        if (ganesha is null || ganesha.HasExited) return;
        ganesha.Kill();
        await ganesha.WaitForExitAsync();
    }

    async Task<bool> AnswersAsync()
    {
        var info = new ProcessStartInfo("nfs-ls", [Url]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var ls = Process.Start(info)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await ls.WaitForExitAsync(timeout.Token);
            return ls.ExitCode == 0;
        }
        catch (OperationCanceledException)
        {
            ls.Kill();
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillGaneshaAsync();
        if (!rpcbind.HasExited)
        {
            rpcbind.Kill(entireProcessTree: true);
            await rpcbind.WaitForExitAsync();
        }
        await RunQuietAsync("ip", "netns", "del", name);
        await RunQuietAsync("ip", "link", "del", hostSide);   // gone with the namespace already, normally
        try { Directory.Delete(folder, recursive: true); }
        catch (IOException) { }                               // a file ganesha still held; the folder is in the temp folder
    }

    static string Config(string folder, string serverAddress, string client) => $$"""
        NFS_CORE_PARAM {
          Protocols = 3;
          NFS_Port = 2049;
          Bind_addr = {{serverAddress}};
          Enable_NLM = false;
          Enable_RQUOTA = false;
          Enable_UDP = false;
        }
        NFSV4 { Graceless = true; RecoveryBackend = fs; RecoveryRoot = "{{folder}}/recovery"; }
        EXPORT {
          Export_Id = 1;
          Path = "{{folder}}/export";
          Pseudo = /export;
          Access_Type = RW;
          Squash = No_Root_Squash;
          Protocols = 3;
          Transports = TCP;
          SecType = sys;
          FSAL { Name = VFS; }
          CLIENT { Clients = {{client}}; Access_Type = RW; }
        }
        NFS_KRB5 { Active_krb5 = false; }
        LOG { Default_Log_Level = WARN; }
        """;

    // One no interface of this machine uses yet (another test run may have its own server up).
    static async Task<int> FreeSubnetAsync()
    {
        var info = new ProcessStartInfo("ip", ["-o", "-4", "addr", "show"]) { RedirectStandardOutput = true };
        using var ip = Process.Start(info)!;
        var used = await ip.StandardOutput.ReadToEndAsync();
        await ip.WaitForExitAsync();
        while (true)
        {
            var subnet = RandomNumberGenerator.GetInt32(1, 250);
            if (!used.Contains($" 10.231.{subnet}.", StringComparison.Ordinal)) return subnet;
        }
    }

    static Process Start(string file, params string[] args) =>
        Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = false, RedirectStandardError = false, UseShellExecute = false })
        ?? throw new InvalidOperationException($"{file} did not start");

    static Task RunAsync(string file, params string[] args) => TestServices.RunAsync(file, args);

    static async Task RunQuietAsync(string file, params string[] args)
    {
        try { await TestServices.RunAsync(file, args); }
        catch (InvalidOperationException) { }                 // already gone
    }
}
