using VolumeBackup.Contracts;
using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Devices;
using ZstdNet;

namespace VolumeBackup.BackupAgent.Repository;

public sealed record BackupSummary(long SizeBytes, int ObjectCount, int ChunksWritten, long BytesWritten, long StoredBytes, string ManifestSha256,
    bool Cbt = false, long BytesRead = 0);

// The device to back up. With Changed (changed-block tracking from the VolumeAgent), every byte outside those ranges
// equals the device of generation BaseGeneration; they are used only when the parent's manifest recorded that generation.
// Reader, when given, is how the device is read (the caller disposes it); otherwise the file at Path, opened here.
public sealed record BackupSource(string Path, long SizeBytes, string? Generation = null, IReadOnlyList<(long Offset, long Length)>? Changed = null,
    string? BaseGeneration = null, DeviceReader? Reader = null);

public sealed record RestoreSummary(long SizeBytes, int ChunksRead, long BytesRead);

public sealed record VerifySummary(int ChunksChecked, long BytesChecked);

public sealed record DeleteSummary(bool ManifestFound, int ChunksDeleted, long BytesFreed, int ChunksDeferred);

// A container on the share:
//   keys.json                 its data key, wrapped under the master key (ContainerKey); every other file is encrypted with it
//   chunks/<2 hex>/<name>     the data (ChunkStore), each chunk written once and shared by every backup holding it
//   backups/<id>.manifest     one per backup, complete, written last and atomically (Manifest)
//   writers/<id>              a running backup (WriterMarker)
//   deleting/<id>.json        chunks of a deleted backup still to collect (Tombstone)
//   deleting/<id>.attempt-*.json  chunks a failed or cancelled backup wrote, to collect the same way
//   gc.lock, gc.generation    see below
//   gc.swept                  when a delete last looked at every chunk (SweepAsync)
//
// Deleting while backups run. Invariant: every manifest names only chunks that exist.
// - Chunks are deleted only by a collection, holding gc.lock, and only when no manifest references them. Before its
//   first deletion a collection sets gc.generation to a new random value.
// - A backup reads gc.generation holding gc.lock when it starts, and confirms every chunk it references after that
//   (it wrote it, or touched it and found it there). It writes its manifest holding gc.lock; if the generation moved,
//   a collection may have deleted a confirmed chunk, so first it checks them all and writes missing ones again from
//   its source. No collection can run between that check and the manifest.
// That alone is safe. To keep such re-writes rare, a collection also spares the chunks that running backups may
// rely on: those with an mtime at or after the start of the oldest live writer (writers/<id>, kept fresh by a
// heartbeat). A backup that starts later waits on gc.lock before relying on any chunk, so it only sees the
// collection's result. A spared chunk stays in its tombstone, and a later collection frees it if still unused.
//
// Encryption: with a master key (always, in the agent) every container gets a data key on its first backup, and every
// chunk and manifest is encrypted (format 2). Without one (the bench's baseline only) the plain format 1 is written. A
// repository with a master key restores no plain backup: anyone who can write the share could slip one in.
public sealed class BackupRepository(IRepositoryStore store, IOptions<RepositoryOptions> options, MasterKey? masterKey, ILogger<BackupRepository> logger)
{
    const long ProgressStep = 64L * 1024 * 1024;

    readonly RepositoryOptions settings = options.Value;
    readonly ConcurrentDictionary<string, ContainerKey> keys = new();

    public Task<BackupSummary> BackupAsync(string container, Guid backupId, Guid volumeId, Guid? parentId, string devicePath,
        long sizeBytes, Func<long, Task>? progress, CancellationToken ct) =>
        BackupAsync(container, backupId, volumeId, parentId, new BackupSource(devicePath, sizeBytes), progress, ct);

    // Idempotent: a backup whose manifest exists is not written again.
    public async Task<BackupSummary> BackupAsync(string container, Guid backupId, Guid volumeId, Guid? parentId, BackupSource device,
        Func<long, Task>? progress, CancellationToken ct)
    {
        var (devicePath, sizeBytes) = (device.Path, device.SizeBytes);
        container = ContainerName.Validate(container);
        ArgumentOutOfRangeException.ThrowIfNegative(sizeBytes);
        if (await FindBackupAsync(container, backupId, ct) is { } stored)
        {
            logger.BackupAlreadyStored(backupId, container);
            return stored;
        }
        var parent = parentId is { } id
            ? await ReadManifestAsync(container, id, ct)
              ?? throw new InvalidOperationException($"The parent {id} of backup {backupId} has no manifest in container '{container}' on {store.Describe}.")
            : null;
        var chunkSize = parent?.ChunkSize ?? settings.ChunkSize;   // the parent's, so that unchanged chunks dedup
        logger.BackupStarting(backupId, volumeId, container, sizeBytes, chunkSize, parentId);
        var clock = Stopwatch.StartNew();
        var createdAt = DateTimeOffset.UtcNow;

        using var opened = device.Reader is null ? DeviceReader.Local(devicePath) : null;
        var source = device.Reader ?? opened!;
        var deviceLength = source.Length;
        if (deviceLength < sizeBytes)
            throw new InvalidOperationException($"The device {source.Describe} of backup {backupId} holds {deviceLength} bytes, less than the {sizeBytes} to back up.");
        var key = await KeyAsync(container, create: true, ct);
        var run = new BackupRun(container, key, backupId, source.Describe, source, sizeBytes, chunkSize, parent);
        var marker = $"{container}/writers/{backupId:D}";
        Manifest manifest;
        try
        {
            var generation = await StartWriterAsync(marker, backupId, volumeId, container, ct);
            run.Reused = await ChunksToReuseAsync(container, backupId, parentId, device, parent, ct);
            await using (new Heartbeat(store, marker, settings.StaleAfter / 5, logger))
            {
                await StoreChunksAsync(run, new ProgressGate(progress), ct);
                await using var gcLock = await LockAsync(container, ct);
                if (await ReadGenerationAsync(container, ct) != generation)
                    await RestoreCollectedChunksAsync(run, ct);
                manifest = run.ToManifest(volumeId, parentId, createdAt, device.Generation);
                var bytes = manifest.ToBytes(key, container, out var sha256);
                await gcLock.EnsureHeldAsync(ct);   // a holder that stalled past its lease writes nothing a collection did not see
                await store.WriteAtomicAsync(ManifestPath(container, backupId), bytes, ct);
                manifest = manifest with { Sha256 = sha256 };
            }
        }
        catch
        {
            await LeaveForCollectionAsync(run);
            throw;
        }
        finally
        {
            await store.DeleteAsync(marker, CancellationToken.None);   // even a failed backup must stop holding back collections
        }
        var totals = manifest.Totals;
        logger.BackupStored(backupId, container, clock.ElapsedMilliseconds, totals.ChangedChunks, totals.ChunksWritten, totals.BytesWritten,
            totals.ObjectCount, totals.StoredBytes, manifest.Sha256);
        return Summarize(manifest);
    }

