using System.Diagnostics;
using System.Text.RegularExpressions;
using VolumeBackup.TestSupport;
using Xunit.Abstractions;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>
/// OpenStack's own conformance tests: deploy/tempest.sh runs its selection of Tempest 33 and the cinder-tempest-plugin
/// (deploy/tempest-tests.txt) against a whole backend whose Api validates Keystone tokens, which the script enters in
/// Keystone's catalog under a region of its own.
/// </summary>
public sealed partial class TempestTests(ITestOutputHelper output) : IAsyncLifetime
{
    // What the selection passes on this service (README, "Tempest"); fewer means a test went from passing to skipped.
    const int MinimumPassed = 100;

    // Keystone on SQLite answers one request at a time; on a loaded machine a token validation can take longer than the
    // default 10 s, and Tempest counts a 503 as a failure.
    readonly Backend backend = new() { Keystone = true, ApiSettings = { ["Auth__Keystone__TimeoutSeconds"] = "60" } };
    readonly string workspace = Path.Combine(Path.GetTempPath(), $"vb-tempest-{Guid.NewGuid():N}");

    public Task InitializeAsync() => backend.InitializeAsync();

    public async Task DisposeAsync()
    {
        await backend.DisposeAsync();
        if (Directory.Exists(workspace)) Directory.Delete(workspace, recursive: true);
    }

    [Fact]
    public async Task Tempests_backup_volume_and_snapshot_tests_pass()
    {
        var script = Path.Combine(HostProcess.RepositoryRoot(), "deploy", "tempest.sh");
        var info = new ProcessStartInfo("bash", [script, "--api", backend.Api.Address, "--concurrency", "2"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            Environment = { ["VB_TEMPEST_DIR"] = workspace },
        };
        using var process = Process.Start(info)!;
        var printed = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(20)))
        {
            try { await process.WaitForExitAsync(timeout.Token); }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"deploy/tempest.sh still ran after 20 minutes:\n{Tail(await printed)}");
            }
        }
        var text = await printed;
        // The counts and every skipped test with its reason, in the test's log (the README's Tempest section quotes them).
        foreach (var line in text.Split('\n').Where(l => l.StartsWith("SKIPPED", StringComparison.Ordinal) || l.StartsWith("FAILED", StringComparison.Ordinal)
                     || l.StartsWith("passed=", StringComparison.Ordinal) || l.StartsWith("tempest:", StringComparison.Ordinal)))
            output.WriteLine(line);

        var counts = Counts().Match(text);
        Assert.True(counts.Success, $"deploy/tempest.sh printed no counts (exit code {process.ExitCode}):\n{Tail(text)}\n{await error}");
        var (passed, failed) = (int.Parse(counts.Groups["passed"].Value), int.Parse(counts.Groups["failed"].Value));
        Assert.True(failed == 0, $"{failed} Tempest tests failed:\n{Tail(text)}");
        Assert.True(passed >= MinimumPassed, $"only {passed} Tempest tests passed (at least {MinimumPassed} expected):\n{Tail(text)}");
        Assert.Equal(0, process.ExitCode);
    }

    static string Tail(string text) => string.Join('\n', text.Split('\n').TakeLast(150));

    [GeneratedRegex(@"^passed=(?<passed>\d+) skipped=(?<skipped>\d+) failed=(?<failed>\d+)$", RegexOptions.Multiline)]
    private static partial Regex Counts();
}
