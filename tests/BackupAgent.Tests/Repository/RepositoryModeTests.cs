using VolumeBackup.BackupAgent.Repository;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.BackupAgent.Tests.Repository;

/// <summary>What a backup leaves on the share (chunks, manifests, their folders) is readable by the agents' user alone.</summary>
public sealed class RepositoryModeTests : IDisposable
{
    const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    readonly RepositoryFixture fx = new();
    readonly List<string> folders = [];

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task A_backup_writes_chunks_and_manifest_for_the_agents_user_alone(string kind)
    {
        var (store, local) = Open(kind);
        await using var _ = store;
        var data = RandomBytes(3 * RepositoryFixture.ChunkSize + 100, 21);

        await fx.Repository(store).BackupAsync(RepositoryFixture.Container, Guid.NewGuid(), Guid.NewGuid(), null, fx.Volume(data), data.Length, null,
            CancellationToken.None);

        var files = Directory.EnumerateFiles(local, "*", SearchOption.AllDirectories).ToList();
        var directories = Directory.EnumerateDirectories(local, "*", SearchOption.AllDirectories).ToList();
        Assert.Contains(files, f => f.EndsWith(".manifest", StringComparison.Ordinal));
        Assert.True(files.Count >= 5, string.Join('\n', files));               // four chunks and the manifest at least
        Assert.All(files, f => Assert.True(File.GetUnixFileMode(f) == OwnerOnly, $"{f}: {File.GetUnixFileMode(f)}"));
        Assert.All(directories, d => Assert.True(File.GetUnixFileMode(d) == (OwnerOnly | UnixFileMode.UserExecute), $"{d}: {File.GetUnixFileMode(d)}"));
    }

    // A repository the store creates from nothing, and where its files appear on this machine.
    (IRepositoryStore Store, string Local) Open(string kind)
    {
        var folder = $"modes-{Guid.NewGuid():N}";
        if (kind == "dir")
        {
            var root = Path.Join(Path.GetTempPath(), "vb-repository-tests", folder);
            folders.Add(root);
            return (RepositoryStores.Open(root, connections: 2), root);
        }
        var url = Environment.GetEnvironmentVariable("VB_NFS_URL");
        var export = Environment.GetEnvironmentVariable("VB_NFS_EXPORT");
        if (string.IsNullOrEmpty(url) || string.IsNullOrEmpty(export))
            Assert.Fail("VB_NFS_URL and VB_NFS_EXPORT are not set: run the tests through deploy/test.sh, which starts the NFS server and sets them.");
        folders.Add(Path.Join(export, folder));
        return (RepositoryStores.Open($"{url.TrimEnd('/')}/{folder}", connections: 2), Path.Join(export, folder));
    }

    public void Dispose()
    {
        foreach (var folder in folders.Where(Directory.Exists)) Directory.Delete(folder, recursive: true);
        fx.Dispose();
    }
}
