namespace VolumeBackup.Contracts;

/// <summary>
/// Where commands go. Each zone has a queue per command, on which all of its agents compete. Backups and restores go
/// first to a queue of the volume's host, which only that host's agents read: a command left there for
/// the Api's Messaging:SpillAfter (its agents busy, dead or never started) expires into the zone's queue (the host
/// queue's dead-letter exchange is the zone queue's exchange). Deletes and verifies touch only the repository: they go
/// to the zone's queue. The Api declares all of them (agents may not bind a queue, nor name a dead-letter exchange,
/// since either would let them put commands on it); agents declare the zone's queues too, with the same arguments.
/// </summary>
public static class Queues
{
    public static string CreateBackup(string zone) => $"create-backup-{zone}";
    public static string RestoreBackup(string zone) => $"restore-backup-{zone}";
    public static string DeleteBackup(string zone) => $"delete-backup-{zone}";
    public static string VerifyBackup(string zone) => $"verify-backup-{zone}";

    /// <summary>Every command queue of a zone.</summary>
    public static string[] OfZone(string zone) => [CreateBackup(zone), RestoreBackup(zone), DeleteBackup(zone), VerifyBackup(zone)];

    /// <summary>The zone queues whose commands go to the volume's host first.</summary>
    public static string[] HostRouted(string zone) => [CreateBackup(zone), RestoreBackup(zone)];

    /// <summary>A host's own queue for a zone queue's command (create-backup-nova.host-a).</summary>
    public static string OnHost(string zoneQueue, string host) => $"{zoneQueue}.{host}";
}

/// <summary>
/// The arguments every declaration of a command queue must repeat exactly (the broker refuses any other). All are quorum
/// queues: replicated on a cluster, and a command outlives the node it was sent through.
/// </summary>
public static class CommandQueueArguments
{
    public static Dictionary<string, object?> Zone => new() { ["x-queue-type"] = "quorum" };

    /// <summary>
    /// A host queue: a command that expires there (its per-message TTL, the Api's Messaging:SpillAfter) is
    /// dead-lettered to the zone queue's exchange, at least once (the broker keeps it until the zone queue has it).
    /// </summary>
    public static Dictionary<string, object?> Host(string zoneQueue) => new()
    {
        ["x-queue-type"] = "quorum",
        ["x-dead-letter-exchange"] = zoneQueue,
        ["x-dead-letter-strategy"] = "at-least-once",
        ["x-overflow"] = "reject-publish",
    };
}
