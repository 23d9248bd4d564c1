using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests.MultiHost;

/// <summary>
/// Several storage hosts and zones (<see cref="MultiHostBackend"/>): placement by capacity, locality with spill-over to
/// the zone, remote device I/O between hosts, a dead agent or VolumeAgent, and zones that never mix. Tests that kill a
/// process start it again before they end, so the order they run in does not matter.
/// </summary>
public sealed class MultiHostTests(MultiHostBackend backend) : IClassFixture<MultiHostBackend>
{
    [Fact]
    public async Task New_volumes_go_to_the_zone_host_with_the_most_room_and_every_host_agent_and_zone_is_listed()
    {
        foreach (var size in new[] { 12, 8, 5, 3 })
        {
            var expected = await RoomiestAsync("zone-1", size);
            var created = await backend.PostAsync("volumes", new { volume = new { size, name = "placed", availability_zone = "zone-1" } });
            var volume = await backend.WaitForAsync($"volumes/{(string)created["volume"]!["id"]!}", "volume", "available");
            Assert.Equal(expected, MultiHostBackend.HostOf(volume));
        }
        // A volume larger than zone-2's only host is accepted and goes to error, as Cinder's scheduler leaves it, on no host.
        var tooBig = await backend.PostAsync("volumes",
            new { volume = new { size = MultiHostBackend.Hosts.Single(h => h.Zone == "zone-2").CapacityGib + 1, availability_zone = "zone-2", name = "too-big" } });
        var failed = await backend.WaitForAsync($"volumes/{(string)tooBig["volume"]!["id"]!}", "volume", "error");
        Assert.Equal("", MultiHostBackend.HostOf(failed));
        Assert.Contains(backend.Api.Output, l => l.Contains("no valid backend was found", StringComparison.Ordinal) && l.Contains((string)failed["id"]!, StringComparison.Ordinal));
        Assert.Equal(202, (int)(await backend.Http.DeleteAsync($"/v3/{MultiHostBackend.Project}/volumes/{(string)failed["id"]!}")).StatusCode);

        var zones = JsonNode.Parse(await backend.Http.GetStringAsync($"/v3/{MultiHostBackend.Project}/os-availability-zone"))!["availabilityZoneInfo"]!.AsArray();
        Assert.Equal(["zone-1", "zone-2"], zones.Select(z => (string)z!["zoneName"]!));
        var volumeServices = await backend.ServicesAsync("cinder-volume");
        Assert.Equal(MultiHostBackend.Hosts.Select(h => $"{h.Name}/{h.Zone}"), volumeServices.Select(s => $"{s["host"]}/{s["zone"]}").Order());
        var backupServices = await backend.ServicesAsync("cinder-backup");
        Assert.Equal(MultiHostBackend.Hosts.Select(h => $"{MultiHostBackend.AgentName(h.Name)}/{h.Zone}/up"), backupServices.Select(s => $"{s["host"]}/{s["zone"]}/{s["state"]}").Order());
    }

