using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Api.Backups;

namespace VolumeBackup.Api.Tests.Fuzz;

/// <summary>
/// Hostile requests on every route the Api maps (read from its EndpointDataSource, so a new route is fuzzed without a change
/// here), as a reader, a member and an admin: random, truncated and deeply nested JSON, wrong types, bodies over the limit
/// (declared and chunked), path traversal, control characters and other projects' ids in every id and checked name, wrong
/// methods, microversions, content types, tokens and listing parameters. Every answer must be a 4xx in Cinder's fault shape
/// and nothing may change: every table's rows and the pool's files are compared every batch. Seeded: VB_FUZZ_SEED replays a run.
/// </summary>
public sealed class HostileRequestTests(HostileApi api) : IClassFixture<HostileApi>
{
    const int PerRole = 450, Batch = 50;
    static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("VB_FUZZ_SEED"), out var seed) ? seed : 20261130;

    static readonly HashSet<string> FaultNames = ["badRequest", "unauthorized", "forbidden", "itemNotFound", "badMethod", "notAcceptable", "conflictingRequest", "overLimit", "badMediaType"];

    [Theory]
    [InlineData("reader")]
    [InlineData("member")]
    [InlineData("admin")]
    public async Task Hostile_requests_on_every_route_get_a_4xx_Cinder_fault_and_change_nothing(string role)
    {
        var routes = Routes();
        var random = new Random(Seed + role.Length * 7919 + role[0]);
        var hostility = new Hostility(random, api.Tenants[role], api.Tenants["other"], role == "admin");
        using var http = api.Client();
        var failures = new List<string>();
        var families = new Dictionary<string, int>();
        var before = await api.StateAsync();

        for (var i = 0; i < PerRole; i++)
        {
            var route = routes[i % routes.Count];
            var shot = hostility.Against(route);
            var (status, text) = await SendAsync(http, shot);
            var outcome = shot.Family == "chunked-oversize" ? $"{shot.Family} {(status == CutOff ? "cut off" : status)}" : shot.Family;
            families[outcome] = families.GetValueOrDefault(outcome) + 1;
            if (Problem(shot, status, text) is { } problem)
                failures.Add($"#{i} {shot}: {status} {problem} {Clip(text, 300)}");
            if ((i + 1) % Batch == 0 || i == PerRole - 1)
            {
                var now = await api.StateAsync();
                Assert.True(before == now, $"seed {Seed}, {role}: state changed by requests up to #{i}:\n{Diff(before, now)}\n{string.Join('\n', failures.Take(20))}");
            }
        }

        Assert.True(failures.Count == 0, $"seed {Seed}, {role}: {failures.Count} of {PerRole} answers were not a 4xx Cinder fault:\n{string.Join('\n', failures.Take(40))}");
        Assert.True(families.Count >= 10, $"only {string.Join(", ", families.Keys)}");    // the generator reached most kinds of hostility
        if (families.Keys.Any(f => f.StartsWith("chunked-oversize", StringComparison.Ordinal)) && role != "reader")
            Assert.Contains("chunked-oversize 413", families.Keys);              // the server's own limit answered at least once
    }

    /// <summary>Every route and method the app maps (a route with no method metadata answers any method).</summary>
    List<Route> Routes()
    {
        var endpoints = api.Api.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().ToList();
        var methodsOf = endpoints.GroupBy(e => e.RoutePattern.RawText!)
            .ToDictionary(g => g.Key, g => g.SelectMany(e => e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? []).ToHashSet());
        return endpoints.SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? []).Select(m => (string?)m).DefaultIfEmpty(null).Select(m => new Route(
                m, e.RoutePattern.RawText!, e.RoutePattern.Parameters.Select(p => p.Name).ToList(), methodsOf[e.RoutePattern.RawText!],
                e.Metadata.GetMetadata<IAuthorizeData>() is not null)))
            .OrderBy(r => r.Pattern, StringComparer.Ordinal).ThenBy(r => r.Method, StringComparer.Ordinal).ToList();
    }

    static async Task<(int Status, string Text)> SendAsync(HttpClient http, Shot shot)
    {
        using var request = new HttpRequestMessage(new HttpMethod(shot.Method), new Uri(shot.Path, UriKind.Relative));
        if (shot.Token is not null) request.Headers.TryAddWithoutValidation("X-Auth-Token", shot.Token);
        if (shot.Version is not null) request.Headers.TryAddWithoutValidation("OpenStack-API-Version", shot.Version);
        if (shot.Body is not null)
        {
            request.Content = new ByteArrayContent(shot.Body);
            request.Content.Headers.TryAddWithoutValidation("Content-Type", shot.ContentType);
            if (shot.Chunked) request.Headers.TransferEncodingChunked = true;
            request.Headers.ExpectContinue = shot.Body.Length > Shot.Limit;
        }
        try
        {
            using var response = await http.SendAsync(request);
            return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        catch (HttpRequestException e) when (shot.Chunked && e.InnerException is IOException)
        {
            // A chunked body has no length to refuse up front: the server reads it up to the limit, answers 413 and closes, and
            // the close can overtake the answer while the client still sends. Counted apart; at least one 413 must come back.
            return (CutOff, "");
        }
    }

    const int CutOff = -1;

    /// <summary>Null when the answer is a 4xx with one Cinder fault whose code is the status and whose message says something.</summary>
    static string? Problem(Shot shot, int status, string text)
    {
        if (status == CutOff) return null;
        // Kestrel refuses a NUL in the path before any middleware runs: 400 with no body, which the app cannot dress.
        if (status == 400 && text.Length == 0 && shot.Path.Contains("%00", StringComparison.Ordinal)) return null;
        if (status is < 400 or >= 500) return "not a 4xx";
        JsonNode? body;
        try { body = JsonNode.Parse(text); }
        catch (JsonException) { return "body is not JSON"; }
        if (body is not JsonObject { Count: 1 } fault || !FaultNames.Contains(fault.Single().Key)) return "not one Cinder fault";
        var inner = fault.Single().Value as JsonObject;
        if (inner?["code"] is not JsonValue code || (int)code != status) return "fault code is not the status";
        return inner["message"] is JsonValue message && ((string?)message)?.Length > 0 ? null : "fault has no message";
    }

    static string Diff(string before, string after) =>
        string.Join('\n', after.Split('\n').Except(before.Split('\n')).Select(l => "+ " + l).Concat(before.Split('\n').Except(after.Split('\n')).Select(l => "- " + l)));

    static string Clip(string text, int most) => text.Length <= most ? text : text[..most] + "...";
}

