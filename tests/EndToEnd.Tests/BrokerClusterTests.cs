using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;
using Xunit.Abstractions;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>The whole service (Api, VolumeAgent, two BackupAgents) on a three-node RabbitMQ cluster of its own.</summary>
public sealed class ClusterBackend : IAsyncLifetime
{
    public BrokerCluster Cluster { get; } = new();
    public Backend Backend { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Cluster.InitializeAsync();
        Backend = new Backend
        {
            OwnBroker = Cluster.ConnectionString, ClusterNodes = Cluster.Nodes,
            CommonSettings = new Dictionary<string, string> { ["Logging__LogLevel__MassTransit"] = "Debug" },   // "Connected: …" names the node
        };
        await Backend.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        if (Backend is not null) await Backend.DisposeAsync();
        await Cluster.DisposeAsync();
    }
}

/// <summary>Run alone: three broker nodes and twenty backups are a lot for this machine next to other tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BrokerClusterCollection : ICollectionFixture<ClusterBackend>
{
    public const string Name = "broker-cluster";
}

[Collection(BrokerClusterCollection.Name)]
public sealed partial class BrokerClusterTests(ClusterBackend deployment, ITestOutputHelper output)
{
    const int Count = 20;

    [Fact]
    public async Task A_broker_node_killed_in_the_middle_of_20_backups_loses_none_and_completes_none_twice()
    {
        var backend = deployment.Backend;
        var cluster = deployment.Cluster;
        var volumes = await Task.WhenAll(Enumerable.Range(0, Count).Select(async i =>
        {
            var volumeId = await backend.CreateVolumeAsync(1, $"cluster-{i}");
            TestFiles.WriteGuestData(backend.VolumeFile(volumeId), seed: 900 + i, offset: 0, bytes: 32 << 20);
            return volumeId;
        }));
        // The agents declared the zone's command queue; the node that leads it is the one to lose.
        var queue = Queues.CreateBackup("nova");
        var leader = await cluster.LeaderOfAsync(queue);

        var clock = Stopwatch.StartNew();
        var backups = new List<string>();
        foreach (var volumeId in volumes)
            backups.Add((string)(await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, name = "through-a-node" } }))["backup"]!["id"]!);
        // Some backups written, some running, the rest still queued: then the node crashes.
        await Eventually.UntilAsync(() => Written(backups).Values.Sum() >= 3, TimeSpan.FromSeconds(90), "three backups written before the node goes",
            every: TimeSpan.FromMilliseconds(50));
        var writtenBefore = Written(backups).Values.Sum();
        var linesBefore = backend.BackupAgents.Append(backend.Api).ToDictionary(p => p.Name, p => p.Output.Count);
        await cluster.KillNodeAsync(leader);
        var killedAt = clock.Elapsed;
        var newLeader = await cluster.LeaderOfAsync(queue);

        var finished = new Dictionary<string, JsonObject>();
        foreach (var backupId in backups)
            finished[backupId] = await backend.WaitForAsync(TimeSpan.FromMinutes(2), $"backups/{backupId}", "backup", "available", "error");
        var allDone = clock.Elapsed;

        var written = Written(backups);
        var failed = finished.Where(b => (string?)b.Value["status"] == "error").ToDictionary(b => b.Key, b => (string?)b.Value["fail_reason"]);
        output.WriteLine($"node {leader} (leader of {queue}) killed at {killedAt.TotalSeconds:F1} s with {writtenBefore} of {Count} backups written; " +
                         $"new leader node {newLeader}; all {Count} finished at {allDone.TotalSeconds:F1} s; {failed.Count} in error; " +
                         $"{Redelivered(backups)} commands redelivered after their backup was written");
        foreach (var (id, reason) in failed) output.WriteLine($"  {id} error: {reason}");

        Assert.NotEqual(leader, newLeader);
        // Every program was on the lost node and connected again to one of the others.
        var survivors = cluster.Nodes.Where((_, i) => i + 1 != leader).ToList();
        Assert.All(backend.BackupAgents.Append(backend.Api), p =>
        {
            var reconnects = p.Output.Skip(linesBefore[p.Name]).Where(l => l.Contains("Connected: ", StringComparison.Ordinal)).ToList();
            Assert.True(reconnects.Any(l => survivors.Any(l.Contains)), $"{p.Name} did not connect to {string.Join(" or ", survivors)} after the kill: {string.Join('\n', reconnects)}");
        });
        // None ran twice to completion: each backup's data was written at most once, and exactly once for those available.
        Assert.All(backups, id => Assert.True(written.GetValueOrDefault(id) <= 1, $"backup {id} written {written[id]} times"));
        Assert.All(backups.Where(id => !failed.ContainsKey(id)), id => Assert.Equal(1, written.GetValueOrDefault(id)));
        Assert.All(failed, f => Assert.False(string.IsNullOrWhiteSpace(f.Value), $"backup {f.Key} in error without a reason"));
        // The saga's rows agree with the share: a manifest for every available backup and for no other.
        var manifests = Directory.EnumerateFiles(Path.Combine(backend.RepositoryFolder, ContainerName.Default, "backups"), "*.manifest")
            .Select(Path.GetFileNameWithoutExtension).ToHashSet();
        Assert.Equal(backups.Where(id => !failed.ContainsKey(id)).Order(), backups.Where(manifests.Contains).Order());
        await using (var db = backend.NewDbContext())
        {
            var states = await db.Backups.Where(b => backups.Select(Guid.Parse).Contains(b.Id)).ToDictionaryAsync(b => b.Id.ToString(), b => b.State);
            Assert.All(backups, id => Assert.Equal(failed.ContainsKey(id) ? "Error" : "Available", states[id]));
        }
        foreach (var volumeId in volumes)
            Assert.Equal("available", (string?)(await backend.GetAsync($"volumes/{volumeId}"))["volume"]!["status"]);

        // A backup that ended in error is fixed by a retry: a new backup of its volume, on the two nodes left.
        foreach (var volumeId in failed.Keys.Select(id => (string)finished[id]["volume_id"]!))
        {
            var retry = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = volumeId, name = "retry" } }))["backup"]!["id"]!;
            Assert.Equal("available", (string?)(await backend.WaitForAsync($"backups/{retry}", "backup", "available", "error"))["status"]);
        }
    }

    /// <summary>How many times the agents wrote each backup to the share (their "Backup … written" line, logged after the manifest).</summary>
    Dictionary<string, int> Written(IEnumerable<string> backups)
    {
        var ours = backups.ToHashSet();
        return deployment.Backend.BackupAgents.SelectMany(a => a.Output).Select(l => WrittenLine().Match(l)).Where(m => m.Success && ours.Contains(m.Groups[1].Value))
            .GroupBy(m => m.Groups[1].Value).ToDictionary(g => g.Key, g => g.Count());
    }

    int Redelivered(IEnumerable<string> backups)
    {
        var ours = backups.ToHashSet();
        return deployment.Backend.BackupAgents.SelectMany(a => a.Output).Select(l => RedeliveredLine().Match(l)).Count(m => m.Success && ours.Contains(m.Groups[1].Value));
    }

    [GeneratedRegex(@"Backup ([0-9a-f-]{36}) written:")]
    private static partial Regex WrittenLine();

    [GeneratedRegex(@"Backup ([0-9a-f-]{36}) is already on the share")]
    private static partial Regex RedeliveredLine();
}
