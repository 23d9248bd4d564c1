using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Backups;

public sealed record ImportRecordBody([property: JsonPropertyName("backup-record")] ImportRecord? BackupRecord);
public sealed record ImportRecord(string? BackupService, string? BackupUrl);

/// <summary>
/// What export_record hands out: the backup's row, base64-encoded JSON as Cinder does, signed. With it, a deployment
/// that reaches the same share and holds the same master key can import the backup and restore it (the data and
/// manifest are on the share, encrypted under that key; the record carries no key).
/// </summary>
public sealed record BackupRecord(
    Guid Id, Guid VolumeId, Guid? SnapshotId, string Container, int Size, int ObjectCount, long StoredBytes, Guid? ParentId,
    string AvailabilityZone, string? Name, string? Description, DateTimeOffset DataTimestamp, DateTimeOffset CreatedAt,
    Dictionary<string, string> Metadata, Guid? ManifestId = null)
{
    // Cinder names the backup driver's module here; clients and Tempest expect that prefix.
    public const string Service = "cinder.backup.drivers.volumebackup";
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static Dictionary<string, string> Export(Backup b, RecordSigner signer)
    {
        var record = new BackupRecord(b.Id, b.VolumeId, b.SnapshotId, b.Container, b.Size, b.ObjectCount, b.StoredBytes, b.ParentId,
            b.AvailabilityZone, b.Name, b.Description, b.DataTimestamp, b.CreatedAt, b.Metadata, b.ManifestId);
        var body = JsonSerializer.SerializeToUtf8Bytes(record, Json);
        var signed = new SignedRecord(b.Id, Convert.ToBase64String(body), signer.MasterKeyId, Convert.ToBase64String(signer.Sign(body)));
        return new()
        {
            ["backup_service"] = Service,
            ["backup_url"] = Convert.ToBase64String(JsonSerializer.SerializeToUtf8Bytes(signed, Json)),
        };
    }

    /// <summary>The record, or why it is refused (a message fit for a 400): unreadable, unsigned, of another master key, or edited.</summary>
    public static (BackupRecord? Record, string? Error) Decode(string url, RecordSigner signer)
    {
        SignedRecord? signed;
        byte[] body;
        try
        {
            signed = JsonSerializer.Deserialize<SignedRecord>(Convert.FromBase64String(url), Json);
            if (signed is not { Record: { } text })
                return (null, "Invalid input received: Can't parse backup record.");
            body = Convert.FromBase64String(text);
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return (null, "Invalid input received: Can't parse backup record.");
        }
        if (signed.MasterKeyId is not { } keyId || signed.Signature is not { } signature)
            return (null, "Invalid input received: The backup record is not signed; export it again from a deployment of this version.");
        if (keyId != signer.MasterKeyId)
            return (null, $"Invalid input received: The backup record was exported under master key {keyId}, and this deployment holds master key {signer.MasterKeyId}: "
                + "the backup's data is encrypted under that key and cannot be read here. Import it where that master key is configured.");
        byte[] mac;
        try { mac = Convert.FromBase64String(signature); }
        catch (FormatException) { return (null, "Invalid input received: The backup record's signature is malformed."); }
        if (!CryptographicOperations.FixedTimeEquals(mac, signer.Sign(body)))
            return (null, "Invalid input received: The backup record's signature does not match: it was edited, or not exported by this service.");
        try
        {
            // Its fields are checked by Problem, which names what is wrong. The outer id, outside the signature, is the id the
            // row is imported under: Cinder's users (and Tempest) change it to import a second row for the same backup.
            return JsonSerializer.Deserialize<BackupRecord>(body, Json) is { } record
                ? (signed.Id is { } id && id != record.Id ? record with { Id = id, ManifestId = record.ManifestId ?? record.Id } : record, null)
                : (null, "Invalid input received: Can't parse backup record.");
        }
        catch (JsonException)
        {
            return (null, "Invalid input received: Can't parse backup record.");
        }
    }

    /// <summary>
    /// Why a decoded record cannot become a row, or null: a record is input like any body, so it gets the limits the create
    /// schema gives these fields (names, zone and container of at most 255 characters, Cinder's metadata) and sane numbers.
    /// </summary>
    public string? Problem()
    {
        if (Container is null || AvailabilityZone is null) return "container and availability_zone are required";
        foreach (var (field, value) in new[] { ("name", Name), ("description", Description), ("availability_zone", AvailabilityZone) })
            if (value?.EnumerateRunes().Count() > 255) return $"{field} has more than 255 characters";
        if (Size < 0 || ObjectCount < 0 || StoredBytes < 0) return "size, object_count and stored_bytes must not be negative";
        return Validation.Schemas.Metadata.Check(JsonSerializer.SerializeToElement(Metadata));
    }

    /// <summary>An imported backup's row, made available by the saga; an incremental's parent need not exist here (its manifest is complete).</summary>
    public Backup ToBackup(string projectId, string userId, DateTimeOffset now) => new()
    {
        Id = Id, ProjectId = projectId, UserId = userId, VolumeId = VolumeId, SnapshotId = SnapshotId, Container = Container, Size = Size,
        ObjectCount = ObjectCount, StoredBytes = StoredBytes, ParentId = ParentId, AvailabilityZone = AvailabilityZone, Name = Name,
        Description = Description, DataTimestamp = DataTimestamp, CreatedAt = CreatedAt, UpdatedAt = now, Metadata = Metadata ?? [],
        ManifestId = ManifestId,
    };

    // backup_url decoded: the id to import under, the record's JSON (base64, signed as is: no canonical form to agree on),
    // the master key it was exported under, and the HMAC-SHA-256.
    sealed record SignedRecord(Guid? Id, string? Record, [property: JsonPropertyName("master_key_id")] string? MasterKeyId,
        [property: JsonPropertyName("hmac_sha256")] string? Signature);
}

/// <summary>
/// Signs export records with HMAC-SHA-256 under a key derived from the master key: only a deployment holding the same
/// master key (the one that can decrypt the backup) accepts a record, and an edited or forged one fails. The Api keeps the
/// derived key alone, never the master key.
/// </summary>
public sealed class RecordSigner
{
    readonly byte[] key;

    public RecordSigner(MasterKey master)
    {
        key = master.Derive("volumebackup export-record v1");
        MasterKeyId = master.Id;
    }

    public string MasterKeyId { get; }

    public byte[] Sign(ReadOnlySpan<byte> record)
    {
        byte[] signed = [.. Encoding.UTF8.GetBytes($"volumebackup export-record v1\n{MasterKeyId}\n"), .. record];
        return HMACSHA256.HashData(key, signed);
    }
}
