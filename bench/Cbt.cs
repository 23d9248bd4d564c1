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
        var repository = new BackupRepository(store, Options.Create(settings), NullLogger<BackupRepository>.Instance);

        async Task<(Guid Id, BackupSummary Summary, double Seconds)> BackupAsync(string op, Guid? parent, bool useBase)
        {
            var id = Guid.NewGuid();
            var clock = Stopwatch.StartNew();
            var device = pool.GetBackupDevice(id, volumeId, null, inUse: false, useBase ? parent : null, CancellationToken.None);
            var source = new BackupSource(device.Path, size, device.Generation, device.Changed?.Select(r => (r.Offset, r.Length)).ToList(), device.BaseGeneration);
            var summary = await repository.BackupAsync(container, id, volumeId, parent, source, null, CancellationToken.None);
            pool.ReleaseDevice(Path.GetFileName(device.Path), commit: useBase || parent is null);
            var seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"RESULT op={op} size_gib={sizeGiB} data_gib={dataGiB} id={id} seconds={seconds:F3} cbt={summary.Cbt} " +
                $"read_mib={summary.BytesRead / 1048576.0:F1} written_mib={summary.BytesWritten / 1048576.0:F1} chunk_kib={settings.ChunkSize / 1024}");
            return (id, summary, seconds);
        }

        try
        {
            var (full, _, _) = await BackupAsync("full", null, useBase: false);
            Images.Change(volume, 1.0 * dataGiB / sizeGiB, seed, runKiB);   // 1 % of the data
            var (cbt, _, _) = await BackupAsync("cbt", full, useBase: true);
            // After the CBT incremental, so that its changed chunks are on the share already: the full read is favoured.
            var (fullRead, _, _) = await BackupAsync("fullread", full, useBase: false);
            var manifest = await repository.ReadManifestAsync(container, fullRead, CancellationToken.None);
            Console.WriteLine($"RESULT op=changed size_gib={sizeGiB} changed_chunks={manifest!.Totals.ChangedChunks} " +
                $"changed_mib={manifest.Totals.ChangedChunks * (double)manifest.ChunkSize / 1048576.0:F1}");
            await BackupAsync("nochange", cbt, useBase: true);
        }
        finally
        {
            pool.DeleteVolume(volumeId);
        }
    }
}
