using System.ComponentModel.DataAnnotations;

namespace VolumeBackup.BackupAgent.Repository;

public sealed class RepositoryOptions
{
    public const string Section = "Repository";
    public const int MinChunkSize = 64 * 1024;
    public const int MaxChunkSize = 16 * 1024 * 1024;

    // A folder (a share the OS mounted) or nfs://host/export/dir.
    [Required] public string Target { get; init; } = "";

    // Used by full backups; an incremental keeps its parent's chunk size so that unchanged chunks dedup.
    // 1 MiB by measurement (bench/README.md): a 1 % change rewrites a quarter of what 4 MiB chunks do, restores are as fast.
    [Range(MinChunkSize, MaxChunkSize)] public int ChunkSize { get; init; } = 1024 * 1024;

    // Chunks in flight at once, each holding about two chunk-sized buffers. More than the cores: a worker waiting on
    // the NFS server leaves its core idle otherwise (bench/README.md).
    [Range(1, 256)] public int Workers { get; init; } = Math.Max(8, 2 * Environment.ProcessorCount);

    // Connections of the NFS store's pool.
    [Range(1, 64)] public int Connections { get; init; } = 8;

    // The codec new chunks are written with (Cinder's backup_compression_algorithm); restores read every codec.
    public ChunkCompression Compression { get; init; } = ChunkCompression.Lz4;

    // zstd's level, when Compression is Zstd.
    [Range(1, 19)] public int CompressionLevel { get; init; } = 1;

    // Slack subtracted from the garbage collector's cutoff. All timestamps compared are the share's own
    // (file mtimes, and touches set to the server's time), so zero is sound; safety never depends on it.
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")] public TimeSpan GcGrace { get; init; } = TimeSpan.Zero;

    // How often a delete also checks every chunk of its container (for what agents killed mid-backup left); zero: every delete.
    [Range(typeof(TimeSpan), "00:00:00", "365.00:00:00")] public TimeSpan SweepEvery { get; init; } = TimeSpan.FromDays(1);

    // A lock or writer marker whose holder has not refreshed it for this long is taken for dead.
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")] public TimeSpan StaleAfter { get; init; } = TimeSpan.FromMinutes(5);
}
