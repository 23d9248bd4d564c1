using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent.Repository;

// A container's keys. Encrypted (format 2): one random 256-bit data key per container, kept in <container>/keys.json
// wrapped (AES-256-GCM) under a key derived from the master key, one wrap per master key id. From the data key come
// the naming key (chunk names are HMAC-SHA-256 of the plain data: dedup works inside the container, and the share shows
// no content hash) and the object key (AES-256-GCM of every chunk and manifest, with the object's identity as
// associated data, so an object moved to another name, position or container fails authentication).
// Plain: the unencrypted format 1 (SHA-256 names), written only by a repository without a master key (the bench's
// baseline); backups of earlier versions are in it too.
public sealed class ContainerKey
{
    const int DataKeySize = 32;

    readonly byte[]? nameKey;
    readonly byte[]? objectKey;

    ContainerKey(ReadOnlySpan<byte> dataKey)
    {
        nameKey = HKDF.DeriveKey(HashAlgorithmName.SHA256, dataKey.ToArray(), 32, info: "volumebackup chunk-name v1"u8.ToArray());
        objectKey = HKDF.DeriveKey(HashAlgorithmName.SHA256, dataKey.ToArray(), 32, info: "volumebackup object v1"u8.ToArray());
    }

    ContainerKey() { }

    public static ContainerKey Plain { get; } = new();

    public bool Encrypted => objectKey is not null;

    // The manifest format this key writes.
    public int FormatVersion => Encrypted ? Manifest.CurrentFormatVersion : Manifest.PlainFormatVersion;

    public string NameOf(ReadOnlySpan<byte> plain) =>
        Convert.ToHexStringLower(nameKey is null ? SHA256.HashData(plain) : HMACSHA256.HashData(nameKey, plain));

    public int Seal(Span<byte> buffer, int plainLength, ReadOnlySpan<byte> identity) => Envelope.Seal(objectKey!, buffer, plainLength, identity);

    public Span<byte> Open(Span<byte> sealedData, ReadOnlySpan<byte> identity) => Envelope.Open(objectKey!, sealedData, identity);

    public static byte[] ChunkIdentity(string container, string name) => Encoding.UTF8.GetBytes($"volumebackup chunk v1\n{container}\n{name}");

    public static byte[] ManifestIdentity(string container, Guid backupId) => Encoding.UTF8.GetBytes($"volumebackup manifest v1\n{container}\n{backupId:D}");

    public static string FilePath(string container) => $"{container}/keys.json";

