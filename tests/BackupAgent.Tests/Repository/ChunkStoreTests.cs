using System.Security.Cryptography;
using System.Text;
using K4os.Compression.LZ4;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.Contracts;
using VolumeBackup.TestSupport;
using ZstdNet;
using static VolumeBackup.TestSupport.TestFiles;

namespace VolumeBackup.BackupAgent.Tests.Repository;

// The stored form of one chunk, encoded with each codec and decoded whatever the repository's codec is now, against chunks
// the managed ports earlier versions wrote with (ZstdSharp for zstd, K4os for LZ4) left on shares.
public sealed class ChunkStoreTests
{
    const string Container = "chunkstore";
    static readonly byte[] Text = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Range(0, 20_000).Select(i => $"line {i}: the quick brown fox jumps over the lazy dog\n")));

    static readonly ContainerKey Encrypted = ContainerKey.Create(Container, MasterKey.Load(TestServices.CreateMasterKeyFile())).Key;

    [Fact]
    public void A_chunk_the_managed_port_compressed_decodes_to_its_data()
    {
        using var port = new ZstdSharp.Compressor(1);
        byte[] stored = [1, .. port.Wrap(Text).ToArray()];   // codec byte 1: zstd
        var name = ContainerKey.Plain.NameOf(Text);
        var back = new byte[Text.Length];

        using var decompressor = new Decompressor();
        ChunkStore.Decode(ContainerKey.Plain, Container, name, decompressor, stored, back);

        Assert.Equal(Text, back);
    }

    [Fact]
    public void A_chunk_the_managed_lz4_port_compressed_decodes_to_its_data()
    {
        var block = new byte[LZ4Codec.MaximumOutputSize(Text.Length)];
        byte[] stored = [ChunkStore.Lz4, .. block.AsSpan(0, LZ4Codec.Encode(Text, block, LZ4Level.L00_FAST))];
        var back = new byte[Text.Length];

        using var decompressor = new Decompressor();
        ChunkStore.Decode(ContainerKey.Plain, Container, ContainerKey.Plain.NameOf(Text), decompressor, stored, back);

        Assert.Equal(Text, back);
    }

    [Theory]
    [InlineData(false, ChunkCompression.Lz4, ChunkStore.Lz4)]
    [InlineData(true, ChunkCompression.Lz4, ChunkStore.Lz4)]
    [InlineData(false, ChunkCompression.Zstd, ChunkStore.Zstd)]
    [InlineData(true, ChunkCompression.Zstd, ChunkStore.Zstd)]
    [InlineData(false, ChunkCompression.None, ChunkStore.Plain)]
    public void Text_is_stored_with_the_codec_chosen_and_random_data_plain_and_both_decode(bool encrypted, ChunkCompression compression, byte textCodec)
    {
        var key = encrypted ? Encrypted : ContainerKey.Plain;
        var random = RandomBytes(Text.Length, seed: 5);
        using var packer = new ChunkPacker(compression, zstdLevel: 1);
        using var decompressor = new Decompressor();
        var overhead = ChunkStore.MaxStoredSize(Text.Length) - Text.Length;

        foreach (var data in new[] { Text, random })
        {
            var name = key.NameOf(data);
            var stored = new byte[ChunkStore.MaxStoredSize(data.Length)];
            var length = ChunkStore.Encode(key, Container, name, packer, data, stored);
            var back = new byte[data.Length];
            ChunkStore.Decode(key, Container, name, decompressor, stored.AsSpan(0, length), back);

            Assert.Equal(data, back);
            if (!encrypted)
                Assert.Equal(data == random ? ChunkStore.Plain : textCodec, stored[0]);
            if (data == random || compression == ChunkCompression.None)
                Assert.Equal(data.Length + (encrypted ? overhead : 1), length);   // kept plain: one codec byte, and the envelope
            else
                Assert.True(length < data.Length / 4, $"{length} stored bytes for {data.Length} of text");
        }
    }

    [Fact]
    public void An_lz4_block_that_decodes_to_more_than_its_chunk_or_is_malformed_is_refused()
    {
        var block = new byte[Lz4Block.MaxEncodedLength(Text.Length)];
        byte[] tooLong = [ChunkStore.Lz4, .. block.AsSpan(0, Lz4Block.Encode(Text, block))];
        var half = Text.AsSpan(0, Text.Length / 2).ToArray();
        byte[] truncated = tooLong[..(tooLong.Length / 2)];
        using var decompressor = new Decompressor();

        foreach (var (stored, plain) in new[] { (tooLong, half), (truncated, Text) })
        {
            var error = Assert.Throws<InvalidDataException>(() =>
                ChunkStore.Decode(ContainerKey.Plain, Container, ContainerKey.Plain.NameOf(plain), decompressor, stored, new byte[plain.Length]));
            Assert.StartsWith("lz4 cannot decode it", error.Message, StringComparison.Ordinal);
        }
        var back = new byte[Text.Length];
        ChunkStore.Decode(ContainerKey.Plain, Container, ContainerKey.Plain.NameOf(Text), decompressor, tooLong, back);
        Assert.Equal(Text, back);
    }

    [Fact]
    public void A_frame_that_decodes_to_more_than_its_chunk_or_is_not_zstd_is_refused()
    {
        using var port = new ZstdSharp.Compressor(1);
        byte[] tooLong = [1, .. port.Wrap(Text).ToArray()];
        var half = Text.AsSpan(0, Text.Length / 2).ToArray();
        byte[] garbage = [1, .. RandomNumberGenerator.GetBytes(1000)];
        using var decompressor = new Decompressor();

        var error = Assert.Throws<InvalidDataException>(() =>
            ChunkStore.Decode(ContainerKey.Plain, Container, ContainerKey.Plain.NameOf(half), decompressor, tooLong, new byte[half.Length]));
        Assert.Equal("it decodes to more than one chunk of data", error.Message);
        error = Assert.Throws<InvalidDataException>(() =>
            ChunkStore.Decode(ContainerKey.Plain, Container, ContainerKey.Plain.NameOf(half), decompressor, garbage, new byte[half.Length]));
        Assert.StartsWith("zstd cannot decode it", error.Message, StringComparison.Ordinal);

        // The same decompressor still decodes a good chunk after both failures.
        var back = new byte[Text.Length];
        ChunkStore.Decode(ContainerKey.Plain, Container, ContainerKey.Plain.NameOf(Text), decompressor, tooLong, back);
        Assert.Equal(Text, back);
    }
}