    // Changed-block tracking is an optimisation that must never make a wrong backup: the chunks outside the changed
    // ranges are taken from the parent's manifest only when the ranges were computed against the very copy the parent
    // read (same generation), the size is the parent's (so chunk boundaries line up), and the parent's manifest still
    // exists now that this writer holds its generation: a collection deleting its chunks from here on moves the
    // generation, and RestoreCollectedChunksAsync then writes them again from the device (unchanged there). Null: read all.
    async Task<bool[]?> ChunksToReuseAsync(string container, Guid backupId, Guid? parentId, BackupSource device, Manifest? parent, CancellationToken ct)
    {
        if (device.Changed is not { } changed || parent is null || parentId is not { } id)
            return null;
        var why = device.BaseGeneration is null || device.BaseGeneration != parent.DeviceGeneration ? "the base is not the copy the parent read"
            : parent.SizeBytes != device.SizeBytes ? "the volume was resized since the parent"
            : parent.FormatVersion != Manifest.CurrentFormatVersion ? "the parent was written unencrypted, its chunks under other names"
            : changed.Any(r => r.Offset < 0 || r.Length < 0 || r.Offset + r.Length > device.SizeBytes) ? "a changed range lies outside the device"
            : !await store.ExistsAsync(ManifestPath(container, id), ct) ? "the parent was deleted meanwhile"
            : null;
        if (why is not null)
        {
            logger.ChangedBlocksNotUsed(backupId, why);
            return null;
        }
        var reuse = new bool[parent.Chunks.Length];
        Array.Fill(reuse, true);
        foreach (var (offset, length) in changed)
            for (var i = offset / parent.ChunkSize; length > 0 && i <= (offset + length - 1) / parent.ChunkSize; i++)
                reuse[i] = false;
        return reuse;
    }

    // Writes every chunk into an existing file or device of at least the backup's size, holes as holes, each chunk
    // authenticated and checked against its name before its data is written. Throws BackupDataException at the first
    // missing or corrupt chunk, once every read and write under way has stopped.
    public async Task<RestoreSummary> RestoreAsync(string container, Guid backupId, string targetPath, Func<long, Task>? progress, CancellationToken ct)
    {
        await using var target = RestoreTarget.Open(targetPath);
        return await RestoreAsync(container, backupId, target, progress, ct);
    }

    // The same, into a device written through a DeviceWriter (a VolumeAgent of another host); the caller disposes it.
    public async Task<RestoreSummary> RestoreAsync(string container, Guid backupId, DeviceWriter target, Func<long, Task>? progress, CancellationToken ct)
    {
        container = ContainerName.Validate(container);
        var manifest = await ReadManifestAsync(container, backupId, ct)
            ?? throw new FileNotFoundException($"Backup {backupId} has no manifest in container '{container}' on {store.Describe}.");
        var key = await ChunkKeyAsync(container, manifest, ct);
        var clock = Stopwatch.StartNew();
        var targetPath = target.Describe;
        var targetLength = target.Length;
        if (targetLength < manifest.SizeBytes)
            throw new InvalidOperationException($"The restore target {targetPath} holds {targetLength} bytes, less than the {manifest.SizeBytes} of backup {backupId}.");

        var run = new RestoreRun(container, key, manifest, target, new ProgressGate(progress));
        // Two stages: Connections chunks are fetched from the share (read-ahead, in chunk order) while Workers chunks are
        // decoded, verified and written. A fetched chunk waits in one of Connections + Workers pooled buffers, which
        // bounds memory whatever the speed of either side.
        var buffers = Channel.CreateUnbounded<byte[]>();
        for (var i = 0; i < settings.Connections + settings.Workers; i++)
            buffers.Writer.TryWrite(new byte[ChunkStore.MaxStoredSize(manifest.ChunkSize)]);
        var fetched = Channel.CreateUnbounded<FetchedChunk>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var fetching = StopOnFailureAsync(FetchChunksAsync(run, buffers.Reader, fetched.Writer, stop.Token), stop);
        var writing = StopOnFailureAsync(WriteChunksAsync(run, fetched.Reader, buffers.Writer, stop.Token), stop);
        try
        {
            await Task.WhenAll(fetching, writing);
        }
        catch when (new[] { fetching, writing }.SelectMany(t => t.Exception?.InnerExceptions ?? []).FirstOrDefault(e => e is not OperationCanceledException) is { } cause)
        {
            // The failure that stopped the restore, not the cancellation it caused in the other stage.
            ExceptionDispatchInfo.Throw(cause);
        }
        await target.FlushAsync(ct);
        logger.RestoreCompleted(backupId, container, targetPath, clock.ElapsedMilliseconds, manifest.SizeBytes, run.ChunksRead);
        return new RestoreSummary(manifest.SizeBytes, run.ChunksRead, run.BytesRead);
    }

