using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace VolumeBackup.TestSupport;

/// <summary>
/// The Keystone deploy/services.sh starts (VB_KEYSTONE_URL) with the users it provisions, whose passwords it keeps in
/// VB_KEYSTONE_SECRETS: admin (project admin), demo-member and demo-reader (project demo), alt-member (project alt),
/// vb-api (the Api's service user).
/// </summary>
public static class Keystone
{
    public static string Url => TestServices.Required("VB_KEYSTONE_URL");

    public static string PasswordFile(string user) => Path.Combine(TestServices.Required("VB_KEYSTONE_SECRETS"), user);

    public static string Password(string user) => File.ReadAllText(PasswordFile(user)).Trim();

    /// <summary>The project each provisioned user works in.</summary>
    public static string ProjectOf(string user) => user switch
    {
        "admin" => "admin",
        "vb-api" => "service",
        _ => user.Split('-')[0],
    };

    /// <summary>A project-scoped token of <paramref name="user"/>, as a client gets it with its password.</summary>
    public static async Task<(string Token, string ProjectId, string UserId)> LoginAsync(string user, string? password = null, string? project = null)
    {
        using var http = new HttpClient();
        // Buffered (Content-Length, not chunked): uwsgi's http-socket hands Keystone no chunked body.
        var body = JsonContent.Create(new
        {
            auth = new
            {
                identity = new { methods = new[] { "password" }, password = new { user = new { name = user, domain = new { id = "default" }, password = password ?? Password(user) } } },
                scope = new { project = new { name = project ?? ProjectOf(user), domain = new { id = "default" } } },
            },
        });
        await body.LoadIntoBufferAsync();
        var response = await http.PostAsync($"{Url}/auth/tokens?nocatalog", body);
        response.EnsureSuccessStatusCode();
        var token = (await response.Content.ReadFromJsonAsync<JsonObject>())!["token"]!;
        return (response.Headers.GetValues("X-Subject-Token").Single(), (string)token["project"]!["id"]!, (string)token["user"]!["id"]!);
    }

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<Task<(string Token, string ProjectId, string UserId)>>> Logins = new();

    /// <summary>One login per user for the whole test run (tokens live an hour), for tests that neither revoke nor disable.</summary>
    public static Task<(string Token, string ProjectId, string UserId)> SharedLoginAsync(string user) =>
        Logins.GetOrAdd(user, u => new Lazy<Task<(string, string, string)>>(() => LoginAsync(u))).Value;

    /// <summary>Keystone's REST API as the admin (for tests that create, disable or revoke).</summary>
    public static async Task<HttpClient> AdminClientAsync()
    {
        var (token, _, _) = await SharedLoginAsync("admin");
        var http = new HttpClient(new Buffered { InnerHandler = new HttpClientHandler() }) { BaseAddress = new Uri(Url.TrimEnd('/') + "/") };
        http.DefaultRequestHeaders.Add("X-Auth-Token", token);
        return http;
    }

    /// <summary>Sends bodies with a Content-Length: uwsgi's http-socket hands Keystone no chunked body.</summary>
    sealed class Buffered : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            if (request.Content is not null) await request.Content.LoadIntoBufferAsync(ct);
            return await base.SendAsync(request, ct);
        }
    }
}
