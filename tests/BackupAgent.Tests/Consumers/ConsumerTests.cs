using VolumeBackup.TestSupport;
using MassTransit;
using VolumeBackup.BackupAgent.Repository;
using VolumeBackup.BackupAgent.Tests.Repository;
using VolumeBackup.Contracts;

namespace VolumeBackup.BackupAgent.Tests.Consumers;

/// <summary>The command consumers' fault paths: redeliveries, and devices that vanish under a job.</summary>
public sealed class ConsumerTests : IAsyncLifetime
{
    readonly AgentHarness agent = new();

    public Task InitializeAsync() => agent.StartAsync();

    public Task DisposeAsync() => agent.DisposeAsync().AsTask();

    [Fact]
    public async Task A_redelivered_backup_already_on_the_share_is_reported_from_its_manifest_without_a_device()
    {
        var data = TestFiles.RandomBytes(1 << 20, seed: 1);
        var (backupId, stored) = await BackupAsync(data);
        var volumeId = Guid.NewGuid();                 // not in the pool: a device request would fail

        await agent.Bus.Bus.Publish(new CreateBackup(backupId, volumeId, null, RepositoryFixture.Container, null, InUse: true, data.Length, "project", "nova"));

        Assert.True(await agent.Bus.Published.Any<BackupCompleted>(x => x.Context.Message.BackupId == backupId));
        var completed = Assert.Single(agent.PublishedSoFar<BackupCompleted>());
        Assert.Equal((stored.SizeBytes, stored.ObjectCount, stored.BytesWritten, stored.StoredBytes),
            (completed.SizeBytes, completed.ObjectCount, completed.BytesWritten, completed.StoredBytes));
        Assert.Equal(0, agent.Calls["GetBackupDevice"]);
        Assert.Empty(agent.PublishedSoFar<BackupStarted>());
        Assert.Empty(agent.PublishedSoFar<Fault<CreateBackup>>());
    }

    [Fact]
    public async Task An_incremental_after_a_committed_backup_reads_only_the_changed_chunk_and_says_so()
    {
        var size = 4 << 20;
        var (volumeId, volume) = await agent.VolumeAsync(TestFiles.RandomBytes(size, seed: 6));
        var full = Guid.NewGuid();
        await agent.Bus.Bus.Publish(new CreateBackup(full, volumeId, null, RepositoryFixture.Container, null, InUse: false, size, "project", "nova"));
        Assert.True(await agent.Bus.Published.Any<BackupCompleted>(x => x.Context.Message.BackupId == full));
        TestFiles.WriteGuestData(volume, seed: 7, offset: 1 << 20, bytes: 100);
        var incremental = Guid.NewGuid();

        await agent.Bus.Bus.Publish(new CreateBackup(incremental, volumeId, null, RepositoryFixture.Container, full, InUse: true, size, "project", "nova"));

        Assert.True(await agent.Bus.Published.Any<BackupCompleted>(x => x.Context.Message.BackupId == incremental));
        var completed = agent.PublishedSoFar<BackupCompleted>();
        Assert.Equal((false, (long)size), completed.Where(c => c.BackupId == full).Select(c => (c.Cbt, c.BytesRead)).Single());
        Assert.Equal((true, (long)RepositoryFixture.ChunkSize), completed.Where(c => c.BackupId == incremental).Select(c => (c.Cbt, c.BytesRead)).Single());
        Assert.True(File.Exists(Path.Combine(agent.Pool, $"cbt-base-{volumeId}")));   // the incremental's device, the base of the next one
    }

    [Fact]
    public async Task A_restore_whose_device_vanished_is_not_reported_until_redone_on_a_fresh_device()
    {
        var backedUp = TestFiles.RandomBytes(4 << 20, seed: 2);
        var (backupId, _) = await BackupAsync(backedUp);
        var (volumeId, volume) = await agent.VolumeAsync(TestFiles.RandomBytes(backedUp.Length, seed: 3));
        RestartVolumeAgentMidRestore(always: false);

        await agent.Bus.Bus.Publish(new RestoreBackup(backupId, Guid.NewGuid(), volumeId, RepositoryFixture.Container, "nova"));

        Assert.True(await agent.Bus.Published.Any<BackupRestored>(x => x.Context.Message.BackupId == backupId));
        Assert.Equal(2, agent.Calls["GetRestoreDevice"]);   // the first delivery's commit was refused, the retry took a fresh device
        Assert.Equal(backedUp, await File.ReadAllBytesAsync(volume));
        Assert.Empty(Directory.EnumerateFiles(agent.Pool, "*.restore-*"));
    }

