using Microsoft.AspNetCore.Http.HttpResults;
using VolumeBackup.Api.Cinder;

namespace VolumeBackup.Api.Storage;

public static class AvailabilityZonesApi
{
    public static RouteGroupBuilder MapAvailabilityZones(this RouteGroupBuilder project)
    {
        project.MapGet("/os-availability-zone", List).WithTags("Availability zones");
        return project;
    }

    /// <summary>The zones of the configured storage hosts, as <c>cinder availability-zone-list</c> reads them.</summary>
    static Ok<Dictionary<string, List<Dictionary<string, object>>>> List(VolumeHosts hosts) =>
        TypedResults.Ok(Wire.Wrap("availabilityZoneInfo", hosts.All.Select(h => h.Zone).Distinct().Order().Select(zone => new Dictionary<string, object>
        {
            ["zoneName"] = zone,
            ["zoneState"] = new Dictionary<string, bool> { ["available"] = true },
        }).ToList()));
}
