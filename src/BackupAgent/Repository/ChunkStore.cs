using System.Buffers;
using System.Security.Cryptography;
using ZstdSharp;

namespace VolumeBackup.BackupAgent.Repository;

// A chunk is stored at <container>/chunks/<first 2 hex>/<sha256 of the plain data> as one codec byte and the payload:
// zstd when that is smaller than the plain data, else the plain data.
static class ChunkStore
{
    const byte Plain = 0;
    const byte Zstd = 1;

    static readonly SearchValues<char> Hex = SearchValues.Create("0123456789abcdef");

    public static string PathOf(string container, string sha256) => $"{container}/chunks/{sha256[..2]}/{sha256}";

    public static string Hash(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public static bool IsHash(string value) => value.Length == 64 && value.AsSpan().IndexOfAnyExcept(Hex) < 0;

    // destination must hold data.Length + 1 bytes; returns the stored length.
    public static int Encode(Compressor compressor, ReadOnlySpan<byte> data, Span<byte> destination)
    {
        if (compressor.TryWrap(data, destination.Slice(1, data.Length - 1), out var packed))
        {
            destination[0] = Zstd;
            return packed + 1;
        }
        destination[0] = Plain;
        data.CopyTo(destination[1..]);
        return data.Length + 1;
    }

    // Returns the plain length; InvalidDataException when the stored form cannot be decoded into destination.
    public static int Decode(Decompressor decompressor, ReadOnlySpan<byte> stored, Span<byte> destination)
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
                    if (decompressor.TryUnwrap(payload, destination, out var written))
                        return written;
                }
                catch (ZstdException e)
                {
                    throw new InvalidDataException($"zstd cannot decode it ({e.Message})", e);
                }
                throw new InvalidDataException("it decodes to more than one chunk of data");
            case Plain:
                throw new InvalidDataException("it holds more than one chunk of data");
            default:
                throw new InvalidDataException($"its codec byte {stored[0]} is unknown");
        }
    }
}
