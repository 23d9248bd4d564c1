using VolumeBackup.Api.Errors;

namespace VolumeBackup.Api.Cinder;

public static class CinderRouting
{
    // ASP.NET Core's routing names the endpoint it picks when a path exists but not for the method (HttpMethodMatcherPolicy).
    const string MethodNotAllowed = "405 HTTP Method Not Supported";

    /// <summary>
    /// Cinder's router answers 404 where ASP.NET's would answer 405 (a method the path does not have, <c>DELETE /volumes</c>) or
    /// ignore a trailing slash (<c>GET /volumes/</c> asks for the volume with an empty id). Tempest's negative tests check both.
    /// Runs after authorization, as keystonemiddleware refuses a bad token before Cinder's router runs.
    /// </summary>
    public static IApplicationBuilder UseCinderNotFound(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        var path = http.Request.Path.Value ?? "";
        var trailingSlash = path.Length > "/v3/".Length && path.StartsWith("/v3/", StringComparison.Ordinal) && path.EndsWith('/');
        if (trailingSlash || http.GetEndpoint()?.DisplayName == MethodNotAllowed)
        {
            await CinderErrors.NotFound("The resource could not be found.").ExecuteAsync(http);
            return;
        }
        await next(http);
    });
}
