using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api.Tests.Volumes;

/// <summary>A volume delete whose VolumeAgent call fails (this factory's agent address answers nothing).</summary>
public sealed class VolumeDeleteTests(ApiFactory api) : IClassFixture<ApiFactory>
{
    [Fact]
    public async Task A_delete_the_storage_host_cannot_do_ends_error_deleting_and_may_be_asked_again()
    {
        await api.StartedAsync();
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a",
            Status = VolumeStatus.Available, CreatedAt = DateTimeOffset.UtcNow,
        };
        await using (var db = api.NewDbContext())
        {
            db.Add(volume);
            await db.SaveChangesAsync();
        }
        using var client = api.ClientFor("p");

        foreach (var attempt in new[] { 1, 2 })                   // error_deleting is deletable: the second try is taken, not refused
        {
            var response = await client.DeleteAsync($"/v3/p/volumes/{volume.Id}");
            Assert.Equal(500, (int)response.StatusCode);
            Assert.Contains($"Volume {volume.Id} could not be deleted on host host-a", (string?)(await response.Content.ReadFromJsonAsync<JsonObject>())!["computeFault"]!["message"]);
            await using var db = api.NewDbContext();
            Assert.Equal(VolumeStatus.ErrorDeleting, (await db.Volumes.SingleAsync(v => v.Id == volume.Id)).Status);
        }
    }
}
