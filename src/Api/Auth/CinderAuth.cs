using System.ComponentModel.DataAnnotations;
using System.Security.Claims;
using System.Text.Json;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using VolumeBackup.Api.Errors;

namespace VolumeBackup.Api.Auth;

/// <summary>The "cinder" authentication scheme's settings (section Auth).</summary>
public sealed class AuthOptions : AuthenticationSchemeOptions, IValidatableObject
{
    public const string Section = "Auth";
    public const string NoAuth = "noauth";
    public const string KeystoneMode = "keystone";

    /// <summary>
    /// Must be set explicitly: "noauth" trusts <c>X-Auth-Token: user:project</c> as Cinder's noauth mode does;
    /// "keystone" validates the token with Keystone (<see cref="Keystone"/>).
    /// </summary>
    [Required, AllowedValues(NoAuth, KeystoneMode)] public string Mode { get; set; } = "";

    /// <summary>noauth: users whose requests carry the admin role (Cinder's noauth makes everyone admin; we do not).</summary>
    public List<string> AdminUsers { get; set; } = ["admin"];

    public KeystoneOptions Keystone { get; set; } = new();

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Mode != KeystoneMode) yield break;
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(Keystone, new ValidationContext(Keystone), results, validateAllProperties: true);
        foreach (var result in results) yield return result;
        if (!Uri.TryCreate(Keystone.Url, UriKind.Absolute, out _)) yield return new("Auth:Keystone:Url is required in keystone mode", [nameof(Keystone)]);
        if (Keystone.Username.Length == 0) yield return new("Auth:Keystone:Username (the Api's service user) is required in keystone mode", [nameof(Keystone)]);
        if (Keystone.Password.Length == 0 && !File.Exists(Keystone.PasswordFile))
            yield return new("Auth:Keystone:Password or an existing Auth:Keystone:PasswordFile is required in keystone mode", [nameof(Keystone)]);
    }
}

/// <summary>The scheme, claims and policies every route of a project uses.</summary>
public static class CinderAuth
{
    public const string Scheme = "cinder";
    public const string UserClaim = "user_id";
    public const string ProjectClaim = "project_id";
    public const string AdminRole = "admin";
    public const string MemberRole = "member";
    public const string ReaderRole = "reader";
    /// <summary>The caller's own project in the path, unless admin.</summary>
    public const string ProjectPolicy = "project";
    public const string AdminPolicy = "admin";

