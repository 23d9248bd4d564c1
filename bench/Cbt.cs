extern alias VolumeAgentHost;

using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VolumeBackup.BackupAgent.Repository;
using VolumeAgentHost::VolumeBackup.VolumeAgent;

namespace VolumeBackup.Bench;

// Changed-block tracking side by side with a full-read incremental, on a volume of a real VolumePool (the XFS reflink
// pool), devices taken and committed as the agents do. One process, one size: bench/cbt.sh runs it at 2 and 16 GiB.
static class Cbt
{
    public static async Task RunAsync(RepositoryOptions settings, string target, string container, string poolFolder, int sizeGiB, int dataGiB,
        ulong seed, int runKiB)
    {
        var pool = new VolumePool(Options.Create(new VolumeOptions { PoolPath = poolFolder }), NullLogger<VolumePool>.Instance);
        var volumeId = Guid.NewGuid();
        pool.CreateVolume(volumeId, (long)sizeGiB << 30);
        var volume = pool.VolumePath(volumeId);
        File.Delete(volume);
        Images.Make(volume, sizeGiB, seed, dataGiB);
        var size = new FileInfo(volume).Length;
        await using var store = RepositoryStores.Open(target, settings.Connections);
        // Encrypted as the agent does; the key lives only as long as this one process.
        var masterKey = VolumeBackup.Contracts.MasterKey.FromBytes(System.Security.Cryptography.RandomNumberGenerator.GetBytes(VolumeBackup.Contracts.MasterKey.Size));
        var repository = new BackupRepository(store, Options.Create(settings), masterKey, NullLogger<BackupRepository>.Instance);

        async Task<(Guid Id, BackupSummary Summary, double Seconds)> BackupAsync(string op, string into, Guid? parent, bool useBase)
        {
            var id = Guid.NewGuid();
            var clock = Stopwatch.StartNew();
            var device = pool.GetBackupDevice(id, volumeId, null, inUse: false, useBase ? parent : null, CancellationToken.None);
            var deviceSeconds = clock.Elapsed.TotalSeconds;
            var source = new BackupSource(device.Path, size, device.Generation, device.Changed?.Select(r => (r.Offset, r.Length)).ToList(), device.BaseGeneration);
            var summary = await repository.BackupAsync(into, id, volumeId, parent, source, null, CancellationToken.None);
            pool.ReleaseDevice(Path.GetFileName(device.Path), commit: useBase || parent is null);
            var seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"RESULT op={op} size_gib={sizeGiB} data_gib={dataGiB} id={id} seconds={seconds:F3} device_seconds={deviceSeconds:F3} cbt={summary.Cbt} " +
                $"read_mib={summary.BytesRead / 1048576.0:F1} written_mib={summary.BytesWritten / 1048576.0:F1} chunk_kib={settings.ChunkSize / 1024}");
            return (id, summary, seconds);
        }

        async Task RestoreAsync(string op, string from, Guid id)
        {
            var output = Path.Combine(poolFolder, $"restored-{id}");
            using (var create = new FileStream(output, FileMode.CreateNew, FileAccess.Write))
                create.SetLength(size);
            var clock = Stopwatch.StartNew();
            await repository.RestoreAsync(from, id, output, null, CancellationToken.None);
            var seconds = clock.Elapsed.TotalSeconds;
            var same = Images.Sha256(output) == Images.Sha256(volume);
            File.Delete(output);
            Console.WriteLine($"RESULT op={op} size_gib={sizeGiB} id={id} seconds={seconds:F3} checksum_ok={same}");
            if (!same) throw new InvalidDataException($"the restore of {id} differs from the volume");
        }

        try
        {
            var (full, _, _) = await BackupAsync("full", container, null, useBase: false);
            Images.Change(volume, 1.0 * dataGiB / sizeGiB, seed, runKiB);   // 1 % of the data
            // Both incrementals into the one container (a copy of it under another name cannot be read: a container's key
            // is bound to its name), the CBT one first: the full-read one then finds the changed chunks on the share and
            // writes none, which only makes it faster, so cbt / full-read is measured on the safe side.
            var (cbt, _, _) = await BackupAsync("cbt", container, full, useBase: true);
            var (fullRead, _, _) = await BackupAsync("fullread", container, full, useBase: false);
            var manifest = await repository.ReadManifestAsync(container, fullRead, CancellationToken.None);
            Console.WriteLine($"RESULT op=changed size_gib={sizeGiB} changed_chunks={manifest!.Totals.ChangedChunks} " +
                $"changed_mib={manifest.Totals.ChangedChunks * (double)manifest.ChunkSize / 1048576.0:F1}");
            await BackupAsync("nochange", container, cbt, useBase: true);
            var cbtManifest = await repository.ReadManifestAsync(container, cbt, CancellationToken.None);
            Console.WriteLine($"RESULT op=same_chunks size_gib={sizeGiB} same={cbtManifest!.Chunks.Select(c => c?.Name).SequenceEqual(manifest.Chunks.Select(c => c?.Name))}");
            if (sizeGiB <= 2)
            {
                // A first restore, not compared, compiles the restore's code; then three pairs, the order alternating.
                await RestoreAsync("restore_warmup", container, fullRead);
                for (var round = 0; round < 3; round++)
                {
                    (string, Guid)[] pair = round % 2 == 0 ? [("restore_cbt", cbt), ("restore_fullread", fullRead)] : [("restore_fullread", fullRead), ("restore_cbt", cbt)];
                    foreach (var (op, id) in pair)
                        await RestoreAsync(op, container, id);
                }
            }
        }
        finally
        {
            pool.DeleteVolume(volumeId);
        }
    }
}
