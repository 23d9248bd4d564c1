using System.Diagnostics;
using System.Globalization;

namespace VolumeBackup.BackupAgent.Repository;

// Who holds a lock, written into it: host, boot, process id and the process's start. A waiter on the same host
// and boot can tell at once that the holder died (a killed agent restarted by its supervisor, the usual case),
// instead of waiting for the lock to go stale. Holders on other hosts are judged by staleness only.
sealed record LockOwner(string Host, string Boot, int ProcessId, long StartTicks)
{
    static readonly Lazy<LockOwner> current = new(() =>
        new LockOwner(Environment.MachineName, BootId(), Environment.ProcessId, StartOf(Environment.ProcessId) ?? 0));

    public static LockOwner Current => current.Value;

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Host} boot {Boot} pid {ProcessId} start {StartTicks}\n");

    public static LockOwner? Parse(string text)
    {
        var parts = text.Trim().Split(' ');
        return parts is [var host, "boot", var boot, "pid", var pid, "start", var start]
               && int.TryParse(pid, CultureInfo.InvariantCulture, out var processId)
               && long.TryParse(start, CultureInfo.InvariantCulture, out var startTicks)
            ? new LockOwner(host, boot, processId, startTicks)
            : null;
    }

    // True only when the owner certainly is gone: same host and boot, and its process is no longer the one that took it.
    public bool IsDeadHere()
    {
        var here = Current;
        if (Host != here.Host || Boot != here.Boot || Boot.Length == 0) return false;
        // .NET derives a start time from the uptime at each call, so two readings differ by microseconds.
        return StartOf(ProcessId) is not { } start || Math.Abs(start - StartTicks) > TimeSpan.TicksPerSecond;
    }

    static long? StartOf(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return process.StartTime.ToUniversalTime().Ticks;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return null;                                       // not running
        }
    }

    static string BootId()
    {
        const string path = "/proc/sys/kernel/random/boot_id";
        return File.Exists(path) ? File.ReadAllText(path).Trim() : "";
    }
}