    public static IServiceCollection AddCinderAuth(this IServiceCollection services)
    {
        services.AddAuthentication(Scheme).AddScheme<AuthOptions, CinderAuthenticationHandler>(Scheme, null);
        services.AddOptions<AuthOptions>(Scheme).BindConfiguration(AuthOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddAuthorizationBuilder()
            .AddPolicy(ProjectPolicy, p => p.RequireAuthenticatedUser().AddRequirements(new OwnProjectRequirement(), new RoleRequirement()))
            .AddPolicy(AdminPolicy, p => p.RequireAuthenticatedUser().RequireRole(AdminRole));
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, CinderAuthorizationResultHandler>();
        services.AddSingleton<KeystoneTokens>();
        services.AddHttpClient(KeystoneTokens.HttpClientName);
        return services;
    }

    /// <summary>Admin only; <paramref name="rule"/> is Cinder's policy name, which the 403 names.</summary>
    public static RouteHandlerBuilder RequireAdmin(this RouteHandlerBuilder route, string rule) =>
        route.RequireAuthorization(AdminPolicy).WithMetadata(new PolicyRule(rule));

    /// <summary>For a route shared by admin and non-admin actions: evaluates the admin policy for one of them.</summary>
    public static async Task<ProblemHttpResult?> AuthorizeAdminAsync(this IAuthorizationService authorization, ClaimsPrincipal user, string rule) =>
        (await authorization.AuthorizeAsync(user, AdminPolicy)).Succeeded ? null : CinderErrors.Forbidden(Denied(rule));

    public static string Denied(string rule) => $"Policy doesn't allow {rule} to be performed.";

    /// <summary>Cinder's policy rule for the route, which a refused call's 403 names.</summary>
    public static RouteHandlerBuilder Rule(this RouteHandlerBuilder route, string rule) => route.WithMetadata(new PolicyRule(rule));

    /// <summary>For an action route: Cinder's rule for each action (the body's one key).</summary>
    public static RouteHandlerBuilder Rules(this RouteHandlerBuilder route, IReadOnlyDictionary<string, string> byAction) =>
        route.WithMetadata(new ActionPolicyRules(byAction));

    /// <summary>The rule Cinder checks for this call: the action's for an action route, else the route's.</summary>
    public static async Task<string?> RuleAsync(HttpContext http)
    {
        var metadata = http.GetEndpoint()?.Metadata;
        if (metadata?.GetMetadata<ActionPolicyRules>() is { } actions)
        {
            http.Request.EnableBuffering();                 // the handler reads the body again if the call goes on
            try
            {
                using var body = await JsonDocument.ParseAsync(http.Request.Body, cancellationToken: http.RequestAborted);
                if (body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.EnumerateObject().FirstOrDefault() is { Name: { } action }
                    && actions.ByAction.TryGetValue(action, out var rule))
                    return rule;
            }
            catch (JsonException)
            {
                return metadata.GetMetadata<PolicyRule>()?.Name;  // no action to name: the route's rule
            }
            finally { http.Request.Body.Position = 0; }
        }
        return metadata?.GetMetadata<PolicyRule>()?.Name;
    }
}

/// <summary>Cinder's policy name for a route.</summary>
public sealed record PolicyRule(string Name);

/// <summary>Cinder's policy names for the actions of an action route.</summary>
public sealed record ActionPolicyRules(IReadOnlyDictionary<string, string> ByAction);

/// <summary>
/// Reads the caller from <c>X-Auth-Token</c>. A mode is one branch here: it turns a token into the caller's identity.
/// No request header other than the token grants a role.
/// </summary>
public sealed class CinderAuthenticationHandler(IOptionsMonitor<AuthOptions> options, ILoggerFactory logger, UrlEncoder encoder, KeystoneTokens keystone)
    : AuthenticationHandler<AuthOptions>(options, logger, encoder)
{
    const string RequiresAuthentication = "The request you have made requires authentication.";   // keystonemiddleware's words

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var token = Request.Headers["X-Auth-Token"].ToString();
        if (string.IsNullOrWhiteSpace(token))
            return AuthenticateResult.Fail(Options.Mode == AuthOptions.NoAuth ? "Authentication required: send X-Auth-Token: user:project" : RequiresAuthentication);
        try
        {
            var identity = Options.Mode switch
            {
                AuthOptions.NoAuth => NoAuth(token),
                AuthOptions.KeystoneMode => await KeystoneAsync(token),
                _ => throw new InvalidOperationException($"Auth mode {Options.Mode} is not supported"),   // validated at start
            };
            return identity is null ? AuthenticateResult.Fail(RequiresAuthentication)
                : AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name));
        }
        catch (KeystoneUnavailableException e)
        {
            Logger.KeystoneUnavailable(e.Message);
            return AuthenticateResult.Fail(e);
        }
    }

    /// <summary>
    /// keystonemiddleware's answers: 401 with <c>WWW-Authenticate: Keystone uri="..."</c> for a missing or invalid token,
    /// 503 when Keystone could not tell (never a pass).
    /// </summary>
    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        if ((await HandleAuthenticateOnceSafeAsync()).Failure is KeystoneUnavailableException)
        {
            Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            return;
        }
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        if (Options.Mode == AuthOptions.KeystoneMode) Response.Headers.WWWAuthenticate = $"Keystone uri=\"{Options.Keystone.Url}\"";
    }

    /// <summary>Cinder's noauth: the token is <c>user:project</c> (or one name for both); everyone is a member, admins are the configured users.</summary>
    ClaimsIdentity NoAuth(string token)
    {
        var (user, project) = token.Split(':', 2) is [var u, var p] ? (u, p) : (token, token);
        return Identity(user, project, Options.AdminUsers.Contains(user) ? [CinderAuth.AdminRole, CinderAuth.MemberRole] : [CinderAuth.MemberRole]);
    }

    /// <summary>Keystone: user, project and roles as the token carries them; a token scoped to no project is refused.</summary>
    async Task<ClaimsIdentity?> KeystoneAsync(string token) =>
        await keystone.ValidateAsync(token, Context.RequestAborted) is { ProjectId: { } project } valid ? Identity(valid.UserId, project, valid.Roles) : null;

    ClaimsIdentity Identity(string user, string project, IEnumerable<string> roles) => new(
        [new(CinderAuth.UserClaim, user), new(CinderAuth.ProjectClaim, project), .. roles.Select(r => new Claim(ClaimTypes.Role, r))],
        Scheme.Name, CinderAuth.UserClaim, ClaimTypes.Role);
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

/// <summary>
/// Cinder's Zed default policy for a project's routes: a reader may list and show (GET), a member may also create, update,
/// restore and delete (every other method); admin implies both. Admin-only rules come on top (<see cref="CinderAuth.RequireAdmin"/>).
/// </summary>
public sealed class RoleRequirement : AuthorizationHandler<RoleRequirement, HttpContext>, IAuthorizationRequirement
{
    static readonly string[] Readers = [CinderAuth.ReaderRole, CinderAuth.MemberRole, CinderAuth.AdminRole];
    static readonly string[] Members = [CinderAuth.MemberRole, CinderAuth.AdminRole];

    protected override async Task HandleRequirementAsync(AuthorizationHandlerContext context, RoleRequirement requirement, HttpContext http)
    {
        var reads = HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method);
        if ((reads ? Readers : Members).Any(context.User.IsInRole))
            context.Succeed(requirement);
        else
            context.Fail(new AuthorizationFailureReason(this, CinderAuth.Denied(await CinderAuth.RuleAsync(http) ?? "this action")));
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
