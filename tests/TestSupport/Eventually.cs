using System.Diagnostics;

namespace VolumeBackup.TestSupport;

/// <summary>
/// The one "poll until" of the tests: for what another process, the broker or a background service does in its own
/// time. It asks again every <c>every</c> (100 ms unless given) and, once <c>timeout</c> has passed, fails with what
/// it waited for and what it saw last. An exception from the probe is not retried: it fails the wait at once.
/// </summary>
public static class Eventually
{
    static readonly TimeSpan DefaultInterval = TimeSpan.FromMilliseconds(100);

    public static Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what, TimeSpan? every = null, CancellationToken ct = default) =>
        UntilAsync(() => Task.FromResult(condition()), done => done, timeout, what, every: every, ct: ct);

    public static Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, TimeSpan? every = null, CancellationToken ct = default) =>
        UntilAsync(condition, done => done, timeout, what, every: every, ct: ct);

    /// <summary>Polls <paramref name="probe"/> until <paramref name="done"/> accepts its value, and returns that value.</summary>
    /// <param name="describe">How to show the last value in the failure message.</param>
    public static async Task<T> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan timeout, string what,
        Func<T, string>? describe = null, TimeSpan? every = null, CancellationToken ct = default)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var value = await probe();
            if (done(value)) return value;
            if (clock.Elapsed >= timeout)
                throw new TimeoutException($"Waited {timeout} for {what}" + (describe is null ? "" : $"; last seen: {describe(value)}"));
            await Task.Delay(every ?? DefaultInterval, ct);
        }
    }
}