public sealed record Route(string? Method, string Pattern, List<string> Parameters, HashSet<string> MethodsOfPattern, bool Authorized)
{
    /// <summary>The part after the project prefix ("volumes/{id}/action"); null for routes outside /v3/{project_id} and /v3.</summary>
    public string? Resource => Pattern.StartsWith("/v3/{project_id}/", StringComparison.Ordinal) ? Pattern["/v3/{project_id}/".Length..]
        : Pattern.StartsWith("/v3/", StringComparison.Ordinal) ? Pattern["/v3/".Length..] : null;
}

public sealed record Shot(string Family, string Method, string Path, byte[]? Body = null, string ContentType = "application/json", string? Version = null,
    bool Chunked = false, string? Token = null)
{
    public const int Limit = 1 << 20;

    public override string ToString() =>
        $"[{Family}] {Method} {Path}{(Version is null ? "" : $" ({Version})")}{(Body is null ? "" : $" {(Chunked ? "chunked " : "")}{Body.Length} B {ContentType}: {Encoding.UTF8.GetString(Body, 0, Math.Min(Body.Length, 160))}")}";
}

/// <summary>
/// Makes one hostile request for a route, every one of them a request Cinder refuses: the valid shapes of the bodies the routes
/// take are here (placeholders in braces are ids and checked names of the caller's project), and each family breaks one thing.
/// </summary>
public sealed class Hostility(Random random, HostileApi.Tenant me, HostileApi.Tenant other, bool admin)
{
    // method resource → a body the route would take, and whether a schema checks every field of it (so any wrong type is refused).
    static readonly Dictionary<string, (string Json, bool Strict)> Bodies = new()
    {
        ["POST volumes"] = ("""{"volume": {"size": 1, "name": "v", "availability_zone": "{zone}", "snapshot_id": "{snapshot}", "metadata": {"k": "v"}}}""", true),
        ["POST volumes/{id}/action"] = ("""{"os-attach": {"instance_uuid": "{uuid}", "mountpoint": "/dev/vdb", "mode": "rw"}}""", true),
        ["POST snapshots"] = ("""{"snapshot": {"volume_id": "{volume}", "name": "s", "force": true, "metadata": {"k": "v"}}}""", true),
        ["POST attachments"] = ("""{"attachment": {"volume_uuid": "{volume}", "instance_uuid": "{uuid}", "mode": "rw"}}""", true),
        ["POST attachments/{id}/action"] = ("""{"os-complete": null}""", false),
        ["POST backups"] = ("""{"backup": {"volume_id": "{volume}", "name": "b", "container": "{container}", "incremental": false, "force": true}}""", true),
        ["PUT backups/{id}"] = ("""{"backup": {"name": "n", "description": "d"}}""", true),
        ["POST backups/{id}/restore"] = ("""{"restore": {"name": "r", "volume_id": "{volume}"}}""", true),
        ["POST backups/{id}/action"] = ("""{"os-reset_status": {"status": "{backup_status}"}}""", true),
        ["POST backups/import_record"] = ("""{"backup-record": {"backup_service": "volumebackup.repository", "backup_url": "{record}"}}""", true),
        ["PUT os-quota-sets/{target}"] = ("""{"quota_set": {"volumes": 10, "backups": 10}}""", true),
    };

