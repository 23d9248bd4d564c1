using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using ZstdNet;

namespace VolumeBackup.Bench;

// The benchmark's driver: one operation per process, so that the peak memory it prints (VmHWM) is that operation's.
// bench/run.sh runs it; see bench/README.md.
static class BenchProgram
{
    const string Usage = """
        usage: Bench <command> [--chunk-kib=N] [--workers=N] [--connections=N] [--compression=lz4|zstd|none] [--level=N] [--profile] [--master-key=PATH | --plain]
          make-image <path> <GiB> <seed> [dataGiB] [text]  deterministic sparse image (25 % holes, 25 % random, 50 % text;
                                                     with "text": 5 % holes, 5 % random, 90 % text)
          change <path> <percent> <seed> [runKiB]    deterministic change in place, spread over the image (runs of 256 KiB)
          sha256 <path>                              checksum of the whole file
          backup <target> <container> <image> [parentId]
          restore <target> <container> <backupId> <out>   (creates <out> as a fresh sparse file; --warm: times the
                                                     process's second restore, as in a running agent)
          phases <target> <container> <image>        one thread, one chunk at a time: seconds per phase
          cbt <target> <container> <poolFolder> <GiB> <dataGiB> <seed> <runKiB>
                                                     full, CBT and full-read incrementals after a 1 % change, no-change CBT
          remote <target> <container> <volumeAgentUrl> <volumeId> <rounds>
                                                     backups and restores of a volume in place and through the VolumeAgent
          scale-volumes <out> | scale-run <volumes> <label>
                                                     bench/scale.sh's client of the Api (settings in SCALE_* variables)
        Options set RepositoryOptions (defaults: the agent's); --profile adds per-call store timings.
        backup and restore encrypt with the master key file --master-key names (32 bytes, mode 0600), as the agent does;
        --plain writes and reads the unencrypted format instead (the baseline encryption is compared against).
        backup, restore and phases print one line "RESULT key=value ...", with hwm_mib = peak RSS (VmHWM).
        """;

    static readonly Guid VolumeId = Guid.Parse("0b5e55ed-0000-4000-8000-000000000b5e");

