using ZstdNet;

namespace VolumeBackup.BackupAgent.Repository;

// How new chunks are compressed; a restore reads every codec whatever this says (the codec byte of each chunk).
public enum ChunkCompression
{
    Lz4,    // decodes two to three times as fast as zstd: a fifth to a quarter less restore CPU (bench/README.md)
    Zstd,   // about a quarter fewer bytes on text than LZ4 (2.40x against 1.84x), at more CPU to restore
    None,
}

// One per worker (not thread-safe): packs a chunk with the repository's codec, keeping the zstd context between chunks.
public sealed class ChunkPacker(ChunkCompression compression, int zstdLevel) : IDisposable
{
    readonly Compressor? zstd = compression == ChunkCompression.Zstd ? new Compressor(new CompressionOptions(zstdLevel)) : null;

    // One codec byte and the payload into destination (data.Length + 1 bytes); returns the packed length. Only a payload
    // smaller than the data is kept: both codecs fail when the data does not fit in data.Length - 1 bytes.
    public int Pack(ReadOnlySpan<byte> data, Span<byte> destination)
    {
        var room = destination.Slice(1, data.Length - 1);
        switch (compression)
        {
            case ChunkCompression.Lz4 when Lz4Block.Encode(data, room) is > 0 and var packed:
                destination[0] = ChunkStore.Lz4;
                return packed + 1;
            case ChunkCompression.Zstd:
                try
                {
                    var packed = zstd!.Wrap(data, room);
                    destination[0] = ChunkStore.Zstd;
                    return packed + 1;
                }
                catch (ZstdException e) when (e.Code == ZSTD_ErrorCode.ZSTD_error_dstSize_tooSmall)
                {
                }
                break;
        }
        destination[0] = ChunkStore.Plain;
        data.CopyTo(destination[1..]);
        return data.Length + 1;
    }

    public void Dispose() => zstd?.Dispose();
}
