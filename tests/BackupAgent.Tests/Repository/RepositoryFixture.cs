using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Repository;

namespace VolumeBackup.BackupAgent.Tests.Repository;

// A repository in a temp folder (the share) next to the volumes the tests back up and restore.
public sealed class RepositoryFixture : IDisposable
{
    public const int ChunkSize = 64 * 1024;
    public const string Container = "team-1/backups";

    readonly string root = Directory.CreateTempSubdirectory("repository-tests-").FullName;

    public RepositoryFixture() => Store = new DirectoryStore(Path.Join(root, "share"));

    public DirectoryStore Store { get; }

    public string ContainerPath => Path.Join(root, "share", Container);

    public BackupRepository Repository(IRepositoryStore? store = null, int workers = 4, TimeSpan? sweepEvery = null) =>
        new(store ?? Store, Options.Create(new RepositoryOptions { Target = root, ChunkSize = ChunkSize, Workers = workers, SweepEvery = sweepEvery ?? TimeSpan.FromDays(1) }),
            NullLogger<BackupRepository>.Instance);

    public string Volume(byte[] data)
    {
        var path = NewPath();
        File.WriteAllBytes(path, data);
        return path;
    }

    // A sparse file of sizeBytes with data only at the given extents.
    public string SparseVolume(long sizeBytes, params (long Offset, byte[] Data)[] extents)
    {
        var path = NewPath();
        using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write);
        RandomAccess.SetLength(file, sizeBytes);
        foreach (var (offset, data) in extents)
            RandomAccess.Write(file, data, offset);
        return path;
    }

    public string EmptyTarget(long sizeBytes) => SparseVolume(sizeBytes);

    public IReadOnlyList<string> ChunkFiles() =>
        Directory.Exists(Path.Join(ContainerPath, "chunks"))
            ? [.. Directory.EnumerateFiles(Path.Join(ContainerPath, "chunks"), "*", SearchOption.AllDirectories).Select(Path.GetFileName).Order()!]
            : [];

    public string ChunkFile(string sha256) => Path.Join(ContainerPath, "chunks", sha256[..2], sha256);

    public string ManifestFile(Guid backupId) => Path.Join(ContainerPath, "backups", $"{backupId}.manifest");

    string NewPath() => Path.Join(root, $"volume-{Guid.NewGuid():N}.img");

    public void Dispose() => Directory.Delete(root, recursive: true);
}

// Wraps a store to watch or steer what a repository does with it.
public sealed class InterceptingStore(IRepositoryStore inner) : IRepositoryStore
{
    public Func<string, string> MapPath { get; init; } = path => path;
    public Func<string, Task>? BeforeCreateExclusive { get; set; }
    public Action<string>? AfterCreateExclusive { get; set; }
    public Action<string>? BeforeWriteAtomic { get; set; }
    public Func<string, Task>? BeforeRead { get; set; }
    public int MaxJitterMs { get; init; }
    public List<string> Reads { get; } = [];

    public string Describe => inner.Describe;

    public async Task<bool> ExistsAsync(string path, CancellationToken ct)
    {
        await JitterAsync();
        return await inner.ExistsAsync(MapPath(path), ct);
    }

    public async Task<byte[]?> ReadAllAsync(string path, CancellationToken ct)
    {
        await JitterAsync();
        lock (Reads) Reads.Add(path);
        if (BeforeRead is { } hook)
            await hook(path);
        return await inner.ReadAllAsync(MapPath(path), ct);
    }

    public async Task WriteAtomicAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await JitterAsync();
        BeforeWriteAtomic?.Invoke(path);
        await inner.WriteAtomicAsync(MapPath(path), data, ct);
    }

    public async Task<bool> TryCreateExclusiveAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await JitterAsync();
        if (BeforeCreateExclusive is { } hook)
            await hook(path);
        var created = await inner.TryCreateExclusiveAsync(MapPath(path), data, ct);
        if (created) AfterCreateExclusive?.Invoke(path);
        return created;
    }

    public async Task<bool> DeleteAsync(string path, CancellationToken ct)
    {
        await JitterAsync();
        return await inner.DeleteAsync(MapPath(path), ct);
    }

    public async Task<bool> TouchAsync(string path, CancellationToken ct)
    {
        await JitterAsync();
        return await inner.TouchAsync(MapPath(path), ct);
    }

    public async Task<StoreEntry?> StatAsync(string path, CancellationToken ct)
    {
        await JitterAsync();
        ct.ThrowIfCancellationRequested();               // as NfsStore refuses work queued with a cancelled token
        return await inner.StatAsync(MapPath(path), ct);
    }

    public IAsyncEnumerable<string> ListAsync(string directory, CancellationToken ct) => inner.ListAsync(MapPath(directory), ct);

    public Task<bool> DeleteDirectoryAsync(string directory, CancellationToken ct) => inner.DeleteDirectoryAsync(MapPath(directory), ct);

    public ValueTask DisposeAsync() => inner.DisposeAsync();

    async Task JitterAsync()
    {
        if (MaxJitterMs > 0)
            await Task.Delay(System.Random.Shared.Next(MaxJitterMs + 1));
    }
}
