using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using VolumeBackup.BackupAgent.Repository;

namespace VolumeBackup.Bench;

// Wraps the real store and adds up, per operation, the calls, bytes and time from call to completion (queueing in
// the NFS store's pool included). Calls overlap, so a sum can exceed the wall time: divide by the calls in flight.
sealed class TimingStore(IRepositoryStore inner) : IRepositoryStore
{
    sealed class Counter
    {
        public long Calls, Bytes, Ticks;
    }

    readonly ConcurrentDictionary<string, Counter> counters = new();

    public string Describe => inner.Describe;

    async Task<T> Time<T>(string op, long bytes, Func<Task<T>> call, Func<T, long>? resultBytes = null)
    {
        var start = Stopwatch.GetTimestamp();
        var result = await call();
        var counter = counters.GetOrAdd(op, _ => new Counter());
        Interlocked.Increment(ref counter.Calls);
        Interlocked.Add(ref counter.Bytes, bytes + (resultBytes?.Invoke(result) ?? 0));
        Interlocked.Add(ref counter.Ticks, Stopwatch.GetTimestamp() - start);
        return result;
    }

    public Task<bool> ExistsAsync(string path, CancellationToken ct) => Time("exists", 0, () => inner.ExistsAsync(path, ct));

    public Task<byte[]?> ReadAllAsync(string path, CancellationToken ct) =>
        Time(path.Contains("/chunks/") ? "read chunk" : "read other", 0, () => inner.ReadAllAsync(path, ct), r => r?.Length ?? 0);

    public Task<int?> ReadIntoAsync(string path, Memory<byte> buffer, CancellationToken ct) =>
        Time(path.Contains("/chunks/") ? "read chunk" : "read other", 0, () => inner.ReadIntoAsync(path, buffer, ct), r => r ?? 0);

    public Task WriteAtomicAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct) =>
        Time(path.Contains("/chunks/") ? "write chunk" : "write other", data.Length, async () => { await inner.WriteAtomicAsync(path, data, ct); return true; });

    public Task<bool> TryCreateExclusiveAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct) =>
        Time("create excl", data.Length, () => inner.TryCreateExclusiveAsync(path, data, ct));

    public Task<bool> RenameAsync(string from, string to, CancellationToken ct) => Time("rename", 0, () => inner.RenameAsync(from, to, ct));

    public Task<bool> DeleteAsync(string path, CancellationToken ct) => Time("delete", 0, () => inner.DeleteAsync(path, ct));

    public Task<bool> TouchAsync(string path, CancellationToken ct) =>
        Time(path.Contains("/chunks/") ? "touch chunk" : "touch other", 0, () => inner.TouchAsync(path, ct));

    public Task<StoreEntry?> StatAsync(string path, CancellationToken ct) => Time("stat", 0, () => inner.StatAsync(path, ct));

    public async IAsyncEnumerable<string> ListAsync(string directory, [EnumeratorCancellation] CancellationToken ct)
    {
        var names = await Time("list", 0, async () =>
        {
            var all = new List<string>();
            await foreach (var name in inner.ListAsync(directory, ct)) all.Add(name);
            return all;
        });
        foreach (var name in names) yield return name;
    }

    public Task<bool> DeleteDirectoryAsync(string directory, CancellationToken ct) => Time("rmdir", 0, () => inner.DeleteDirectoryAsync(directory, ct));

    public ValueTask DisposeAsync() => inner.DisposeAsync();

    public void Report(TextWriter to, double wallSeconds)
    {
        to.WriteLine($"  store calls (time from call to completion, summed over overlapping calls; wall {wallSeconds:F2} s):");
        foreach (var (op, c) in counters.OrderByDescending(kv => kv.Value.Ticks))
        {
            var seconds = (double)c.Ticks / Stopwatch.Frequency;
            to.WriteLine($"    {op,-12} {c.Calls,7} calls {c.Bytes / 1048576.0,9:F1} MiB {seconds,8:F2} s  {1000 * seconds / c.Calls,7:F2} ms/call" +
                (c.Bytes > 0 ? $"  {c.Bytes / 1048576.0 / seconds,7:F0} MiB/s per call" : ""));
        }
    }
}
