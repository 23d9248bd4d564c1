using System.Diagnostics;
using System.Globalization;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent;
using VolumeBackup.BackupAgent.Devices;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.ServiceDefaults;

namespace VolumeBackup.Bench;

// A backup and a restore read (written) in place, as an agent on the volume's host does, against the same through a
// VolumeAgent process on another loopback address (ReadDevice, WriteDevice), as an agent of another host does. Runs
// alternate (local, remote, remote, local) into fresh containers, so neither side finds the other's chunks and the
// machine's load drifts over both alike. bench/remote.sh starts the VolumeAgent and runs this.
static class Remote
{
    public static async Task RunAsync(RepositoryOptions settings, MasterKey? masterKey, string target, string container, string volumeAgent, Guid volumeId, int rounds)
    {
        // The VolumeAgent speaks mutual TLS only: the certificates of deploy/pki.sh, named as the programs name them.
        var tls = new DeploymentTls(Options.Create(new TlsOptions
        {
            CaFile = Required("Tls__CaFile"), CertificateFile = Required("Tls__CertificateFile"), KeyFile = Required("Tls__KeyFile"),
        }));
        using var channel = GrpcChannel.ForAddress(volumeAgent, new GrpcChannelOptions { HttpHandler = tls.ClientHandler() });
        var client = new VolumeHost.VolumeHostClient(channel);
        var agent = new AgentOptions { Host = "bench", VolumeAgentAddress = volumeAgent };
        await using var store = RepositoryStores.Open(target, settings.Connections);
        var repository = new BackupRepository(store, Options.Create(settings), masterKey, NullLogger<BackupRepository>.Instance);
        var times = new Dictionary<string, List<double>> { ["local"] = [], ["remote"] = [], ["restore-local"] = [], ["restore-remote"] = [] };
        var cpus = new Dictionary<string, List<double>> { ["local"] = [], ["remote"] = [] };   // backups: bench + VolumeAgent CPU-s
        Console.WriteLine($"LOAD before {File.ReadAllText("/proc/loadavg").Trim()}");
        // Round -1 is untimed: a storage host's VolumeAgent and an agent run for days, while the bench starts both fresh,
        // and their first streams pay for JIT compilation (about 1 CPU-s of the VolumeAgent's) that a running host has behind it.
        for (var round = -1; round < rounds; round++)
        {
            var label = round < 0 ? "WARMUP" : "RESULT";
            foreach (var remote in round % 2 == 0 ? new[] { false, true } : [true, false])
            {
                var mode = remote ? "remote" : "local";
                var into = $"{container}/{mode}-{round}";
                var backupId = Guid.NewGuid();
                var device = await client.GetBackupDeviceAsync(new GetBackupDeviceRequest { BackupId = backupId.ToString(), VolumeId = volumeId.ToString() });
                var cpu = Cpu();
                var clock = Stopwatch.StartNew();
                BackupSummary summary;
                using (var reader = remote ? new RemoteDeviceReader(client, "bench-host", device, agent) : null)
                    summary = await repository.BackupAsync(into, backupId, volumeId, null,
                        new BackupSource(device.Path, device.SizeBytes, Reader: reader), null, CancellationToken.None);
                var seconds = clock.Elapsed.TotalSeconds;
                var (benchCpu, agentCpu) = Since(cpu);
                await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId });
                if (round >= 0) { times[mode].Add(seconds); cpus[mode].Add(benchCpu + agentCpu); }
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{label} op=backup mode={mode} round={round} seconds={seconds:F3} read_mib={summary.BytesRead / 1048576.0:F1} written_mib={summary.BytesWritten / 1048576.0:F1} cpu={benchCpu:F2} volume_agent_cpu={agentCpu:F2} load={Load()}"));

                var restoreVolume = Guid.NewGuid();
                await client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = restoreVolume.ToString(), SizeBytes = device.SizeBytes });
                var restoreDevice = await client.GetRestoreDeviceAsync(new GetRestoreDeviceRequest { VolumeId = restoreVolume.ToString(), RestoreId = Guid.NewGuid().ToString() });
                cpu = Cpu();
                clock.Restart();
                await using (var writer = remote ? new RemoteDeviceWriter(client, "bench-host", restoreDevice, agent, CancellationToken.None) : DeviceWriter.Local(restoreDevice.Path))
                    await repository.RestoreAsync(into, backupId, writer, null, CancellationToken.None);
                seconds = clock.Elapsed.TotalSeconds;
                (benchCpu, agentCpu) = Since(cpu);
                if (round >= 0) times[$"restore-{mode}"].Add(seconds);
                await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = restoreDevice.DeviceId, Commit = true });
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{label} op=restore mode={mode} round={round} seconds={seconds:F3} cpu={benchCpu:F2} volume_agent_cpu={agentCpu:F2} load={Load()}"));
                await client.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = restoreVolume.ToString() });
            }
        }
        Console.WriteLine($"LOAD after {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SUMMARY backup local={times["local"].Average():F2}s remote={times["remote"].Average():F2}s ratio={times["remote"].Average() / times["local"].Average():F2} " +
            $"(cpu local={cpus["local"].Average():F2}s remote={cpus["remote"].Average():F2}s) " +
            $"restore local={times["restore-local"].Average():F2}s remote={times["restore-remote"].Average():F2}s ratio={times["restore-remote"].Average() / times["restore-local"].Average():F2} (target: backup ratio <= 1.5)"));
    }

    // CPU-seconds of this process and of the VolumeAgent (BENCH_VOLUME_AGENT_PID, from remote.sh) since `from`.
    static (double Bench, double VolumeAgent) Cpu() =>
        (Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds,
         Environment.GetEnvironmentVariable("BENCH_VOLUME_AGENT_PID") is { } pid ? ProcessCpu(pid) : double.NaN);

    static (double Bench, double VolumeAgent) Since((double Bench, double VolumeAgent) from) =>
        Cpu() is var now ? (now.Bench - from.Bench, now.VolumeAgent - from.VolumeAgent) : default;

    // utime + stime of /proc/<pid>/stat (fields 14 and 15, after the parenthesised name), in clock ticks of 1/100 s.
    static double ProcessCpu(string pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    static string Load() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

    static string Required(string name) => Environment.GetEnvironmentVariable(name) ?? throw new InvalidOperationException($"{name} is not set (bench/remote.sh sets it)");
}
