using System.Diagnostics;

namespace VolumeBackup.Api.Tests;

/// <summary>What a file occupies on disk, as <c>stat</c> reports it: holes cost nothing.</summary>
public static class Sparse
{
    public static long AllocatedBytes(string file)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%b %B", file]) { RedirectStandardOutput = true })!;
        var parts = stat.StandardOutput.ReadToEnd().Split(' ', StringSplitOptions.TrimEntries);
        stat.WaitForExit();
        return long.Parse(parts[0]) * long.Parse(parts[1]);
    }
}
