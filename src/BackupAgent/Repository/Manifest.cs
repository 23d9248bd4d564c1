using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace VolumeBackup.BackupAgent.Repository;

// One per backup, complete on its own: every chunk of the volume, in order, null for an all-zero chunk.
// DeviceGeneration names the point-in-time copy the backup read (the VolumeAgent's device generation): an incremental
// trusts changed-block tracking only against a base of that same generation.
// Format 2 (encrypted): this record as JSON, sealed in an Envelope with the container and backup id as associated data;
// Sha256 is that of the file as stored. Format 1 (plain, earlier versions and the bench's baseline) is two JSON lines: a
// header {"format":..., "sha256":...} and this body, where the header's sha256 is that of every byte after its newline.
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
    public const int CurrentFormatVersion = 2;
    public const int PlainFormatVersion = 1;
    const string Format = "volume-backup-manifest";

    // SHA-256 of the file as stored (format 1: of the body); set when written or read.
    [JsonIgnore] public string Sha256 { get; init; } = "";

    public static long ChunkCount(long sizeBytes, int chunkSize) => (sizeBytes + chunkSize - 1) / chunkSize;

    // The file to store, in the format of the key (FormatVersion must be key.FormatVersion).
    public byte[] ToBytes(ContainerKey key, string container, out string sha256)
    {
        if (FormatVersion != key.FormatVersion)
            throw new InvalidOperationException($"A manifest of format {FormatVersion} cannot be written with a key of format {key.FormatVersion}.");
        var body = JsonSerializer.SerializeToUtf8Bytes(this, RepositoryJson.Default.Manifest);
        if (key.Encrypted)
        {
            var file = new byte[body.Length + Envelope.Overhead];
            body.CopyTo(file, Envelope.HeaderSize);
            key.Seal(file, body.Length, ContainerKey.ManifestIdentity(container, BackupId));
            sha256 = Convert.ToHexStringLower(SHA256.HashData(file));
            return file;
        }
        var digest = new byte[body.Length + 1];
        body.CopyTo(digest, 0);
        digest[^1] = (byte)'\n';
        sha256 = Convert.ToHexStringLower(SHA256.HashData(digest));
        var header = JsonSerializer.SerializeToUtf8Bytes(new ManifestHeader(Format, sha256), RepositoryJson.Default.ManifestHeader);
        return [.. header, (byte)'\n', .. digest];
    }

    // Format 1 files are JSON text; format 2 files start with the envelope's version byte.
    public static bool IsEncrypted(ReadOnlySpan<byte> file) => !file.IsEmpty && file[0] != (byte)'{';

    // Throws BackupDataException naming the backup when the file is not a whole, valid manifest of it. An encrypted file
    // needs its container's key; a plain one is read whatever the key (what to trust it for is the caller's choice).
    // Without verifyDigest a plain file's structure alone is checked: enough to know which chunks a damaged manifest names.
    public static Manifest Parse(byte[] file, Guid backupId, string container, ContainerKey? key, bool verifyDigest = true)
    {
        if (IsEncrypted(file))
            return ParseEncrypted(file, backupId, container, key);
        var newline = file.AsSpan().IndexOf((byte)'\n');
        if (newline < 0)
            throw Corrupt(backupId, "it has no header line");
        ManifestHeader? header;
        Manifest? manifest;
        try
        {
            header = JsonSerializer.Deserialize(file.AsSpan(0, newline), RepositoryJson.Default.ManifestHeader);
            if (header?.Format != Format)
                throw Corrupt(backupId, "its header does not name the manifest format");
            var body = file.AsSpan(newline + 1);
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
        manifest.Validate(backupId, PlainFormatVersion);
        return manifest;
    }

    static Manifest ParseEncrypted(byte[] file, Guid backupId, string container, ContainerKey? key)
    {
        if (key is not { Encrypted: true })
            throw Corrupt(backupId, "it is encrypted, and this repository has no master key to read it");
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(file));
        Manifest? manifest;
        try
        {
            // A copy: Open decrypts in place, and the caller's bytes stay as read.
            var body = key.Open(file.AsSpan().ToArray(), ContainerKey.ManifestIdentity(container, backupId));
            manifest = JsonSerializer.Deserialize(body, RepositoryJson.Default.Manifest) ?? throw Corrupt(backupId, "its body is empty");
        }
        catch (InvalidDataException e)
        {
            throw Corrupt(backupId, e.Message, e);
        }
        catch (JsonException e)
        {
            throw Corrupt(backupId, $"it is not valid JSON ({e.Message})", e);
        }
        manifest = manifest with { Sha256 = sha256 };
        manifest.Validate(backupId, CurrentFormatVersion);
        return manifest;
    }

    void Validate(Guid backupId, int formatVersion)
    {
        if (FormatVersion != formatVersion)
            throw Corrupt(backupId, $"its format version {FormatVersion} is not that of its file ({formatVersion})");
        if (BackupId != backupId)
            throw Corrupt(backupId, $"it describes backup {BackupId}");
        if (ChunkSize is < RepositoryOptions.MinChunkSize or > RepositoryOptions.MaxChunkSize || SizeBytes < 0)
            throw Corrupt(backupId, $"its chunk size {ChunkSize} or volume size {SizeBytes} is out of range");
        if (Chunks.Length != ChunkCount(SizeBytes, ChunkSize))
            throw Corrupt(backupId, $"it lists {Chunks.Length} chunks where {SizeBytes} bytes need {ChunkCount(SizeBytes, ChunkSize)}");
        for (var i = 0; i < Chunks.Length; i++)
        {
            // Hashes become paths on the share: only well-formed ones may leave this method.
            if (Chunks[i] is { } chunk && (!ChunkStore.IsName(chunk.Name) || chunk.StoredSize <= 0))
                throw Corrupt(backupId, $"its chunk {i} has a malformed name or size");
        }
    }

    static BackupDataException Corrupt(Guid backupId, string why, Exception? inner = null) =>
        new($"The manifest of backup {backupId} is corrupt: {why}.", backupId, inner: inner);
}

// Name: the chunk's file name, HMAC-SHA-256 of its plain data under the container's naming key (format 1: SHA-256).
public sealed record ChunkRef([property: JsonPropertyName("sha256")] string Name, int StoredSize);

// ObjectCount, StoredBytes: the distinct non-zero chunks referenced. ChangedChunks: chunk positions that differ
// from the parent (all non-zero ones for a full). ChunksWritten, BytesWritten: what this backup newly stored.
// Cbt: only the changed ranges were read (changed-block tracking); BytesRead: bytes read from the device.
public sealed record ManifestTotals(int ObjectCount, long StoredBytes, long DataBytes, int ChangedChunks, int ChunksWritten, long BytesWritten,
    bool Cbt = false, long BytesRead = 0);

// A chunk or manifest missing or corrupt: never restore past it.
public sealed class BackupDataException(string message, Guid backupId, long? chunkIndex = null, string? chunkName = null, Exception? inner = null)
    : Exception(message, inner)
{
    public Guid BackupId { get; } = backupId;
    public long? ChunkIndex { get; } = chunkIndex;
    public string? ChunkName { get; } = chunkName;
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
[JsonSerializable(typeof(KeyFile))]
partial class RepositoryJson : JsonSerializerContext;
