using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.BackupAgent.Tests.Repository;

/// <summary>
/// Encryption at rest, against the real NFS server (libnfs, VB_NFS_URL), the share's files read back through the
/// export's folder (VB_NFS_EXPORT) as anyone who can list the export would.
/// </summary>
public sealed class EncryptionTests : IAsyncLifetime
{
    const int ChunkSize = 64 * 1024;
    const string Container = "tenant-a/backups";

    readonly string folder = $"encryption-test-{Guid.NewGuid():N}";
    readonly RepositoryFixture volumes = new();
    readonly MasterKey masterKey = MasterKey.Load(TestServices.CreateMasterKeyFile());
    readonly CancellationTokenSource timeout = new(TimeSpan.FromMinutes(2));
    IRepositoryStore store = null!;

    CancellationToken Ct => timeout.Token;
    string Share => Path.Join(TestServices.NfsExport, folder);

    public Task InitializeAsync()
    {
        var url = TestServices.NfsUrl;
        var query = url.IndexOf('?', StringComparison.Ordinal);
        store = RepositoryStores.Open(query < 0 ? $"{url.TrimEnd('/')}/{folder}" : $"{url[..query].TrimEnd('/')}/{folder}{url[query..]}", connections: 4);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await store.DisposeAsync();
        if (Directory.Exists(Share)) Directory.Delete(Share, recursive: true);
        volumes.Dispose();
        timeout.Dispose();
    }

    BackupRepository Repository(MasterKey? key = null, bool plain = false) =>
        new(store, Options.Create(new RepositoryOptions { Target = "nfs", ChunkSize = ChunkSize, Workers = 4 }), plain ? null : key ?? masterKey,
            NullLogger<BackupRepository>.Instance);

    async Task<Guid> BackupAsync(BackupRepository repository, byte[] data, string container = Container, Guid? parent = null, Guid? volumeId = null)
    {
        var id = Guid.NewGuid();
        await repository.BackupAsync(container, id, volumeId ?? Guid.NewGuid(), parent, volumes.Volume(data), data.Length, null, Ct);
        return id;
    }

    async Task<byte[]> RestoreAsync(BackupRepository repository, Guid backupId, int size, string container = Container)
    {
        var target = volumes.EmptyTarget(size);
        await repository.RestoreAsync(container, backupId, target, null, Ct);
        return File.ReadAllBytes(target);
    }

    string ContainerPath(string container = Container) => Path.Join(Share, container);

    string ChunkPath(string name, string container = Container) => Path.Join(ContainerPath(container), "chunks", name[..2], name);

    string[] ChunkNames(string container = Container) =>
        Directory.Exists(Path.Join(ContainerPath(container), "chunks"))
            ? [.. Directory.EnumerateFiles(Path.Join(ContainerPath(container), "chunks"), "*", SearchOption.AllDirectories).Select(f => Path.GetFileName(f)).Order()]
            : [];

    [Fact]
    public async Task Full_and_incremental_round_trip_through_the_share_encrypted()
    {
        var data = RandomBytes(6 * ChunkSize + 100, seed: 1);
        var full = await BackupAsync(Repository(), data);
        data[3 * ChunkSize + 5] ^= 0xff;
        var incremental = await BackupAsync(Repository(), data, parent: full);

        Assert.Equal(data, await RestoreAsync(Repository(), incremental, data.Length));
        var manifest = await Repository().ReadManifestAsync(Container, incremental, Ct);
        Assert.Equal(Manifest.CurrentFormatVersion, manifest!.FormatVersion);
        Assert.Equal(1, manifest.Totals.ChunksWritten);
        Assert.True(File.Exists(Path.Join(ContainerPath(), "keys.json")));
    }

    [Fact]
    public async Task Identical_data_is_stored_once_in_a_container_and_under_other_names_in_another()
    {
        var data = RandomBytes(5 * ChunkSize, seed: 2);
        var repository = Repository();
        await BackupAsync(repository, data);
        var second = await BackupAsync(Repository(), data);   // another agent, another volume, the same data

        var manifest = await Repository().ReadManifestAsync(Container, second, Ct);
        Assert.Equal(0, manifest!.Totals.ChunksWritten);
        Assert.Equal(5, ChunkNames().Length);

        var other = await BackupAsync(Repository(), data, container: "tenant-b/backups");
        Assert.Equal(5, ChunkNames("tenant-b/backups").Length);
        Assert.Empty(ChunkNames().Intersect(ChunkNames("tenant-b/backups")));   // a per-container naming key
        Assert.Equal(data, await RestoreAsync(Repository(), other, data.Length, "tenant-b/backups"));
    }

