using System.Buffers;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace VolumeBackup.Bench;

// Deterministic test images. An image is a row of 4 MiB extents ("slots"); the data pattern of D GiB has D*256
// slots, of which a seeded shuffle makes exactly 25 % holes, 25 % random bytes and 50 % compressible text. An image
// of S >= D GiB holds that same pattern spread evenly (slot k at extent k*S/D), all else holes, so a 16 GiB image
// built from the 2 GiB pattern holds the 2 GiB image's data among 14 GiB more holes. Every byte depends only on
// the seed and the slot: the same arguments give the same file, on any machine and any .NET version.
static class Images
{
    public const int Extent = 4 * 1024 * 1024;
    const int ExtentsPerGiB = 1024 / 4;

    // Bumped whenever the generator changes, so that run.sh rebuilds cached images.
    public const string GeneratorVersion = "images-v1";

    public enum Kind : byte { Hole, Random, Text }

    // The bench's mix: 25 % holes, 25 % random, 50 % text; mostly text: 5 % holes, 5 % random, 90 % text.
    public static Kind[] Layout(int slots, ulong seed, bool mostlyText = false)
    {
        var kinds = new Kind[slots];
        var (holes, random) = mostlyText ? (slots / 20, slots / 20) : (slots / 4, slots / 4);
        for (var i = 0; i < slots; i++)
            kinds[i] = i < holes ? Kind.Hole : i < holes + random ? Kind.Random : Kind.Text;
        var rng = new Xoshiro(seed ^ 0x5eed_1a40_75u);
        for (var i = slots - 1; i > 0; i--)
        {
            var j = rng.Below(i + 1);
            (kinds[i], kinds[j]) = (kinds[j], kinds[i]);
        }
        return kinds;
    }

    public static void Make(string path, int sizeGiB, ulong seed, int dataGiB, bool mostlyText = false)
    {
        if (sizeGiB < 1 || dataGiB < 1 || dataGiB > sizeGiB || sizeGiB % dataGiB != 0)
            throw new ArgumentException($"image size {sizeGiB} GiB must be a positive multiple of the data pattern's {dataGiB} GiB");
        var slots = dataGiB * ExtentsPerGiB;
        var stride = sizeGiB / dataGiB;
        var kinds = Layout(slots, seed, mostlyText);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.Delete(path);
        using (var create = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
            create.SetLength((long)sizeGiB * 1024 * 1024 * 1024);   // all holes
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Write);
        Parallel.For(0, slots, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            () => new byte[Extent],
            (k, _, buffer) =>
            {
                if (kinds[k] != Kind.Hole)
                {
                    Fill(buffer, kinds[k], seed, k);
                    RandomAccess.Write(file, buffer, (long)k * stride * Extent);
                }
                return buffer;
            },
            _ => { });
        var counts = kinds.GroupBy(kind => kind).ToDictionary(g => g.Key, g => g.Count());
        Console.WriteLine($"made {path}: {sizeGiB} GiB, data pattern {dataGiB} GiB spread 1:{stride}; extents of 4 MiB: " +
            $"{counts.GetValueOrDefault(Kind.Hole)} holes, {counts.GetValueOrDefault(Kind.Random)} random, {counts.GetValueOrDefault(Kind.Text)} text");
    }

    internal static void Fill(Span<byte> buffer, Kind kind, ulong seed, int slot)
    {
        var rng = new Xoshiro(seed * 0x9E37_79B9_7F4A_7C15UL + (ulong)slot + 1);
        if (kind == Kind.Random)
            rng.Fill(buffer);
        else
            FillText(buffer, ref rng);
    }

    // Log-like lines of words from a fixed list: compresses about as well as real text and logs (zstd -1: ~3x).
    static void FillText(Span<byte> buffer, ref Xoshiro rng)
    {
        var pos = 0;
        var line = 0L;
        Span<byte> stamp = stackalloc byte[32];
        while (pos < buffer.Length)
        {
            // "000123 INFO word word word ...\n"
            line++;
            var written = Encoding.ASCII.GetBytes($"{rng.Below(1_000_000):D6} {Levels[rng.Below(Levels.Length)]} ", stamp);
            pos += Copy(stamp[..written], buffer, pos);
            var words = 6 + rng.Below(12);
            for (var w = 0; w < words && pos < buffer.Length; w++)
            {
                pos += Copy(Words[rng.Below(Words.Length)], buffer, pos);
                if (pos < buffer.Length)
                    buffer[pos++] = w == words - 1 ? (byte)'\n' : (byte)' ';
            }
        }
    }

    static int Copy(ReadOnlySpan<byte> from, Span<byte> to, int at)
    {
        var n = Math.Min(from.Length, to.Length - at);
        from[..n].CopyTo(to[at..]);
        return n;
    }