    static readonly string[] Listings = ["volumes", "volumes/detail", "snapshots", "snapshots/detail", "backups", "backups/detail", "attachments", "attachments/detail"];

    static readonly string[] Strings =
    [
        "../../../../etc/passwd", "..\\..\\..\\windows\\win.ini", "/etc/shadow", "%2e%2e%2f%2e%2e%2fetc", "....//....//etc", "a\u0000b", "\r\nX-Injected: 1",
        "\t\v\f", "\u001b[31mred", "\u202eevil", "' OR '1'='1' --", "1; DROP TABLE volumes; --", "${jndi:ldap://127.0.0.1/x}", "ünïcødé🙂", "%", "%zz",
        " ", new('A', 2000), "null", "[]", "{}", "\ud800",
    ];

    static readonly string[] Containers = ["../../etc", "/absolute", "a\\b", "a/../b", "a\u0000b", "a/./b", "..", "a//b", new('c', 256), "a b", "gc.lock", "ünï"];

    static readonly string[] Versions = ["volume 3.71", "volume 4.0", "volume 2.99", "volume 3.-1", "volume x.y", "volume 3", "volume 99999999999.1"];

    /// <summary>The hostile request's kind and how to make it; null when it does not apply to the route.</summary>
    public Shot Against(Route route)
    {
        var families = new List<Func<Route, Shot?>> { Oversize, WrongMethod, HostileId, ForeignProject, BadVersion, BadToken, BadQuery, Truncated, Garbage, Deep, WrongType, HostileField, BadContentType, ChunkedOversize };
        while (true)
            if (families[random.Next(families.Count)](route) is { } shot) return shot;
    }

    string Token => me.Token;
    string Project => me.Project;

    // ---- what every route gets ----

    Shot Oversize(Route r) => new("oversize", r.Method ?? "POST", Fill(r), Pad(Template(r) ?? "{}", (1 << 20) + 1 + random.Next(1 << 16)), Token: Token);