    [Fact]
    public async Task The_share_holds_no_plain_data_no_plain_manifest_and_no_sha256_name()
    {
        var (data, volumeId, sha256s) = Recognisable();
        await BackupAsync(Repository(), data, volumeId: volumeId);

        var findings = Leaks(data, volumeId, sha256s);

        Assert.True(findings.Count == 0, string.Join("\n", findings));
    }

    [Fact]
    public async Task The_leak_check_finds_what_an_unencrypted_repository_leaves()
    {
        var (data, volumeId, sha256s) = Recognisable();
        await BackupAsync(Repository(plain: true), data, volumeId: volumeId);

        var findings = Leaks(data, volumeId, sha256s);

        Assert.Contains(findings, f => f.StartsWith("plain data", StringComparison.Ordinal));
        Assert.Contains(findings, f => f.StartsWith("volume id", StringComparison.Ordinal));
        Assert.Contains(findings, f => f.StartsWith("sha256 name", StringComparison.Ordinal));
    }

    // Random (incompressible, so an unencrypted chunk would hold it as is) chunks, the volume's id and each chunk's SHA-256.
    static (byte[] Data, Guid VolumeId, string[] Sha256s) Recognisable()
    {
        var data = RandomBytes(4 * ChunkSize, seed: 3);
        var sha256s = Enumerable.Range(0, 4).Select(i => Convert.ToHexStringLower(SHA256.HashData(data.AsSpan(i * ChunkSize, ChunkSize)))).ToArray();
        return (data, Guid.NewGuid(), sha256s);
    }