    // A new random data key for a container that has none, and its key file.
    public static (ContainerKey Key, byte[] File) Create(string container, MasterKey master)
    {
        var dataKey = RandomNumberGenerator.GetBytes(DataKeySize);
        try
        {
            return (new ContainerKey(dataKey), Serialize(new KeyFile(KeyFile.CurrentFormat, [Wrap(dataKey, container, master)])));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    // RepositoryKeyException when the file is not a key file of this container wrapped under this master key.
    public static ContainerKey Open(ReadOnlySpan<byte> file, string container, MasterKey master, string where)
    {
        var dataKey = Unwrap(Parse(file, container, where), container, master, where);
        try
        {
            return new ContainerKey(dataKey);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    // The key file with the data key wrapped under `to` (and still under `from` with keepFrom, the first step of a
    // rotation: a rotation stopped half-way leaves every container readable with the old key); null when it already is.
    public static byte[]? Rewrap(ReadOnlySpan<byte> file, string container, MasterKey from, MasterKey to, bool keepFrom, string where)
    {
        var keys = Parse(file, container, where);
        var hasTo = keys.Wraps.Any(w => w.MasterKeyId == to.Id);
        if (keepFrom ? hasTo : keys.Wraps is [{ } only] && only.MasterKeyId == to.Id)
            return null;
        var dataKey = hasTo ? Unwrap(keys, container, to, where) : Unwrap(keys, container, from, where);
        try
        {
            KeyWrap[] wraps = keepFrom ? [.. keys.Wraps, Wrap(dataKey, container, to)] : [Wrap(dataKey, container, to)];
            return Serialize(keys with { Wraps = wraps });
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    static KeyWrap Wrap(ReadOnlySpan<byte> dataKey, string container, MasterKey master)
    {
        var buffer = new byte[dataKey.Length + Envelope.Overhead];
        dataKey.CopyTo(buffer.AsSpan(Envelope.HeaderSize));
        Envelope.Seal(WrappingKey(master), buffer, dataKey.Length, WrapIdentity(container, master.Id));
        return new KeyWrap(master.Id, DateTimeOffset.UtcNow, Convert.ToBase64String(buffer));
    }

    static byte[] Unwrap(KeyFile keys, string container, MasterKey master, string where)
    {
        var wrap = keys.Wraps.FirstOrDefault(w => w.MasterKeyId == master.Id)
            ?? throw new RepositoryKeyException($"Container '{container}' on {where} is encrypted under master key {string.Join(", ", keys.Wraps.Select(w => w.MasterKeyId))}, "
                + $"and this agent holds master key {master.Id} ({MasterKey.ConfigKey}). Its backups cannot be read or written without that key: losing the master key is losing the backups.");
        try
        {
            return Envelope.Open(WrappingKey(master), Convert.FromBase64String(wrap.Wrapped), WrapIdentity(container, master.Id)).ToArray();
        }
        catch (Exception e) when (e is FormatException or InvalidDataException)
        {
            throw new RepositoryKeyException($"The data key of container '{container}' on {where} cannot be unwrapped with master key {master.Id}: "
                + "its key file was altered, or copied from another container.", e);
        }
    }

    static KeyFile Parse(ReadOnlySpan<byte> file, string container, string where)
    {
        try
        {
            if (JsonSerializer.Deserialize(file, RepositoryJson.Default.KeyFile) is { Format: KeyFile.CurrentFormat } keys)
                return keys;
        }
        catch (JsonException e)
        {
            throw new RepositoryKeyException($"The key file of container '{container}' on {where} is not valid JSON ({e.Message}).", e);
        }
        throw new RepositoryKeyException($"The key file of container '{container}' on {where} is not a key file of this format ({KeyFile.CurrentFormat}).");
    }

    static byte[] Serialize(KeyFile keys) => JsonSerializer.SerializeToUtf8Bytes(keys, RepositoryJson.Default.KeyFile);

    static byte[] WrappingKey(MasterKey master) => master.Derive("volumebackup data-key wrapping v1");

    static byte[] WrapIdentity(string container, string masterKeyId) => Encoding.UTF8.GetBytes($"volumebackup data-key v1\n{container}\n{masterKeyId}");
}

// What is stored of an encrypted object: a version byte, a random 96-bit nonce, the AES-256-GCM ciphertext and its tag.
static class Envelope
{
    public const int HeaderSize = 1 + NonceSize;
    public const int Overhead = HeaderSize + TagSize;
    const byte Version = 0x01;   // a format-1 manifest starts with '{': the two never look alike
    const int NonceSize = 12;
    const int TagSize = 16;

    // buffer holds the plain data at HeaderSize and room for the tag after it; encrypts in place, returns the sealed length.
    public static int Seal(byte[] key, Span<byte> buffer, int plainLength, ReadOnlySpan<byte> identity)
    {
        buffer[0] = Version;
        var nonce = buffer.Slice(1, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        var data = buffer.Slice(HeaderSize, plainLength);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, data, data, buffer.Slice(HeaderSize + plainLength, TagSize), identity);
        return plainLength + Overhead;
    }

    // Decrypts in place and returns the plain part; InvalidDataException when it was altered or is another object.
    public static Span<byte> Open(byte[] key, Span<byte> sealedData, ReadOnlySpan<byte> identity)
    {
        if (sealedData.Length < Overhead || sealedData[0] != Version)
            throw new InvalidDataException(sealedData.Length < Overhead ? "it is too short to be encrypted data" : $"its envelope version {sealedData[0]} is unknown");
        var data = sealedData[HeaderSize..^TagSize];
        try
        {
            using var aes = new AesGcm(key, TagSize);
            aes.Decrypt(sealedData.Slice(1, NonceSize), data, sealedData[^TagSize..], data, identity);
        }
        catch (AuthenticationTagMismatchException e)
        {
            throw new InvalidDataException("it fails authentication (altered, or not the object stored under this name and container)", e);
        }
        return data;
    }
}

// <container>/keys.json: the container's data key, wrapped once per master key that may open it (one, but during a rotation).
sealed record KeyFile(string Format, KeyWrap[] Wraps)
{
    public const string CurrentFormat = "volume-backup-keys-v1";
}

sealed record KeyWrap(string MasterKeyId, DateTimeOffset WrappedAt, string Wrapped);

// The master key configured cannot open a container's data key, or its key file is damaged: nothing of it can be read.
public sealed class RepositoryKeyException(string message, Exception? inner = null) : Exception(message, inner);