    Shot? WrongMethod(Route r)
    {
        if (r.Method is null) return null;
        var methods = new[] { "PATCH", "PUT", "POST", "DELETE", "GET" }.Where(m => !r.MethodsOfPattern.Contains(m)).ToList();
        return methods.Count == 0 ? null : new("wrong-method", methods[random.Next(methods.Count)], Fill(r), Token: Token);
    }

    Shot? BadToken(Route r) => !r.Authorized ? null
        : new("bad-token", r.Method ?? "GET", Fill(r), Body(r), Token: random.Next(3) == 0 ? null : Pick(["gAAAAA-forged", "admin:admin", "x", new string('t', 4000)]));

    Shot? BadVersion(Route r) => r.Resource is null ? null : new("bad-microversion", r.Method ?? "GET", Fill(r), Body(r), Version: Pick(Versions), Token: Token);

    // ---- ids and names ----

    Shot? HostileId(Route r)
    {
        var ids = r.Parameters.Where(p => p != "project_id").ToList();
        if (ids.Count == 0) return null;
        var name = Pick(ids);
        string value;
        if (name == "target")
        {
            // An admin may read or set any project's quota, as in Cinder: for it only a name Cinder refuses (over 255) is hostile.
            if (admin && r.Method != "PUT") return null;
            value = admin ? new string('p', 256 + random.Next(500)) : Pick([.. Strings, other.Project]);
        }
        else value = HostileIdValue(KindOf(r, name));
        var raw = value.Contains("../", StringComparison.Ordinal) && random.Next(2) == 0;   // sent as is: the client and Kestrel resolve the dots
        return new("hostile-id", r.Method ?? "GET", Fill(r, name, raw ? value : Uri.EscapeDataString(value)), Body(r), Version: "volume 3.70", Token: Token);
    }

    string HostileIdValue(string kind)
    {
        List<string> values = [.. Strings.Where(s => s.Trim().Length > 0 && s != "." ), "00000000-0000-0000-0000-000000000000", RandomGuid(),
            $"{{{me.Ids.GetValueOrDefault(kind, RandomGuid())}}}", me.Ids.GetValueOrDefault(kind, RandomGuid()).Replace("-", "")];
        if (!admin && other.Ids.TryGetValue(kind, out var foreign)) values.AddRange([foreign, foreign, foreign]);
        var wrongKind = me.Ids.Where(p => p.Key != kind && p.Key != "attached").Select(p => p.Value).ToList();
        if (wrongKind.Count > 0) values.Add(Pick(wrongKind));
        return Pick(values);
    }

    Shot? ForeignProject(Route r) => admin || !r.Parameters.Contains("project_id") ? null
        : new("foreign-project", r.Method ?? "GET", Fill(r).Replace($"/v3/{Project}/", $"/v3/{other.Project}/"), Body(r), Version: "volume 3.70", Token: Token);

    Shot? BadQuery(Route r)
    {
        if (r.Method != "GET" || r.Resource is null) return null;
        if (r.Resource == "os-quota-sets/{target}")
            return new("bad-query", "GET", $"{Fill(r)}?usage={Uri.EscapeDataString(Pick(["maybe", "2", "", "yes please", "\u0000"]))}", Token: Token);
        if (!Listings.Contains(r.Resource)) return null;
        var query = Pick([
            $"limit={Uri.EscapeDataString(Pick(["-1", "abc", "1e3", "0x10", "--5", "\u0000", "1.0", "-99999999999999999999"]))}",
            $"marker={Uri.EscapeDataString(HostileIdValue("marker"))}",
            $"sort={Uri.EscapeDataString(Pick(["nosuchkey", "name:sideways", "created_at:asc:extra", "id;drop table volumes", "metadata", "../id"]))}",
            $"sort_key={Uri.EscapeDataString(Pick(["password", "project_id' --", "\u0000"]))}&sort_dir=asc",
            $"sort_key=id&sort_dir={Uri.EscapeDataString(Pick(["sideways", "asc;", "\u0000"]))}",
        ]);
        return new("bad-query", "GET", $"{Fill(r)}?{query}", Version: "volume 3.70", Token: Token);
    }

