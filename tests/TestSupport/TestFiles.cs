using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;

namespace VolumeBackup.TestSupport;

/// <summary>Volume files as tests see them: data a guest writes, their content hash, and what they occupy on disk.</summary>
public static class TestFiles
{
    /// <summary>The same bytes for the same seed; with no seed, different ones on every call.</summary>
    public static byte[] RandomBytes(int length, int? seed = null)
    {
        var data = new byte[length];
        (seed is { } s ? new Random(s) : Random.Shared).NextBytes(data);
        return data;
    }

    /// <summary>Fills part of an existing volume file as a guest would: random data at <paramref name="offset"/>; the rest, holes included, stays as it was.</summary>
    public static void WriteGuestData(string file, int seed, long offset, int bytes)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        stream.Position = offset;
        stream.Write(RandomBytes(bytes, seed));
        stream.Flush(true);
    }

    /// <summary>The SHA-256 of a file's content, in upper-case hex; another process may have it open.</summary>
    public static string Sha256(string file)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Convert.ToHexString(SHA256.HashData(stream));
    }

    /// <summary>The SHA-256 of <paramref name="data"/>, in the same form as <see cref="Sha256(string)"/>.</summary>
    public static string Sha256(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    /// <summary>
    /// What a file may occupy beyond its data without any hole having been written: the file system's own blocks. Writes
    /// that land concurrently and out of order (a restore's) leave more extents than the inode holds, and the extent map
    /// takes a block (seen on the XFS pool: 13 to 19 extents and 4 KiB more for sixteen 64 KiB O_DIRECT writes).
    /// </summary>
    public const long FileSystemSlack = 4 * 4096;

    /// <summary>What a file occupies on disk, as <c>stat</c> reports it: holes cost nothing.</summary>
    public static long AllocatedBytes(string file)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%b %B", file]) { RedirectStandardOutput = true })!;
        var parts = stat.StandardOutput.ReadToEnd().Split(' ', StringSplitOptions.TrimEntries);
        stat.WaitForExit();
        return long.Parse(parts[0], CultureInfo.InvariantCulture) * long.Parse(parts[1], CultureInfo.InvariantCulture);
    }
}
