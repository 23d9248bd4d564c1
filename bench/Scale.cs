using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;
using RabbitMQ.Client;

namespace VolumeBackup.Bench;

// The client side of bench/scale.sh, through the Api's REST interface as a real client (noauth tokens): makes the volumes,
// then, once per agent count, submits one backup of each at once, polls GET /backups/detail every SCALE_POLL_MS while they
// run, counts what ended where, restores a sample and checks it, and deletes the backups again. It also reads what the
// processes cost: CPU seconds of each process tree (/proc/<pid>/stat), the agents' peak RSS (VmHWM), their running jobs
// (/metrics) and the command queues' depth (a passive declare). scale.sh starts and stops the processes.
static class Scale
{
    const int Slot = 4 << 20;                 // the data is written in 4 MiB extents, as the bench's images are
    const int Chunk = 1 << 20;                // the agent's chunk size: every chunk gets bytes of its own volume
    const int Mark = 4096;                    // ... this many, at the chunk's start

    static string Env(string name) => Environment.GetEnvironmentVariable(name) ?? throw new InvalidOperationException($"{name} is not set (bench/scale.sh sets it)");
    static int EnvInt(string name) => int.Parse(Env(name), CultureInfo.InvariantCulture);
    static string Api => Env("SCALE_API");
    static string Project => Env("SCALE_PROJECT");

    static HttpClient Client(string user) => new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
    {
        BaseAddress = new Uri($"{Api}/v3/{Project}/"),
        Timeout = TimeSpan.FromSeconds(60),
        DefaultRequestHeaders = { { "X-Auth-Token", $"{user}:{Project}" } },
    };

    static readonly HttpClient Member = Client("scale");
    static readonly HttpClient Admin = Client("admin");   // only an admin sees a volume's host