    static async Task StopOnFailureAsync(Task stage, CancellationTokenSource stop)
    {
        try
        {
            await stage;
        }
        catch
        {
            await stop.CancelAsync();
            throw;
        }
    }

    // Stage 1: every chunk in order, Connections at a time; zeros need no fetch and are made here.
    async Task FetchChunksAsync(RestoreRun run, ChannelReader<byte[]> buffers, ChannelWriter<FetchedChunk> fetched, CancellationToken ct)
    {
        try
        {
            var fetchers = new ParallelOptions { MaxDegreeOfParallelism = settings.Connections, CancellationToken = ct };
            await Parallel.ForEachAsync(Enumerable.Range(0, run.Manifest.Chunks.Length), fetchers, async (i, token) =>
            {
                var (offset, length) = run.Extent(i);
                if (run.Manifest.Chunks[i] is not { } chunk)
                {
                    await run.Target.ZeroAsync(offset, length, token);
                    await run.Gate.AddAsync(length, token);
                    return;
                }
                var buffer = await buffers.ReadAsync(token);
                var stored = await FetchChunkAsync(run.Container, run.Manifest, i, chunk, buffer, token);
                fetched.TryWrite(new FetchedChunk(i, chunk, buffer, stored));   // unbounded: never waits, never fails before Complete
            });
        }
        finally
        {
            fetched.Complete();
        }
    }

    // Stage 2: Workers at a time, each with its own decompressor and aligned buffer, write chunks in any order.
    async Task WriteChunksAsync(RestoreRun run, ChannelReader<FetchedChunk> fetched, ChannelWriter<byte[]> buffers, CancellationToken ct)
    {
        var chunkSize = run.Manifest.ChunkSize;
        await Parallel.ForEachAsync(Enumerable.Range(0, settings.Workers), InParallel(ct), async (_, token) =>
        {
            using var decompressor = new Decompressor();
            var plain = RestoreTarget.AlignedBuffer(chunkSize);
            await foreach (var (index, chunk, buffer, stored) in fetched.ReadAllAsync(token))
            {
                var (offset, length) = run.Extent(index);
                DecodeChunk(run.Container, run.Key, run.Manifest, index, chunk, decompressor, buffer.AsSpan(0, stored), plain.Span[..length]);
                buffers.TryWrite(buffer);
                await run.Target.WriteAsync(plain[..length], offset, token);
                Interlocked.Increment(ref run.ChunksRead);
                Interlocked.Add(ref run.BytesRead, stored);
                await run.Gate.AddAsync(length, token);
            }
        });
    }

    // Reads every chunk the backup references with the restore's own check (ReadChunkAsync: size, authenticity, name), each
    // distinct chunk once. Throws BackupDataException naming the first failing chunk by position, and how many failed;
    // a missing or damaged manifest fails too. PBS's verify jobs are the model.
    public async Task<VerifySummary> VerifyAsync(string container, Guid backupId, CancellationToken ct)
    {
        container = ContainerName.Validate(container);
        var manifest = await ReadManifestAsync(container, backupId, ct)
            ?? throw new BackupDataException($"Backup {backupId} cannot be restored: it has no manifest in container '{container}' on {store.Describe}.", backupId);
        var key = await ChunkKeyAsync(container, manifest, ct);
        var clock = Stopwatch.StartNew();
        var firstIndex = new Dictionary<string, long>();
        for (long i = 0; i < manifest.Chunks.Length; i++)
            if (manifest.Chunks[i] is { } chunk)
                firstIndex.TryAdd(chunk.Name, i);
        var failures = new ConcurrentBag<BackupDataException>();
        var bytes = 0L;
        var chunkSize = manifest.ChunkSize;
        await Parallel.ForEachAsync(firstIndex, InParallel(ct), async (entry, token) =>
        {
            var index = entry.Value;
            var plain = ArrayPool<byte>.Shared.Rent(chunkSize);
            var packed = ArrayPool<byte>.Shared.Rent(ChunkStore.MaxStoredSize(chunkSize));
            try
            {
                using var decompressor = new Decompressor();
                var length = (int)Math.Min(chunkSize, manifest.SizeBytes - index * chunkSize);
                Interlocked.Add(ref bytes, await ReadChunkAsync(container, key, manifest, index, manifest.Chunks[index]!, decompressor, packed, plain.AsMemory(0, length), token));
            }
            catch (BackupDataException e)
            {
                failures.Add(e);                            // every chunk is read: the report says how many failed
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(plain);
                ArrayPool<byte>.Shared.Return(packed);
            }
        });
        if (failures.MinBy(e => e.ChunkIndex) is { } first)
        {
            logger.VerifyFailed(backupId, container, failures.Count, firstIndex.Count, first.ChunkIndex, first.ChunkName);
            throw new BackupDataException($"{first.Message} ({failures.Count} of {firstIndex.Count} chunks failed)", backupId, first.ChunkIndex, first.ChunkName, first)
                { ChunksFailed = failures.Count };
        }
        logger.VerifyPassed(backupId, container, clock.ElapsedMilliseconds, firstIndex.Count, bytes);
        return new VerifySummary(firstIndex.Count, bytes);
    }