    // ---- bodies ----

    Shot? Truncated(Route r) => Template(r) is not { } json ? null
        : new("truncated-json", r.Method!, Fill(r), Encoding.UTF8.GetBytes(json[..random.Next(json.Length)]), Version: "volume 3.70", Token: Token);

    Shot? Garbage(Route r)
    {
        if (Template(r) is null) return null;
        var bytes = new byte[1 + random.Next(300)];
        random.NextBytes(bytes);
        const string Json = "{}[]\":,0123456789.eE+-truefalsnul \\u";          // bytes that look like JSON get further in
        if (random.Next(2) == 0) for (var i = 0; i < bytes.Length; i++) bytes[i] = (byte)Json[bytes[i] % Json.Length];
        return new("random-json", r.Method!, Fill(r), bytes, Version: "volume 3.70", Token: Token);
    }

    Shot? Deep(Route r)
    {
        if (Template(r) is not { } json) return null;
        var depth = 65 + random.Next(20_000);
        var (open, close) = random.Next(2) == 0 ? ("[", "]") : ("{\"a\":", "}");
        var nested = string.Concat(Enumerable.Repeat(open, depth)) + "1" + string.Concat(Enumerable.Repeat(close, depth));
        var at = json.IndexOf(": ", StringComparison.Ordinal);                  // as the value of the first field
        return new("deep-nesting", r.Method!, Fill(r), Encoding.UTF8.GetBytes(json[..(at + 2)] + nested + "}"), Version: "volume 3.70", Token: Token);
    }

    Shot? WrongType(Route r)
    {
        if (r.Resource is not { } resource || !Bodies.TryGetValue($"{r.Method} {resource}", out var body) || !body.Strict) return null;
        var root = JsonNode.Parse(FillBody(body.Json))!;
        var nodes = All(root).ToList();
        var target = Pick(nodes);
        JsonNode wrong = target is JsonObject ? JsonValue.Create(random.Next(2) == 0 ? 12345 : -1)! : new JsonArray(new JsonArray());
        if (target == root) root = wrong;
        else Replace(target, wrong);
        return new("wrong-type", r.Method!, Fill(r), Encoding.UTF8.GetBytes(root.ToJsonString()), Version: Pick(["volume 3.70", "volume 3.0", "volume 3.43"]), Token: Token);
    }

    Shot? HostileField(Route r)
    {
        if (r.Resource is not { } resource || !Bodies.TryGetValue($"{r.Method} {resource}", out var body)) return null;
        var holes = System.Text.RegularExpressions.Regex.Matches(body.Json, "\\{(volume|snapshot|zone|container|backup_status|record)\\}").Select(m => m.Groups[1].Value).ToList();
        if (holes.Count == 0) return null;
        var hole = Pick(holes);
        var value = hole switch
        {
            "container" => Pick(Containers),
            "record" => Pick(Records().ToList()),
            "zone" or "backup_status" => Pick(Strings),
            _ => HostileIdValue(hole),
        };
        var json = FillBody(body.Json.Replace($"\"{{{hole}}}\"", JsonSerializer.Serialize(value)));
        return new("hostile-field", r.Method!, Fill(r), Encoding.UTF8.GetBytes(json), Version: "volume 3.70", Token: Token);
    }

