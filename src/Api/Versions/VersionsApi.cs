using VolumeBackup.Api.Cinder;

namespace VolumeBackup.Api.Versions;

/// <summary>Version discovery: what cinderclient reads first to learn the microversion range.</summary>
public static class VersionsApi
{
    public static IEndpointRouteBuilder MapVersions(this IEndpointRouteBuilder app)
    {
        app.MapGet("/", (HttpRequest http) => TypedResults.Json(new { versions = new[] { V3(http) } }, statusCode: StatusCodes.Status300MultipleChoices));
        // One route answers both /v3 and /v3/ (routing ignores a trailing slash; two routes made every request ambiguous: 500).
        app.MapGet("/v3", (HttpRequest http) => TypedResults.Ok(new { versions = new[] { V3(http) } }));
        return app;
    }

    static object V3(HttpRequest http) => new Dictionary<string, object>
    {
        ["id"] = "v3.0",
        ["status"] = "CURRENT",
        ["version"] = Microversion.Max.ToString(),
        ["min_version"] = Microversion.Min.ToString(),
        ["updated"] = "2022-08-31T00:00:00Z",
        ["links"] = new[]
        {
            new Link($"{Wire.BaseUrl(http)}/v3/", "self"),
            new Link("https://docs.openstack.org/", "describedby"),
        },
        ["media-types"] = new[] { new { @base = "application/json", type = "application/vnd.openstack.volume+json;version=3" } },
    };
}
