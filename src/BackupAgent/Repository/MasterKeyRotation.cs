using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent.Repository;

// Rewrapped: containers whose key file changed; Failed: what could not be re-wrapped (the old key still opens it);
// Completed: every container is under the new key alone.
public sealed record RotationSummary(int Containers, int Rewrapped, IReadOnlyList<string> Failed, bool Completed);

// Re-wraps the data key of every container on the share from one master key to another: only keys.json files change,
// never a chunk or a manifest. Two passes: first every container gets a wrap under the new key beside the old one, and
// only when all have it the old wraps are removed, so a rotation that stops half-way never leaves a container that
// neither key opens. Containers are found by walking the share's folders (a container's own files and chunk folders
// are not entered). Idempotent: run again, it finishes what is left.
public static partial class MasterKeyRotation
{
    public static async Task<RotationSummary> RotateAsync(IRepositoryStore store, MasterKey from, MasterKey to, ILogger logger, CancellationToken ct)
    {
        var containers = await ContainersAsync(store, ct);
        var failed = new List<string>();
        var rewrapped = new HashSet<string>();
        foreach (var keepFrom in new[] { true, false })
        {
            foreach (var container in containers)
            {
                try
                {
                    var path = ContainerKey.FilePath(container);
                    var file = await store.ReadAllAsync(path, ct) ?? throw new RepositoryKeyException($"{path} vanished");
                    if (ContainerKey.Rewrap(file, container, from, to, keepFrom, store.Describe) is { } rotated)
                    {
                        await store.WriteAtomicAsync(path, rotated, ct);
                        rewrapped.Add(container);
                        if (!keepFrom)
                            logger.ContainerKeyRewrapped(container, from.Id, to.Id);
                    }
                }
                catch (RepositoryKeyException e)
                {
                    failed.Add($"{container}: {e.Message}");
                }
            }
            if (failed.Count > 0)
                break;   // the old wraps stay: the old key still opens every container
        }
        return new RotationSummary(containers.Count, rewrapped.Count, failed, failed.Count == 0);
    }

    static async Task<List<string>> ContainersAsync(IRepositoryStore store, CancellationToken ct)
    {
        var containers = new List<string>();
        var folders = new Stack<string>([""]);
        while (folders.TryPop(out var folder))
        {
            await foreach (var name in store.ListAsync(folder, ct))
            {
                if (name == "keys.json")
                    containers.Add(folder.TrimEnd('/'));
                else if (!IsRepositoryFile(name))
                    folders.Push($"{folder}{name}/");
            }
        }
        return containers;
    }

    // Files a container holds, and the chunk files and writer markers inside its folders: not folders to walk (listing a
    // file only gives nothing, but a chunk folder holds thousands).
    static bool IsRepositoryFile(string name) =>
        ChunkStore.IsName(name) || RepositoryStores.IsTemporary(name) || Guid.TryParse(name, out _) || RepositoryFileName().IsMatch(name);

    [GeneratedRegex(@"^(gc\.(lock|generation|swept)|keys\.json|.*\.manifest|.*\.json)$")]
    private static partial Regex RepositoryFileName();

    // `BackupAgent rotate-master-key --new-key-file PATH`, with the agent's configuration (Repository:Target and the
    // current Encryption:MasterKeyFile). Exit code 0 when every container is under the new key alone; 1 when some could
    // not be re-wrapped, and then the old key still opens every container (the new one may be thrown away).
    public static async Task<int> RunAsync(IConfiguration configuration, ILogger logger, CancellationToken ct)
    {
        var target = configuration[$"{RepositoryOptions.Section}:Target"];
        var newKeyFile = configuration["new-key-file"];
        if (string.IsNullOrWhiteSpace(target) || string.IsNullOrWhiteSpace(newKeyFile))
        {
            await Console.Error.WriteLineAsync("usage: BackupAgent rotate-master-key --new-key-file PATH (with Repository:Target and Encryption:MasterKeyFile configured)");
            return 2;
        }
        MasterKey from, to;
        try
        {
            (from, to) = (MasterKey.Load(configuration[MasterKey.ConfigKey]), MasterKey.Load(newKeyFile));
        }
        catch (InvalidOperationException e)
        {
            await Console.Error.WriteLineAsync(e.Message);
            return 2;
        }
        await using var store = RepositoryStores.Open(target, connections: 2);
        var summary = await RotateAsync(store, from, to, logger, ct);
        Console.WriteLine($"Master key {from.Id} -> {to.Id} on {store.Describe}: {summary.Containers} containers, {summary.Rewrapped} key files changed, "
            + (summary.Completed ? "all under the new key alone." : $"{summary.Failed.Count} failed; the old key still opens every container."));
        foreach (var failure in summary.Failed)
            await Console.Error.WriteLineAsync($"  failed: {failure}");
        return summary.Completed ? 0 : 1;
    }
}
