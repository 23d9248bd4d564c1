using System.ComponentModel.DataAnnotations;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;

namespace VolumeBackup.Api.Auth;

/// <summary>How the Api reaches Keystone in keystone mode (section Auth:Keystone).</summary>
public sealed class KeystoneOptions
{
    /// <summary>Keystone's v3 root, e.g. <c>http://127.0.0.1:5000/v3</c>; also the <c>WWW-Authenticate</c> uri.</summary>
    [Url] public string Url { get; set; } = "";
    /// <summary>The Api's own service user, which validates callers' tokens (Keystone's <c>service</c> role).</summary>
    public string Username { get; set; } = "";
    /// <summary>Its password, or a file holding it (deploy/ writes one readable by root only).</summary>
    public string Password { get; set; } = "";
    public string PasswordFile { get; set; } = "";
    public string Project { get; set; } = "service";
    public string Domain { get; set; } = "default";
    /// <summary>How long a validated token is trusted without asking Keystone again (keystonemiddleware's token_cache_time: 300 s); never past the token's expiry.</summary>
    [Range(0, 3600)] public int CacheSeconds { get; set; } = 300;
    /// <summary>At most this many validated tokens are cached.</summary>
    [Range(1, 1_000_000)] public int CacheSize { get; set; } = 10_000;
    [Range(1, 120)] public int TimeoutSeconds { get; set; } = 10;

    public string ResolvePassword() => PasswordFile.Length > 0 ? File.ReadAllText(PasswordFile).Trim() : Password;
}

/// <summary>A token Keystone vouched for: who, in which project, with which roles, until when.</summary>
public sealed record KeystoneToken(string UserId, string? ProjectId, IReadOnlyList<string> Roles, DateTimeOffset ExpiresAt);

/// <summary>Keystone could not answer (down, timing out, refusing our service credentials): the request gets 503, never a pass.</summary>
public sealed class KeystoneUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Validates callers' tokens with <c>GET /v3/auth/tokens</c> (X-Auth-Token: the Api's service token, X-Subject-Token: the caller's),
/// as keystonemiddleware does. Valid answers are cached for <see cref="KeystoneOptions.CacheSeconds"/>, never past the token's
/// expiry, keyed by the token's SHA-256 (the cache holds no tokens); invalid ones are not cached, so a revoked token that was
/// never validated is refused at once, while one validated before its revocation is honoured until its cache entry lapses.
/// </summary>
public sealed class KeystoneTokens(IHttpClientFactory http, IOptionsMonitor<AuthOptions> options, TimeProvider clock) : IDisposable
{
    public const string HttpClientName = "keystone";
    const string ServiceTokenKey = "\0service";
    const int MaxTokenLength = 2048;

    readonly MemoryCache cache = new(new MemoryCacheOptions { SizeLimit = options.Get(CinderAuth.Scheme).Keystone.CacheSize + 1 });
    readonly SemaphoreSlim serviceLogin = new(1, 1);

    KeystoneOptions Options => options.Get(CinderAuth.Scheme).Keystone;

    /// <summary>The caller's token, or null when Keystone says it is not valid (unknown, expired, revoked, malformed).</summary>
    public async Task<KeystoneToken?> ValidateAsync(string token, CancellationToken ct)
    {
        // Keystone's tokens (Fernet, JWS) are well under this; a longer one cannot be valid, and Keystone's server drops a request
        // with a header that long, which would read as Keystone being down (503) instead of a bad token (401).
        if (token.Length > MaxTokenLength) return null;
        var key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
        var now = clock.GetUtcNow();
        if (cache.TryGetValue(key, out KeystoneToken? cached) && cached!.ExpiresAt > now) return cached;

        var validated = await SendValidateAsync(token, retryLogin: true, ct);
        if (validated is null || validated.ExpiresAt <= now) return null;
        var until = Min(now.AddSeconds(Options.CacheSeconds), validated.ExpiresAt);
        if (until > now) cache.Set(key, validated, new MemoryCacheEntryOptions { AbsoluteExpiration = until, Size = 1 });
        return validated;
    }

