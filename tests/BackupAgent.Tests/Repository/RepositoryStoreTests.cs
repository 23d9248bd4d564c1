using VolumeBackup.BackupAgent.Repository;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.BackupAgent.Tests.Repository;

/// <summary>The same behaviour from both stores: "dir" (a local folder) and "nfs" (libnfs against the NFS
/// server that deploy/test.sh starts, named by VB_NFS_URL and VB_NFS_EXPORT).</summary>
public sealed class RepositoryStoreTests
{
    const int MiB = 1024 * 1024;
    static readonly CancellationToken Ct = CancellationToken.None; // every call is bounded by the store's own timeout

    [Theory]
    [InlineData("dir", 0)]
    [InlineData("dir", 1)]
    [InlineData("dir", 5 * MiB)]
    [InlineData("nfs", 0)]
    [InlineData("nfs", 1)]
    [InlineData("nfs", 5 * MiB)]
    public async Task Write_atomic_then_read_returns_the_same_bytes(string kind, int size)
    {
        await using var target = await Target.OpenAsync(kind);
        var data = RandomBytes(size);

        await target.Store.WriteAtomicAsync("chunks/ab/file.bin", data, Ct);

        Assert.Equal(data, await target.Store.ReadAllAsync("chunks/ab/file.bin", Ct));
        Assert.Equal(["file.bin"], await ListAsync(target.Store, "chunks/ab")); // no temporary left behind
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Write_atomic_replaces_an_existing_file(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        await target.Store.WriteAtomicAsync("manifest.json", RandomBytes(3 * MiB), Ct);
        var second = RandomBytes(1000);

        await target.Store.WriteAtomicAsync("manifest.json", second, Ct);

        Assert.Equal(second, await target.Store.ReadAllAsync("manifest.json", Ct));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Read_into_a_buffer_reads_the_files_first_bytes_up_to_its_length(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        var data = RandomBytes(MiB + 1);
        await target.Store.WriteAtomicAsync("chunks/ab/file.bin", data, Ct);
        var exact = new byte[MiB + 1];
        var larger = new byte[MiB + 100];
        var smaller = new byte[1000];

        Assert.Equal(MiB + 1, await target.Store.ReadIntoAsync("chunks/ab/file.bin", exact, Ct));
        Assert.Equal(data, exact);
        Assert.Equal(MiB + 1, await target.Store.ReadIntoAsync("chunks/ab/file.bin", larger, Ct));
        Assert.Equal(data, larger[..(MiB + 1)]);
        Assert.Equal(1000, await target.Store.ReadIntoAsync("chunks/ab/file.bin", smaller, Ct));
        Assert.Equal(data[..1000], smaller);
        Assert.Null(await target.Store.ReadIntoAsync("chunks/ab/missing.bin", exact, Ct));
    }

    [Theory]
    [InlineData("dir", 0)]
    [InlineData("dir", 5 * MiB + 17)]
    [InlineData("nfs", 0)]
    [InlineData("nfs", 5 * MiB + 17)]   // several READs, sent at once
    public async Task Read_into_a_buffer_reads_whole_files_of_any_size_and_null_in_a_missing_folder(string kind, int size)
    {
        await using var target = await Target.OpenAsync(kind);
        var data = RandomBytes(size);
        await target.Store.WriteAtomicAsync("chunks/cd/file.bin", data, Ct);
        var buffer = new byte[size];

        Assert.Equal(size, await target.Store.ReadIntoAsync("chunks/cd/file.bin", buffer, Ct));
        Assert.Equal(data, buffer);
        Assert.Null(await target.Store.ReadIntoAsync("chunks/ef/file.bin", buffer, Ct));
        Assert.Null(await target.Store.ReadIntoAsync("nowhere/cd/file.bin", buffer, Ct));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Read_into_a_buffer_follows_a_folder_removed_and_made_again(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        var first = RandomBytes(1000);
        var second = RandomBytes(2000);
        await target.Store.WriteAtomicAsync("chunks/cd/file.bin", first, Ct);
        // On every connection, so that each has looked the folder up.
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => target.Store.ReadIntoAsync("chunks/cd/file.bin", new byte[1000], Ct)));

        Assert.True(await target.Store.DeleteAsync("chunks/cd/file.bin", Ct));
        Assert.True(await target.Store.DeleteDirectoryAsync("chunks/cd", Ct));
        await target.Store.WriteAtomicAsync("chunks/cd/file.bin", second, Ct);

        var reads = await Task.WhenAll(Enumerable.Range(0, 16).Select(async _ =>
        {
            var buffer = new byte[2000];
            return (Length: await target.Store.ReadIntoAsync("chunks/cd/file.bin", buffer, Ct), Data: buffer);
        }));
        Assert.All(reads, read =>
        {
            Assert.Equal(2000, read.Length);
            Assert.Equal(second, read.Data);
        });
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Missing_file_reads_as_null_and_does_not_exist(string kind)
    {
        await using var target = await Target.OpenAsync(kind);

        Assert.Null(await target.Store.ReadAllAsync("nothing/here.bin", Ct));
        Assert.Null(await target.Store.StatAsync("nothing/here.bin", Ct));
        Assert.False(await target.Store.ExistsAsync("nothing/here.bin", Ct));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Exclusive_create_succeeds_once_and_keeps_the_first_content(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        var first = RandomBytes(100);

        Assert.True(await target.Store.TryCreateExclusiveAsync("locks/backup.lock", first, Ct));
        Assert.False(await target.Store.TryCreateExclusiveAsync("locks/backup.lock", RandomBytes(100), Ct));

        Assert.Equal(first, await target.Store.ReadAllAsync("locks/backup.lock", Ct));
        Assert.True(await target.Store.ExistsAsync("locks/backup.lock", Ct));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Exclusive_create_of_an_empty_file_gets_the_current_time(string kind)
    {
        await using var target = await Target.OpenAsync(kind);

        // NFSv3 EXCLUSIVE create parks its verifier in the file's times until a SETATTR replaces them.
        Assert.True(await target.Store.TryCreateExclusiveAsync("leases/empty", ReadOnlyMemory<byte>.Empty, Ct));

        var entry = await target.Store.StatAsync("leases/empty", Ct);
        Assert.NotNull(entry);
        Assert.Equal(0, entry.Size);
        Assert.InRange(entry.Modified, DateTimeOffset.UtcNow.AddMinutes(-2), DateTimeOffset.UtcNow.AddMinutes(2));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Delete_returns_true_then_false(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        await target.Store.WriteAtomicAsync("a/file", RandomBytes(10), Ct);

        Assert.True(await target.Store.DeleteAsync("a/file", Ct));
        Assert.False(await target.Store.DeleteAsync("a/file", Ct));
        Assert.False(await target.Store.DeleteAsync("missing/file", Ct));
        Assert.Null(await target.Store.ReadAllAsync("a/file", Ct));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Rename_moves_a_file_over_another_and_is_false_when_the_source_is_missing(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        var data = RandomBytes(100);
        await target.Store.WriteAtomicAsync("gc.lock", data, Ct);
        await target.Store.WriteAtomicAsync("aside", RandomBytes(7), Ct);

        Assert.True(await target.Store.RenameAsync("gc.lock", "aside", Ct));

        Assert.Equal(data, await target.Store.ReadAllAsync("aside", Ct));
        Assert.False(await target.Store.ExistsAsync("gc.lock", Ct));
        Assert.False(await target.Store.RenameAsync("gc.lock", "aside", Ct));
        Assert.Equal(data, await target.Store.ReadAllAsync("aside", Ct));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Touch_moves_the_modification_time_and_is_false_when_missing(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        await target.Store.WriteAtomicAsync("leases/agent", RandomBytes(10), Ct);
        var before = (await target.Store.StatAsync("leases/agent", Ct))!.Modified;
        await Task.Delay(100);

        Assert.True(await target.Store.TouchAsync("leases/agent", Ct));
        Assert.False(await target.Store.TouchAsync("leases/other", Ct));

        var after = (await target.Store.StatAsync("leases/agent", Ct))!.Modified;
        Assert.True(after > before, $"{after:O} should be after {before:O}");
        Assert.False(await target.Store.ExistsAsync("leases/other", Ct)); // touch never creates
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Stat_returns_size_and_modification_time(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        await target.Store.WriteAtomicAsync("x/y.bin", RandomBytes(12345), Ct);

        var entry = await target.Store.StatAsync("x/y.bin", Ct);

        Assert.NotNull(entry);
        Assert.Equal(12345, entry.Size);
        Assert.InRange(entry.Modified, DateTimeOffset.UtcNow.AddMinutes(-2), DateTimeOffset.UtcNow.AddMinutes(2));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task List_names_the_entries_of_a_folder_and_nothing_for_a_missing_one(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        await target.Store.WriteAtomicAsync("backups/one", RandomBytes(1), Ct);
        await target.Store.WriteAtomicAsync("backups/two", RandomBytes(1), Ct);
        await target.Store.WriteAtomicAsync("backups/sub/three", RandomBytes(1), Ct);

        Assert.Equal(["one", "sub", "two"], await ListAsync(target.Store, "backups"));
        Assert.Equal(["one", "sub", "two"], await ListAsync(target.Store, "backups/"));
        Assert.Equal(["three"], await ListAsync(target.Store, "backups/sub"));
        Assert.Equal(["backups"], await ListAsync(target.Store, ""));
        Assert.Empty(await ListAsync(target.Store, "missing"));
        Assert.Empty(await ListAsync(target.Store, "backups/one/not-a-folder"));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Missing_parents_are_created(string kind)
    {
        await using var target = await Target.OpenAsync(kind);

        await target.Store.WriteAtomicAsync("a/b/c/d/e.bin", RandomBytes(7), Ct);
        Assert.True(await target.Store.TryCreateExclusiveAsync("p/q/r/s.lock", RandomBytes(7), Ct));

        Assert.Equal(7, (await target.Store.ReadAllAsync("a/b/c/d/e.bin", Ct))!.Length);
        Assert.Equal(7, (await target.Store.ReadAllAsync("p/q/r/s.lock", Ct))!.Length);
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Delete_directory_removes_only_an_empty_folder(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        await target.Store.WriteAtomicAsync("full/file", RandomBytes(1), Ct);
        await target.Store.WriteAtomicAsync("empty/file", RandomBytes(1), Ct);
        await target.Store.DeleteAsync("empty/file", Ct);

        Assert.False(await target.Store.DeleteDirectoryAsync("full", Ct));
        Assert.True(await target.Store.DeleteDirectoryAsync("empty", Ct));
        Assert.False(await target.Store.DeleteDirectoryAsync("empty", Ct));
        Assert.Equal(["full"], await ListAsync(target.Store, ""));
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Concurrent_writes_of_sixteen_files_all_land(string kind)
    {
        await using var target = await Target.OpenAsync(kind);
        var files = Enumerable.Range(0, 16).Select(i => (Path: $"chunks/shared/{i:x2}", Data: RandomBytes(MiB + i))).ToArray();

        // All sixteen race to create the same missing parents.
        await Task.WhenAll(files.Select(f => Task.Run(() => target.Store.WriteAtomicAsync(f.Path, f.Data, Ct))));

        foreach (var (path, data) in files)
            Assert.Equal(data, await target.Store.ReadAllAsync(path, Ct));
        Assert.Equal(16, (await ListAsync(target.Store, "chunks/shared")).Length);
    }

    [Theory]
    [InlineData("dir")]
    [InlineData("nfs")]
    public async Task Paths_that_leave_the_root_are_refused(string kind)
    {
        await using var target = await Target.OpenAsync(kind);

        foreach (var path in new[] { "../x", "/etc/passwd", "a/../../x", "a//b", "a/./b", "", "dir/" })
            await Assert.ThrowsAsync<ArgumentException>(() => target.Store.WriteAtomicAsync(path, RandomBytes(1), Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => target.Store.DeleteDirectoryAsync("..", Ct));
    }

    [Fact]
    public async Task Nfs_writes_land_in_the_exported_folder_byte_for_byte()
    {
        await using var target = await Target.OpenAsync("nfs");
        var data = RandomBytes(5 * MiB + 17);
        var local = RandomBytes(3 * MiB);

        await target.Store.WriteAtomicAsync("chunks/00/seen-locally", data, Ct);
        Directory.CreateDirectory(Path.Join(target.LocalRoot, "from-server"));
        await File.WriteAllBytesAsync(Path.Join(target.LocalRoot, "from-server", "file"), local, Ct);

        Assert.Equal(data, await File.ReadAllBytesAsync(Path.Join(target.LocalRoot, "chunks", "00", "seen-locally"), Ct));
        Assert.Equal(local, await target.Store.ReadAllAsync("from-server/file", Ct));
    }

    [Fact]
    public async Task Nfs_errors_name_the_operation_and_the_server()
    {
        // Nothing listens on port 1: the mount fails at once instead of waiting for a timeout.
        await using var store = RepositoryStores.Open("nfs://127.0.0.1/nowhere?nfsport=1&mountport=1", connections: 1);

        var error = await Assert.ThrowsAsync<NfsException>(() => store.ReadAllAsync("file", Ct));

        Assert.Equal("mount", error.Operation);
        Assert.Contains("127.0.0.1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nfs_version_4_is_refused_because_libnfs_4_0_cannot_do_it()
    {
        var error = Assert.Throws<ArgumentException>(() => RepositoryStores.Open("nfs://127.0.0.1/backup?version=4", connections: 1));
        Assert.Contains("NFSv4", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("relative/path")]
    [InlineData("http://host/share")]
    [InlineData("nfs:/host/share")]
    [InlineData(" ")]
    public void Open_refuses_targets_that_are_neither_nfs_nor_absolute(string target)
    {
        var error = Assert.Throws<ArgumentException>(() => RepositoryStores.Open(target, connections: 4));
        Assert.Contains("target", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Open_picks_the_store_by_target()
    {
        await using var directory = RepositoryStores.Open(Path.GetTempPath(), connections: 4);
        await using var nfs = RepositoryStores.Open("nfs://127.0.0.1/export/dir?version=3", connections: 2);

        Assert.IsType<DirectoryStore>(directory);
        Assert.IsType<NfsStore>(nfs);
    }

    static async Task<string[]> ListAsync(IRepositoryStore store, string directory) =>
        (await store.ListAsync(directory, Ct).ToArrayAsync(Ct)).Order(StringComparer.Ordinal).ToArray();

    /// <summary>A store rooted in a fresh random folder, and the same folder as a local path.</summary>
    sealed class Target(IRepositoryStore store, string localRoot) : IAsyncDisposable
    {
        public IRepositoryStore Store { get; } = store;
        public string LocalRoot { get; } = localRoot;

        public static Task<Target> OpenAsync(string kind)
        {
            var folder = $"store-test-{Guid.NewGuid():N}";
            if (kind == "dir")
            {
                var root = Path.Join(Path.GetTempPath(), "vb-repository-tests", folder);
                return Task.FromResult(new Target(RepositoryStores.Open(root, connections: 4), root));
            }
            var url = Environment.GetEnvironmentVariable("VB_NFS_URL");
            var export = Environment.GetEnvironmentVariable("VB_NFS_EXPORT");
            if (string.IsNullOrEmpty(url) || string.IsNullOrEmpty(export))
                Assert.Fail("VB_NFS_URL and VB_NFS_EXPORT are not set: run the tests through deploy/test.sh, which starts the NFS server and sets them.");
            // The folder does not exist yet: the store mounts its parent and creates it on the first write.
            var query = url.IndexOf('?', StringComparison.Ordinal);
            var target = query < 0 ? $"{url.TrimEnd('/')}/{folder}" : $"{url[..query].TrimEnd('/')}/{folder}{url[query..]}";
            return Task.FromResult(new Target(RepositoryStores.Open(target, connections: 4), Path.Join(export, folder)));
        }

        public async ValueTask DisposeAsync()
        {
            await Store.DisposeAsync();
            if (Directory.Exists(LocalRoot)) Directory.Delete(LocalRoot, recursive: true);
        }
    }
}
