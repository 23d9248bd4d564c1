namespace VolumeBackup.Contracts;

/// <summary>
/// Where commands go. Each zone has a queue per command, on which all of its agents compete. Backups and restores go
/// first to a queue of the volume's host, which only that host's agents read: a command left there for
/// Agent:SpillAfter (its agents busy, dead or never started) expires into the zone's queue (dead-letter exchange), and
/// a host whose queue does not exist yet sends straight on to it (alternate exchange). Deletes touch only the
/// repository: they go to the zone's queue.
/// </summary>
public static class Queues
{
    public static string CreateBackup(string zone) => $"create-backup-{zone}";
    public static string RestoreBackup(string zone) => $"restore-backup-{zone}";
    public static string DeleteBackup(string zone) => $"delete-backup-{zone}";

    /// <summary>A host's own queue for a zone queue's command (create-backup-nova.host-a).</summary>
    public static string OnHost(string zoneQueue, string host) => $"{zoneQueue}.{host}";

    /// <summary>
    /// The send address of a host's queue: its exchange, declared with the zone queue's exchange as alternate exchange
    /// (as the host's agents declare it), so nothing sent there is lost while the host has no queue.
    /// </summary>
    public static string HostAddress(string zoneQueue, string host) => $"exchange:{OnHost(zoneQueue, host)}?type=fanout&alternateexchange={zoneQueue}";
}