    [Fact]
    public async Task Volumes_on_every_host_are_backed_up_by_their_own_host_s_agent()
    {
        var volumes = new List<(string Id, string Host)>();
        foreach (var (host, zone, _) in MultiHostBackend.Hosts)
        {
            (string Id, string Host) volume;
            do volume = await backend.VolumeAsync(zone); while (volume.Host != host);   // placement decides; keep going until one lands there
            volumes.Add(volume);
        }
        var backups = await Task.WhenAll(volumes.Select(v => backend.BackupAsync(v.Id)));
        for (var i = 0; i < volumes.Count; i++)
        {
            var backup = await backend.WaitForAsync($"backups/{backups[i]}", "backup", "available", "error");
            Assert.Equal("available", (string?)backup["status"]);
            Assert.Equal(MultiHostBackend.AgentName(volumes[i].Host), await AgentOfAsync(backups[i]));   // idle local agent: locality
            Assert.Contains(backend.BackupAgentOf(volumes[i].Host).Output, l => l.Contains(backups[i], StringComparison.Ordinal) && l.Contains("read locally", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task A_host_whose_agent_died_mid_backup_has_its_backups_finished_and_restored_by_the_zone_s_other_agent()
    {
        var (volume, _) = await VolumeOnAsync("host-a", dataMib: 192);
        var (other, _) = await VolumeOnAsync("host-a", dataMib: 8, seed: 2);
        var (target, _) = await VolumeOnAsync("host-a", dataMib: 0);
        var sourceSha = TestFiles.Sha256(backend.VolumeFile("host-a", volume));
        try
        {
            var first = await backend.BackupAsync(volume);
            await Eventually.UntilAsync(() => backend.BackupAgentOf("host-a").Output.Any(l => l.Contains(first, StringComparison.Ordinal) && l.Contains("ready", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(30), "host-a's agent to take the backup", every: TimeSpan.FromMilliseconds(20));
            await backend.KillBackupAgentAsync("host-a");
            var second = await backend.BackupAsync(other);       // no agent on host-a at all now

            foreach (var id in new[] { first, second })
            {
                var backup = await backend.WaitForAsync(TimeSpan.FromSeconds(90), $"backups/{id}", "backup", "available", "error");
                Assert.Equal("available", (string?)backup["status"]);
                Assert.Equal(MultiHostBackend.AgentName("host-b"), await AgentOfAsync(id));
                Assert.Contains(backend.BackupAgentOf("host-b").Output, l => l.Contains(id, StringComparison.Ordinal) && l.Contains("on host host-a, read remotely", StringComparison.Ordinal));
            }

            // A restore into a volume of host-a, with host-a's agent still dead: written remotely by host-b's agent.
            await backend.PostAsync($"backups/{first}/restore", new { restore = new { volume_id = target } });
            await backend.WaitForAsync(TimeSpan.FromSeconds(90), $"volumes/{target}", "volume", "available", "error_restoring");
            Assert.Equal(sourceSha, TestFiles.Sha256(backend.VolumeFile("host-a", target)));
            Assert.Contains(backend.BackupAgentOf("host-b").Output, l => l.Contains(target, StringComparison.Ordinal) && l.Contains("written remotely", StringComparison.Ordinal));
        }
        finally
        {
            await backend.RestartBackupAgentAsync("host-a");
        }
    }

    [Fact]
    public async Task A_dead_VolumeAgent_fails_its_volumes_backups_clearly_goes_down_in_services_and_stops_nothing_else()
    {
        var (onC, _) = await VolumeOnAsync("host-c");
        var (onA, _) = await VolumeOnAsync("host-a");
        await backend.KillVolumeAgentAsync("host-c");
        try
        {
            var failing = await backend.BackupAsync(onC);
            var working = await backend.BackupAsync(onA);
            var failed = await backend.WaitForAsync($"backups/{failing}", "backup", "available", "error");
            Assert.Equal("error", (string?)failed["status"]);
            Assert.Contains("The VolumeAgent of storage host 'host-c' did not answer", (string?)failed["fail_reason"]);
            Assert.Equal("available", (string?)(await backend.WaitForAsync($"volumes/{onC}", "volume", "available"))["status"]);   // not left backing-up
            Assert.Equal("available", (string?)(await backend.WaitForAsync($"backups/{working}", "backup", "available", "error"))["status"]);

            // Services:DownTime (Cinder's service_down_time, 15 s here) after its last answer, host-c's cinder-volume is down;
            // every other service stays up.
            var services = await Eventually.UntilAsync(async () => (await backend.ServicesAsync("cinder-volume")).Concat(await backend.ServicesAsync("cinder-backup")).ToList(),
                all => all.Any(s => (string?)s["host"] == "host-c" && (string?)s["binary"] == "cinder-volume" && (string?)s["state"] == "down"),
                TimeSpan.FromSeconds(45), "host-c's cinder-volume to go down", every: TimeSpan.FromSeconds(1));
            Assert.All(services.Where(s => !((string?)s["host"] == "host-c" && (string?)s["binary"] == "cinder-volume")), s => Assert.Equal("up", (string?)s["state"]));
            Assert.Equal("available", (string?)(await backend.WaitForAsync($"backups/{await backend.BackupAsync(onA)}", "backup", "available", "error"))["status"]);
        }
        finally
        {
            await backend.RestartVolumeAgentAsync("host-c");
        }
    }

    [Fact]
    public async Task Zones_are_isolated_no_agent_touches_another_zone_s_volumes()
    {
        var (inZone1, host1) = await backend.VolumeAsync("zone-1");
        var (inZone2, _) = await backend.VolumeAsync("zone-2");
        var one = await backend.BackupAsync(inZone1);
        var two = await backend.BackupAsync(inZone2);
        await backend.WaitForAsync($"backups/{one}", "backup", "available");
        await backend.WaitForAsync($"backups/{two}", "backup", "available");
        Assert.Equal(MultiHostBackend.AgentName(host1), await AgentOfAsync(one));
        Assert.Equal(MultiHostBackend.AgentName("host-c"), await AgentOfAsync(two));
        Assert.DoesNotContain("host-c", backend.AgentsMentioning(one));
        Assert.Equal(["host-c"], backend.AgentsMentioning(two));
        // A restore of the zone-2 backup makes its volume in zone-2 (the backup's zone), on host-c.
        var restore = await backend.PostAsync($"backups/{two}/restore", new { restore = new { name = "mh-restored" } });
        var restored = await backend.WaitForAsync($"volumes/{(string)restore["restore"]!["volume_id"]!}", "volume", "available");
        Assert.Equal("host-c", MultiHostBackend.HostOf(restored));
        Assert.Equal(["host-c"], backend.AgentsMentioning(two));
    }

    async Task<(string Id, string Host)> VolumeOnAsync(string host, int dataMib = 4, int seed = 1)
    {
        var zone = MultiHostBackend.Hosts.Single(h => h.Name == host).Zone;
        while (true)
        {
            var volume = await backend.VolumeAsync(zone, dataMib: 0);
            if (volume.Host != host) continue;                  // placement decides; keep going until one lands there
            if (dataMib > 0) TestFiles.WriteGuestData(backend.VolumeFile(host, volume.Id), seed, 64L << 20, dataMib << 20);
            return volume;
        }
    }

    // What placement should pick: the zone's host with the most room (its capacity less the volumes placed there).
    async Task<string> RoomiestAsync(string zone, int sizeGb)
    {
        await using var db = backend.NewDbContext();
        var placed = await db.Volumes.GroupBy(v => v.Host).Select(g => new { g.Key, Gib = g.Sum(v => v.Size) }).ToDictionaryAsync(g => g.Key, g => (long)g.Gib);
        return MultiHostBackend.Hosts.Where(h => h.Zone == zone).Select(h => (h.Name, Room: h.CapacityGib - placed.GetValueOrDefault(h.Name)))
            .Where(h => h.Room >= sizeGb).OrderByDescending(h => h.Room).First().Name;
    }

    // The agent that took a backup, as the saga recorded it from BackupStarted (Cinder shows a backup's host to admins only).
    async Task<string?> AgentOfAsync(string backupId)
    {
        await using var db = backend.NewDbContext();
        return (await db.Backups.FindAsync(Guid.Parse(backupId)))?.Host;
    }
}
