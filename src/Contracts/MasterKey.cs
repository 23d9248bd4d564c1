using System.Security.Cryptography;
using System.Text;

namespace VolumeBackup.Contracts;

/// <summary>
/// The deployment's master key: 32 random bytes in a file only its owner may read (deploy/ generates it). The agents
/// wrap each container's data key with a key derived from it; the Api signs export records with another. Losing it
/// is losing every backup it protects.
/// </summary>
public sealed class MasterKey
{
    public const string ConfigKey = "Encryption:MasterKeyFile";
    public const int Size = 32;

    readonly byte[] key;

    MasterKey(byte[] key)
    {
        this.key = key;
        Id = Convert.ToHexStringLower(Derive("volumebackup master-key-id v1", 8));
    }

    /// <summary>A public name of the key (16 hex digits, derived one way): what records and key files name it by.</summary>
    public string Id { get; }

    public static MasterKey FromBytes(ReadOnlySpan<byte> key) =>
        key.Length == Size ? new MasterKey(key.ToArray()) : throw new ArgumentException($"A master key is {Size} bytes, not {key.Length}.", nameof(key));

    /// <summary>Reads the key file, refusing a missing path, a file others may read, or one that is not exactly 32 bytes.</summary>
    public static MasterKey Load(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new InvalidOperationException($"{ConfigKey} is required: the path of the 32-byte master key file (deploy/services.sh start generates one, mode 0600).");
        if (!File.Exists(path))
            throw new InvalidOperationException($"The master key file {path} ({ConfigKey}) does not exist.");
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
            throw new InvalidOperationException($"The master key file {path} may be read or written by others than its owner: chmod 600 it.");
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length != Size)
            throw new InvalidOperationException($"The master key file {path} holds {bytes.Length} bytes, not the {Size} random bytes of a master key.");
        return new MasterKey(bytes);
    }

    /// <summary>An independent key for one purpose (HKDF-SHA-256): a derived key never reveals the master key or another derived key.</summary>
    public byte[] Derive(string purpose, int length = Size) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, key, length, info: Encoding.UTF8.GetBytes(purpose));
}
