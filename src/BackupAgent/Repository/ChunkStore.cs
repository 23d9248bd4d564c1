using System.Buffers;
using ZstdNet;

namespace VolumeBackup.BackupAgent.Repository;

// A chunk is stored at <container>/chunks/<first 2 hex>/<name>, its name given by the container's key (ContainerKey.NameOf:
// HMAC-SHA-256 of the plain data; SHA-256 in the plain format 1). Packed, it is one codec byte and the payload (ChunkPacker:
// LZ4 or zstd when that is smaller than the plain data, else the plain data); encrypted, the packed form sealed in an
// Envelope with the chunk's container and name as associated data. Compression comes first: ciphertext does not compress.
// zstd is the native libzstd that ZstdNet carries (runtimes/<rid>/native): faster than the managed port earlier
// versions wrote with, and with nothing to JIT; their frames decode alike (the format is zstd's, not the library's).
public static class ChunkStore
{
    public const byte Plain = 0;
    public const byte Zstd = 1;
    public const byte Lz4 = 2;

    static readonly SearchValues<char> Hex = SearchValues.Create("0123456789abcdef");

    public static string PathOf(string container, string name) => $"{container}/chunks/{name[..2]}/{name}";

    public static bool IsName(string value) => value.Length == 64 && value.AsSpan().IndexOfAnyExcept(Hex) < 0;

    // The largest stored form of a chunk of chunkSize bytes: the buffer Encode and Decode need.
    public static int MaxStoredSize(int chunkSize) => chunkSize + 1 + Envelope.Overhead;

    // The stored form of one chunk named `name` into destination (MaxStoredSize(data.Length) bytes); returns its length.
    public static int Encode(ContainerKey key, string container, string name, ChunkPacker packer, ReadOnlySpan<byte> data, Span<byte> destination)
    {
        if (!key.Encrypted)
            return packer.Pack(data, destination);
        var packed = packer.Pack(data, destination[Envelope.HeaderSize..]);
        return key.Seal(destination, packed, ContainerKey.ChunkIdentity(container, name));
    }

    // Decodes the stored form of the chunk named `name` (decrypted in place) into destination, which must come out
    // exactly full, and checks that the data is what the name says. InvalidDataException saying why when it is not.
    public static void Decode(ContainerKey key, string container, string name, Decompressor decompressor, Span<byte> stored, Span<byte> destination)
    {
        var packed = key.Encrypted ? key.Open(stored, ContainerKey.ChunkIdentity(container, name)) : stored;
        var length = Unpack(decompressor, packed, destination);
        if (length != destination.Length)
            throw new InvalidDataException($"it decodes to {length} bytes, not the {destination.Length} of its place in the volume");
        if (key.NameOf(destination) != name)
            throw new InvalidDataException("its data does not match its name");
    }

    static int Unpack(Decompressor decompressor, ReadOnlySpan<byte> stored, Span<byte> destination)
    {
        if (stored.IsEmpty)
            throw new InvalidDataException("it is empty");
        var payload = stored[1..];
        switch (stored[0])
        {
            case Plain when payload.Length <= destination.Length:
                payload.CopyTo(destination);
                return payload.Length;
            case Zstd:
                try
                {
                    return decompressor.Unwrap(payload, destination, bufferSizePrecheck: false);
                }
                catch (ZstdException e) when (e.Code == ZSTD_ErrorCode.ZSTD_error_dstSize_tooSmall)
                {
                    throw new InvalidDataException("it decodes to more than one chunk of data", e);
                }
                catch (ZstdException e)
                {
                    throw new InvalidDataException($"zstd cannot decode it ({e.Message})", e);
                }
            case Lz4:
                var length = Lz4Block.Decode(payload, destination);
                return length >= 0 ? length : throw new InvalidDataException("lz4 cannot decode it (a malformed block, or more than one chunk of data)");
            case Plain:
                throw new InvalidDataException("it holds more than one chunk of data");
            default:
                throw new InvalidDataException($"its codec byte {stored[0]} is unknown");
        }
    }
}
