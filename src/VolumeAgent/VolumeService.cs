using System.Diagnostics;
using Grpc.Core;
using VolumeBackup.Contracts.Grpc;

namespace VolumeBackup.VolumeAgent;

/// <summary>Thin gRPC face of the pool: validates ids, maps missing files to NotFound; a clone by copy stops when the caller gives up.</summary>
public sealed partial class VolumeService(VolumePool pool, ILogger<VolumeService> logger) : VolumeHost.VolumeHostBase
{
    public override Task<VolumeInfo> CreateVolume(CreateVolumeRequest request, ServerCallContext context) => Run(() =>
    {
        var id = ParseId(request.VolumeId, "volume_id");
        if (request.SizeBytes <= 0) throw Invalid("size_bytes must be positive");
        var size = string.IsNullOrEmpty(request.SourceSnapshotId)
            ? pool.CreateVolume(id, request.SizeBytes)
            : pool.CreateVolumeFromSnapshot(id, ParseId(request.SourceSnapshotId, "source_snapshot_id"), request.SizeBytes, context.CancellationToken);
        logger.VolumeCreated(id, size);
        return new VolumeInfo { VolumeId = request.VolumeId, SizeBytes = size, AllocatedBytes = pool.AllocatedBytes(pool.VolumePath(id)) };
    });

    public override Task<DeleteReply> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context) =>
        Run(() => new DeleteReply { Existed = pool.DeleteVolume(ParseId(request.VolumeId, "volume_id")) });

    public override Task<SnapshotInfo> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context) => Run(() =>
    {
        var snapshotId = ParseId(request.SnapshotId, "snapshot_id");
        var volumeId = ParseId(request.VolumeId, "volume_id");
        var method = pool.CreateSnapshot(snapshotId, volumeId, context.CancellationToken);
        logger.SnapshotCreated(snapshotId, volumeId, method);
        return new SnapshotInfo { SnapshotId = request.SnapshotId, VolumeId = request.VolumeId, Method = method, SizeBytes = new FileInfo(pool.SnapshotPath(snapshotId)).Length };
    });

    public override Task<DeleteReply> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context) =>
        Run(() => new DeleteReply { Existed = pool.DeleteSnapshot(ParseId(request.SnapshotId, "snapshot_id")) });

    public override Task<Device> GetBackupDevice(GetBackupDeviceRequest request, ServerCallContext context) => Run(() =>
    {
        var backupId = ParseId(request.BackupId, "backup_id");
        var volumeId = ParseId(request.VolumeId, "volume_id");
        Guid? snapshotId = string.IsNullOrEmpty(request.SnapshotId) ? null : ParseId(request.SnapshotId, "snapshot_id");
        Guid? baseBackupId = string.IsNullOrEmpty(request.BaseBackupId) ? null : ParseId(request.BaseBackupId, "base_backup_id");
        var startedAt = Stopwatch.GetTimestamp();
        var device = pool.GetBackupDevice(backupId, volumeId, snapshotId, request.InUse, baseBackupId, context.CancellationToken);
        if (context.CancellationToken.IsCancellationRequested)
        {
            // Made after its caller gave up (the copy's last fsync outlasted the deadline): nobody will release it.
            pool.ReleaseDevice(Path.GetFileName(device.Path), commit: false);
            context.CancellationToken.ThrowIfCancellationRequested();
        }
        Metrics.DevicePrepared("backup", device.Method, startedAt);
        logger.BackupDeviceReady(backupId, volumeId, device.Method);
        var reply = new Device
        {
            DeviceId = Path.GetFileName(device.Path), Path = device.Path, SizeBytes = new FileInfo(device.Path).Length, Temporary = device.Temporary,
            Method = device.Method, Generation = device.Generation, Cbt = device.Changed is not null, BaseGeneration = device.BaseGeneration ?? "",
        };
        reply.Changed.AddRange(device.Changed?.Select(r => new VolumeBackup.Contracts.Grpc.Range { Offset = r.Offset, Length = r.Length }) ?? []);
        return reply;
    });

    public override Task<DeleteReply> DropBackupBase(DropBackupBaseRequest request, ServerCallContext context) =>
        Run(() => new DeleteReply { Existed = pool.DropBackupBase(ParseId(request.BackupId, "backup_id")) });

    public override Task<Device> GetRestoreDevice(GetRestoreDeviceRequest request, ServerCallContext context) => Run(() =>
    {
        var startedAt = Stopwatch.GetTimestamp();
        var (path, size) = pool.GetRestoreDevice(ParseId(request.VolumeId, "volume_id"), ParseId(request.RestoreId, "restore_id"));
        Metrics.DevicePrepared("restore", "new", startedAt);
        return new Device { DeviceId = Path.GetFileName(path), Path = path, SizeBytes = size, Temporary = true, Method = "new" };
    });

    public override Task<DeleteReply> ReleaseDevice(ReleaseDeviceRequest request, ServerCallContext context) => Run(() =>
    {
        if (pool.ResolveDevice(request.DeviceId) is null) throw Invalid($"Invalid device_id '{request.DeviceId}'");
        var existed = pool.ReleaseDevice(request.DeviceId, request.Commit);
        logger.DeviceReleased(request.DeviceId, request.Commit);
        return new DeleteReply { Existed = existed };
    });

    static Task<T> Run<T>(Func<T> action)
    {
        try { return Task.FromResult(action()); }
        catch (FileNotFoundException e) { throw new RpcException(new Status(StatusCode.NotFound, e.Message)); }
        catch (InvalidOperationException e) { throw new RpcException(new Status(StatusCode.FailedPrecondition, e.Message)); }
        catch (ArgumentException e) { throw Invalid(e.Message); }
        catch (OperationCanceledException) { throw new RpcException(new Status(StatusCode.Cancelled, "The caller cancelled or its deadline passed")); }
    }

    static Guid ParseId(string value, string field) =>
        Guid.TryParse(value, out var id) ? id : throw Invalid($"{field} must be a UUID, got '{value}'");

    static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}
