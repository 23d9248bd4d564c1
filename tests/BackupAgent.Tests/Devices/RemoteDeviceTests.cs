extern alias VolumeAgentHost;

using System.Diagnostics.Metrics;
using System.IO.Hashing;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using VolumeBackup.BackupAgent.Devices;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.BackupAgent.Tests.Repository;
using VolumeBackup.Contracts.Grpc;
using VolumeBackup.TestSupport;
using VolumeAgentProgram = VolumeAgentHost::Program;

namespace VolumeBackup.BackupAgent.Tests.Devices;

/// <summary>
/// Backups and restores through a VolumeAgent's ReadDevice/WriteDevice streams (a real VolumeAgent in process, on a
/// folder of the XFS pool), checked against the same work done on the device file directly.
/// </summary>
public sealed class RemoteDeviceTests : IAsyncDisposable
{
    const long Size = 8L << 20;
    const string Container = RepositoryFixture.Container;
    static readonly AgentOptions Agent = new() { Host = "host-b", VolumeAgentAddress = "https://localhost" };

    readonly string pool = TestServices.CreatePoolFolder("remote");
    readonly WebApplicationFactory<VolumeAgentProgram> volumeAgent;
    readonly VolumeHost.VolumeHostClient client;
    readonly RepositoryFixture repository = new();
    readonly BackupRepository backups;