    async Task<KeystoneToken?> SendValidateAsync(string token, bool retryLogin, CancellationToken ct)
    {
        var service = await ServiceTokenAsync(ct);
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{Options.Url.TrimEnd('/')}/auth/tokens?nocatalog");
        request.Headers.Add("X-Auth-Token", service);
        request.Headers.TryAddWithoutValidation("X-Subject-Token", token);
        using var response = await SendAsync(request, ct);
        switch (response.StatusCode)
        {
            case HttpStatusCode.OK:
                var body = await ReadAsync<TokenBody>(response, ct);
                return new KeystoneToken(body.Token.User.Id, body.Token.Project?.Id,
                    [.. body.Token.Roles?.Select(r => r.Name) ?? []], body.Token.ExpiresAt);
            case HttpStatusCode.NotFound or HttpStatusCode.BadRequest:
                return null;
            case HttpStatusCode.Unauthorized when retryLogin:       // our service token expired or was revoked: log in again, once
                cache.Remove(ServiceTokenKey);
                return await SendValidateAsync(token, retryLogin: false, ct);
            default:
                throw new KeystoneUnavailableException($"Keystone answered {(int)response.StatusCode} to a token validation");
        }
    }

    /// <summary>The Api's own token, reused until five minutes before it expires.</summary>
    async Task<string> ServiceTokenAsync(CancellationToken ct)
    {
        if (cache.TryGetValue(ServiceTokenKey, out string? token)) return token!;
        await serviceLogin.WaitAsync(ct);
        try
        {
            if (cache.TryGetValue(ServiceTokenKey, out token)) return token!;
            var o = Options;
            var login = new
            {
                auth = new
                {
                    identity = new { methods = new[] { "password" }, password = new { user = new { name = o.Username, domain = new { id = o.Domain }, password = o.ResolvePassword() } } },
                    scope = new { project = new { name = o.Project, domain = new { id = o.Domain } } },
                },
            };
            // Buffered (Content-Length, not chunked): Keystone behind uwsgi's http-socket gets no chunked body.
            using var content = JsonContent.Create(login);
            await content.LoadIntoBufferAsync(ct);
            using var request = new HttpRequestMessage(HttpMethod.Post, $"{o.Url.TrimEnd('/')}/auth/tokens?nocatalog") { Content = content };
            using var response = await SendAsync(request, ct);
            if (response.StatusCode != HttpStatusCode.Created || !response.Headers.TryGetValues("X-Subject-Token", out var values))
                throw new KeystoneUnavailableException($"Keystone refused the Api's service user {o.Username} ({(int)response.StatusCode})");
            token = values.First();
            var expires = (await ReadAsync<TokenBody>(response, ct)).Token.ExpiresAt;
            cache.Set(ServiceTokenKey, token, new MemoryCacheEntryOptions { AbsoluteExpiration = expires.AddMinutes(-5), Size = 1 });
            return token;
        }
        finally { serviceLogin.Release(); }
    }

    async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(Options.TimeoutSeconds));
        try
        {
            return await http.CreateClient(HttpClientName).SendAsync(request, timeout.Token);
        }
        catch (HttpRequestException e) { throw new KeystoneUnavailableException($"Keystone at {Options.Url} cannot be reached: {e.Message}", e); }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested) { throw new KeystoneUnavailableException($"Keystone at {Options.Url} did not answer within {Options.TimeoutSeconds} s", e); }
    }

    static async Task<T> ReadAsync<T>(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            return await response.Content.ReadFromJsonAsync<T>(ct) ?? throw new KeystoneUnavailableException("Keystone sent an empty body");
        }
        catch (System.Text.Json.JsonException e) { throw new KeystoneUnavailableException("Keystone sent a body that is not a token", e); }
    }

    static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    public void Dispose()
    {
        cache.Dispose();
        serviceLogin.Dispose();
    }

    sealed record TokenBody([property: JsonPropertyName("token")] TokenInfo Token);
    sealed record TokenInfo(
        [property: JsonPropertyName("user")] Named User,
        [property: JsonPropertyName("project")] Named? Project,
        [property: JsonPropertyName("roles")] List<Named>? Roles,
        [property: JsonPropertyName("expires_at")] DateTimeOffset ExpiresAt);
    sealed record Named([property: JsonPropertyName("id")] string Id, [property: JsonPropertyName("name")] string Name);
}