    /// <summary>scale-volumes OUT: SCALE_VOLUMES volumes over SCALE_ZONES, each filled with its own data; writes "index id zone host sha256|-" lines.</summary>
    public static async Task VolumesAsync(string output)
    {
        int count = EnvInt("SCALE_VOLUMES"), sizeGiB = EnvInt("SCALE_SIZE_GIB"), dataMiB = EnvInt("SCALE_DATA_MIB"), sample = EnvInt("SCALE_SAMPLE");
        var zones = Env("SCALE_ZONES").Split(',');
        var pools = Pools();
        var seed = ulong.Parse(Env("SCALE_SEED"), CultureInfo.InvariantCulture);
        var quota = await Admin.PutAsJsonAsync($"os-quota-sets/{Project}",
            new { quota_set = new { volumes = -1, gigabytes = -1, backups = -1, backup_gigabytes = -1, snapshots = -1 } });
        await Expect(quota, 200, "lifting the project's quotas");

        var clock = Stopwatch.StartNew();
        var slots = Layout(sizeGiB, dataMiB);
        foreach (var pool in pools.Values) MakeBase(Path.Combine(pool, "bench-base.img"), (long)sizeGiB << 30, slots, seed);
        Console.Error.WriteLine($"scale: base images ({dataMiB} MiB of data in {sizeGiB} GiB) made in {clock.Elapsed.TotalSeconds:F1} s");

        var lines = new string[count];
        var every = sample > 0 ? Math.Max(1, count / sample) : int.MaxValue;
        clock.Restart();
        // Created one after the other, as the scheduler places each on the room left by those before it; then waited for and filled in parallel.
        var ids = new string[count];
        for (var i = 0; i < count; i++)
        {
            var created = await Member.PostAsJsonAsync("volumes", new { volume = new { size = sizeGiB, name = $"scale-{i}", availability_zone = zones[i % zones.Length] } });
            ids[i] = (string)(await Expect(created, 202, $"creating volume {i}"))["volume"]!["id"]!;
        }
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
        {
            var (zone, id) = (zones[i % zones.Length], ids[i]);
            var volume = await WaitAsync($"volumes/{id}", "volume", ["available"], ["error"], TimeSpan.FromMinutes(2));
            var host = ((string)volume["os-vol-host-attr:host"]!).Split('@', '#')[0];
            var path = Path.Combine(pools[host], $"volume-{id}");
            Fill(path, Path.Combine(pools[host], "bench-base.img"), slots, seed + (ulong)i + 1);
            var sha = i % every == 0 && i / every < sample ? Images.Sha256(path) : "-";
            lines[i] = $"{i} {id} {zone} {host} {sha}";
        });
        await File.WriteAllLinesAsync(output, lines);
        var byHost = lines.Select(l => l.Split(' ')[3]).GroupBy(h => h).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}");
        Console.Error.WriteLine($"scale: {count} volumes made and filled in {clock.Elapsed.TotalSeconds:F1} s ({string.Join(", ", byHost)})");
    }

    /// <summary>The 4 MiB extents holding data: spread evenly over the volume, one third random bytes and two thirds text (the bench's mix, without its holes).</summary>
    static (long Offset, Images.Kind Kind)[] Layout(int sizeGiB, int dataMiB)
    {
        var count = dataMiB * (1 << 20) / Slot;
        var stride = ((long)sizeGiB << 30) / count / Slot * Slot;
        return [.. Enumerable.Range(0, count).Select(k => (k * stride, k % 3 == 0 ? Images.Kind.Random : Images.Kind.Text))];
    }

    static void MakeBase(string path, long size, (long Offset, Images.Kind Kind)[] slots, ulong seed)
    {
        using var file = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite);
        RandomAccess.SetLength(file, size);
        var buffer = new byte[Slot];
        for (var k = 0; k < slots.Length; k++)
        {
            Images.Fill(buffer, slots[k].Kind, seed, k);
            RandomAccess.Write(file, buffer, slots[k].Offset);
        }
    }

    // FICLONE: the volume shares the base's blocks (the disk holds one copy of the data), then the first 4 KiB of each
    // of its 1 MiB chunks is rewritten from the volume's own seed, so that no chunk of any volume equals another's
    // (nothing deduplicates) while each compresses as the mix does. The agent reads and stores all of it.
    static void Fill(string path, string basePath, (long Offset, Images.Kind Kind)[] slots, ulong seed)
    {
        using var source = File.OpenHandle(basePath, FileMode.Open, FileAccess.Read);
        using var target = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        if (ioctl(target, Ficlone, source.DangerousGetHandle()) != 0)
            throw new IOException($"FICLONE {basePath} -> {path} failed (errno {Marshal.GetLastPInvokeError()}): the pool must be XFS with reflink");
        var mark = new byte[Mark];
        var rng = new Xoshiro(seed * 0x9E37_79B9_7F4A_7C15UL);
        foreach (var (offset, _) in slots)
            for (var c = 0; c < Slot / Chunk; c++)
            {
                rng.Fill(mark);
                RandomAccess.Write(target, mark, offset + (long)c * Chunk);
            }
    }

    const ulong Ficlone = 0x40049409;     // _IOW(0x94, 9, int); .NET has no reflink call
    [DllImport("libc", SetLastError = true)]
    static extern int ioctl(SafeFileHandle fd, ulong request, nint arg);

    [DllImport("libc")]
    static extern long sysconf(int name);
    static readonly double TicksPerSecond = sysconf(2);   // _SC_CLK_TCK

    static Dictionary<string, string> Pools() => Env("SCALE_POOLS").Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);

    /// <summary>scale-run VOLUMES LABEL: one backup of every volume at once, watched until each ends; then the restore sample and the deletes.</summary>
    public static async Task RunAsync(string volumesFile, string label)
    {
        var volumes = (await File.ReadAllLinesAsync(volumesFile)).Select(l => l.Split(' ')).ToList();
        var timeout = TimeSpan.FromSeconds(EnvInt("SCALE_TIMEOUT"));
        var pollEvery = TimeSpan.FromMilliseconds(EnvInt("SCALE_POLL_MS"));
        var dataMiB = EnvInt("SCALE_DATA_MIB");
        var groups = Env("SCALE_PIDS").Split(';').Select(g => g.Split('=', 2))
            .ToDictionary(g => g[0], g => g[1].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray());
        var agents = Env("SCALE_AGENTS").Split(',').Select(a => a.Split('=', 3)).Select(a => (Name: a[0], Pid: int.Parse(a[1], CultureInfo.InvariantCulture), Metrics: a[2])).ToList();

        using var stop = new CancellationTokenSource();
        var ids = new string?[volumes.Count];
        var done = new Dictionary<string, (string Status, double At, string? Reason)>();
        var seen = new HashSet<string>();
        var latencies = new List<double>();
        var pollErrors = 0;
        var allIn = new TaskCompletionSource();
        var submittedAll = false;
        for (var i = 0; i < 5; i++) await Member.GetStringAsync("backups/detail");   // the Api has served the listing before (JIT, connections)
        var cpuBefore = groups.ToDictionary(g => g.Key, g => TreeSeconds(g.Value));
        var machineBefore = MachineBusySeconds();
        var clock = Stopwatch.StartNew();

        // The poller: GET /backups/detail, one after the other, every pollEvery; it also sees each backup end.
        var poller = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var started = clock.Elapsed;
                try
                {
                    var text = await Member.GetStringAsync("backups/detail", stop.Token);
                    var latency = (clock.Elapsed - started).TotalMilliseconds;
                    var now = clock.Elapsed.TotalSeconds;
                    lock (done)
                    {
                        latencies.Add(latency);
                        foreach (var b in JsonNode.Parse(text)!["backups"]!.AsArray())
                        {
                            var id = (string)b!["id"]!;
                            seen.Add(id);
                            var status = (string)b["status"]!;
                            if (status is "available" or "error" && !done.ContainsKey(id)) done[id] = (status, now, (string?)b["fail_reason"]);
                        }
                        if (Volatile.Read(ref submittedAll) && ids.Where(i => i is not null).All(i => done.ContainsKey(i!))) allIn.TrySetResult();
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested) { break; }
                catch (HttpRequestException) { Interlocked.Increment(ref pollErrors); }
                var wait = pollEvery - (clock.Elapsed - started);
                if (wait > TimeSpan.Zero) await Task.Delay(wait, stop.Token).ContinueWith(_ => { });
            }
        });
        // The samplers: the command queues' depth, each agent's running jobs (its /metrics) and resident memory.
        var maxQueued = 0L;
        var maxJobs = agents.ToDictionary(a => a.Name, _ => 0.0);
        var maxRss = agents.ToDictionary(a => a.Name, _ => 0L);
        var sampler = Task.Run(async () =>
        {
            var factory = new ConnectionFactory { Uri = new Uri(Env("SCALE_AMQP")), ClientProvidedName = "bench-scale-queue-depth" };
            await using var connection = await factory.CreateConnectionAsync();
            var queues = Env("SCALE_QUEUES").Split(',');
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            while (!stop.IsCancellationRequested)
            {
                long queued = 0;
                await using (var channel = await connection.CreateChannelAsync())
                    foreach (var queue in queues) queued += (await channel.QueueDeclarePassiveAsync(queue)).MessageCount;
                Interlocked.Exchange(ref maxQueued, Math.Max(Interlocked.Read(ref maxQueued), queued));
                foreach (var agent in agents)
                {
                    maxRss[agent.Name] = Math.Max(maxRss[agent.Name], StatusKiB(agent.Pid, "VmRSS"));
                    try
                    {
                        var running = (await http.GetStringAsync(agent.Metrics)).Split('\n')
                            .Where(l => l.StartsWith("volumebackup_jobs_running", StringComparison.Ordinal))
                            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
                        maxJobs[agent.Name] = Math.Max(maxJobs[agent.Name], running);
                    }
                    catch (HttpRequestException) { }
                }
                await Task.Delay(500, stop.Token).ContinueWith(_ => { });
            }
        });

        // All the backups at once (within a second: a client of many volumes), then the wait for every one to end.
        var rejected = new List<string>();
        var posts = new List<double>();
        await Parallel.ForEachAsync(Enumerable.Range(0, volumes.Count), new ParallelOptions { MaxDegreeOfParallelism = 25 }, async (i, ct) =>
        {
            var sent = clock.Elapsed;
            var response = await Member.PostAsJsonAsync("backups", new { backup = new { volume_id = volumes[i][1], name = $"scale-{label}-{i}" } }, ct);
            var text = await response.Content.ReadAsStringAsync(ct);
            lock (posts) posts.Add((clock.Elapsed - sent).TotalMilliseconds);
            if ((int)response.StatusCode == 202) ids[i] = (string)JsonNode.Parse(text)!["backup"]!["id"]!;
            else lock (rejected) rejected.Add($"volume {volumes[i][1]}: {(int)response.StatusCode} {text}");
        });
        var submitted = clock.Elapsed.TotalSeconds;
        var accepted = ids.Where(i => i is not null).Select(i => i!).ToList();
        Console.WriteLine(Invariant($"SUBMIT label={label} requests={volumes.Count} accepted={accepted.Count} seconds={submitted:F3} post_p50_ms={Percentile([.. posts.Order()], 0.5):F0} post_max_ms={posts.Max():F0} load={Load()}"));
        foreach (var r in rejected) Console.WriteLine($"REJECTED {r}");
        Volatile.Write(ref submittedAll, true);
        await Task.WhenAny(allIn.Task, Task.Delay(timeout));
        var cpuAfter = groups.ToDictionary(g => g.Key, g => TreeSeconds(g.Value));
        var machine = MachineBusySeconds() - machineBefore;
        await stop.CancelAsync();
        await Task.WhenAll(poller, sampler);

        List<(string Status, double At, string? Reason)> ended;
        lock (done) ended = [.. accepted.Where(done.ContainsKey).Select(id => done[id])];
        var lost = accepted.Count(id => !seen.Contains(id));
        var stuck = accepted.Count(id => seen.Contains(id) && !done.ContainsKey(id));
        var available = ended.Count(e => e.Status == "available");
        var last = ended.Count > 0 ? ended.Max(e => e.At) : double.NaN;
        var ordered = latencies.Order().ToList();
        Console.WriteLine(Invariant($"RESULT label={label} backups={volumes.Count} available={available} error={ended.Count - available} lost={lost} stuck={stuck} rejected={rejected.Count} ") +
            Invariant($"last_s={last:F1} data_mib={available * dataMiB} mib_s={available * dataMiB / last:F1} per_min={available * 60 / last:F1} load={Load()}"));
        foreach (var zone in volumes.Select(v => v[2]).Distinct())
        {
            var times = volumes.Select((v, i) => (Zone: v[2], Id: ids[i])).Where(x => x.Zone == zone && x.Id is not null && done.ContainsKey(x.Id)).Select(x => done[x.Id!].At).ToList();
            Console.WriteLine(Invariant($"ZONE label={label} zone={zone} ended={times.Count} last_s={(times.Count > 0 ? times.Max() : double.NaN):F1}"));
        }
        Console.WriteLine(Invariant($"LATENCY label={label} polls={ordered.Count} errors={pollErrors} p50_ms={Percentile(ordered, 0.50):F1} p99_ms={Percentile(ordered, 0.99):F1} max_ms={(ordered.Count > 0 ? ordered[^1] : double.NaN):F1}"));
        Console.WriteLine(Invariant($"CPU label={label} machine={machine:F1} ") + string.Join(' ', groups.Keys.Select(k => Invariant($"{k}={cpuAfter[k] - cpuBefore[k]:F1}"))));
        Console.WriteLine(Invariant($"QUEUED label={label} max_ready={maxQueued}"));
        foreach (var agent in agents)
            Console.WriteLine(Invariant($"AGENT label={label} name={agent.Name} hwm_mib={StatusKiB(agent.Pid, "VmHWM") / 1024.0:F0} max_rss_mib={maxRss[agent.Name] / 1024.0:F0} max_jobs={maxJobs[agent.Name]:F0}"));
        foreach (var e in accepted.Where(id => done.TryGetValue(id, out var d) && d.Status == "error"))
            Console.WriteLine($"ERROR backup {e}: {done[e].Reason}");
        foreach (var id in accepted.Where(id => !done.ContainsKey(id)))
            Console.WriteLine($"UNFINISHED backup {id} ({(seen.Contains(id) ? "listed, still running" : "never listed")})");

        var backups = volumes.Select((v, i) => (Volume: v, Backup: ids.ElementAtOrDefault(i))).ToList();
        if (EnvInt("SCALE_RESTORE") > 0) await RestoreSampleAsync(label, [.. backups.Where(b => b.Volume[4] != "-" && b.Backup is not null && done.GetValueOrDefault(b.Backup).Status == "available").Select(b => (b.Volume, b.Backup!))]);
        await DeleteAllAsync(label, accepted);
    }

    /// <summary>Each sampled backup restored into a new volume of its zone; the restored volume's SHA-256 must equal the source's.</summary>
    static async Task RestoreSampleAsync(string label, List<(string[] Volume, string Backup)> sample)
    {
        var pools = Pools();
        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(sample.Select(async s =>
        {
            var (volume, backup) = s;
            var created = await Member.PostAsJsonAsync("volumes", new { volume = new { size = EnvInt("SCALE_SIZE_GIB"), name = $"scale-restore-{volume[0]}", availability_zone = volume[2] } });
            var target = (string)(await Expect(created, 202, "creating a restore target"))["volume"]!["id"]!;
            await WaitAsync($"volumes/{target}", "volume", ["available"], ["error"], TimeSpan.FromMinutes(2));
            await Expect(await Member.PostAsJsonAsync($"backups/{backup}/restore", new { restore = new { volume_id = target } }), 202, $"restoring {backup}");
            var restored = await WaitAsync($"volumes/{target}", "volume", ["available"], ["error", "error_restoring"], TimeSpan.FromMinutes(10));
            await WaitAsync($"backups/{backup}", "backup", ["available"], ["error"], TimeSpan.FromMinutes(2));
            var host = ((string)restored["os-vol-host-attr:host"]!).Split('@', '#')[0];
            var sha = Images.Sha256(Path.Combine(pools[host], $"volume-{target}"));
            Console.WriteLine($"RESTORE label={label} backup={backup} volume={volume[1]} host={volume[3]} to={host} {(sha == volume[4] ? "MATCH" : $"MISMATCH {sha} != {volume[4]}")}");
            (await Member.DeleteAsync($"volumes/{target}")).EnsureSuccessStatusCode();
            return sha == volume[4];
        }));
        Console.WriteLine(Invariant($"RESTORES label={label} checked={results.Length} match={results.Count(r => r)} seconds={clock.Elapsed.TotalSeconds:F1}"));
    }

    /// <summary>Every backup of the run deleted through the Api (the agents remove their chunks), so the next run lists and stores as much as this one.</summary>
    static async Task DeleteAllAsync(string label, List<string> ids)
    {
        var clock = Stopwatch.StartNew();
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 10 }, async (id, ct) =>
        {
            var response = await Member.DeleteAsync($"backups/{id}", ct);
            if ((int)response.StatusCode is not (202 or 404)) Console.WriteLine($"DELETE {id}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
        });
        int left;
        do
        {
            await Task.Delay(500);
            left = JsonNode.Parse(await Member.GetStringAsync("backups/detail"))!["backups"]!.AsArray().Count;
        }
        while (left > 0 && clock.Elapsed < TimeSpan.FromMinutes(5));
        Console.WriteLine(Invariant($"DELETES label={label} deleted={ids.Count - left} left={left} seconds={clock.Elapsed.TotalSeconds:F1}"));
    }

    static async Task<JsonObject> WaitAsync(string path, string key, string[] wanted, string[] failed, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var item = JsonNode.Parse(await Admin.GetStringAsync(path))![key]!.AsObject();
            var status = (string?)item["status"];
            if (wanted.Contains(status)) return item;
            if (failed.Contains(status) || clock.Elapsed > within)
                throw new InvalidOperationException($"{path} is {status} after {clock.Elapsed.TotalSeconds:F0} s: {item.ToJsonString()}");
            await Task.Delay(200);
        }
    }

    static async Task<JsonObject> Expect(HttpResponseMessage response, int status, string what)
    {
        var text = await response.Content.ReadAsStringAsync();
        if ((int)response.StatusCode != status) throw new InvalidOperationException($"{what}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? [] : JsonNode.Parse(text)!.AsObject();
    }

    static double Percentile(List<double> sorted, double p) => sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    /// <summary>CPU seconds (user + system, and those of reaped children) of the processes and all their descendants alive now.</summary>
    static double TreeSeconds(int[] roots)
    {
        var stats = new Dictionary<int, (int Parent, long Ticks)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var line = File.ReadAllText($"{dir}/stat");
                var f = line[(line.LastIndexOf(')') + 2)..].Split(' ');   // after "pid (comm) ": state ppid ... utime(14) stime cutime cstime
                stats[pid] = (int.Parse(f[1], CultureInfo.InvariantCulture), long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)
                    + long.Parse(f[13], CultureInfo.InvariantCulture) + long.Parse(f[14], CultureInfo.InvariantCulture));
            }
            catch (IOException) { }                 // gone meanwhile
        }
        var tree = new HashSet<int>(roots.Where(stats.ContainsKey));
        for (var grew = true; grew;)
        {
            grew = false;
            foreach (var (pid, s) in stats)
                if (!tree.Contains(pid) && tree.Contains(s.Parent)) grew = tree.Add(pid);
        }
        return tree.Sum(pid => stats[pid].Ticks) / TicksPerSecond;
    }

    /// <summary>CPU seconds the whole machine spent busy (all cores, every process, ours and others').</summary>
    static double MachineBusySeconds()
    {
        var f = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..].Select(long.Parse).ToArray();
        return (f.Take(8).Sum() - f[3] - f[4]) / TicksPerSecond;   // user nice system idle iowait irq softirq steal: all but idle and iowait
    }

    static long StatusKiB(int pid, string field)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        }
        catch (IOException) { return 0; }
    }

    static string Load() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

    static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
