namespace VolumeBackup.Contracts;

/// <summary>The queues commands are sent to: one per command and availability zone, where that zone's agents compete.</summary>
public static class Queues
{
    public static string CreateBackup(string zone) => $"create-backup-{zone}";
    public static string RestoreBackup(string zone) => $"restore-backup-{zone}";
    public static string DeleteBackup(string zone) => $"delete-backup-{zone}";
    public static string VerifyBackup(string zone) => $"verify-backup-{zone}";
}
