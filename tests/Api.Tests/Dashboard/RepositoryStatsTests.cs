using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Dashboard;
using VolumeBackup.Api.Tests.Backups;
using VolumeBackup.Contracts;

namespace VolumeBackup.Api.Tests.Dashboard;

/// <summary>The dashboard's repository figures, from backups the state machine completed and deleted (a database of their own).</summary>
public sealed class RepositoryStatsTests(SagaHarness saga) : IClassFixture<SagaHarness>
{
    [Fact]
    public async Task The_share_holds_what_backups_wrote_less_what_deletes_freed_and_the_ratio_counts_sharing_across_backups()
    {
        var first = await CompletedAsync(bytesWritten: 300 << 20);
        var second = await CompletedAsync(bytesWritten: 20 << 20);         // an incremental: most of its chunks were there
        await saga.FeedAsync(new BackupDeleteRequested(first));
        await saga.FeedAsync(new BackupDeleted(first, 100, 200 << 20));     // the rest is still referenced by the second

        await using var db = saga.NewDbContext();
        var stats = await DashboardApi.RepositoryAsync(db, CancellationToken.None);

        Assert.Equal(1, stats.Backups);
        Assert.Equal(1L << 30, stats.LogicalBytes);                          // what the available backup covers
        Assert.Equal(120L << 20, stats.StoredBytes);                         // 300 + 20 written, 200 freed
        Assert.Equal(Math.Round(1024.0 / 120, 2), stats.Ratio);
        Assert.Equal(BackupStatus.Available, (await saga.BackupAsync(second)).Status);
    }

    async Task<Guid> CompletedAsync(long bytesWritten)
    {
        var (_, backup) = await saga.RequestedAsync();
        await saga.FeedAsync(new BackupCreateRequested(backup.Id, InUse: false));
        await saga.FeedAsync(new BackupCompleted(backup.Id, 1L << 30, 10, bytesWritten, 400 << 20, DateTimeOffset.UtcNow));
        return backup.Id;
    }
}