    // Changes percent % of the file in place: runs of runKiB KiB of new random bytes, one per equal slice of the file,
    // at a seeded run-aligned place in the slice ("spread across the image"). Returns the number of runs.
    public static int Change(string path, double percent, ulong seed, int runKiB)
    {
        var run = runKiB * 1024L;
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        var size = RandomAccess.GetLength(file);
        var runs = (int)Math.Max(1, Math.Round(size * percent / 100 / run));
        var slice = size / runs / run * run;
        var rng = new Xoshiro(seed ^ 0xC4A4_6E00UL);
        var buffer = new byte[run];
        for (var i = 0; i < runs; i++)
        {
            var offset = i * slice + rng.Below((int)(slice / run)) * run;
            var data = new Xoshiro(rng.Next());
            data.Fill(buffer);
            RandomAccess.Write(file, buffer, offset);
        }
        Console.WriteLine($"changed {path}: {runs} runs of {runKiB} KiB ({runs * run / 1048576.0:F1} MiB, {100.0 * runs * run / size:F2} %), one per {slice / 1048576.0:F1} MiB");
        return runs;
    }

    // SHA-256 of the whole file as read (holes read as zeros), like sha256sum, with OpenSSL's SHA-NI code.
    public static string Sha256(string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var length = RandomAccess.GetLength(file);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = ArrayPool<byte>.Shared.Rent(Extent);
        try
        {
            for (long offset = 0; offset < length;)
            {
                var n = RandomAccess.Read(file, buffer.AsSpan(0, (int)Math.Min(Extent, length - offset)), offset);
                if (n == 0) throw new EndOfStreamException(path);
                hash.AppendData(buffer, 0, n);
                offset += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    // Bytes the file really occupies (st_blocks), to show it is sparse.
    public static long Allocated(string path)
    {
        var info = new FileInfo(path);
        return info.Exists ? StatBlocks(path) : 0;
    }

    static long StatBlocks(string path)
    {
        // du-like without P/Invoke of stat's layout: ask the kernel for data extents with SEEK_DATA/SEEK_HOLE.
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var length = RandomAccess.GetLength(file);
        long total = 0;
        for (long at = 0; at < length;)
        {
            var data = lseek(file, at, 3);
            if (data < 0) break;
            var hole = lseek(file, data, 4);
            if (hole < 0) hole = length;
            total += hole - data;
            at = hole;
        }
        return total;
    }

    [DllImport("libc", SetLastError = true)]
    static extern long lseek(SafeFileHandle fd, long offset, int whence);

    static readonly string[] Levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];

    static readonly byte[][] Words = [.. """
        the of and to in is was for on that with as by at from it an be this which or are have has not but had his they
        were her she been their one all there would will what when who more if no out so said up its about into than them
        can only other new some could time these two may then do first any my now such like our over man me even most made
        after also did many before must through back years where much your way well down should because each just those
        people how too little state good very make world still own see men work long get here between both life being under
        never day same another know while last might us great old year off come since against go came right used take three
        volume backup restore snapshot chunk manifest repository server client request response error timeout retry agent
        queue message consumer producer database table index query transaction commit rollback lock unlock connection socket
        buffer stream file folder path export mount share node cluster replica leader follower election heartbeat lease token
        user project tenant quota limit usage status available creating deleting error_restoring attached detached migrating
        kernel memory cache page block device sector extent inode journal metadata checksum digest hash compress decompress
        network packet latency throughput bandwidth bytes kilobytes megabytes gigabytes seconds minutes hours started finished
        """.Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries).Select(Encoding.ASCII.GetBytes)];
}

// xoshiro256** seeded by SplitMix64: fast, and the same sequence everywhere (System.Random's is not promised).
struct Xoshiro
{
    ulong s0, s1, s2, s3;

    public Xoshiro(ulong seed)
    {
        s0 = SplitMix(ref seed);
        s1 = SplitMix(ref seed);
        s2 = SplitMix(ref seed);
        s3 = SplitMix(ref seed);
    }

    static ulong SplitMix(ref ulong x)
    {
        var z = x += 0x9E37_79B9_7F4A_7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return z ^ (z >> 31);
    }

    public ulong Next()
    {
        var result = ulong.RotateLeft(s1 * 5, 7) * 9;
        var t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = ulong.RotateLeft(s3, 45);
        return result;
    }

    // A number in [0, n).
    public int Below(int n) => (int)(((Next() >> 32) * (ulong)n) >> 32);

    public void Fill(Span<byte> buffer)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(buffer);
        for (var i = 0; i < words.Length; i++)
            words[i] = Next();
        var tail = buffer[(words.Length * 8)..];
        if (!tail.IsEmpty)
        {
            Span<byte> last = stackalloc byte[8];
            BitConverter.TryWriteBytes(last, Next());
            last[..tail.Length].CopyTo(tail);
        }
    }
}
