using System.Net;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

[Collection(BackendCollection.Name)]
public sealed class VolumesTests(Backend backend)
{
    [Fact]
    public async Task A_volume_is_a_sparse_file_on_its_host_and_goes_away_on_delete()
    {
        var id = await backend.CreateVolumeAsync(2, "vol-a");
        var file = backend.VolumeFile(id);
        Assert.Equal(2L << 30, new FileInfo(file).Length);
        Assert.True(TestFiles.AllocatedBytes(file) < 1 << 20, "a new volume allocates nothing");

        var shown = (await backend.GetAsync($"volumes/{id}"))["volume"]!;
        Assert.Equal("vol-a", (string?)shown["name"]);
        Assert.Equal(2, (int)shown["size"]!);
        Assert.Contains((await backend.GetAsync("volumes/detail"))["volumes"]!.AsArray(), v => (string?)v!["id"] == id);

        Assert.Equal(HttpStatusCode.Accepted, (await backend.Http.DeleteAsync($"/v3/{Backend.Project}/volumes/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await backend.Http.GetAsync($"/v3/{Backend.Project}/volumes/{id}")).StatusCode);
        Assert.False(File.Exists(file));
    }

    [Fact]
    public async Task Attach_and_detach_move_a_volume_between_available_and_in_use()
    {
        var id = await backend.CreateVolumeAsync();
        await backend.PostAsync($"volumes/{id}/action", new Dictionary<string, object> { ["os-attach"] = new { instance_uuid = Guid.NewGuid(), mountpoint = "/dev/vdc" } });
        var attached = (await backend.GetAsync($"volumes/{id}"))["volume"]!;
        Assert.Equal("in-use", (string?)attached["status"]);
        Assert.Single(attached["attachments"]!.AsArray());

        await backend.PostAsync($"volumes/{id}/action", new Dictionary<string, object> { ["os-detach"] = new { } });
        Assert.Equal("available", (string?)(await backend.GetAsync($"volumes/{id}"))["volume"]!["status"]);
    }

    [Fact]
    public async Task A_snapshot_is_a_reflink_copy_of_the_volume()
    {
        var id = await backend.CreateVolumeAsync();
        TestFiles.WriteGuestData(backend.VolumeFile(id), seed: 50, offset: 0, bytes: 1 << 20);
        var created = await backend.PostAsync("snapshots", new { snapshot = new { volume_id = id, name = "snap" } });
        var snapshotId = (string)created["snapshot"]!["id"]!;

        Assert.Equal("available", (string?)(await backend.GetAsync($"snapshots/{snapshotId}"))["snapshot"]!["status"]);
        var snapshotFile = Path.Combine(backend.Pool, $"snapshot-{snapshotId}");
        Assert.Equal(TestFiles.Sha256(backend.VolumeFile(id)), TestFiles.Sha256(snapshotFile));
        Assert.Equal(HttpStatusCode.BadRequest, (await backend.Http.DeleteAsync($"/v3/{Backend.Project}/volumes/{id}")).StatusCode);   // it has a snapshot

        Assert.Equal(HttpStatusCode.Accepted, (await backend.Http.DeleteAsync($"/v3/{Backend.Project}/snapshots/{snapshotId}")).StatusCode);
        Assert.False(File.Exists(snapshotFile));
    }
}
