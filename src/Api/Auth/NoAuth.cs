using System.ComponentModel.DataAnnotations;
using VolumeBackup.Api.Errors;

namespace VolumeBackup.Api.Auth;

public sealed class AuthOptions
{
    public const string Section = "Auth";

    /// <summary>Must be set explicitly: "noauth" trusts <c>X-Auth-Token: user:project</c> as Cinder's noauth mode does.</summary>
    [Required, AllowedValues("noauth")] public string Mode { get; init; } = "";

    /// <summary>Users whose requests carry the admin role (Cinder's noauth makes everyone admin; we do not).</summary>
    public List<string> AdminUsers { get; init; } = ["admin"];
}

/// <summary>Who is calling, for this request.</summary>
public sealed class Caller
{
    public string UserId { get; set; } = "";
    public string ProjectId { get; set; } = "";
    public bool IsAdmin { get; set; }

    /// <summary>A project sees its own resources; an admin sees all.</summary>
    public bool CanSee(string projectId) => IsAdmin || projectId == ProjectId;
}

/// <summary>Reads the caller from the token and refuses a project in the path that is not the caller's.</summary>
public sealed class NoAuthFilter(Microsoft.Extensions.Options.IOptions<AuthOptions> options) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var token = http.Request.Headers["X-Auth-Token"].ToString();
        if (string.IsNullOrWhiteSpace(token))
            return TypedResults.Problem("Authentication required: send X-Auth-Token: user:project", statusCode: 401);
        var (user, _, project) = (token.Split(':', 2) is [var u, var p] ? (u, ':', p) : (token, ':', token));
        var roles = http.Request.Headers["X-Roles"].ToString().Split(',', StringSplitOptions.TrimEntries);
        var caller = http.RequestServices.GetRequiredService<Caller>();
        caller.UserId = user;
        caller.ProjectId = project;
        caller.IsAdmin = options.Value.AdminUsers.Contains(user) || roles.Contains("admin");
        if (http.GetRouteValue("project_id") is string pathProject && pathProject != project && !caller.IsAdmin)
            return CinderErrors.Forbidden($"Project {pathProject} is not the caller's project");
        return await next(context);
    }
}
