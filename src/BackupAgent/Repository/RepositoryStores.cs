namespace VolumeBackup.BackupAgent.Repository;

public static class RepositoryStores
{
    /// <summary>An <see cref="NfsStore"/> for <c>nfs://host/export/dir[?version=4]</c> with
    /// <paramref name="connections"/> connections, or a <see cref="DirectoryStore"/> for an absolute path.</summary>
    public static IRepositoryStore Open(string target, int connections)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(target);
        if (target.StartsWith("nfs://", StringComparison.OrdinalIgnoreCase)) return new NfsStore(target, connections);
        if (target.Contains("://", StringComparison.Ordinal))
            throw new ArgumentException($"Repository target '{target}' has an unsupported scheme: use nfs://host/export/dir or an absolute path.", nameof(target));
        if (!Path.IsPathFullyQualified(target))
            throw new ArgumentException($"Repository target '{target}' is not an absolute path: use nfs://host/export/dir or an absolute path.", nameof(target));
        return new DirectoryStore(target);
    }

    /// <summary>The temporary beside <paramref name="full"/> that an atomic write renames into place; fresh per attempt.</summary>
    internal static string TemporaryOf(string full) => $"{full}{TemporaryMark}{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8))}";

    internal static bool IsTemporary(string name) => name.Contains(TemporaryMark, StringComparison.Ordinal);

    const string TemporaryMark = ".tmp-";

    /// <summary>A store path of a file: relative, '/'-separated, no empty, "." or ".." parts.</summary>
    internal static string CheckFilePath(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return path.EndsWith('/') ? throw Invalid(path) : CheckDirectoryPath(path);
    }

    /// <summary>Like <see cref="CheckFilePath"/>, where "" names the root and one trailing '/' is allowed.</summary>
    internal static string CheckDirectoryPath(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0) return path;
        var trimmed = path.EndsWith('/') ? path[..^1] : path;
        foreach (var part in trimmed.Split('/'))
        {
            if (part is "" or "." or ".." || part.Contains('\0') || part.Contains('\\')) throw Invalid(path);
        }
        return trimmed;
    }

    static ArgumentException Invalid(string path) =>
        new($"Invalid repository path '{path}': it must be relative and '/'-separated, without empty, '.' or '..' parts.", nameof(path));
}
