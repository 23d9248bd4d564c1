using System.Runtime.InteropServices;

namespace VolumeBackup.BackupAgent;

/// <summary>
/// Defence in depth: the agent runs as root and reads or writes whatever path a device names, so it uses a path only when,
/// with every symbolic link resolved, it is a file inside the pool it was configured for (Agent:PoolPath). A compromised
/// or confused VolumeAgent cannot make it read /etc/shadow or write over a disk.
/// </summary>
public static partial class DevicePath
{
    /// <summary>The device's real path, or <see cref="UntrustedDeviceException"/>.</summary>
    public static string Check(string pool, string path)
    {
        var root = RealPath(pool) ?? throw new UntrustedDeviceException(path, pool, $"the pool {pool} does not exist");
        if (!Path.IsPathFullyQualified(path) || path.Split('/').Contains(".."))
            throw new UntrustedDeviceException(path, pool, "not an absolute path without '..'");
        var real = RealPath(path) ?? throw new UntrustedDeviceException(path, pool, "it does not exist");
        if (!real.StartsWith(root + "/", StringComparison.Ordinal))
            throw new UntrustedDeviceException(path, pool, real == path ? "it is outside the pool" : $"it resolves to {real}, outside the pool");
        if (!File.Exists(real))
            throw new UntrustedDeviceException(path, pool, "it is not a file");
        return real;
    }

    // realpath(3): .NET has no call that resolves the symbolic links of every component of a path.
    static string? RealPath(string path)
    {
        var resolved = realpath(path, 0);
        if (resolved == 0) return null;
        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally { Marshal.FreeHGlobal(resolved); }   // malloc'd by realpath: free() is what FreeHGlobal calls on Unix
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint realpath(string path, nint resolved);
}

/// <summary>A device path the agent refuses to touch; never retried, the job fails naming it.</summary>
public sealed class UntrustedDeviceException(string path, string pool, string reason)
    : Exception($"Refused device path {path} from the VolumeAgent: {reason}; this agent reads and writes only files inside its pool {pool} (Agent:PoolPath)");
