using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace VolumeBackup.BackupAgent.Repository;

// One per backup, complete on its own: every chunk of the volume, in order, null for an all-zero chunk.
// DeviceGeneration names the point-in-time copy the backup read (the VolumeAgent's device generation): an incremental
// trusts changed-block tracking only against a base of that same generation.
// On the share it is two JSON lines: a header {"format":..., "sha256":...} and this body, where the
// header's sha256 is that of every byte after the header's newline. `tail -n +2 x.manifest | sha256sum` checks it.
public sealed record Manifest(
    int FormatVersion,
    Guid BackupId,
    Guid VolumeId,
    Guid? ParentId,
    long SizeBytes,
    int ChunkSize,
    DateTimeOffset CreatedAt,
    DateTimeOffset CompletedAt,
    ManifestTotals Totals,
    ChunkRef?[] Chunks,
    string? DeviceGeneration = null)
{
    public const int CurrentFormatVersion = 1;
    const string Format = "volume-backup-manifest";

    // SHA-256 of the body as stored; set when written or read.
    [JsonIgnore] public string Sha256 { get; init; } = "";

    public static long ChunkCount(long sizeBytes, int chunkSize) => (sizeBytes + chunkSize - 1) / chunkSize;

    public byte[] ToBytes(out string sha256)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(this, RepositoryJson.Default.Manifest);
        var digest = new byte[body.Length + 1];
        body.CopyTo(digest, 0);
        digest[^1] = (byte)'\n';
        sha256 = Convert.ToHexStringLower(SHA256.HashData(digest));
        var header = JsonSerializer.SerializeToUtf8Bytes(new ManifestHeader(Format, sha256), RepositoryJson.Default.ManifestHeader);
        return [.. header, (byte)'\n', .. digest];
    }

    // Throws BackupDataException naming the backup when the file is not a whole, valid manifest of it.
    // Without verifyDigest only the structure is checked: enough to know which chunks a damaged manifest names.
    public static Manifest Parse(ReadOnlySpan<byte> file, Guid backupId, bool verifyDigest = true)
    {
        var newline = file.IndexOf((byte)'\n');
        if (newline < 0)
            throw Corrupt(backupId, "it has no header line");
        ManifestHeader? header;
        Manifest? manifest;
        try
        {
            header = JsonSerializer.Deserialize(file[..newline], RepositoryJson.Default.ManifestHeader);
            if (header?.Format != Format)
                throw Corrupt(backupId, "its header does not name the manifest format");
            var body = file[(newline + 1)..];
            var sha256 = Convert.ToHexStringLower(SHA256.HashData(body));
            if (verifyDigest && sha256 != header.Sha256)
                throw Corrupt(backupId, $"its body's SHA-256 is {sha256}, the header says {header.Sha256}");
            manifest = JsonSerializer.Deserialize(body, RepositoryJson.Default.Manifest);
            if (manifest is null)
                throw Corrupt(backupId, "its body is empty");
            manifest = manifest with { Sha256 = sha256 };
        }
        catch (JsonException e)
        {
            throw Corrupt(backupId, $"it is not valid JSON ({e.Message})", e);
        }
        manifest.Validate(backupId);
        return manifest;
    }

    void Validate(Guid backupId)
    {
        if (FormatVersion != CurrentFormatVersion)
            throw Corrupt(backupId, $"its format version {FormatVersion} is not supported (this agent reads {CurrentFormatVersion})");
        if (BackupId != backupId)
            throw Corrupt(backupId, $"it describes backup {BackupId}");
        if (ChunkSize is < RepositoryOptions.MinChunkSize or > RepositoryOptions.MaxChunkSize || SizeBytes < 0)
            throw Corrupt(backupId, $"its chunk size {ChunkSize} or volume size {SizeBytes} is out of range");
        if (Chunks.Length != ChunkCount(SizeBytes, ChunkSize))
            throw Corrupt(backupId, $"it lists {Chunks.Length} chunks where {SizeBytes} bytes need {ChunkCount(SizeBytes, ChunkSize)}");
        for (var i = 0; i < Chunks.Length; i++)
        {
            // Hashes become paths on the share: only well-formed ones may leave this method.
            if (Chunks[i] is { } chunk && (!ChunkStore.IsHash(chunk.Sha256) || chunk.StoredSize <= 0))
                throw Corrupt(backupId, $"its chunk {i} has a malformed hash or size");
        }
    }

    static BackupDataException Corrupt(Guid backupId, string why, Exception? inner = null) =>
        new($"The manifest of backup {backupId} is corrupt: {why}.", backupId, inner: inner);
}

public sealed record ChunkRef(string Sha256, int StoredSize);

// ObjectCount, StoredBytes: the distinct non-zero chunks referenced. ChangedChunks: chunk positions that differ
// from the parent (all non-zero ones for a full). ChunksWritten, BytesWritten: what this backup newly stored.
// Cbt: only the changed ranges were read (changed-block tracking); BytesRead: bytes read from the device.
public sealed record ManifestTotals(int ObjectCount, long StoredBytes, long DataBytes, int ChangedChunks, int ChunksWritten, long BytesWritten,
    bool Cbt = false, long BytesRead = 0);

// A chunk or manifest missing or corrupt: never restore past it.
public sealed class BackupDataException(string message, Guid backupId, long? chunkIndex = null, string? chunkSha256 = null, Exception? inner = null)
    : Exception(message, inner)
{
    public Guid BackupId { get; } = backupId;
    public long? ChunkIndex { get; } = chunkIndex;
    public string? ChunkSha256 { get; } = chunkSha256;
    /// <summary>How many chunks failed, when a verify read them all (1 otherwise).</summary>
    public int ChunksFailed { get; init; } = 1;
}

sealed record ManifestHeader(string Format, string Sha256);

// writers/<backupId>: a running backup. StartedAt is the share's clock (the marker's first mtime); the mtime
// itself is the writer's heartbeat.
sealed record WriterMarker(Guid BackupId, Guid VolumeId, string Host, DateTimeOffset? StartedAt);

// deleting/<backupId>.json: chunks of a deleted backup not yet collected. It outlives a crash, and keeps the
// chunks a running backup might still rely on until a later collection finds them free.
sealed record Tombstone(Guid BackupId, string[] Chunks);

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(Manifest))]
[JsonSerializable(typeof(ManifestHeader))]
[JsonSerializable(typeof(WriterMarker))]
[JsonSerializable(typeof(Tombstone))]
partial class RepositoryJson : JsonSerializerContext;
