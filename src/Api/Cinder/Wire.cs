namespace VolumeBackup.Api.Cinder;

public sealed record Link(string Href, string Rel);

/// <summary>How Cinder writes envelopes, times, links and flags.</summary>
public static class Wire
{
    /// <summary>Cinder's envelope: every body is one object named for what it holds (<c>{"backup": {...}}</c>).</summary>
    public static Dictionary<string, T> Wrap<T>(string key, T value) => new() { [key] = value };

    /// <summary>A boolean query flag as OpenStack clients send it (all_tenants=1, usage=true, with_count=True).</summary>
    public static bool Flag(IQueryCollection query, string name) => query[name] is ["1" or "true" or "True"];

    public static string Time(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff", System.Globalization.CultureInfo.InvariantCulture);
    public static string? Time(DateTimeOffset? t) => t is { } v ? Time(v) : null;

    public static IReadOnlyList<Link> Links(string baseUrl, string projectId, string collection, Guid id) =>
    [
        new($"{baseUrl}/v3/{projectId}/{collection}/{id}", "self"),
        new($"{baseUrl}/{projectId}/{collection}/{id}", "bookmark"),
    ];

    /// <summary>
    /// An id as Cinder's database finds it: the canonical 8-4-4-4-12 form only. Guid.TryParse also reads braces and 32 bare digits,
    /// which would make a second name for every resource where Cinder finds none.
    /// </summary>
    public static bool TryParseId(string? text, out Guid id) => Guid.TryParseExact(text, "D", out id);

    public static string BaseUrl(HttpRequest request) => $"{request.Scheme}://{request.Host}";
}
