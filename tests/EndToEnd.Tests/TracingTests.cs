using System.Text.RegularExpressions;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>One backup is one trace: the Api's request, the agent's work and the VolumeAgent's gRPC calls share a trace id.</summary>
[Collection(BackendCollection.Name)]
public sealed partial class TracingTests(Backend backend)
{
    [Fact]
    public async Task A_backup_is_one_trace_across_the_three_processes()
    {
        var volumeId = await backend.CreateVolumeAsync();
        var created = await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, name = "traced" } });
        var backupId = (string)created["backup"]!["id"]!;
        await backend.WaitForAsync($"backups/{backupId}", "backup", "available");
        await Task.Delay(TimeSpan.FromSeconds(6));       // the console exporter writes a batch every few seconds

        var postTrace = TraceIdsOf(backend.Api.Output, span => span.Contains("POST /v3/{project_id}/backups", StringComparison.Ordinal)).Last();
        var agentTraces = backend.BackupAgents.SelectMany(a => TraceIdsOf(a.Output, _ => true)).ToHashSet();
        var volumeAgentTraces = TraceIdsOf(backend.VolumeAgent.Output, span => span.Contains("GetBackupDevice", StringComparison.Ordinal)).ToHashSet();

        Assert.Contains(postTrace, agentTraces);
        Assert.Contains(postTrace, volumeAgentTraces);
    }

    /// <summary>Trace ids of the console exporter's spans whose text matches.</summary>
    static IEnumerable<string> TraceIdsOf(IReadOnlyList<string> output, Func<string, bool> match)
    {
        var text = string.Join('\n', output);
        foreach (var span in text.Split("Activity.TraceId:").Skip(1))
            if (match(span)) yield return TraceId().Match(span).Value;
    }

    [GeneratedRegex("[0-9a-f]{32}")]
    private static partial Regex TraceId();
}
