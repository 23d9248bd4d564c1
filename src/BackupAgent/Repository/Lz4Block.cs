using System.Runtime.InteropServices;

namespace VolumeBackup.BackupAgent.Repository;

// LZ4 blocks through the reference C library (Debian's liblz4-1, as libnfs comes from libnfs13). The managed port
// used before decoded at half its speed, in a restore the largest cost after the name check; the block format is LZ4's,
// so chunks written by either read alike. Bound by hand (three calls): the one wrapper package in reach (IronCompress)
// ships a native build of its own instead of the system's.
public static unsafe partial class Lz4Block
{
    const string Library = "liblz4.so.1";

    // The packed length, or 0 when the block does not fit in destination.
    public static int Encode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        fixed (byte* from = source)
        fixed (byte* to = destination)
            return LZ4_compress_default(from, to, source.Length, destination.Length);
    }

    // The unpacked length, or a negative number for a malformed block or one that unpacks to more than destination holds.
    // The safe decoder: it never reads or writes past either span.
    public static int Decode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        fixed (byte* from = source)
        fixed (byte* to = destination)
            return LZ4_decompress_safe(from, to, source.Length, destination.Length);
    }

    // The largest packed form of length bytes.
    public static int MaxEncodedLength(int length) => LZ4_compressBound(length);

    [LibraryImport(Library)] private static partial int LZ4_compress_default(byte* source, byte* destination, int sourceSize, int maxDestinationSize);
    [LibraryImport(Library)] private static partial int LZ4_decompress_safe(byte* source, byte* destination, int compressedSize, int maxDecompressedSize);
    [LibraryImport(Library)] private static partial int LZ4_compressBound(int inputSize);
}