    // Idempotent: a missing manifest means already deleted (and still collects what earlier deletes left).
    public async Task<DeleteSummary> DeleteAsync(string container, Guid backupId, CancellationToken ct)
    {
        container = ContainerName.Validate(container);
        await using var gcLock = await LockAsync(container, ct);
        // A force-deleted backup may still be running (its cancel is on the way): deleting now could let it write its
        // manifest afterwards, so the delete fails and is retried once the writer has stopped.
        if (await store.StatAsync($"{container}/writers/{backupId:D}", ct) is { } writer && writer.Modified >= gcLock.AcquiredAt - settings.StaleAfter)
            throw new IOException($"Backup {backupId} is still being written; its delete waits for the writer to stop.");
        var manifestPath = ManifestPath(container, backupId);
        var file = await store.ReadAllAsync(manifestPath, ct);
        if (file is not null)
        {
            // The tombstone first: after a crash the next collection still knows which chunks to look at.
            var tombstone = new Tombstone(backupId, await ChunksOfAsync(file, container, backupId, ct));
            await store.WriteAtomicAsync(TombstonePath(container, backupId), JsonSerializer.SerializeToUtf8Bytes(tombstone, RepositoryJson.Default.Tombstone), ct);
            await FencedDeleteAsync(gcLock, manifestPath, ct);
        }
        var sweep = await SweepDueAsync(container, gcLock.AcquiredAt, ct);
        var (deleted, freed, deferred) = await CollectAsync(container, gcLock, sweep, ct);
        if (sweep)
            await store.WriteAtomicAsync(SweptPath(container), Encoding.UTF8.GetBytes($"{gcLock.AcquiredAt:O}\n"), ct);
        logger.BackupDeleted(backupId, container, file is not null, deleted, freed, deferred);
        return new DeleteSummary(file is not null, deleted, freed, deferred);
    }

    // Null when the backup has no manifest; BackupDataException when it is corrupt.
    public async Task<Manifest?> ReadManifestAsync(string container, Guid backupId, CancellationToken ct)
    {
        container = ContainerName.Validate(container);
        var file = await store.ReadAllAsync(ManifestPath(container, backupId), ct);
        if (file is null)
            return null;
        return Manifest.Parse(file, backupId, container, Manifest.IsEncrypted(file) ? await KeyAsync(container, create: false, ct) : null);
    }

    // Reads one chunk of a backup and checks it as a restore does (authentic, of this container and name, decoding to
    // its data); returns its stored size. Throws BackupDataException naming the backup, the chunk's index and name.
    public async Task<int> VerifyChunkAsync(string container, Manifest manifest, long index, CancellationToken ct)
    {
        container = ContainerName.Validate(container);
        if (manifest.Chunks[index] is not { } chunk)
            return 0;   // all zeros: nothing stored
        var key = await ChunkKeyAsync(container, manifest, ct);
        var length = (int)Math.Min(manifest.ChunkSize, manifest.SizeBytes - index * manifest.ChunkSize);
        var plain = ArrayPool<byte>.Shared.Rent(manifest.ChunkSize);
        var packed = ArrayPool<byte>.Shared.Rent(ChunkStore.MaxStoredSize(manifest.ChunkSize));
        try
        {
            using var decompressor = new Decompressor();
            return await ReadChunkAsync(container, key, manifest, index, chunk, decompressor, packed, plain.AsMemory(0, length), ct);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(plain);
            ArrayPool<byte>.Shared.Return(packed);
        }
    }

    // The key a backup's chunks are read with. A plain (format 1) backup is refused when this repository encrypts: its
    // manifest is not authenticated, so anyone who can write the share could have put it there.
    async Task<ContainerKey> ChunkKeyAsync(string container, Manifest manifest, CancellationToken ct)
    {
        if (manifest.FormatVersion == Manifest.CurrentFormatVersion)
            return await KeyAsync(container, create: false, ct);
        if (masterKey is not null)
            throw new BackupDataException($"Backup {manifest.BackupId} in container '{container}' on {store.Describe} was written unencrypted (manifest format "
                + $"{manifest.FormatVersion}, by an earlier version): this agent reads only encrypted backups, whose manifests and chunks are authenticated. "
                + "Restore it with the earlier version and back the volume up again.", manifest.BackupId);
        return ContainerKey.Plain;
    }

    // The container's key, from keys.json (cached: it never changes, a rotation only re-wraps it). With create, a
    // container that has none gets one; the gc.lock makes two agents starting at once agree on a single key.
    async Task<ContainerKey> KeyAsync(string container, bool create, CancellationToken ct)
    {
        if (masterKey is null)
            return ContainerKey.Plain;
        if (keys.TryGetValue(container, out var cached))
            return cached;
        var path = ContainerKey.FilePath(container);
        if (await store.ReadAllAsync(path, ct) is not { } file)
        {
            if (!create)
                throw new RepositoryKeyException($"Container '{container}' on {store.Describe} has no key file ({path}): its encrypted backups cannot be read.");
            await using var gcLock = await LockAsync(container, ct);
            file = await store.ReadAllAsync(path, ct);
            if (file is null)
            {
                await EnsureNoEncryptedManifestAsync(container, path, ct);
                (cached, file) = ContainerKey.Create(container, masterKey);
                await store.WriteAtomicAsync(path, file, ct);
                logger.ContainerKeyCreated(container, masterKey.Id);
                return keys.GetOrAdd(container, cached);
            }
        }
        return keys.GetOrAdd(container, ContainerKey.Open(file, container, masterKey, store.Describe));
    }

    // A missing key file where encrypted backups exist was lost or removed: a new key would leave them unreadable next to
    // new backups, so nothing is written until the operator puts it back.
    async Task EnsureNoEncryptedManifestAsync(string container, string keyPath, CancellationToken ct)
    {
        await foreach (var name in store.ListAsync($"{container}/backups", ct))
        {
            if (name.EndsWith(".manifest", StringComparison.Ordinal) && await store.ReadAllAsync($"{container}/backups/{name}", ct) is { } file
                && Manifest.IsEncrypted(file))
                throw new RepositoryKeyException($"Container '{container}' on {store.Describe} holds encrypted backups but its key file {keyPath} is missing: "
                    + "restore it from a copy; without it those backups cannot be read.");
        }
    }

