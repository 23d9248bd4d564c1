using System.Text;
using Xunit.Abstractions;
using VolumeBackup.BackupAgent.Repository;
using static VolumeBackup.BackupAgent.Tests.Repository.RepositoryFixture;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.BackupAgent.Tests.Repository;

public sealed class BackupRepositoryTests(ITestOutputHelper output) : IDisposable
{
    readonly RepositoryFixture fx = new();
    readonly CancellationTokenSource timeout = new(TimeSpan.FromMinutes(2));
    CancellationToken Ct => timeout.Token;

    public void Dispose()
    {
        timeout.Dispose();
        fx.Dispose();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(ChunkSize - 1)]
    [InlineData(ChunkSize)]
    [InlineData(5 * ChunkSize + 123)]
    public async Task Random_data_round_trips_whatever_its_size(int size)
    {
        var data = RandomBytes(size, seed: size);
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), size);

        Assert.Equal(size, summary.SizeBytes);
        Assert.Equal((size + ChunkSize - 1) / ChunkSize, summary.ObjectCount);
        Assert.Equal(summary.ObjectCount, summary.ChunksWritten);
        Assert.Equal(data, await RestoreAsync(fx.Repository(), summary, size));
    }

    [Fact]
    public async Task Empty_volume_round_trips()
    {
        var summary = await BackupAsync(fx.Repository(), fx.Volume([]), 0);

        Assert.Equal(0, summary.ObjectCount);
        Assert.Empty(fx.ChunkFiles());
        Assert.Empty(await RestoreAsync(fx.Repository(), summary, 0));
    }

    [Fact]
    public async Task Compressible_text_is_stored_compressed()
    {
        var text = string.Concat(Enumerable.Range(0, 20_000).Select(i => $"line {i}: the quick brown fox jumps over the lazy dog\n"));
        var data = Encoding.UTF8.GetBytes(text);

        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);

        Assert.True(summary.StoredBytes < data.Length / 4, $"{summary.StoredBytes} stored bytes for {data.Length}");
        Assert.Equal(summary.StoredBytes, summary.BytesWritten);
        Assert.Equal(data, await RestoreAsync(fx.Repository(), summary, data.Length));
    }

    [Fact]
    public async Task Sparse_volume_restores_identical_and_no_less_sparse()
    {
        const long size = 40L * ChunkSize + 5000;
        var source = fx.SparseVolume(size,
            (0, RandomBytes(4096, 1)),                             // chunk 0: one block of data, the rest a hole
            (3 * ChunkSize + 100, RandomBytes(10_000, 2)),         // chunk 3, unaligned
            (10 * ChunkSize - 7, RandomBytes(ChunkSize + 70, 3)),  // chunks 9 to 11
            (20 * ChunkSize, new byte[2 * ChunkSize]),        // chunks 20 and 21: allocated zeros
            (size - 10, RandomBytes(10, 4)));                      // the last, short chunk

        var summary = await BackupAsync(fx.Repository(), source, size);
        var target = fx.EmptyTarget(size);
        await fx.Repository().RestoreAsync(Container, summary.Id, target, null, Ct);

        Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(target));
        Assert.True(AllocatedBytes(target) <= AllocatedBytes(source), $"restored {AllocatedBytes(target)} bytes allocated, source {AllocatedBytes(source)}");
        var manifest = await fx.Repository().ReadManifestAsync(Container, summary.Id, Ct);
        Assert.Equal([0, 3, 9, 10, 11, 40], manifest!.Chunks.Select((chunk, i) => (chunk, i)).Where(c => c.chunk is not null).Select(c => c.i));
        Assert.Equal(6, fx.ChunkFiles().Count);
    }

    [Fact]
    public async Task All_zero_chunks_are_recorded_as_zero_and_not_stored()
    {
        var data = new byte[8 * ChunkSize];   // written out: allocated zeros, not holes
        data[5 * ChunkSize + 17] = 1;

        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);

        var manifest = await fx.Repository().ReadManifestAsync(Container, summary.Id, Ct);
        Assert.Equal([5], manifest!.Chunks.Select((chunk, i) => (chunk, i)).Where(c => c.chunk is not null).Select(c => c.i));
        Assert.Single(fx.ChunkFiles());
        Assert.Equal(data, await RestoreAsync(fx.Repository(), summary, data.Length));
    }

    [Fact]
    public async Task Backups_of_different_volumes_share_identical_chunks()
    {
        var data = RandomBytes(8 * ChunkSize, 5);
        var first = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var other = data.ToArray();
        RandomBytes(ChunkSize, 6).CopyTo(other, 0);

        var second = await BackupAsync(fx.Repository(), fx.Volume(other), other.Length, volumeId: Guid.NewGuid());

        Assert.Equal(1, second.ChunksWritten);
        Assert.Equal(first.StoredBytes, second.StoredBytes);
        Assert.Equal(9, fx.ChunkFiles().Count);
        Assert.Equal(other, await RestoreAsync(fx.Repository(), second, other.Length));
    }

    [Fact]
    public async Task Incremental_after_a_one_percent_change_writes_one_percent_and_lists_every_chunk()
    {
        var data = RandomBytes(100 * ChunkSize, 7);
        var volume = fx.Volume(data);
        var full = await BackupAsync(fx.Repository(), volume, data.Length);
        data[37 * ChunkSize + 1234] ^= 0xff;
        File.WriteAllBytes(volume, data);

        var incremental = await BackupAsync(fx.Repository(), volume, data.Length, parent: full.Id);

        Assert.Equal(100, full.ChunksWritten);
        Assert.Equal(1, incremental.ChunksWritten);
        var manifest = await fx.Repository().ReadManifestAsync(Container, incremental.Id, Ct);
        Assert.Equal(1, manifest!.Totals.ChangedChunks);
        Assert.Equal(full.Id, manifest.ParentId);
        Assert.All(manifest.Chunks, chunk => Assert.NotNull(chunk));
        Assert.Equal(ChunkStore.MaxStoredSize(ChunkSize), incremental.BytesWritten);   // random data is stored plain, after its codec byte, encrypted
        Assert.Equal(full.StoredBytes, incremental.StoredBytes);
        Assert.Equal(data, await RestoreAsync(fx.Repository(), incremental, data.Length));
    }

    [Fact]
    public async Task Restoring_the_third_incremental_reads_one_manifest()
    {
        var data = RandomBytes(10 * ChunkSize, 8);
        var volume = fx.Volume(data);
        Guid? parent = null;
        Summary last = default!;
        for (var i = 0; i < 4; i++)
        {
            data[i * ChunkSize] ^= 0xff;
            File.WriteAllBytes(volume, data);
            last = await BackupAsync(fx.Repository(), volume, data.Length, parent: parent);
            parent = last.Id;
        }
        var counting = new InterceptingStore(fx.Store);

        var restored = await RestoreAsync(fx.Repository(counting), last, data.Length);

        Assert.Equal(data, restored);
        Assert.Single(counting.Reads, path => path.EndsWith(".manifest", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_backup_done_again_returns_its_manifest_without_writing()
    {
        var data = RandomBytes(3 * ChunkSize, 9);
        var volume = fx.Volume(data);
        var first = await BackupAsync(fx.Repository(), volume, data.Length);
        var before = File.ReadAllBytes(fx.ManifestFile(first.Id));
        File.WriteAllBytes(volume, RandomBytes(3 * ChunkSize, 10));   // a redelivery must not back up new data under the old id

        var again = await fx.Repository().BackupAsync(Container, first.Id, first.VolumeId, null, volume, data.Length, null, Ct);

        Assert.Equal(first.Backup, again);
        Assert.Equal(before, File.ReadAllBytes(fx.ManifestFile(first.Id)));
    }

    [Theory]
    [InlineData(0)]        // the envelope's version byte
    [InlineData(5)]        // the nonce
    [InlineData(1000)]     // the data
    public async Task Corrupt_chunk_fails_the_restore_naming_backup_and_chunk(int position)
    {
        var data = RandomBytes(4 * ChunkSize, 11);
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var manifest = await fx.Repository().ReadManifestAsync(Container, summary.Id, Ct);
        var hash = manifest!.Chunks[2]!.Name;
        var stored = File.ReadAllBytes(fx.ChunkFile(hash));
        stored[position] ^= 0x01;
        File.WriteAllBytes(fx.ChunkFile(hash), stored);

        var error = await Assert.ThrowsAsync<BackupDataException>(() =>
            fx.Repository().RestoreAsync(Container, summary.Id, fx.EmptyTarget(data.Length), null, Ct));

        Assert.Equal((summary.Id, 2L, hash), (error.BackupId, error.ChunkIndex, error.ChunkName));
        Assert.Contains($"Backup {summary.Id}", error.Message, StringComparison.Ordinal);
        Assert.Contains($"chunk 2 ({hash}) is corrupt", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Verify_reads_every_chunk_and_names_the_first_that_fails_and_how_many_did()
    {
        var data = RandomBytes(6 * ChunkSize, 14);
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var chunks = (await fx.Repository().ReadManifestAsync(Container, summary.Id, Ct))!.Chunks;
        Assert.Equal(6, (await fx.Repository().VerifyAsync(Container, summary.Id, Ct)).ChunksChecked);
        var stored = File.ReadAllBytes(fx.ChunkFile(chunks[4]!.Name));
        stored[1000] ^= 0x01;
        File.WriteAllBytes(fx.ChunkFile(chunks[4]!.Name), stored);
        File.Delete(fx.ChunkFile(chunks[1]!.Name));

        var error = await Assert.ThrowsAsync<BackupDataException>(() => fx.Repository().VerifyAsync(Container, summary.Id, Ct));

        Assert.Equal((summary.Id, 1L, chunks[1]!.Name, 2), (error.BackupId, error.ChunkIndex, error.ChunkName, error.ChunksFailed));
        Assert.Contains($"chunk 1 ({chunks[1]!.Name}) is missing", error.Message, StringComparison.Ordinal);
        Assert.EndsWith("(2 of 6 chunks failed)", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<BackupDataException>(() => fx.Repository().VerifyAsync(Container, Guid.NewGuid(), Ct));   // no manifest
    }

    [Fact]
    public async Task Missing_chunk_fails_the_restore_naming_backup_and_chunk()
    {
        var data = RandomBytes(4 * ChunkSize, 12);
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var hash = (await fx.Repository().ReadManifestAsync(Container, summary.Id, Ct))!.Chunks[3]!.Name;
        File.Delete(fx.ChunkFile(hash));

        var error = await Assert.ThrowsAsync<BackupDataException>(() =>
            fx.Repository().RestoreAsync(Container, summary.Id, fx.EmptyTarget(data.Length), null, Ct));

        Assert.Equal((summary.Id, 3L, hash), (error.BackupId, error.ChunkIndex, error.ChunkName));
        Assert.Contains($"chunk 3 ({hash}) is missing", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("missing")]   // fails in the fetch stage
    [InlineData("corrupt")]   // fails in the decode stage, after the read-ahead went on
    public async Task Chunk_failing_mid_way_stops_the_read_ahead_and_nothing_unverified_reaches_the_target(string damage)
    {
        const int chunks = 64, failing = 10, connections = 8, workers = 2;
        var data = RandomBytes(chunks * ChunkSize, 21);
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var hash = (await fx.Repository().ReadManifestAsync(Container, summary.Id, Ct))!.Chunks[failing]!.Name;
        if (damage == "missing")
            File.Delete(fx.ChunkFile(hash));
        else
            File.WriteAllBytes(fx.ChunkFile(hash), [.. File.ReadAllBytes(fx.ChunkFile(hash)).Select(b => (byte)(b ^ 0x5a))]);
        // Every other chunk is slow to arrive, so the failing one is found while the read-ahead has reads under way.
        var store = new InterceptingStore(fx.Store) { BeforeRead = path => path.EndsWith(hash, StringComparison.Ordinal) ? Task.CompletedTask : Task.Delay(20) };
        var target = fx.EmptyTarget(data.Length);

        var error = await Assert.ThrowsAsync<BackupDataException>(() =>
            fx.Repository(store, workers: workers, connections: connections).RestoreAsync(Container, summary.Id, target, null, Ct));

        Assert.Equal((summary.Id, (long)failing, hash), (error.BackupId, error.ChunkIndex, error.ChunkName));
        Assert.Equal(0, store.ReadsInFlight);   // no read still filling a pooled buffer once the restore has failed
        var started = store.Reads.Count(path => path.Contains("/chunks/", StringComparison.Ordinal));
        // Fetched chunks wait in Connections + Workers buffers: the read-ahead can run that far past the chunks written.
        Assert.InRange(started, failing + 1, failing + 1 + 2 * (connections + workers));
        var restored = File.ReadAllBytes(target);
        Assert.All(restored.AsSpan(failing * ChunkSize, ChunkSize).ToArray(), b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData(64 * 1024 + 1000)]   // chunks that start off the 4 KiB grid: those writes go through the page cache
    [InlineData(128 * 1024)]
    public async Task Restore_with_any_chunk_size_gives_identical_bytes_holes_included(int chunkSize)
    {
        const long size = 20L * 64 * 1024 + 333;
        var source = fx.SparseVolume(size, (5, RandomBytes(70_000, 24)), (300_000, RandomBytes(200_000, 25)), (size - 5000, RandomBytes(5000, 26)));
        var id = Guid.NewGuid();
        await fx.Repository(chunkSize: chunkSize).BackupAsync(Container, id, Guid.Empty, null, source, size, null, Ct);
        var target = fx.EmptyTarget(size);

        await fx.Repository(chunkSize: chunkSize).RestoreAsync(Container, id, target, null, Ct);

        Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(target));
        // Any hole written would cost 20 KiB or more here, more than the file system's own slack.
        Assert.True(AllocatedBytes(target) <= AllocatedBytes(source) + FileSystemSlack, $"restored {AllocatedBytes(target)} bytes allocated, source {AllocatedBytes(source)}");
    }

    [Fact]
    public async Task Manifest_with_one_bit_flipped_is_refused()
    {
        var data = RandomBytes(4 * ChunkSize, 13);
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var file = File.ReadAllBytes(fx.ManifestFile(summary.Id));
        file[file.Length / 2] ^= 0x01;
        File.WriteAllBytes(fx.ManifestFile(summary.Id), file);

        var error = await Assert.ThrowsAsync<BackupDataException>(() =>
            fx.Repository().RestoreAsync(Container, summary.Id, fx.EmptyTarget(data.Length), null, Ct));

        Assert.Contains($"The manifest of backup {summary.Id} is corrupt", error.Message, StringComparison.Ordinal);
        Assert.Contains("fails authentication", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Manifest_digest_is_the_sha256_of_the_file_as_stored()
    {
        var summary = await BackupAsync(fx.Repository(), fx.Volume(RandomBytes(ChunkSize, 14)), ChunkSize);

        var file = File.ReadAllBytes(fx.ManifestFile(summary.Id));

        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(file)), summary.Backup.ManifestSha256);
    }

    [Fact]
    public async Task Restore_over_a_volume_with_other_data_gives_identical_bytes_holes_included()
    {
        const long size = 12L * ChunkSize + 300;
        var source = fx.SparseVolume(size, (ChunkSize + 5, RandomBytes(3000, 15)), (7 * ChunkSize, RandomBytes(2 * ChunkSize, 16)));
        var summary = await BackupAsync(fx.Repository(), source, size);
        var target = fx.Volume(RandomBytes((int)size + 4096, 17));   // old data everywhere, and larger than the backup

        await fx.Repository().RestoreAsync(Container, summary.Id, target, null, Ct);

        var restored = File.ReadAllBytes(target);
        Assert.Equal(File.ReadAllBytes(source), restored[..(int)size]);
    }

    [Fact]
    public async Task Restore_into_a_smaller_target_is_refused()
    {
        var summary = await BackupAsync(fx.Repository(), fx.Volume(RandomBytes(2 * ChunkSize, 18)), 2 * ChunkSize);

        await Assert.ThrowsAsync<InvalidOperationException>(() =>
            fx.Repository().RestoreAsync(Container, summary.Id, fx.EmptyTarget(ChunkSize), null, Ct));
    }

    [Fact]
    public async Task Backup_of_a_device_shorter_than_the_volume_is_refused()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => BackupAsync(fx.Repository(), fx.SparseVolume(ChunkSize), 2 * ChunkSize));

        Assert.Contains("less than the 131072 to back up", error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(fx.ContainerPath));   // nothing written
    }

    [Fact]
    public async Task Progress_is_reported_every_64_MiB_not_per_chunk()
    {
        const long size = 200L * 1024 * 1024;   // all holes: read as nothing
        var reports = new List<long>();

        await fx.Repository().BackupAsync(Container, Guid.NewGuid(), Guid.NewGuid(), null, fx.SparseVolume(size), size,
            done => { lock (reports) reports.Add(done); return Task.CompletedTask; }, Ct);

        Assert.InRange(reports.Count, 2, 3);
        Assert.Equal(reports.Order(), reports);
    }

    [Fact]
    public async Task Delete_frees_exactly_the_chunks_no_remaining_backup_references()
    {
        var a = RandomBytes(10 * ChunkSize, 19);
        var b = a[..(5 * ChunkSize)].Concat(RandomBytes(5 * ChunkSize, 20)).ToArray();
        var first = await BackupAsync(fx.Repository(), fx.Volume(a), a.Length);
        var second = await BackupAsync(fx.Repository(), fx.Volume(b), b.Length, volumeId: Guid.NewGuid());
        var secondChunks = (await fx.Repository().ReadManifestAsync(Container, second.Id, Ct))!.Chunks.Select(c => c!.Name).Order();

        var deleted = await fx.Repository().DeleteAsync(Container, first.Id, Ct);

        Assert.Equal(new DeleteSummary(ManifestFound: true, ChunksDeleted: 5, BytesFreed: 5L * ChunkStore.MaxStoredSize(ChunkSize), ChunksDeferred: 0), deleted);
        Assert.Equal(secondChunks, fx.ChunkFiles());
        Assert.Null(await fx.Repository().ReadManifestAsync(Container, first.Id, Ct));
        Assert.Equal(b, await RestoreAsync(fx.Repository(), second, b.Length));

        Assert.False((await fx.Repository().DeleteAsync(Container, first.Id, Ct)).ManifestFound);
        await fx.Repository().DeleteAsync(Container, second.Id, Ct);
        Assert.Empty(fx.ChunkFiles());
        Assert.Empty(Directory.EnumerateFiles(Path.Join(fx.ContainerPath, "deleting")));
    }

    [Fact]
    public async Task Delete_spares_chunks_a_running_backup_relies_on()
    {
        var data = RandomBytes(8 * ChunkSize, 21);
        var old = await BackupAsync(fx.Repository(), fx.Volume(data.Select(x => (byte)~x).ToArray()), data.Length);   // nothing shared
        var first = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        await Task.Delay(50);   // the share's mtimes are coarse; the running backup starts clearly later
        (DeleteSummary First, DeleteSummary Old)? during = null;
        var store = new InterceptingStore(fx.Store);
        store.BeforeCreateExclusive = async path =>
        {
            if (during is null && path.EndsWith("gc.lock", StringComparison.Ordinal) && store.Reads.Count(p => p.EndsWith("gc.generation", StringComparison.Ordinal)) == 1)
            {
                // The running backup has touched every chunk and is about to write its manifest.
                during = (await fx.Repository().DeleteAsync(Container, first.Id, Ct), await fx.Repository().DeleteAsync(Container, old.Id, Ct));
            }
        };

        var second = await BackupAsync(fx.Repository(store), fx.Volume(data), data.Length);

        Assert.Equal((0, 8), (during!.Value.First.ChunksDeleted, during.Value.First.ChunksDeferred));
        Assert.Equal(8, during.Value.Old.ChunksDeleted);   // the old backup's chunks: none is relied on
        Assert.Equal(0, second.ChunksWritten);
        Assert.Equal(data, await RestoreAsync(fx.Repository(), second, data.Length));
        await fx.Repository().DeleteAsync(Container, second.Id, Ct);
        Assert.Empty(fx.ChunkFiles());   // the spared chunks are freed once nothing needs them
    }

    [Fact]
    public async Task A_backup_cancelled_the_moment_it_took_the_lock_gives_the_lock_back()
    {
        var data = RandomBytes(4 * ChunkSize, 23);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var store = new InterceptingStore(fx.Store);
        // As when a job's broker connection drops: its token is cancelled between taking gc.lock and reading it back.
        store.AfterCreateExclusive = (path, created) => { if (created && path.EndsWith("gc.lock", StringComparison.Ordinal)) cancel.Cancel(); };

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            fx.Repository(store).BackupAsync(Container, Guid.NewGuid(), Guid.Empty, null, fx.Volume(data), data.Length, null, cancel.Token));

        Assert.False(File.Exists(Path.Join(fx.ContainerPath, "gc.lock")), "the lock is left for StaleAfter, blocking every backup of the container");
        var next = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);   // the redelivered job: no wait for a stale lock
        Assert.Equal(data, await RestoreAsync(fx.Repository(), next, data.Length));
    }

    [Fact]
    public async Task Backup_whose_relied_on_chunks_were_collected_writes_them_again()
    {
        var data = RandomBytes(8 * ChunkSize, 22);
        var first = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var deletes = 0;
        var store = new InterceptingStore(fx.Store)
        {
            MapPath = path => path.Replace("/writers/", "/hidden-writers/", StringComparison.Ordinal),   // no marker for the collection to see
        };
        store.BeforeCreateExclusive = async path =>
        {
            if (deletes == 0 && path.EndsWith("gc.lock", StringComparison.Ordinal) && store.Reads.Count(p => p.EndsWith("gc.generation", StringComparison.Ordinal)) == 1)
            {
                deletes++;
                Assert.Equal(8, (await fx.Repository().DeleteAsync(Container, first.Id, Ct)).ChunksDeleted);
            }
        };

        var second = await BackupAsync(fx.Repository(store), fx.Volume(data), data.Length);

        Assert.Equal(1, deletes);
        Assert.Equal(8, second.ChunksWritten);
        Assert.Equal(8, fx.ChunkFiles().Count);
        Assert.Equal(data, await RestoreAsync(fx.Repository(), second, data.Length));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]                                              // each delete also sweeps every chunk of the container
    public async Task Backups_racing_deletes_of_backups_sharing_their_chunks_stay_restorable(bool sweepEveryDelete)
    {
        var sweepEvery = sweepEveryDelete ? TimeSpan.Zero : TimeSpan.FromDays(1);
        var jittery = new InterceptingStore(fx.Store) { MaxJitterMs = 2 };
        var survivors = new List<(Summary Backup, byte[] Data)>();
        for (var iteration = 0; iteration < 25; iteration++)
        {
            var data = RandomBytes(48 * ChunkSize, 100 + iteration);
            var older = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
            data[iteration % 48 * ChunkSize] ^= 0xff;
            var volume = fx.Volume(data);
            await Task.Delay(10, Ct);   // the share's mtimes are coarse: the older chunks predate the running backup

            var running = Task.Run(() => BackupAsync(fx.Repository(jittery, workers: 2), volume, data.Length), Ct);
            var delete = Task.Run(async () =>
            {
                await Task.Delay(iteration % 8 * 5, Ct);   // lands before, during and after the backup's chunks
                return await fx.Repository(jittery, sweepEvery: sweepEvery).DeleteAsync(Container, older.Id, Ct);
            }, Ct);
            await Task.WhenAll(running, delete);
            var backup = await running;
            var deleted = await delete;
            output.WriteLine($"iteration {iteration}: delete freed {deleted.ChunksDeleted} chunks and spared {deleted.ChunksDeferred}; backup wrote {backup.ChunksWritten}");

            var manifest = await fx.Repository().ReadManifestAsync(Container, backup.Id, Ct);
            Assert.All(manifest!.Chunks, chunk => Assert.True(File.Exists(fx.ChunkFile(chunk!.Name)), $"iteration {iteration}: chunk {chunk!.Name} missing"));
            Assert.Equal(data, await RestoreAsync(fx.Repository(), backup, data.Length));
            survivors.Add((backup, data));
        }
        foreach (var (backup, data) in survivors)
            Assert.Equal(data, await RestoreAsync(fx.Repository(), backup, data.Length));

        foreach (var (backup, _) in survivors)
            await fx.Repository().DeleteAsync(Container, backup.Id, Ct);
        Assert.Empty(fx.ChunkFiles());
        Assert.Empty(Directory.EnumerateFiles(Path.Join(fx.ContainerPath, "deleting")));
        Assert.Empty(Directory.EnumerateFiles(Path.Join(fx.ContainerPath, "writers")));
    }

    sealed record Summary(Guid Id, Guid VolumeId, BackupSummary Backup)
    {
        public long SizeBytes => Backup.SizeBytes;
        public int ObjectCount => Backup.ObjectCount;
        public int ChunksWritten => Backup.ChunksWritten;
        public long BytesWritten => Backup.BytesWritten;
        public long StoredBytes => Backup.StoredBytes;
    }

    [Fact]
    public async Task Chunks_a_failed_backup_wrote_are_freed_by_the_next_collection_and_shared_ones_kept()
    {
        var kept = RandomBytes(3 * ChunkSize, seed: 63);
        var first = await BackupAsync(fx.Repository(), fx.Volume(kept), kept.Length);
        var data = kept.Concat(RandomBytes(8 * ChunkSize, seed: 64)).ToArray();
        var failing = new InterceptingStore(fx.Store)
        {
            BeforeWriteAtomic = path =>
            {
                if (path.EndsWith(".manifest", StringComparison.Ordinal)) throw new IOException("the share filled up");
            },
        };

        await Assert.ThrowsAsync<IOException>(() => BackupAsync(fx.Repository(failing), fx.Volume(data), data.Length));
        var left = fx.ChunkFiles().Count;
        Assert.Equal(3 + 8, left);                                // every chunk written, no manifest to reference them

        var collected = await fx.Repository().DeleteAsync(Container, Guid.NewGuid(), Ct);   // any delete collects

        Assert.Equal(3, fx.ChunkFiles().Count);
        Assert.Equal(left - 3, collected.ChunksDeleted);
        Assert.Empty(Directory.EnumerateFiles(Path.Join(fx.ContainerPath, "deleting")));
        Assert.Equal(kept, await RestoreAsync(fx.Repository(), first, kept.Length));
    }

    [Fact]
    public async Task A_sweep_frees_chunks_and_temporaries_nothing_else_knows_of_and_keeps_the_rest()
    {
        var data = RandomBytes(3 * ChunkSize, seed: 65);
        var kept = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);
        var hour = DateTime.UtcNow.AddHours(-1);
        var orphan = PlantChunk(RandomBytes(ChunkSize, seed: 66), hour);           // an agent killed outright wrote it, no tombstone
        var staleTemp = PlantFile(orphan + ".tmp-0123456789abcdef", hour);   // a write cut off long ago
        var freshTemp = PlantFile(orphan + ".tmp-fedcba9876543210", DateTime.UtcNow);   // a write going on now

        await fx.Repository().DeleteAsync(Container, Guid.NewGuid(), Ct);    // no gc.swept yet: this delete sweeps

        Assert.False(File.Exists(orphan));
        Assert.False(File.Exists(staleTemp));
        Assert.True(File.Exists(freshTemp));
        Assert.Equal(3, fx.ChunkFiles().Count(f => !f.Contains(".tmp-", StringComparison.Ordinal)));
        Assert.Equal(data, await RestoreAsync(fx.Repository(), kept, data.Length));

        var later = PlantChunk(RandomBytes(ChunkSize, seed: 67), hour);
        await fx.Repository().DeleteAsync(Container, Guid.NewGuid(), Ct);    // swept a moment ago: not again today
        Assert.True(File.Exists(later));
        await fx.Repository(sweepEvery: TimeSpan.Zero).DeleteAsync(Container, Guid.NewGuid(), Ct);
        Assert.False(File.Exists(later));
    }

    string PlantChunk(byte[] plain, DateTime modified)
    {
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(plain));
        var path = fx.ChunkFile(hash);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, [0, .. plain]);
        File.SetLastWriteTimeUtc(path, modified);
        return path;
    }

    static string PlantFile(string path, DateTime modified)
    {
        File.WriteAllBytes(path, [1, 2, 3]);
        File.SetLastWriteTimeUtc(path, modified);
        return path;
    }

    [Fact]
    public async Task A_lock_left_by_a_dead_process_of_this_host_is_broken_at_once()
    {
        using var gone = System.Diagnostics.Process.Start("true")!;
        await gone.WaitForExitAsync(Ct);
        PlantLock($"{Environment.MachineName} boot {BootId()} pid {gone.Id} start {DateTime.UtcNow.AddMinutes(-1).Ticks}");
        var data = RandomBytes(3 * ChunkSize, seed: 61);

        // Five minutes to go stale: only knowing the holder is dead lets this finish within the test's timeout.
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);

        Assert.Equal(data, await RestoreAsync(fx.Repository(), summary, data.Length));
        Assert.False(File.Exists(Path.Join(fx.ContainerPath, "gc.lock")));
    }

    [Fact]
    public async Task An_empty_lock_left_by_a_holder_killed_between_creating_and_writing_it_is_broken_after_seconds()
    {
        PlantLock("");
        var data = RandomBytes(2 * ChunkSize, seed: 63);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        // Five minutes to go stale: the empty lock's short grace lets this finish well within the test's timeout.
        var summary = await BackupAsync(fx.Repository(), fx.Volume(data), data.Length);

        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(9), TimeSpan.FromSeconds(40));   // waited for the grace, not less
        Assert.Equal(data, await RestoreAsync(fx.Repository(), summary, data.Length));
        Assert.False(File.Exists(Path.Join(fx.ContainerPath, "gc.lock")));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_lock_held_by_a_live_process_or_another_host_is_waited_for(bool thisHost)
    {
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        PlantLock(thisHost
            ? $"{Environment.MachineName} boot {BootId()} pid {self.Id} start {self.StartTime.ToUniversalTime().Ticks}"
            : $"other-host boot {Guid.NewGuid()} pid 1 start 0");
        var data = RandomBytes(ChunkSize, seed: 62);
        var id = Guid.NewGuid();
        using var soon = new CancellationTokenSource(TimeSpan.FromSeconds(2));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            fx.Repository().BackupAsync(Container, id, Guid.Empty, null, fx.Volume(data), data.Length, null, soon.Token));

        Assert.True(File.Exists(Path.Join(fx.ContainerPath, "gc.lock")));
        Assert.False(File.Exists(fx.ManifestFile(id)));
    }

    void PlantLock(string owner)
    {
        Directory.CreateDirectory(fx.ContainerPath);
        File.WriteAllText(Path.Join(fx.ContainerPath, "gc.lock"), owner + "\n");
    }

    static string BootId() => File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();

    async Task<Summary> BackupAsync(BackupRepository repository, string volume, long size, Guid? parent = null, Guid? volumeId = null)
    {
        var id = Guid.NewGuid();
        var volumeGuid = volumeId ?? Guid.Empty;
        return new Summary(id, volumeGuid, await repository.BackupAsync(Container, id, volumeGuid, parent, volume, size, null, Ct));
    }

    async Task<byte[]> RestoreAsync(BackupRepository repository, Summary backup, long size)
    {
        var target = fx.EmptyTarget(size);
        var restored = await repository.RestoreAsync(Container, backup.Id, target, null, Ct);
        Assert.Equal(size, restored.SizeBytes);
        return File.ReadAllBytes(target);
    }
}