    Shot? BadContentType(Route r) => Template(r) is not { } json ? null
        : new("bad-content-type", r.Method!, Fill(r), Encoding.UTF8.GetBytes(json), ContentType: Pick(["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]),
            Version: "volume 3.70", Token: Token);

    Shot? ChunkedOversize(Route r) => Template(r) is not { } json ? null
        : new("chunked-oversize", r.Method!, Fill(r), Pad(json, Shot.Limit + 1 + random.Next(1 << 12)), Version: "volume 3.70", Chunked: true, Token: Token);

    // ---- helpers ----

    /// <summary>A valid body for a route that takes one, its placeholders filled with the caller's own ids.</summary>
    string? Template(Route r) => r.Resource is { } resource && Bodies.TryGetValue($"{r.Method} {resource}", out var body) ? FillBody(body.Json) : null;

    byte[]? Body(Route r) => Template(r) is { } json ? Encoding.UTF8.GetBytes(json) : null;

    string FillBody(string json) => json.Replace("{volume}", me.Ids.GetValueOrDefault("volume", RandomGuid())).Replace("{snapshot}", me.Ids.GetValueOrDefault("snapshot", RandomGuid()))
        .Replace("{uuid}", RandomGuid()).Replace("{zone}", "nova").Replace("{container}", "fuzz").Replace("{backup_status}", "error")
        .Replace("{record}", Record(r => { }));

    /// <summary>The path with the caller's project and own ids; <paramref name="name"/> gets <paramref name="value"/> instead.</summary>
    string Fill(Route r, string? name = null, string? value = null)
    {
        var path = r.Pattern;
        foreach (var parameter in r.Parameters)
        {
            var filled = parameter == name ? value! : parameter switch
            {
                "project_id" => Project,
                "target" => Project,
                _ => me.Ids.GetValueOrDefault(KindOf(r, parameter), "x"),
            };
            path = path.Replace($"{{{parameter}}}", filled);
        }
        return path;
    }

    /// <summary>What an id names, from the segment before it ("volumes/{id}" is a volume).</summary>
    static string KindOf(Route r, string parameter)
    {
        var segments = r.Pattern.Split('/');
        var at = Array.IndexOf(segments, $"{{{parameter}}}");
        return at > 0 ? segments[at - 1].TrimEnd('s') : parameter;
    }

    IEnumerable<string> Records() =>
    [
        "%%%not-base64", Convert.ToBase64String("not json"u8.ToArray()), Convert.ToBase64String("null"u8.ToArray()),
        Record(r => r["container"] = "../../../etc"), Record(r => r["container"] = null), Record(r => r["availabilityZone"] = null),
        Record(r => r["name"] = new string('n', 300)), Record(r => r["metadata"] = new JsonObject { ["k\u0007"] = "v" }), Record(r => r["size"] = -1),
        Record(r => r["id"] = "../../etc"),
    ];

    string Record(Action<JsonObject> change)
    {
        var record = JsonSerializer.SerializeToNode(new BackupRecord(Guid.NewGuid(), Guid.NewGuid(), null, "fuzz", 1, 1, 1, null, "nova", "r", null,
            DateTimeOffset.UtcNow, DateTimeOffset.UtcNow, []), JsonSerializerOptions.Web)!.AsObject();
        change(record);
        return Convert.ToBase64String(Encoding.UTF8.GetBytes(record.ToJsonString()));
    }

    static byte[] Pad(string json, int size)
    {
        var bytes = new byte[Math.Max(size, json.Length)];
        Array.Fill(bytes, (byte)' ');
        Encoding.UTF8.GetBytes(json, bytes);
        return bytes;
    }

    static IEnumerable<JsonNode> All(JsonNode node) => node switch
    {
        JsonObject o => [o, .. o.Select(p => p.Value).OfType<JsonNode>().SelectMany(All)],
        _ => [node],
    };

    static void Replace(JsonNode target, JsonNode with)
    {
        var parent = (JsonObject)target.Parent!;
        parent[parent.Single(p => p.Value == target).Key] = with;
    }

    string RandomGuid()
    {
        var bytes = new byte[16];
        random.NextBytes(bytes);
        return new Guid(bytes).ToString();
    }

    T Pick<T>(IReadOnlyList<T> items) => items[random.Next(items.Count)];
}
