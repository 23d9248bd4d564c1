using System.Diagnostics;
using System.Text.RegularExpressions;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests.Cli;

/// <summary>The unmodified OpenStack <c>cinder</c> client (python3-cinderclient), in noauth mode against one Api.</summary>
public sealed partial class CinderCli(string apiAddress, string project, string user = "tester")
{
    public const string ApiVersion = "3.64";

    public CinderCli As(string otherUser) => new(apiAddress, project, otherUser);

    public Task<CliResult> RunAsync(params string[] args) => RunProcessAsync("cinder",
        ["--os-auth-type", "noauth", "--os-user-id", user, "--os-project-id", project,
         "--os-endpoint", $"{apiAddress}/v3/{project}", "--os-volume-api-version", ApiVersion],
        args, new Dictionary<string, string?> { ["OS_AUTH_URL"] = null });

    /// <summary>Runs an OpenStack CLI (bounded: 60 s unless told); <paramref name="environment"/> sets (or, with null, removes) variables.</summary>
    public static async Task<CliResult> RunProcessAsync(string file, IEnumerable<string> options, string[] args, IReadOnlyDictionary<string, string?> environment,
        TimeSpan? within = null)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var arg in options.Concat(args)) info.ArgumentList.Add(arg);
        foreach (var (name, value) in environment)
            if (value is null) info.Environment.Remove(name); else info.Environment[name] = value;
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(within ?? TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return new CliResult(process.ExitCode, await output, await error, string.Join(' ', args));
    }

    /// <summary>Runs and requires success.</summary>
    public async Task<CliResult> OkAsync(params string[] args)
    {
        var result = await RunAsync(args);
        Assert.True(result.ExitCode == 0, $"cinder {result.Command} failed ({result.ExitCode}): {result.Error}{result.Output}");
        return result;
    }

    /// <summary>Polls <c>cinder {kind}-show</c> until its status is one of <paramref name="statuses"/>.</summary>
    public Task<Dictionary<string, string>> WaitForStatusAsync(string kind, string id, params string[] statuses) => Eventually.UntilAsync(
        async () => (await OkAsync(Show(kind), id)).Properties(), shown => statuses.Contains(shown.GetValueOrDefault("status")),
        TimeSpan.FromSeconds(60), $"{kind} {id} to reach {string.Join('|', statuses)}", shown => string.Join(", ", shown), Interval);

    /// <summary>Polls <c>cinder {kind}-show</c> until it fails: the resource is gone.</summary>
    public Task WaitUntilGoneAsync(string kind, string id, TimeSpan within) => Eventually.UntilAsync(
        async () => (await RunAsync(Show(kind), id)).ExitCode != 0, within, $"{kind} {id} to be gone", Interval);

    static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(300);

    static string Show(string kind) => kind.Length == 0 ? "show" : $"{kind}-show";
}

public sealed partial record CliResult(int ExitCode, string Output, string Error, string Command)
{
    /// <summary>The rows of a "Property | Value" table, as <c>*-show</c> and <c>*-create</c> print them.</summary>
    public Dictionary<string, string> Properties()
    {
        var properties = new Dictionary<string, string>();
        foreach (Match row in Row().Matches(Output))
            properties.TryAdd(row.Groups[1].Value.Trim(), row.Groups[2].Value.Trim());
        return properties;
    }

    /// <summary>The rows of a list table, as dictionaries by column name.</summary>
    public List<Dictionary<string, string>> Table()
    {
        var lines = Output.Split('\n').Where(l => l.StartsWith('|')).ToList();
        if (lines.Count == 0) return [];
        var header = Cells(lines[0]);
        return lines.Skip(1).Select(l => header.Zip(Cells(l)).ToDictionary(p => p.First, p => p.Second)).ToList();
    }

    static string[] Cells(string line) => line.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray();

    [GeneratedRegex(@"^\|\s*([^|]+?)\s*\|\s*(.*?)\s*\|\s*$", RegexOptions.Multiline)]
    private static partial Regex Row();
}