    [Fact]
    public async Task A_restore_that_keeps_losing_its_device_faults_and_leaves_the_volume_as_it_was()
    {
        var backedUp = TestFiles.RandomBytes(4 << 20, seed: 4);
        var (backupId, _) = await BackupAsync(backedUp);
        var original = TestFiles.RandomBytes(backedUp.Length, seed: 5);
        var (volumeId, volume) = await agent.VolumeAsync(original);
        RestartVolumeAgentMidRestore(always: true);

        await agent.Bus.Bus.Publish(new RestoreBackup(backupId, Guid.NewGuid(), volumeId, RepositoryFixture.Container, "nova"));

        Assert.True(await agent.Bus.Published.Any<Fault<RestoreBackup>>(x => x.Context.Message.Message.BackupId == backupId));
        Assert.Empty(agent.PublishedSoFar<BackupRestored>());
        Assert.Equal(original, await File.ReadAllBytesAsync(volume));
        Assert.Empty(Directory.EnumerateFiles(agent.Pool, "*.restore-*"));
    }

    [Fact]
    public async Task A_verify_reports_a_sound_backup_verified_and_a_damaged_one_failed_naming_the_chunk()
    {
        var (sound, _) = await BackupAsync(TestFiles.RandomBytes(3 << 20, seed: 8));
        var (damaged, _) = await BackupAsync(TestFiles.RandomBytes(3 << 20, seed: 9));
        var hash = (await agent.Repository.Repository().ReadManifestAsync(RepositoryFixture.Container, damaged, CancellationToken.None))!.Chunks[5]!.Name;
        File.Delete(agent.Repository.ChunkFile(hash));

        await agent.Bus.Bus.Publish(new VerifyBackup(sound, RepositoryFixture.Container, "nova"));
        await agent.Bus.Bus.Publish(new VerifyBackup(damaged, RepositoryFixture.Container, "nova"));

        Assert.True(await agent.Bus.Published.Any<BackupVerified>(x => x.Context.Message.BackupId == sound));
        Assert.True(await agent.Bus.Published.Any<BackupVerifyFailed>(x => x.Context.Message.BackupId == damaged));
        Assert.Equal(48, agent.PublishedSoFar<BackupVerified>().Single().ChunksChecked);   // 3 MiB in 64 KiB chunks
        var failed = agent.PublishedSoFar<BackupVerifyFailed>().Single();
        Assert.Equal((5L, hash, 1), (failed.ChunkIndex, failed.ChunkName, failed.ChunksFailed));
        Assert.Contains($"chunk 5 ({hash}) is missing", failed.Reason, StringComparison.Ordinal);
        Assert.Empty(agent.PublishedSoFar<Fault<VerifyBackup>>());
    }

    async Task<(Guid BackupId, BackupSummary Summary)> BackupAsync(byte[] data)
    {
        var backupId = Guid.NewGuid();
        var summary = await agent.Repository.Repository().BackupAsync(RepositoryFixture.Container, backupId, Guid.NewGuid(), null,
            agent.Repository.Volume(data), data.Length, null, CancellationToken.None);
        return (backupId, summary);
    }

    // At a chunk read (the first only, or every one) the device is unlinked while the consumer still writes into it.
    void RestartVolumeAgentMidRestore(bool always)
    {
        var restarted = 0;
        agent.Store.BeforeRead = path =>
        {
            if (path.Contains("/chunks/", StringComparison.Ordinal) && (Interlocked.Exchange(ref restarted, 1) == 0 || always))
                agent.RestartVolumeAgent();
            return Task.CompletedTask;
        };
    }
}
