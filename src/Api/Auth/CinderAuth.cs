using System.ComponentModel.DataAnnotations;
using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Errors;

namespace VolumeBackup.Api.Auth;

/// <summary>The "cinder" authentication scheme's settings (section Auth).</summary>
public sealed class AuthOptions : AuthenticationSchemeOptions
{
    public const string Section = "Auth";
    public const string NoAuth = "noauth";

    /// <summary>Must be set explicitly: "noauth" trusts <c>X-Auth-Token: user:project</c> as Cinder's noauth mode does.</summary>
    [Required, AllowedValues(NoAuth)] public string Mode { get; set; } = "";

    /// <summary>Users whose requests carry the admin role (Cinder's noauth makes everyone admin; we do not).</summary>
    public List<string> AdminUsers { get; set; } = ["admin"];
}

/// <summary>The scheme, claims and policies every route of a project uses.</summary>
public static class CinderAuth
{
    public const string Scheme = "cinder";
    public const string UserClaim = "user_id";
    public const string ProjectClaim = "project_id";
    public const string AdminRole = "admin";
    /// <summary>The caller's own project in the path, unless admin.</summary>
    public const string ProjectPolicy = "project";
    public const string AdminPolicy = "admin";

    public static IServiceCollection AddCinderAuth(this IServiceCollection services)
    {
        services.AddAuthentication(Scheme).AddScheme<AuthOptions, CinderAuthenticationHandler>(Scheme, null);
        services.AddOptions<AuthOptions>(Scheme).BindConfiguration(AuthOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddAuthorizationBuilder()
            .AddPolicy(ProjectPolicy, p => p.RequireAuthenticatedUser().AddRequirements(new OwnProjectRequirement()))
            .AddPolicy(AdminPolicy, p => p.RequireAuthenticatedUser().RequireRole(AdminRole));
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, CinderAuthorizationResultHandler>();
        return services;
    }

    /// <summary>Admin only; <paramref name="rule"/> is Cinder's policy name, which the 403 names.</summary>
    public static RouteHandlerBuilder RequireAdmin(this RouteHandlerBuilder route, string rule) =>
        route.RequireAuthorization(AdminPolicy).WithMetadata(new PolicyRule(rule));

    /// <summary>For a route shared by admin and non-admin actions: evaluates the admin policy for one of them.</summary>
    public static async Task<ProblemHttpResult?> AuthorizeAdminAsync(this IAuthorizationService authorization, ClaimsPrincipal user, string rule) =>
        (await authorization.AuthorizeAsync(user, AdminPolicy)).Succeeded ? null : CinderErrors.Forbidden(Denied(rule));

    public static string Denied(string rule) => $"Policy doesn't allow {rule} to be performed.";
}

/// <summary>Cinder's policy name for an admin-only route.</summary>
public sealed record PolicyRule(string Name);

/// <summary>
/// Reads the caller from <c>X-Auth-Token</c>. A mode is one branch here: it turns a token into the caller's identity.
/// No request header other than the token grants a role.
/// </summary>
public sealed class CinderAuthenticationHandler(IOptionsMonitor<AuthOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<AuthOptions>(options, logger, encoder)
{
    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var token = Request.Headers["X-Auth-Token"].ToString();
        if (string.IsNullOrWhiteSpace(token)) return Task.FromResult(AuthenticateResult.Fail("Authentication required: send X-Auth-Token: user:project"));
        var identity = Options.Mode switch
        {
            AuthOptions.NoAuth => NoAuth(token),
            _ => throw new InvalidOperationException($"Auth mode {Options.Mode} is not supported"),   // validated at start
        };
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name)));
    }

    /// <summary>Cinder's noauth: the token is <c>user:project</c> (or one name for both); admins are the configured users.</summary>
    ClaimsIdentity NoAuth(string token)
    {
        var (user, project) = token.Split(':', 2) is [var u, var p] ? (u, p) : (token, token);
        List<Claim> claims = [new(CinderAuth.UserClaim, user), new(CinderAuth.ProjectClaim, project)];
        if (Options.AdminUsers.Contains(user)) claims.Add(new(ClaimTypes.Role, CinderAuth.AdminRole));
        return new ClaimsIdentity(claims, Scheme.Name, CinderAuth.UserClaim, ClaimTypes.Role);
    }
}

/// <summary>A project in the path that is not the caller's is refused, unless the caller is admin.</summary>
public sealed class OwnProjectRequirement : AuthorizationHandler<OwnProjectRequirement, HttpContext>, IAuthorizationRequirement
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, OwnProjectRequirement requirement, HttpContext http)
    {
        if (http.GetRouteValue("project_id") is not string project || project == context.User.FindFirstValue(CinderAuth.ProjectClaim)
            || context.User.IsInRole(CinderAuth.AdminRole))
            context.Succeed(requirement);
        else
            context.Fail(new AuthorizationFailureReason(this, $"Project {project} is not the caller's project"));
        return Task.CompletedTask;
    }
}

/// <summary>Renders a refused request through the one ProblemDetails path: 401 unauthorized, 403 forbidden naming the policy.</summary>
public sealed class CinderAuthorizationResultHandler(IProblemDetailsService problems) : IAuthorizationMiddlewareResultHandler
{
    public async Task HandleAsync(RequestDelegate next, HttpContext http, AuthorizationPolicy policy, PolicyAuthorizationResult result)
    {
        if (result.Succeeded)
        {
            await next(http);
            return;
        }
        string message;
        if (result.Challenged)
        {
            await http.ChallengeAsync(CinderAuth.Scheme);             // the scheme sets the status (and, for a mode that has them, headers)
            message = (await http.AuthenticateAsync(CinderAuth.Scheme)).Failure?.Message ?? "Authentication required";
        }
        else
        {
            await http.ForbidAsync(CinderAuth.Scheme);
            message = result.AuthorizationFailure?.FailureReasons.FirstOrDefault()?.Message
                      ?? CinderAuth.Denied(http.GetEndpoint()?.Metadata.GetMetadata<PolicyRule>()?.Name ?? "this action");
        }
        await problems.WriteAsync(new ProblemDetailsContext { HttpContext = http, ProblemDetails = { Status = http.Response.StatusCode, Detail = message } });
    }
}

/// <summary>Who is calling, for this request: a view of the authenticated principal.</summary>
public sealed record Caller(string UserId, string ProjectId, bool IsAdmin)
{
    /// <summary>A project sees its own resources; an admin sees all.</summary>
    public bool CanSee(string projectId) => IsAdmin || projectId == ProjectId;

    public static Caller From(ClaimsPrincipal user) =>
        new(user.FindFirstValue(CinderAuth.UserClaim) ?? "", user.FindFirstValue(CinderAuth.ProjectClaim) ?? "", user.IsInRole(CinderAuth.AdminRole));

    /// <summary>Lets a handler take a <see cref="Caller"/> parameter.</summary>
    public static ValueTask<Caller?> BindAsync(HttpContext http) => ValueTask.FromResult<Caller?>(From(http.User));
}