    List<string> Leaks(byte[] data, Guid volumeId, string[] sha256s)
    {
        var findings = new List<string>();
        var id = Encoding.UTF8.GetBytes(volumeId.ToString());
        foreach (var file in Directory.EnumerateFiles(Share, "*", SearchOption.AllDirectories))
        {
            var bytes = File.ReadAllBytes(file);
            for (var i = 0; i < 4; i++)
            {
                if (bytes.AsSpan().IndexOf(data.AsSpan(i * ChunkSize + 1000, 64)) >= 0)
                    findings.Add($"plain data of chunk {i} in {file}");
                if (bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(sha256s[i])) >= 0 || Path.GetFileName(file) == sha256s[i])
                    findings.Add($"sha256 name of chunk {i} in {file}");
            }
            if (bytes.AsSpan().IndexOf(id) >= 0)
                findings.Add($"volume id in {file}");
        }
        return findings;
    }

    [Fact]
    public async Task One_bit_flipped_in_a_chunk_is_detected_on_restore_and_by_verify_naming_backup_index_and_name()
    {
        var data = RandomBytes(4 * ChunkSize, seed: 4);
        var backup = await BackupAsync(Repository(), data);
        var manifest = (await Repository().ReadManifestAsync(Container, backup, Ct))!;
        var name = manifest.Chunks[2]!.Name;
        var stored = File.ReadAllBytes(ChunkPath(name));
        stored[stored.Length / 2] ^= 0x01;
        File.WriteAllBytes(ChunkPath(name), stored);

        var restore = await Assert.ThrowsAsync<BackupDataException>(() => RestoreAsync(Repository(), backup, data.Length));
        var verify = await Assert.ThrowsAsync<BackupDataException>(() => Repository().VerifyChunkAsync(Container, manifest, 2, Ct));

        foreach (var error in new[] { restore, verify })
        {
            Assert.Equal((backup, 2L, name), (error.BackupId, error.ChunkIndex, error.ChunkName));
            Assert.Contains($"Backup {backup}", error.Message, StringComparison.Ordinal);
            Assert.Contains($"chunk 2 ({name})", error.Message, StringComparison.Ordinal);
            Assert.Contains("fails authentication", error.Message, StringComparison.Ordinal);
        }
        Assert.True(await Repository().VerifyChunkAsync(Container, manifest, 1, Ct) > 0);   // its neighbours are fine
    }

    [Fact]
    public async Task A_chunk_swapped_in_from_another_container_or_another_name_is_detected()
    {
        var data = RandomBytes(3 * ChunkSize, seed: 5);
        var backup = await BackupAsync(Repository(), data);
        var elsewhere = await BackupAsync(Repository(), RandomBytes(ChunkSize, seed: 6), container: "tenant-b/backups");
        var manifest = (await Repository().ReadManifestAsync(Container, backup, Ct))!;
        var foreign = (await Repository().ReadManifestAsync("tenant-b/backups", elsewhere, Ct))!.Chunks[0]!.Name;
        var (first, second) = (manifest.Chunks[0]!.Name, manifest.Chunks[1]!.Name);

        File.Copy(ChunkPath(foreign, "tenant-b/backups"), ChunkPath(first), overwrite: true);   // same size: random data, stored whole
        var fromOtherContainer = await Assert.ThrowsAsync<BackupDataException>(() => Repository().VerifyChunkAsync(Container, manifest, 0, Ct));

        File.Copy(ChunkPath(second), ChunkPath(first), overwrite: true);                       // this container's own chunk, under another name
        var fromOtherName = await Assert.ThrowsAsync<BackupDataException>(() => RestoreAsync(Repository(), backup, data.Length));

        Assert.Equal((backup, 0L, first), (fromOtherContainer.BackupId, fromOtherContainer.ChunkIndex, fromOtherContainer.ChunkName));
        Assert.Equal((backup, 0L, first), (fromOtherName.BackupId, fromOtherName.ChunkIndex, fromOtherName.ChunkName));
        Assert.All(new[] { fromOtherContainer, fromOtherName }, e => Assert.Contains("fails authentication", e.Message, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Another_master_key_can_neither_read_nor_write_the_container()
    {
        var data = RandomBytes(2 * ChunkSize, seed: 7);
        var backup = await BackupAsync(Repository(), data);
        var stranger = Repository(MasterKey.Load(TestServices.CreateMasterKeyFile()));
        var keyFile = File.ReadAllBytes(Path.Join(ContainerPath(), "keys.json"));

        var restore = await Assert.ThrowsAsync<RepositoryKeyException>(() => RestoreAsync(stranger, backup, data.Length));
        await Assert.ThrowsAsync<RepositoryKeyException>(() => BackupAsync(stranger, data));

        Assert.Contains($"encrypted under master key {masterKey.Id}", restore.Message, StringComparison.Ordinal);
        Assert.Contains("losing the master key is losing the backups", restore.Message, StringComparison.Ordinal);
        Assert.Equal(keyFile, File.ReadAllBytes(Path.Join(ContainerPath(), "keys.json")));   // no second key made
        Assert.Equal(data, await RestoreAsync(Repository(), backup, data.Length));
    }

    [Fact]
    public async Task Rotation_rewraps_every_containers_key_without_touching_a_chunk()
    {
        var data = RandomBytes(3 * ChunkSize, seed: 8);
        string[] containers = [Container, "tenant-b", "tenant-b/nested/deeper"];
        var backups = new List<Guid>();
        foreach (var container in containers)
            backups.Add(await BackupAsync(Repository(), data, container));
        var before = Directory.EnumerateFiles(Share, "*", SearchOption.AllDirectories).Where(f => !f.EndsWith("keys.json", StringComparison.Ordinal))
            .ToDictionary(f => f, f => (File.ReadAllBytes(f), File.GetLastWriteTimeUtc(f)));
        var next = MasterKey.Load(TestServices.CreateMasterKeyFile());

        var summary = await MasterKeyRotation.RotateAsync(store, masterKey, next, NullLogger.Instance, Ct);
        var again = await MasterKeyRotation.RotateAsync(store, masterKey, next, NullLogger.Instance, Ct);

        Assert.Equal((3, 3, true), (summary.Containers, summary.Rewrapped, summary.Completed));
        Assert.Equal((3, 0, true), (again.Containers, again.Rewrapped, again.Completed));
        foreach (var (file, (bytes, modified)) in before)
        {
            Assert.Equal(bytes, File.ReadAllBytes(file));
            Assert.Equal(modified, File.GetLastWriteTimeUtc(file));
        }
        for (var i = 0; i < containers.Length; i++)
        {
            Assert.Equal(data, await RestoreAsync(Repository(next), backups[i], data.Length, containers[i]));
            await Assert.ThrowsAsync<RepositoryKeyException>(() => RestoreAsync(Repository(masterKey), backups[i], data.Length, containers[i]));
        }
    }

    [Fact]
    public async Task A_rotation_that_fails_on_one_container_leaves_every_container_readable_with_the_old_key()
    {
        var data = RandomBytes(ChunkSize, seed: 13);
        var good = await BackupAsync(Repository(), data, "tenant-a");
        var stranger = MasterKey.Load(TestServices.CreateMasterKeyFile());
        await BackupAsync(Repository(stranger), data, "tenant-z");          // a container under some other master key
        var next = MasterKey.Load(TestServices.CreateMasterKeyFile());

        var summary = await MasterKeyRotation.RotateAsync(store, masterKey, next, NullLogger.Instance, Ct);

        Assert.False(summary.Completed);
        Assert.Contains(summary.Failed, f => f.StartsWith("tenant-z:", StringComparison.Ordinal));
        Assert.Equal(data, await RestoreAsync(Repository(masterKey), good, data.Length, "tenant-a"));   // the old wrap kept
        Assert.Equal(data, await RestoreAsync(Repository(next), good, data.Length, "tenant-a"));        // the new one added
    }

    [Fact]
    public async Task Two_agents_starting_the_first_backups_of_a_container_at_once_agree_on_one_key()
    {
        var data = RandomBytes(4 * ChunkSize, seed: 9);

        var ids = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => BackupAsync(Repository(), data)));

        foreach (var id in ids)
            Assert.Equal(data, await RestoreAsync(Repository(), id, data.Length));
        Assert.Equal(4, ChunkNames().Length);
    }

    [Fact]
    public async Task An_unencrypted_backup_of_an_earlier_version_is_refused_on_restore_but_deleted_cleanly()
    {
        var data = RandomBytes(2 * ChunkSize, seed: 10);
        var legacy = await BackupAsync(Repository(plain: true), data);
        var encrypted = await BackupAsync(Repository(), RandomBytes(2 * ChunkSize, seed: 11));   // the container gets its key now

        var error = await Assert.ThrowsAsync<BackupDataException>(() => RestoreAsync(Repository(), legacy, data.Length));
        var deleted = await Repository().DeleteAsync(Container, legacy, Ct);

        Assert.Contains($"Backup {legacy} in container '{Container}'", error.Message, StringComparison.Ordinal);
        Assert.Contains("written unencrypted (manifest format 1", error.Message, StringComparison.Ordinal);
        Assert.Equal(2, deleted.ChunksDeleted);
        Assert.Equal(2, ChunkNames().Length);   // the encrypted backup's own
        Assert.Equal(RandomBytes(2 * ChunkSize, seed: 11), await RestoreAsync(Repository(), encrypted, data.Length));
    }

    [Fact]
    public async Task A_lost_key_file_is_not_replaced_by_a_new_key()
    {
        var data = RandomBytes(ChunkSize, seed: 12);
        await BackupAsync(Repository(), data);
        File.Delete(Path.Join(ContainerPath(), "keys.json"));

        var error = await Assert.ThrowsAsync<RepositoryKeyException>(() => BackupAsync(Repository(), data));

        Assert.Contains("holds encrypted backups but its key file", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Join(ContainerPath(), "keys.json")));
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    [Theory]
    [InlineData(32, "644", "may be read or written by others")]
    [InlineData(31, "600", "holds 31 bytes")]
    public void A_master_key_file_others_can_read_or_of_the_wrong_size_is_refused(int size, string mode, string why)
    {
        var path = TestServices.CreateMasterKeyFile();
        File.WriteAllBytes(path, RandomNumberGenerator.GetBytes(size));
        File.SetUnixFileMode(path, (UnixFileMode)Convert.ToInt32(mode, 8));

        var error = Assert.Throws<InvalidOperationException>(() => MasterKey.Load(path));

        Assert.Contains(why, error.Message, StringComparison.Ordinal);
        Assert.Contains("Encryption:MasterKeyFile", Assert.Throws<InvalidOperationException>(() => MasterKey.Load("")).Message, StringComparison.Ordinal);
    }
}
