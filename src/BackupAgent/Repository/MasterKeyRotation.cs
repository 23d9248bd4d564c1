using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent.Repository;

public sealed record RotationSummary(int Rewrapped, int AlreadyRotated, IReadOnlyList<string> Failed);

// Re-wraps the data key of every container on the share from one master key to another: only keys.json files change,
// never a chunk or a manifest. Containers are found by walking the share's folders (a container's own files and chunk
// folders are not entered). Idempotent: a container already under the new key is left alone, so it can run again after
// an agent still holding the old key created a container meanwhile.
public static partial class MasterKeyRotation
{
    public static async Task<RotationSummary> RotateAsync(IRepositoryStore store, MasterKey from, MasterKey to, ILogger logger, CancellationToken ct)
    {
        var rewrapped = 0;
        var already = 0;
        var failed = new List<string>();
        var folders = new Stack<string>([""]);
        while (folders.TryPop(out var folder))
        {
            var container = folder.TrimEnd('/');
            await foreach (var name in store.ListAsync(folder, ct))
            {
                if (name == "keys.json")
                {
                    try
                    {
                        var path = ContainerKey.FilePath(container);
                        var file = await store.ReadAllAsync(path, ct) ?? throw new RepositoryKeyException($"{path} vanished");
                        if (ContainerKey.Rewrap(file, container, from, to, store.Describe) is { } rotated)
                        {
                            await store.WriteAtomicAsync(path, rotated, ct);
                            logger.ContainerKeyRewrapped(container, from.Id, to.Id);
                            rewrapped++;
                        }
                        else
                        {
                            already++;
                        }
                    }
                    catch (RepositoryKeyException e)
                    {
                        failed.Add($"{container}: {e.Message}");
                    }
                }
                else if (!IsRepositoryFile(name))
                {
                    folders.Push($"{folder}{name}/");
                }
            }
        }
        return new RotationSummary(rewrapped, already, failed);
    }

    // Files a container holds, and the chunk files and writer markers inside its folders: not folders to walk (listing a
    // file only gives nothing, but a chunk folder holds thousands).
    static bool IsRepositoryFile(string name) =>
        ChunkStore.IsName(name) || RepositoryStores.IsTemporary(name) || Guid.TryParse(name, out _) || RepositoryFileName().IsMatch(name);

    [GeneratedRegex(@"^(gc\.(lock|generation|swept)|keys\.json|.*\.manifest|.*\.json)$")]
    private static partial Regex RepositoryFileName();

    // `BackupAgent rotate-master-key --new-key-file PATH`, with the agent's configuration (Repository:Target and the
    // current Encryption:MasterKeyFile). Exit code 0 only when every container is under the new key.
    public static async Task<int> RunAsync(IConfiguration configuration, ILogger logger, CancellationToken ct)
    {
        var target = configuration[$"{RepositoryOptions.Section}:Target"];
        var newKeyFile = configuration["new-key-file"];
        if (string.IsNullOrWhiteSpace(target) || string.IsNullOrWhiteSpace(newKeyFile))
        {
            await Console.Error.WriteLineAsync("usage: BackupAgent rotate-master-key --new-key-file PATH (with Repository:Target and Encryption:MasterKeyFile configured)");
            return 2;
        }
        var from = MasterKey.Load(configuration[MasterKey.ConfigKey]);
        var to = MasterKey.Load(newKeyFile);
        await using var store = RepositoryStores.Open(target, connections: 2);
        var summary = await RotateAsync(store, from, to, logger, ct);
        Console.WriteLine($"Master key {from.Id} -> {to.Id} on {store.Describe}: {summary.Rewrapped} containers re-wrapped, {summary.AlreadyRotated} already under the new key, {summary.Failed.Count} failed.");
        foreach (var failure in summary.Failed)
            await Console.Error.WriteLineAsync($"  failed: {failure}");
        return summary.Failed.Count == 0 ? 0 : 1;
    }
}