    // What a finished backup reported, read back from its manifest; null while it has none (not finished, or deleted).
    public async Task<BackupSummary?> FindBackupAsync(string container, Guid backupId, CancellationToken ct) =>
        await ReadManifestAsync(container, backupId, ct) is { } manifest ? Summarize(manifest) : null;

    static BackupSummary Summarize(Manifest manifest) => new(manifest.SizeBytes, manifest.Totals.ObjectCount, manifest.Totals.ChunksWritten,
        manifest.Totals.BytesWritten, manifest.Totals.StoredBytes, manifest.Sha256, manifest.Totals.Cbt, manifest.Totals.BytesRead);

    async Task<string> StartWriterAsync(string marker, Guid backupId, Guid volumeId, string container, CancellationToken ct)
    {
        // The marker's first mtime is the start on the share's clock, the clock chunk mtimes are compared in.
        await store.WriteAtomicAsync(marker, Json(new WriterMarker(backupId, volumeId, Environment.MachineName, null)), ct);
        var startedAt = (await store.StatAsync(marker, ct))?.Modified ?? throw new IOException($"Writer marker {marker} on {store.Describe} vanished.");
        await store.WriteAtomicAsync(marker, Json(new WriterMarker(backupId, volumeId, Environment.MachineName, startedAt)), ct);
        await using var gcLock = await LockAsync(container, ct);
        return await ReadGenerationAsync(container, ct);
    }