    public RemoteDeviceTests()
    {
        volumeAgent = new WebApplicationFactory<VolumeAgentProgram>().WithWebHostBuilder(b =>
            b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(VolumeAgentSettings(pool))));
        client = new VolumeHost.VolumeHostClient(GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = volumeAgent.Server.CreateHandler() }));
        backups = repository.Repository();
    }

    // The in-process server is reached without TLS (TestServer); its TLS settings are still required to start.
    static Dictionary<string, string?> VolumeAgentSettings(string pool)
    {
        var settings = new Dictionary<string, string?> { ["Volumes:PoolPath"] = pool };
        foreach (var (key, value) in TestPki.Deployment.Settings(TestPki.Deployment.VolumeAgent, ":")) settings[key] = value;
        return settings;
    }

    [Fact]
    public async Task A_remote_backup_stores_the_chunks_of_a_local_one_and_sends_only_data_extents()
    {
        var volumeId = await VolumeAsync();
        var device = await client.GetBackupDeviceAsync(new GetBackupDeviceRequest { BackupId = Guid.NewGuid().ToString(), VolumeId = volumeId.ToString() });
        var local = Guid.NewGuid();
        await backups.BackupAsync(Container, local, volumeId, null, new BackupSource(device.Path, Size), null, CancellationToken.None);

        var remote = Guid.NewGuid();
        var streamed = await StreamedBytesAsync(async () =>
        {
            using var reader = new RemoteDeviceReader(client, "host-a", device, Agent);
            await backups.BackupAsync(Container, remote, volumeId, null, new BackupSource(device.Path, Size, Reader: reader), null, CancellationToken.None);
        });

        Assert.Equal((await ManifestAsync(local)).Chunks, (await ManifestAsync(remote)).Chunks);
        Assert.Equal(DataBytes, streamed);                     // holes (whole chunks and parts of chunks) never travelled
    }

    [Fact]
    public async Task A_remote_backup_of_more_chunks_than_one_call_carries_stores_the_chunks_of_a_local_one()
    {
        const long large = 6L << 30;                           // 96 Ki chunks of 64 KiB: 24 Ki ranges per stream, two calls each
        var volumeId = Guid.NewGuid();
        await client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = volumeId.ToString(), SizeBytes = large });
        await using (var file = new FileStream(Path.Combine(pool, $"volume-{volumeId}"), FileMode.Open, FileAccess.Write))
            foreach (var offset in new[] { 0L, 3L << 30, large - (1 << 20) })
            {
                file.Position = offset;
                await file.WriteAsync(TestFiles.RandomBytes(1 << 20, seed: (int)(offset >> 20)));
            }
        var device = await client.GetBackupDeviceAsync(new GetBackupDeviceRequest { BackupId = Guid.NewGuid().ToString(), VolumeId = volumeId.ToString() });
        var local = Guid.NewGuid();
        await backups.BackupAsync(Container, local, volumeId, null, new BackupSource(device.Path, large), null, CancellationToken.None);
        var remote = Guid.NewGuid();
        using (var reader = new RemoteDeviceReader(client, "host-a", device, Agent))
            await backups.BackupAsync(Container, remote, volumeId, null, new BackupSource(device.Path, large, Reader: reader), null, CancellationToken.None);
        Assert.Equal((await ManifestAsync(local)).Chunks, (await ManifestAsync(remote)).Chunks);
    }

    [Fact]
    public async Task A_remote_incremental_reads_only_the_changed_ranges_and_equals_a_full_read()
    {
        var volumeId = await VolumeAsync();
        var full = Guid.NewGuid();
        var first = await client.GetBackupDeviceAsync(new GetBackupDeviceRequest { BackupId = full.ToString(), VolumeId = volumeId.ToString() });
        using (var reader = new RemoteDeviceReader(client, "host-a", first, Agent))
            await backups.BackupAsync(Container, full, volumeId, null, new BackupSource(first.Path, Size, first.Generation, Reader: reader), null, CancellationToken.None);
        await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = first.DeviceId, Commit = true });   // kept as the CBT base

        var changed = TestFiles.RandomBytes(64 * 1024, seed: 99);
        await using (var file = new FileStream(Path.Combine(pool, $"volume-{volumeId}"), FileMode.Open, FileAccess.Write))
        {
            file.Position = 3L << 20;
            await file.WriteAsync(changed);
        }
        var incremental = Guid.NewGuid();
        var second = await client.GetBackupDeviceAsync(new GetBackupDeviceRequest { BackupId = incremental.ToString(), VolumeId = volumeId.ToString(), BaseBackupId = full.ToString() });
        Assert.True(second.Cbt);
        BackupSummary summary = null!;
        var streamed = await StreamedBytesAsync(async () =>
        {
            using var reader = new RemoteDeviceReader(client, "host-a", second, Agent);
            summary = await backups.BackupAsync(Container, incremental, volumeId, full,
                new BackupSource(second.Path, Size, second.Generation, [.. second.Changed.Select(r => (r.Offset, r.Length))], second.BaseGeneration, reader),
                null, CancellationToken.None);
        });

        Assert.True(summary.Cbt);
        Assert.Equal(changed.Length, streamed);
        var fullRead = Guid.NewGuid();
        await backups.BackupAsync(Container, fullRead, volumeId, full, new BackupSource(second.Path, Size), null, CancellationToken.None);
        Assert.Equal((await ManifestAsync(fullRead)).Chunks, (await ManifestAsync(incremental)).Chunks);
    }

    [Fact]
    public async Task A_remote_restore_writes_the_data_and_keeps_the_holes()
    {
        var volumeId = await VolumeAsync();
        var source = Path.Combine(pool, $"volume-{volumeId}");
        var backupId = Guid.NewGuid();
        await backups.BackupAsync(Container, backupId, volumeId, null, source, Size, null, CancellationToken.None);

        var target = Guid.NewGuid();
        await client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = target.ToString(), SizeBytes = Size });
        var device = await client.GetRestoreDeviceAsync(new GetRestoreDeviceRequest { VolumeId = target.ToString(), RestoreId = Guid.NewGuid().ToString() });
        await using (var writer = new RemoteDeviceWriter(client, "host-a", device, Agent, CancellationToken.None))
            await backups.RestoreAsync(Container, backupId, writer, null, CancellationToken.None);
        await client.ReleaseDeviceAsync(new ReleaseDeviceRequest { DeviceId = device.DeviceId, Commit = true });

        var restored = Path.Combine(pool, $"volume-{target}");
        Assert.Equal(await File.ReadAllBytesAsync(source), await File.ReadAllBytesAsync(restored));
        // The holes stayed holes: writing any of them would allocate 60 KiB more or worse (the hole beside a 4 KiB block in
        // its 64 KiB chunk), more than the file system's own slack.
        Assert.InRange(TestFiles.AllocatedBytes(restored), DataBytes, DataBytes + TestFiles.FileSystemSlack);
    }

    [Fact]
    public async Task WriteDevice_refuses_a_corrupt_message_and_any_file_but_a_restore_device()
    {
        var volumeId = await VolumeAsync();
        var device = await client.GetRestoreDeviceAsync(new GetRestoreDeviceRequest { VolumeId = volumeId.ToString(), RestoreId = Guid.NewGuid().ToString() });
        var data = ByteString.CopyFrom(TestFiles.RandomBytes(4096, seed: 5));

        var corrupt = await Assert.ThrowsAsync<RpcException>(() => WriteAsync(new DeviceData { DeviceId = device.DeviceId, Offset = 0, Data = data, Xxh3 = XxHash3.HashToUInt64(data.Span) + 1 }));
        Assert.Equal(StatusCode.DataLoss, corrupt.StatusCode);
        var volume = await Assert.ThrowsAsync<RpcException>(() => WriteAsync(new DeviceData { DeviceId = $"volume-{volumeId}", Offset = 0, Data = data, Xxh3 = XxHash3.HashToUInt64(data.Span) }));
        Assert.Equal(StatusCode.InvalidArgument, volume.StatusCode);
        var outside = await Assert.ThrowsAsync<RpcException>(() => WriteAsync(new DeviceData { DeviceId = device.DeviceId, Offset = Size - 100, Data = data, Xxh3 = XxHash3.HashToUInt64(data.Span) }));
        Assert.Equal(StatusCode.InvalidArgument, outside.StatusCode);
        Assert.Equal(0, TestFiles.AllocatedBytes(Path.Combine(pool, device.DeviceId)));   // nothing was written
    }

    [Fact]
    public async Task WriteDevice_writes_pieces_on_and_off_the_4_KiB_grid_in_one_stream()
    {
        // On the grid: O_DIRECT from an aligned copy; off it (a piece 100 bytes in, a short one): through the page cache.
        var volumeId = await VolumeAsync();
        var device = await client.GetRestoreDeviceAsync(new GetRestoreDeviceRequest { VolumeId = volumeId.ToString(), RestoreId = Guid.NewGuid().ToString() });
        var pieces = new (long Offset, byte[] Bytes)[] { (0, TestFiles.RandomBytes(1 << 20, seed: 11)), ((2 << 20) + 100, TestFiles.RandomBytes(1000, seed: 12)), (3 << 20, TestFiles.RandomBytes(8192, seed: 13)) };

        using (var call = client.WriteDevice())
        {
            foreach (var (offset, bytes) in pieces)
                await call.RequestStream.WriteAsync(new DeviceData { DeviceId = device.DeviceId, Offset = offset, Data = ByteString.CopyFrom(bytes), Xxh3 = XxHash3.HashToUInt64(bytes) });
            await call.RequestStream.CompleteAsync();
            Assert.Equal(pieces.Sum(p => p.Bytes.Length), (await call).BytesWritten);
        }

        var written = await File.ReadAllBytesAsync(Path.Combine(pool, device.DeviceId));
        foreach (var (offset, bytes) in pieces)
            Assert.Equal(bytes, written.AsSpan((int)offset, bytes.Length).ToArray());
    }

    [Fact]
    public async Task ReadDevice_sends_what_was_just_written_including_a_tail_off_the_4_KiB_grid()
    {
        // The aligned part is read with O_DIRECT, the last 1000 bytes through the page cache; the bytes were written
        // through the page cache a moment ago and may not be on disk yet: both reads must see them.
        var volumeId = Guid.NewGuid();
        var path = Path.Combine(pool, $"volume-{volumeId}");
        var bytes = TestFiles.RandomBytes((3 << 20) + 1000, seed: 7);
        await File.WriteAllBytesAsync(path, bytes);

        var received = new byte[bytes.Length];
        using var call = client.ReadDevice(new ReadDeviceRequest { DeviceId = $"volume-{volumeId}", SplitAt = 1 << 20 });
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            Assert.Equal(message.Xxh3, XxHash3.HashToUInt64(message.Data.Span));
            message.Data.Span.CopyTo(received.AsSpan((int)message.Offset));
        }

        Assert.Equal(bytes, received);
    }

    [Fact]
    public async Task ReadDevice_refuses_ranges_out_of_order_or_outside_the_device()
    {
        var volumeId = await VolumeAsync();
        foreach (var ranges in new[] { new[] { (1L << 20, 4096L), (0L, 4096L) }, [(Size - 10, 4096L)] })
        {
            var request = new ReadDeviceRequest { DeviceId = $"volume-{volumeId}", SplitAt = 64 * 1024 };
            request.Ranges.AddRange(ranges.Select(r => new VolumeBackup.Contracts.Grpc.Range { Offset = r.Item1, Length = r.Item2 }));
            using var call = client.ReadDevice(request);
            var e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        }
    }

    // Data: a whole 1 MiB run, a 4 KiB block at the start of a chunk and one at the end of another; the rest holes.
    static readonly (long Offset, int Length)[] Extents = [(1L << 20, 1 << 20), (5L << 20, 4096), ((6L << 20) - 4096, 4096)];
    static readonly long DataBytes = Extents.Sum(e => (long)e.Length);

    async Task<Guid> VolumeAsync()
    {
        var id = Guid.NewGuid();
        await client.CreateVolumeAsync(new CreateVolumeRequest { VolumeId = id.ToString(), SizeBytes = Size });
        await using var file = new FileStream(Path.Combine(pool, $"volume-{id}"), FileMode.Open, FileAccess.Write);
        foreach (var (offset, length) in Extents)
        {
            file.Position = offset;
            await file.WriteAsync(TestFiles.RandomBytes(length, seed: (int)(offset >> 12)));
        }
        return id;
    }

    async Task WriteAsync(DeviceData message)
    {
        using var call = client.WriteDevice();
        await call.RequestStream.WriteAsync(message);
        await call.RequestStream.CompleteAsync();
        await call;
    }

    async Task<Manifest> ManifestAsync(Guid backupId) => (await backups.ReadManifestAsync(Container, backupId, CancellationToken.None))!;

    // The VolumeAgent's own count of the bytes it sent (it runs in this process).
    static async Task<long> StreamedBytesAsync(Func<Task> work)
    {
        long bytes = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Name == "volumebackup.device.streamed") l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags) if (tag is { Key: "volumebackup.device.direction", Value: "read" }) Interlocked.Add(ref bytes, value);
        });
        listener.Start();
        await work();
        return Interlocked.Read(ref bytes);
    }

    public async ValueTask DisposeAsync()
    {
        await volumeAgent.DisposeAsync();
        repository.Dispose();
        Directory.Delete(pool, recursive: true);
    }
}
