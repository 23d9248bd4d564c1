using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;
using Xunit.Abstractions;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.BackupAgent.Tests.Repository;

// The NFS server dies (SIGKILL) in the middle of a backup and comes back. On a private ganesha (PrivateNfsServer): the
// shared one serves everyone else. The agent's way of going on is modelled as it runs: libnfs reconnects, a call that
// still fails fails the backup, and the job is retried (MassTransit's retry) with the same backup id.
// What must hold: every chunk name on the share stands for a whole, stable chunk (written FILE_SYNC to a temporary name
// and renamed), so a second backup of the same data that finds them there and writes nothing restores exactly, and
// the manifests verify.
public sealed class DurableWritesTests(ITestOutputHelper output) : IAsyncLifetime
{
    const int ChunkSize = 256 * 1024;
    const string Container = "durable/backups";

    readonly CancellationTokenSource timeout = new(TimeSpan.FromMinutes(8));
    readonly string folder = Directory.CreateTempSubdirectory("durable-writes-").FullName;
    PrivateNfsServer server = null!;
    CancellationToken Ct => timeout.Token;

    public async Task InitializeAsync() => server = await PrivateNfsServer.StartAsync();

    public async Task DisposeAsync()
    {
        await server.DisposeAsync();
        Directory.Delete(folder, recursive: true);
        timeout.Dispose();
    }

    [Fact]
    public async Task A_backup_across_an_NFS_server_killed_and_restarted_is_whole_and_a_second_backup_deduplicating_against_it_restores_exactly()
    {
        var data = RandomBytes(384 * ChunkSize, seed: 91);      // 96 MiB, incompressible: 384 chunks
        var volume = Path.Join(folder, "volume.img");
        await File.WriteAllBytesAsync(volume, data, Ct);
        await using var store = new NfsStore(server.Url, connections: 4, timeout: TimeSpan.FromSeconds(10));
        var repository = new BackupRepository(store, Options.Create(new RepositoryOptions { Target = server.Url, ChunkSize = ChunkSize, Workers = 4 }),
            MasterKey.Load(TestServices.MasterKeyFile), NullLogger<BackupRepository>.Instance);

        var first = Guid.NewGuid();
        var backup = repository.BackupAsync(Container, first, Guid.Empty, null, volume, data.Length, null, Ct);
        var chunks = Path.Join(server.Export, Container, "chunks");
        await Eventually.UntilAsync(() => backup.IsCompleted || ChunkCount(chunks) >= 64, TimeSpan.FromMinutes(2), "a quarter of the chunks on the share", TimeSpan.FromMilliseconds(20), Ct);
        Assert.False(backup.IsCompleted, "the backup ended before the server could be killed");
        await server.KillGaneshaAsync();
        var written = ChunkCount(chunks);
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        await server.StartGaneshaAsync();
        output.WriteLine($"ganesha killed with {written} of 384 chunks on the share, and restarted");

        var attempts = 1;
        for (; ; attempts++)
        {
            try
            {
                await backup;
                break;
            }
            catch (IOException e) when (attempts < 5)
            {
                output.WriteLine($"attempt {attempts} failed: {e.Message}");
                await Task.Delay(TimeSpan.FromSeconds(2), Ct);
                backup = repository.BackupAsync(Container, first, Guid.Empty, null, volume, data.Length, null, Ct);
            }
        }
        output.WriteLine($"backup {first} done after {attempts} attempt(s)");

        var second = await repository.BackupAsync(Container, Guid.NewGuid(), Guid.Empty, null, volume, data.Length, null, Ct);
        Assert.Equal(0, second.ChunksWritten);                  // every chunk found on the share and relied on
        var secondId = (await ManifestIdsAsync(store)).Single(id => id != first);

        foreach (var id in new[] { first, secondId })
        {
            var verified = await repository.VerifyAsync(Container, id, Ct);
            Assert.Equal(384, verified.ChunksChecked);
            var target = Path.Join(folder, $"restored-{id}.img");
            using (var handle = File.OpenHandle(target, FileMode.CreateNew, FileAccess.Write)) RandomAccess.SetLength(handle, data.Length);
            await repository.RestoreAsync(Container, id, target, null, Ct);
            var restored = await File.ReadAllBytesAsync(target, Ct);
            Assert.True(data.SequenceEqual(restored), $"backup {id} restored other data");
        }
    }

    static int ChunkCount(string chunks) =>
        Directory.Exists(chunks) ? Directory.EnumerateFiles(chunks, "*", SearchOption.AllDirectories).Count(f => !Path.GetFileName(f).Contains(".tmp-")) : 0;

    async Task<List<Guid>> ManifestIdsAsync(IRepositoryStore store)
    {
        var ids = new List<Guid>();
        await foreach (var name in store.ListAsync($"{Container}/backups", Ct))
            if (name.EndsWith(".manifest", StringComparison.Ordinal))
                ids.Add(Guid.Parse(name[..^".manifest".Length]));
        return ids;
    }
}