    async Task StoreChunksAsync(BackupRun run, ProgressGate gate, CancellationToken ct)
    {
        run.Source.Start(run.ChunkSize, [.. Enumerable.Range(0, run.Hashes.Length).Where(i => run.Reused?[i] != true).Select(i => run.Extent(i))], ct);
        var next = -1L;
        await Parallel.ForEachAsync(Enumerable.Range(0, settings.Workers), InParallel(ct), async (_, token) =>
        {
            var plain = ArrayPool<byte>.Shared.Rent(run.ChunkSize);
            var packed = ArrayPool<byte>.Shared.Rent(ChunkStore.MaxStoredSize(run.ChunkSize));
            try
            {
                using var packer = new ChunkPacker(settings.Compression, settings.CompressionLevel);
                for (long i; (i = Interlocked.Increment(ref next)) < run.Hashes.Length;)
                {
                    var (offset, length) = run.Extent(i);
                    if (run.Reused?[i] == true)
                        run.Reuse(i);
                    else if (await run.Source.ReadChunkAsync(offset, plain.AsMemory(0, length), token))
                        await StoreChunkAsync(run, i, plain.AsMemory(0, length), packed, packer, token);
                    else
                        Metrics.ZeroChunk();
                    await gate.AddAsync(length, token);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(plain);
                ArrayPool<byte>.Shared.Return(packed);
            }
        });
    }

    // The chunk's data is in plain, read by StoreChunksAsync.
    async Task StoreChunkAsync(BackupRun run, long index, Memory<byte> plain, byte[] packed, ChunkPacker packer, CancellationToken ct)
    {
        Interlocked.Add(ref run.BytesRead, plain.Length);
        Metrics.ChunkRead(plain.Length);
        if (!plain.Span.ContainsAnyExcept((byte)0))
        {
            Metrics.ZeroChunk();
            return;
        }
        var hash = run.Key.NameOf(plain.Span);
        run.Hashes[index] = hash;
        if (!run.Stored.TryAdd(hash, 0))
        {
            Metrics.ReusedChunk(plain.Length);
            return;   // another chunk of this backup holds the same data
        }
        var path = ChunkStore.PathOf(run.Container, hash);
        // Relying on a chunk already there: the touch both confirms it and marks it in use for collections.
        if (await store.TouchAsync(path, ct))
        {
            var size = run.ParentSizes.TryGetValue(hash, out var known) ? known : (await store.StatAsync(path, ct))?.Size;
            if (size is { } storedSize)
            {
                run.Stored[hash] = (int)storedSize;
                Metrics.ReusedChunk(plain.Length);
                return;
            }
        }
        await WriteChunkAsync(run, hash, plain.Span, packed, packer, ct);
    }

    // Atomic, so that a crash never leaves a partial chunk under a name later backups trust.
    Task WriteChunkAsync(BackupRun run, string hash, ReadOnlySpan<byte> plain, byte[] packed, ChunkPacker packer, CancellationToken ct)
    {
        var length = ChunkStore.Encode(run.Key, run.Container, hash, packer, plain, packed);
        run.Stored[hash] = length;
        run.Written.Add(hash);
        Interlocked.Increment(ref run.ChunksWritten);
        Interlocked.Add(ref run.BytesWritten, length);
        Metrics.NewChunk(length);
        return store.WriteAtomicAsync(ChunkStore.PathOf(run.Container, hash), packed.AsMemory(0, length), ct);
    }

    // A failed or cancelled backup has no manifest, so nothing would ever free the chunks it wrote: it leaves them in a
    // tombstone of their own, and the next collection frees those no manifest references. Best effort: the share may be
    // what failed, and a retry of the same backup reuses most of them anyway.
    async Task LeaveForCollectionAsync(BackupRun run)
    {
        if (run.Written.IsEmpty)
            return;
        try
        {
            var tombstone = new Tombstone(run.BackupId, run.Written.ToArray());
            await store.WriteAtomicAsync($"{run.Container}/deleting/{run.BackupId:D}.attempt-{Guid.NewGuid():N}.json",
                JsonSerializer.SerializeToUtf8Bytes(tombstone, RepositoryJson.Default.Tombstone), CancellationToken.None);
        }
        catch (IOException e)
        {
            logger.UnfinishedChunksNotRecorded(run.BackupId, run.Written.Count, e);
        }
    }

    // Holding gc.lock, after a collection ran during the backup.
    async Task RestoreCollectedChunksAsync(BackupRun run, CancellationToken ct)
    {
        var missing = new ConcurrentBag<string>();
        await Parallel.ForEachAsync(run.Stored.Keys, InParallel(ct),
            async (hash, token) =>
            {
                if (!await store.ExistsAsync(ChunkStore.PathOf(run.Container, hash), token))
                    missing.Add(hash);
            });
        if (missing.IsEmpty)
            return;
        logger.ChunksRewritten(run.BackupId, missing.Count);
        var plain = ArrayPool<byte>.Shared.Rent(run.ChunkSize);
        var packed = ArrayPool<byte>.Shared.Rent(ChunkStore.MaxStoredSize(run.ChunkSize));
        try
        {
            using var packer = new ChunkPacker(settings.Compression, settings.CompressionLevel);
            foreach (var hash in missing)
            {
                var index = Array.IndexOf(run.Hashes, hash);
                var data = plain.AsMemory(0, run.Extent(index).Length);
                Interlocked.Add(ref run.BytesRead, data.Length);
                await run.Source.ReadAgainAsync(run.Extent(index).Offset, data, ct);
                if (run.Key.NameOf(data.Span) != hash)
                    throw new BackupDataException($"Backup {run.BackupId}: chunk {index} of {run.DevicePath} changed while it was backed up, and a concurrent delete collected its copy.",
                        run.BackupId, index, hash);
                await WriteChunkAsync(run, hash, data.Span, packed, packer, ct);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(plain);
            ArrayPool<byte>.Shared.Return(packed);
        }
    }

    // Fetch and decode in one: the check verify shares with the restore. Returns the stored size.
    async Task<int> ReadChunkAsync(string container, ContainerKey key, Manifest manifest, long index, ChunkRef chunk, Decompressor decompressor, byte[] packed,
        Memory<byte> plain, CancellationToken ct)
    {
        var stored = await FetchChunkAsync(container, manifest, index, chunk, packed, ct);
        DecodeChunk(container, key, manifest, index, chunk, decompressor, packed.AsSpan(0, stored), plain.Span);
        return stored;
    }

    // Reads a chunk's stored form into a pooled buffer (a fresh array per chunk would be a large-object allocation);
    // returns its size, which must be exactly the size the manifest gives.
    async Task<int> FetchChunkAsync(string container, Manifest manifest, long index, ChunkRef chunk, byte[] buffer, CancellationToken ct)
    {
        if (chunk.StoredSize > buffer.Length)
            throw ChunkError(container, manifest, index, chunk, $"cannot be read: the manifest gives it {chunk.StoredSize} bytes, more than a chunk of {manifest.ChunkSize}");
        // Exactly the size the manifest gives, with no size query: a longer file still fails its checks, a shorter one is corrupt.
        var storedLength = await store.ReadIntoAsync(ChunkStore.PathOf(container, chunk.Name), buffer.AsMemory(0, chunk.StoredSize), ct)
            ?? throw ChunkError(container, manifest, index, chunk, "is missing");
        if (storedLength != chunk.StoredSize)
            throw ChunkError(container, manifest, index, chunk, $"is corrupt: it holds {storedLength} bytes, the manifest says {chunk.StoredSize}");
        return storedLength;
    }

    // Decodes a chunk's stored form into plain (exactly the chunk's length) and checks that it is authentic and exactly
    // the data its name says: nothing is written before this returns.
    void DecodeChunk(string container, ContainerKey key, Manifest manifest, long index, ChunkRef chunk, Decompressor decompressor, Span<byte> stored, Span<byte> plain)
    {
        try
        {
            ChunkStore.Decode(key, container, chunk.Name, decompressor, stored, plain);
        }
        catch (InvalidDataException e)
        {
            throw ChunkError(container, manifest, index, chunk, $"is corrupt: {e.Message}", e);
        }
    }

    BackupDataException ChunkError(string container, Manifest manifest, long index, ChunkRef chunk, string what, Exception? inner = null) =>
        new($"Backup {manifest.BackupId} cannot be restored: chunk {index} ({chunk.Name}) {what} in container '{container}' on {store.Describe}.",
            manifest.BackupId, index, chunk.Name, inner);

    // A key that cannot be had (RepositoryKeyException) fails the delete before anything changes.
    async Task<string[]> ChunksOfAsync(byte[] manifestFile, string container, Guid backupId, CancellationToken ct)
    {
        var key = Manifest.IsEncrypted(manifestFile) ? await KeyAsync(container, create: false, ct) : null;
        try
        {
            // A plain digest is not checked: whatever chunks a damaged manifest names, only unreferenced ones get collected.
            var manifest = Manifest.Parse(manifestFile, backupId, container, key, verifyDigest: false);
            return [.. manifest.Chunks.OfType<ChunkRef>().Select(chunk => chunk.Name).Distinct()];
        }
        catch (BackupDataException e)
        {
            logger.UnreadableManifestDeleted(backupId, container, e);
            return [];
        }
    }

    // Holding gc.lock: frees the chunks of every tombstone that no manifest references and no running backup may
    // rely on; with sweep, every other chunk of the container too (see SweepAsync). Returns (deleted, bytes freed, deferred).
    async Task<(int, long, int)> CollectAsync(string container, RepositoryLock gcLock, bool sweep, CancellationToken ct)
    {
        var startedAt = gcLock.AcquiredAt;
        var tombstones = new List<(string Path, Tombstone Tombstone)>();
        await foreach (var name in store.ListAsync($"{container}/deleting", ct))
        {
            var path = $"{container}/deleting/{name}";
            if (name.EndsWith(".json", StringComparison.Ordinal) && await store.ReadAllAsync(path, ct) is { } file)
                tombstones.Add((path, JsonSerializer.Deserialize(file, RepositoryJson.Default.Tombstone)!));
        }
        var candidates = tombstones.SelectMany(t => t.Tombstone.Chunks).Where(ChunkStore.IsName).ToHashSet();
        if (sweep)
            candidates.UnionWith(await SweepAsync(container, gcLock, ct));
        if (candidates.Count == 0 && tombstones.Count == 0)
            return (0, 0, 0);

        await foreach (var name in store.ListAsync($"{container}/backups", ct))
        {
            // A manifest that cannot be read could reference anything: ReadManifestAsync throws, and nothing is collected.
            if (name.EndsWith(".manifest", StringComparison.Ordinal) && Guid.TryParse(name.AsSpan(0, name.Length - ".manifest".Length), out var id)
                && await ReadManifestAsync(container, id, ct) is { } manifest)
                candidates.ExceptWith(manifest.Chunks.OfType<ChunkRef>().Select(chunk => chunk.Name));
        }

        var cutoff = await OldestWriterAsync(container, startedAt, ct);
        if (candidates.Count > 0)
        {
            await gcLock.EnsureHeldAsync(ct);
            await store.WriteAtomicAsync($"{container}/gc.generation", Encoding.UTF8.GetBytes(Guid.NewGuid().ToString()), ct);
        }
        var deferred = new ConcurrentDictionary<string, byte>();
        var deleted = 0;
        var freed = 0L;
        await Parallel.ForEachAsync(candidates, InParallel(ct),
            async (hash, token) =>
            {
                var path = ChunkStore.PathOf(container, hash);
                if (await store.StatAsync(path, token) is not { } entry)
                    return;
                if (entry.Modified >= cutoff)
                    deferred.TryAdd(hash, 0);
                else if (await FencedDeleteAsync(gcLock, path, token))
                {
                    Interlocked.Increment(ref deleted);
                    Interlocked.Add(ref freed, entry.Size);
                }
            });
        foreach (var (path, tombstone) in tombstones)
        {
            var left = tombstone.Chunks.Where(deferred.ContainsKey).ToArray();
            if (left.Length == 0)
                await FencedDeleteAsync(gcLock, path, ct);
            else if (left.Length < tombstone.Chunks.Length)
                await store.WriteAtomicAsync(path, JsonSerializer.SerializeToUtf8Bytes(tombstone with { Chunks = left }, RepositoryJson.Default.Tombstone), ct);
        }
        return (deleted, freed, deferred.Count);
    }

    // Tombstones only name what a finished delete or a failed backup knew of. Now and then (Repository:SweepEvery) a delete
    // also looks at every chunk of the container, for what an agent killed outright left: every chunk becomes a candidate
    // (collected under the same rules: referenced or recent ones stay), and temporary files of atomic writes that have
    // not changed for StaleAfter are removed.
    async Task<List<string>> SweepAsync(string container, RepositoryLock gcLock, CancellationToken ct)
    {
        var startedAt = gcLock.AcquiredAt;
        var chunks = new List<string>();
        var temporaries = 0;
        await foreach (var prefix in store.ListAsync($"{container}/chunks", ct))
        {
            await foreach (var name in store.ListAsync($"{container}/chunks/{prefix}", ct))
            {
                if (ChunkStore.IsName(name))
                    chunks.Add(name);
                else if (RepositoryStores.IsTemporary(name)
                         && await store.StatAsync($"{container}/chunks/{prefix}/{name}", ct) is { } entry && entry.Modified < startedAt - settings.StaleAfter
                         && await FencedDeleteAsync(gcLock, $"{container}/chunks/{prefix}/{name}", ct))
                    temporaries++;
            }
        }
        logger.ContainerSwept(container, chunks.Count, temporaries);
        return chunks;
    }

    async Task<bool> SweepDueAsync(string container, DateTimeOffset startedAt, CancellationToken ct) =>
        await store.StatAsync(SweptPath(container), ct) is not { } swept || swept.Modified <= startedAt - settings.SweepEvery;

    static string SweptPath(string container) => $"{container}/gc.swept";

    // The start of the oldest live writer less GcGrace, or MaxValue when none runs. Markers without a heartbeat
    // for StaleAfter before the collection started are removed.
    async Task<DateTimeOffset> OldestWriterAsync(string container, DateTimeOffset startedAt, CancellationToken ct)
    {
        var oldest = DateTimeOffset.MaxValue;
        await foreach (var name in store.ListAsync($"{container}/writers", ct))
        {
            var path = $"{container}/writers/{name}";
            if (!Guid.TryParse(name, out _) || await store.StatAsync(path, ct) is not { } entry)
                continue;   // a temporary file of an atomic write, or a writer that just finished
            if (entry.Modified < startedAt - settings.StaleAfter)
            {
                logger.StaleWriterRemoved(path, entry.Modified);
                await store.DeleteAsync(path, ct);
                continue;
            }
            var marker = await store.ReadAllAsync(path, ct) is { } file ? JsonSerializer.Deserialize(file, RepositoryJson.Default.WriterMarker) : null;
            var started = (marker?.StartedAt ?? entry.Modified) - settings.GcGrace;
            if (started < oldest)
                oldest = started;
        }
        return oldest;
    }

    // Each worker reads, hashes, compresses and writes one chunk at a time, with its own buffers.
    ParallelOptions InParallel(CancellationToken ct) => new() { MaxDegreeOfParallelism = settings.Workers, CancellationToken = ct };

    // Every removal under gc.lock: checked right before it, so a holder that lost the lock frees nothing.
    async Task<bool> FencedDeleteAsync(RepositoryLock gcLock, string path, CancellationToken ct)
    {
        await gcLock.EnsureHeldAsync(ct);
        return await store.DeleteAsync(path, ct);
    }

    Task<RepositoryLock> LockAsync(string container, CancellationToken ct) =>
        RepositoryLock.AcquireAsync(store, $"{container}/gc.lock", settings.StaleAfter, logger, ct);

    async Task<string> ReadGenerationAsync(string container, CancellationToken ct) =>
        await store.ReadAllAsync($"{container}/gc.generation", ct) is { } file ? Encoding.UTF8.GetString(file) : "";

    static string ManifestPath(string container, Guid backupId) => $"{container}/backups/{backupId:D}.manifest";

    static string TombstonePath(string container, Guid backupId) => $"{container}/deleting/{backupId:D}.json";

    static byte[] Json(WriterMarker marker) => JsonSerializer.SerializeToUtf8Bytes(marker, RepositoryJson.Default.WriterMarker);

    // One backup in progress: the chunk hashes by position (null: all zeros) and the stored size of each distinct chunk.
    sealed class BackupRun(string container, ContainerKey key, Guid backupId, string devicePath, DeviceReader source, long sizeBytes, int chunkSize, Manifest? parent)
    {
        public string Container { get; } = container;
        public ContainerKey Key { get; } = key;
        public Guid BackupId { get; } = backupId;
        public string DevicePath { get; } = devicePath;
        public DeviceReader Source { get; } = source;
        public long SizeBytes { get; } = sizeBytes;
        public int ChunkSize { get; } = chunkSize;
        public string?[] Hashes { get; } = new string?[Manifest.ChunkCount(sizeBytes, chunkSize)];
        public ConcurrentDictionary<string, int> Stored { get; } = new();
        public ConcurrentBag<string> Written { get; } = [];
        public Manifest? Parent { get; } = parent;
        public Dictionary<string, int> ParentSizes { get; } =
            parent?.Chunks.OfType<ChunkRef>().DistinctBy(chunk => chunk.Name).ToDictionary(chunk => chunk.Name, chunk => chunk.StoredSize) ?? [];
        public int ChunksWritten;
        public long BytesWritten;
        public long BytesRead;

        // With changed-block tracking: the chunks no changed range touches, taken from the parent without reading them.
        public bool[]? Reused { get; set; }

        /// <summary>Takes an unchanged chunk from the parent without reading it; counted like any chunk of its kind.</summary>
        public void Reuse(long index)
        {
            if (Parent!.Chunks[index] is not { } chunk)
            {
                Metrics.ZeroChunk();
                return;
            }
            Hashes[index] = chunk.Name;
            Stored.TryAdd(chunk.Name, chunk.StoredSize);
            Metrics.ReusedChunk(Extent(index).Length);
        }

        public (long Offset, int Length) Extent(long index) =>
            (index * ChunkSize, (int)Math.Min(ChunkSize, SizeBytes - index * ChunkSize));

        public Manifest ToManifest(Guid volumeId, Guid? parentId, DateTimeOffset createdAt, string? deviceGeneration)
        {
            var chunks = Hashes.Select(hash => hash is null ? null : new ChunkRef(hash, Stored[hash])).ToArray();
            var changed = 0;
            var dataBytes = 0L;
            for (var i = 0; i < chunks.Length; i++)
            {
                var before = Parent is not null && i < Parent.Chunks.Length ? Parent.Chunks[i]?.Name : null;
                if (chunks[i]?.Name != before)
                    changed++;
                if (chunks[i] is not null)
                    dataBytes += Extent(i).Length;
            }
            var totals = new ManifestTotals(Stored.Count, Stored.Values.Sum(size => (long)size), dataBytes, changed, ChunksWritten, BytesWritten,
                Reused is not null, BytesRead);
            return new Manifest(Key.FormatVersion, BackupId, volumeId, parentId, SizeBytes, ChunkSize, createdAt, DateTimeOffset.UtcNow, totals, chunks,
                deviceGeneration);
        }
    }

    // One restore in progress: what both stages share.
    sealed class RestoreRun(string container, ContainerKey key, Manifest manifest, DeviceWriter target, ProgressGate gate)
    {
        public string Container { get; } = container;
        public ContainerKey Key { get; } = key;
        public Manifest Manifest { get; } = manifest;
        public DeviceWriter Target { get; } = target;
        public ProgressGate Gate { get; } = gate;
        public int ChunksRead;
        public long BytesRead;

        public (long Offset, int Length) Extent(long index) =>
            (index * Manifest.ChunkSize, (int)Math.Min(Manifest.ChunkSize, Manifest.SizeBytes - index * Manifest.ChunkSize));
    }

    // A chunk's stored form, fetched into one of the restore's pooled buffers.
    readonly record struct FetchedChunk(long Index, ChunkRef Chunk, byte[] Buffer, int Stored);

    // Reports progress when another ProgressStep bytes are done, never per chunk and never out of order.
    sealed class ProgressGate(Func<long, Task>? report)
    {
        readonly SemaphoreSlim gate = new(1);
        long done;
        long reported;

        public async ValueTask AddAsync(long bytes, CancellationToken ct)
        {
            var now = Interlocked.Add(ref done, bytes);
            if (report is null || now - Volatile.Read(ref reported) < ProgressStep)
                return;
            await gate.WaitAsync(ct);
            try
            {
                now = Volatile.Read(ref done);
                if (now - reported >= ProgressStep)
                {
                    reported = now;
                    await report(now);
                }
            }
            finally
            {
                gate.Release();
            }
        }
    }
}
