namespace VolumeBackup.Api.Backups;

/// <summary>A container name becomes a folder on the share: only plain relative names pass (the agent checks again).</summary>
public static class ContainerNames
{
    public static (string? Name, string? Error) Validate(string? container)
    {
        if (string.IsNullOrEmpty(container)) return (BackupsApi.DefaultContainer, null);
        if (container.Length > 255) return (null, "Invalid container: the name is longer than 255 characters.");
        foreach (var segment in container.Split('/'))
        {
            if (segment is "" or "." or "..")
                return (null, $"Invalid container: '{container}' must be a relative path without empty, '.' or '..' segments.");
            if (!segment.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
                return (null, $"Invalid container: '{container}' may contain only letters, digits, '-', '_', '.' and '/'.");
        }
        return (container, null);
    }
}
