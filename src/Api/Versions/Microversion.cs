using Microsoft.AspNetCore.Http.HttpResults;
using VolumeBackup.Api.Errors;

namespace VolumeBackup.Api.Versions;

/// <summary>A Block Storage v3 microversion, negotiated per request from <c>OpenStack-API-Version: volume X.Y</c>.</summary>
public readonly record struct Microversion(int Major, int Minor) : IComparable<Microversion>
{
    public static readonly Microversion Min = new(3, 0);
    public static readonly Microversion Max = new(3, 70);       // what Cinder 21 (Zed) serves, and cinderclient 9.1 asks for

    // The versions our views and handlers branch on (cinder/api/microversions.py).
    public static readonly Microversion ClusterSupport = new(3, 7);
    public static readonly Microversion BackupUpdate = new(3, 9);
    public static readonly Microversion BackupProject = new(3, 18);
    public static readonly Microversion NewAttach = new(3, 27);
    public static readonly Microversion BackupSortName = new(3, 37);
    public static readonly Microversion BackupMetadata = new(3, 43);
    public static readonly Microversion AttachmentComplete = new(3, 44);
    public static readonly Microversion CountInfo = new(3, 45);
    public static readonly Microversion BackendStateReport = new(3, 49);
    public static readonly Microversion BackupProjectUserId = new(3, 56);

    public int CompareTo(Microversion other) => Major != other.Major ? Major.CompareTo(other.Major) : Minor.CompareTo(other.Minor);
    public static bool operator >=(Microversion a, Microversion b) => a.CompareTo(b) >= 0;
    public static bool operator <=(Microversion a, Microversion b) => a.CompareTo(b) <= 0;
    public static bool operator >(Microversion a, Microversion b) => a.CompareTo(b) > 0;
    public static bool operator <(Microversion a, Microversion b) => a.CompareTo(b) < 0;
    public override string ToString() => $"{Major}.{Minor}";

    public static bool TryParse(string text, out Microversion version)
    {
        version = default;
        var parts = text.Split('.');
        if (parts.Length != 2 || !int.TryParse(parts[0], out var major) || !int.TryParse(parts[1], out var minor) || minor < 0) return false;
        version = new Microversion(major, minor);
        return true;
    }

    /// <summary>The version of the current request (3.0 when the client named none).</summary>
    public static Microversion Of(HttpContext http) => http.Items[typeof(Microversion)] is Microversion v ? v : Min;
}

/// <summary>Negotiates the microversion as Cinder does: 3.0 by default, "latest" the maximum, anything out of range refused with 406.</summary>
public sealed class MicroversionFilter : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var (version, refused) = Negotiate(http.Request);
        if (refused is not null) return refused;
        http.Items[typeof(Microversion)] = version;
        http.Response.Headers["OpenStack-API-Version"] = $"volume {version}";
        http.Response.Headers.Append("Vary", "OpenStack-API-Version");
        return await next(context);
    }

    /// <summary>The version the request asks for, or why Cinder would refuse it.</summary>
    public static (Microversion Version, ProblemHttpResult? Refused) Negotiate(HttpRequest request)
    {
        var header = request.Headers["OpenStack-API-Version"].ToString();
        var requested = header.Split(',').Select(h => h.Trim()).FirstOrDefault(h => h.StartsWith("volume ", StringComparison.OrdinalIgnoreCase));
        if (requested is null) return (Microversion.Min, null);
        var text = requested["volume ".Length..].Trim();
        if (text.Equals("latest", StringComparison.OrdinalIgnoreCase)) return (Microversion.Max, null);
        if (!Microversion.TryParse(text, out var version))
            return (version, CinderErrors.BadRequest($"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum."));
        if (version < Microversion.Min || version > Microversion.Max)
            return (version, TypedResults.Problem(
                $"Version {version} is not supported by the API. Minimum is {Microversion.Min} and maximum is {Microversion.Max}.", statusCode: 406));
        return (version, null);
    }
}
