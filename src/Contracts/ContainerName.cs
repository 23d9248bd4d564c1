using System.Buffers;

namespace VolumeBackup.Contracts;

/// <summary>
/// Container names come from API users and become folders on the share: validated, never trusted. The one rule the
/// Api applies to answer 400 and the agent applies again before it touches the share.
/// </summary>
public static class ContainerName
{
    public const string Default = "backups";
    public const int MaxLength = 255;

    static readonly SearchValues<char> Allowed =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./");

    // A nested container of these names would be a folder where its parent container keeps a file. Other names of the
    // layout (chunks, backups, writers, deleting) are harmless: a container only reads hash- and id-named entries there.
    static readonly string[] Reserved = ["gc.lock", "gc.generation", "keys.json"];

    // Returns the container to use (the default when empty), or throws an ArgumentException whose message is fit for a 400.
    public static string Validate(string? name)
    {
        if (string.IsNullOrEmpty(name))
            return Default;
        if (name.Length > MaxLength)
            throw Invalid($"must be at most {MaxLength} characters long");
        if (name.StartsWith('/'))
            throw Invalid("must be a relative path, not start with '/'");
        if (name.Contains('\\'))
            throw Invalid("must not contain '\\'; separate folders with '/'");
        if (name.AsSpan().IndexOfAnyExcept(Allowed) >= 0)
            throw Invalid("may contain only letters, digits, '-', '_', '.' and '/' between folder names");

        var segments = name.Split('/');
        for (var i = 0; i < segments.Length; i++)
        {
            var segment = segments[i];
            if (segment.Length == 0)
                throw Invalid("must not have empty folder names ('//' or a leading or trailing '/')");
            if (segment is "." or "..")
                throw Invalid("must not contain '.' or '..' folder names");
            if (i > 0 && Reserved.Contains(segment))
                throw Invalid($"must not use '{segment}' as a nested folder name: it is reserved by the repository layout");
        }
        return name;
    }

    static ArgumentException Invalid(string reason) => new($"The container name {reason}.");
}