    static async Task<int> Main(string[] argv)
    {
        CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        var options = argv.Where(a => a.StartsWith("--", StringComparison.Ordinal)).ToArray();
        var args = argv.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToArray();   // not Except: a set operation, it drops repeated arguments ("2 2")
        try
        {
            var settings = Settings(options, out var profile, out var warm, out var masterKey);
            switch (args)
            {
                case ["make-image", var path, var gib, var seed, .. var rest]:
                    Images.Make(path, int.Parse(gib, CultureInfo.InvariantCulture), ulong.Parse(seed, CultureInfo.InvariantCulture),
                        rest is [var data, ..] ? int.Parse(data, CultureInfo.InvariantCulture) : int.Parse(gib, CultureInfo.InvariantCulture),
                        rest is [_, "text"]);
                    return 0;
                case ["change", var path, var percent, var seed, .. var rest]:
                    Images.Change(path, double.Parse(percent, CultureInfo.InvariantCulture), ulong.Parse(seed, CultureInfo.InvariantCulture),
                        rest is [var run] ? int.Parse(run, CultureInfo.InvariantCulture) : 256);
                    return 0;
                case ["sha256", var path]:
                    Console.WriteLine($"{Images.Sha256(path)}  {path}");
                    return 0;
                case ["backup", var target, var container, var image, .. var rest] when rest.Length <= 1:
                    await BackupAsync(settings, profile, masterKey(), target, container, image, rest is [var parent] ? Guid.Parse(parent) : null);
                    return 0;
                case ["restore", var target, var container, var id, var output]:
                    await RestoreAsync(settings, profile, warm, masterKey(), target, container, Guid.Parse(id), output);
                    return 0;
                case ["cbt", var target, var container, var poolFolder, var volumeGiB, var dataGiB, var changeSeed, var runKiB]:
                    await Cbt.RunAsync(settings, target, container, poolFolder, int.Parse(volumeGiB, CultureInfo.InvariantCulture),
                        int.Parse(dataGiB, CultureInfo.InvariantCulture), ulong.Parse(changeSeed, CultureInfo.InvariantCulture),
                        int.Parse(runKiB, CultureInfo.InvariantCulture));
                    return 0;
                case ["remote", var target, var container, var volumeAgent, var volumeId, var rounds]:
                    await Remote.RunAsync(settings, masterKey(), target, container, volumeAgent, Guid.Parse(volumeId), int.Parse(rounds, CultureInfo.InvariantCulture));
                    return 0;
                case ["scale-volumes", var output]:
                    await Scale.VolumesAsync(output);
                    return 0;
                case ["scale-run", var volumes, var label]:
                    await Scale.RunAsync(volumes, label);
                    return 0;
                case ["phases", var target, var container, var image]:
                    await PhasesAsync(settings, target, container, image);
                    return 0;
                default:
                    Console.Error.WriteLine(Usage);
                    return 2;
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine($"bench: {e}");
            return 1;
        }
    }

    // masterKey: the key backup and restore use, null with --plain; it throws when neither option was given.
    static RepositoryOptions Settings(string[] options, out bool profile, out bool warm, out Func<MasterKey?> masterKey)
    {
        var defaults = new RepositoryOptions();
        int chunk = defaults.ChunkSize, workers = defaults.Workers, connections = defaults.Connections, level = defaults.CompressionLevel;
        var compression = defaults.Compression;
        profile = warm = false;
        string? keyFile = null;
        var plain = false;
        foreach (var option in options)
        {
            var (key, value) = option.Split('=', 2) is [var k, var v] ? (k, v) : (option, "");
            switch (key)
            {
                case "--chunk-kib": chunk = checked(int.Parse(value, CultureInfo.InvariantCulture) * 1024); break;
                case "--workers": workers = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--connections": connections = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--compression": compression = Enum.Parse<ChunkCompression>(value, ignoreCase: true); break;
                case "--level": level = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--profile": profile = true; break;
                case "--master-key": keyFile = value; break;
                case "--plain": plain = true; break;
                case "--warm": warm = true; break;
                default: throw new ArgumentException($"unknown option {option}\n{Usage}");
            }
        }
        masterKey = () => plain ? null : MasterKey.Load(keyFile ?? throw new ArgumentException($"backup and restore need --master-key=PATH or --plain\n{Usage}"));
        return new RepositoryOptions { Target = "bench", ChunkSize = chunk, Workers = workers, Connections = connections, Compression = compression, CompressionLevel = level };
    }

    static string Describe(RepositoryOptions s) =>
        $"chunk_kib={s.ChunkSize / 1024} workers={s.Workers} connections={s.Connections} compression={s.Compression.ToString().ToLowerInvariant()} level={s.CompressionLevel}";

    static async Task BackupAsync(RepositoryOptions settings, bool profile, MasterKey? masterKey, string target, string container, string image, Guid? parent)
    {
        var size = new FileInfo(image).Length;
        var id = Guid.NewGuid();
        var (store, timing) = Open(target, settings, profile);
        var clock = Stopwatch.StartNew();
        BackupSummary summary;
        await using (store)
        {
            var repository = new BackupRepository(store, Options.Create(settings), masterKey, NullLogger<BackupRepository>.Instance);
            summary = await repository.BackupAsync(container, id, VolumeId, parent, image, size, null, CancellationToken.None);
        }
        var seconds = clock.Elapsed.TotalSeconds;
        timing?.Report(Console.Out, seconds);
        Console.WriteLine(Invariant($"RESULT op=backup id={id} seconds={seconds:F3} hwm_mib={PeakMiB():F1} size_mib={size / 1048576.0:F0} " +
            $"chunks_written={summary.ChunksWritten} written_mib={summary.BytesWritten / 1048576.0:F1} objects={summary.ObjectCount} " +
            $"stored_mib={summary.StoredBytes / 1048576.0:F1} encrypted={masterKey is not null} {Describe(settings)}"));
    }

    // warm: the timed restore is the process's second, as in an agent that has restored before (the first one, timed as
    // cold_seconds, pays for compiling the code it runs).
    static async Task RestoreAsync(RepositoryOptions settings, bool profile, bool warm, MasterKey? masterKey, string target, string container, Guid id, string output)
    {
        var (store, timing) = Open(target, settings, profile);
        RestoreSummary summary;
        TimeSpan seconds, cpu, cold = TimeSpan.Zero, coldCpu = TimeSpan.Zero;
        await using (store)
        {
            var repository = new BackupRepository(store, Options.Create(settings), masterKey, NullLogger<BackupRepository>.Instance);
            var manifest = await repository.ReadManifestAsync(container, id, CancellationToken.None)
                ?? throw new FileNotFoundException($"backup {id} has no manifest in {container} on {target}");
            async Task<(RestoreSummary, TimeSpan Seconds, TimeSpan Cpu)> TimedRestoreAsync()
            {
                CreateSparse(output, manifest.SizeBytes);
                var cpu0 = ProcessCpu();
                var clock = Stopwatch.StartNew();
                var result = await repository.RestoreAsync(container, id, output, null, CancellationToken.None);
                return (result, clock.Elapsed, ProcessCpu() - cpu0);
            }
            if (warm)
                (_, cold, coldCpu) = await TimedRestoreAsync();
            (summary, seconds, cpu) = await TimedRestoreAsync();
        }
        timing?.Report(Console.Out, seconds.TotalSeconds);
        Console.WriteLine(Invariant($"RESULT op=restore id={id} seconds={seconds.TotalSeconds:F3} hwm_mib={PeakMiB():F1} " +
            $"size_mib={summary.SizeBytes / 1048576.0:F0} chunks_read={summary.ChunksRead} read_mib={summary.BytesRead / 1048576.0:F1} encrypted={masterKey is not null} " +
            $"cpu_seconds={cpu.TotalSeconds:F2} {(warm ? Invariant($"cold_seconds={cold.TotalSeconds:F3} cold_cpu_seconds={coldCpu.TotalSeconds:F2} ") : "")}{Describe(settings)}"));
    }

    // This process's CPU time (user + system, every thread) so far.
    static TimeSpan ProcessCpu()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    // A fresh sparse file, as a new volume would be.
    static void CreateSparse(string path, long size)
    {
        File.Delete(path);
        using var create = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        create.SetLength(size);
    }

    static (IRepositoryStore Store, TimingStore? Timing) Open(string target, RepositoryOptions settings, bool profile)
    {
        var store = RepositoryStores.Open(target, settings.Connections);
        if (!profile) return (store, null);
        var timing = new TimingStore(store);
        return (timing, timing);
    }

    // The backup pipeline taken apart: one thread, one chunk at a time, each step timed on its own. Writes each
    // non-zero chunk as <container>/phases/<sha256> (atomic write, as the repository does), then reads it back.
    // Beside the plain steps, what encryption adds: the keyed name, and the whole encode and decode of the encrypted
    // format (ChunkStore.Encode/Decode with a container key) against the same of the unencrypted one.
    static async Task PhasesAsync(RepositoryOptions settings, string target, string container, string image)
    {
        var chunkSize = settings.ChunkSize;
        using var source = File.OpenHandle(image, FileMode.Open, FileAccess.Read);
        var size = RandomAccess.GetLength(source);
        var plain = new byte[chunkSize];
        var packed = new byte[chunkSize + 1];
        var back = new byte[chunkSize];
        var encoded = new byte[ChunkStore.MaxStoredSize(chunkSize)];
        var key = ContainerKey.Create(container, MasterKey.FromBytes(RandomNumberGenerator.GetBytes(MasterKey.Size))).Key;
        using var compressor = new Compressor(new CompressionOptions(settings.CompressionLevel));
        using var decompressor = new Decompressor();
        using var packer = new ChunkPacker(settings.Compression, settings.CompressionLevel);
        var t = new Dictionary<string, double>();
        var handled = new Dictionary<string, long>();   // bytes of data each phase saw
        long dataBytes = 0, packedBytes = 0;
        var chunks = 0;
        var plainChunks = 0;
        void Add(string phase, long start, long bytes)
        {
            t[phase] = t.GetValueOrDefault(phase) + Stopwatch.GetElapsedTime(start).TotalSeconds;
            handled[phase] = handled.GetValueOrDefault(phase) + bytes;
        }

        await using var store = RepositoryStores.Open(target, settings.Connections);
        var total = Stopwatch.StartNew();
        for (long offset = 0; offset < size; offset += chunkSize)
        {
            var length = (int)Math.Min(chunkSize, size - offset);
            var s = Stopwatch.GetTimestamp();
            var hole = IsHole(source, offset, length);
            Add("1 seek_data", s, length);
            if (hole) continue;

            s = Stopwatch.GetTimestamp();
            for (var done = 0; done < length;)
                done += RandomAccess.Read(source, plain.AsSpan(done, length - done), offset + done);
            Add("2 read image", s, length);

            s = Stopwatch.GetTimestamp();
            var zero = !plain.AsSpan(0, length).ContainsAnyExcept((byte)0);
            Add("3 zero scan", s, length);
            if (zero) continue;

            s = Stopwatch.GetTimestamp();
            var hash = Convert.ToHexStringLower(SHA256.HashData(plain.AsSpan(0, length)));
            Add("4 sha256", s, length);

            s = Stopwatch.GetTimestamp();
            var name = key.NameOf(plain.AsSpan(0, length));
            Add("4b hmac-sha256 name", s, length);

            foreach (var (phase, codec, chunkName) in new[] { ("9a encode+decode, plain", ContainerKey.Plain, hash), ("9b encode+decode, encrypted", key, name) })
            {
                s = Stopwatch.GetTimestamp();
                var n9 = ChunkStore.Encode(codec, container, chunkName, packer, plain.AsSpan(0, length), encoded);
                ChunkStore.Decode(codec, container, chunkName, decompressor, encoded.AsSpan(0, n9), back.AsSpan(0, length));
                Add(phase, s, length);
            }

            s = Stopwatch.GetTimestamp();
            int stored;
            try { stored = compressor.Wrap(plain.AsSpan(0, length), packed.AsSpan(1, length - 1)) + 1; packed[0] = 1; }
            catch (ZstdException e) when (e.Code == ZSTD_ErrorCode.ZSTD_error_dstSize_tooSmall) { packed[0] = 0; plain.AsSpan(0, length).CopyTo(packed.AsSpan(1)); stored = length + 1; }
            // Split by outcome: the time spent on chunks that end up stored plain (random data) is pure waste.
            Add(packed[0] == 1 ? "5a zstd, compressed" : "5b zstd, kept plain", s, length);
            if (packed[0] == 0) plainChunks++;

            var path = $"{container}/phases/{hash}";
            s = Stopwatch.GetTimestamp();
            await store.WriteAtomicAsync(path, packed.AsMemory(0, stored), CancellationToken.None);
            Add("6 nfs write+fsync+rename", s, stored);

            s = Stopwatch.GetTimestamp();
            var read = await store.ReadAllAsync(path, CancellationToken.None) ?? throw new IOException($"{path} vanished");
            Add("7 nfs read", s, read.Length);

            s = Stopwatch.GetTimestamp();
            if (read[0] == 1) decompressor.Unwrap(read.AsSpan(1), back, bufferSizePrecheck: false);
            Add("8 zstd decompress", s, length);

            chunks++;
            dataBytes += length;
            packedBytes += stored;
        }
        var wall = total.Elapsed.TotalSeconds;
        var mib = dataBytes / 1048576.0;
        Console.WriteLine(Invariant($"phases of {image}: {chunks} data chunks, {mib:F0} MiB of data ({plainChunks} incompressible), {packedBytes / 1048576.0:F0} MiB stored ({(double)dataBytes / packedBytes:F2}x), {Describe(settings)}"));
        foreach (var (phase, seconds) in t.OrderBy(kv => kv.Key))
            Console.WriteLine(Invariant($"  {phase,-26} {seconds,7:F2} s  {handled[phase] / 1048576.0,7:F0} MiB  {handled[phase] / 1048576.0 / seconds,8:F0} MiB/s"));
        Console.WriteLine(Invariant($"  {"total (one thread)",-26} {wall,7:F2} s"));
        Console.WriteLine(Invariant($"RESULT op=phases seconds={wall:F3} hwm_mib={PeakMiB():F1} data_mib={mib:F0} stored_mib={packedBytes / 1048576.0:F0} " +
            string.Join(' ', t.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key[(kv.Key.IndexOf(' ') + 1)..].Replace(", ", "_").Replace(' ', '_').Replace('+', '_')}={kv.Value:F3}")) + $" {Describe(settings)}"));
    }

    static bool IsHole(SafeFileHandle file, long offset, long length)
    {
        var data = lseek(file, offset, 3);   // SEEK_DATA; ENXIO past the last data
        return data < 0 ? System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == 6 : data >= offset + length;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern long lseek(SafeFileHandle fd, long offset, int whence);

    // Peak resident set size of this process (VmHWM), in MiB.
    static double PeakMiB()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
        return double.NaN;
    }

    // Main sets the invariant culture, so numbers print with '.' whatever the machine's locale.
    static string Invariant(string s) => s;
}
