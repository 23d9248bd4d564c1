using MassTransit;
using MassTransit.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Storage;
using VolumeBackup.Api.Volumes;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests.Backups;

/// <summary>
/// The backup saga as the Api registers it (<see cref="MessagingSetup.AddBackupSaga"/>, its PostgreSQL repository on a
/// database of its own) on MassTransit's in-memory test harness. Tests publish events and wait until the saga consumed
/// them; <see cref="BackupAsync"/> reads with FOR UPDATE, so it also waits for any saga transaction still on the row.
/// </summary>
public sealed class SagaHarness : IAsyncLifetime
{
    ServiceProvider provider = null!;
    string database = "";

    public ITestHarness Harness => provider.GetRequiredService<ITestHarness>();
    public IServiceProvider Services => provider;

    public async Task InitializeAsync()
    {
        database = await TestServices.CreateDatabaseAsync("saga");
        var services = new ServiceCollection();
        services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        services.AddSingleton(TimeProvider.System);
        services.AddDbContext<AppDbContext>(o => AppDbContext.Configure(o, database));
        services.AddSingleton<OutboxSignal>();
        // The storage hosts the saga routes commands to (its volumes are on host-a).
        services.AddSingleton(Microsoft.Extensions.Options.Options.Create(new StorageOptions { Hosts = [new() { Name = "host-a", Zone = "nova", Address = "https://127.0.0.1:9" }] }));
        services.AddMassTransitTestHarness(x =>
        {
            // A wait ends when its message was consumed or after 30 s; the harness never goes "inactive" between the class's tests.
            x.SetTestTimeouts(testTimeout: TimeSpan.FromSeconds(30), testInactivityTimeout: TimeSpan.FromHours(1));
            x.AddBackupSaga();
        });
        provider = services.BuildServiceProvider(true);
        await using (var db = NewDbContext())
            await db.Database.MigrateAsync();
        await Harness.Start();
    }

    public async Task DisposeAsync()
    {
        await Harness.Stop();
        await provider.DisposeAsync();
        if (database.Length > 0) await TestServices.DropDatabaseAsync(database);
    }

    public AppDbContext NewDbContext() => new((DbContextOptions<AppDbContext>)AppDbContext.Configure(new DbContextOptionsBuilder<AppDbContext>(), database).Options);

    /// <summary>Publishes <paramref name="message"/> and waits until the saga has consumed it (faults fail the test).</summary>
    public async Task FeedAsync<T>(T message) where T : class
    {
        var messageId = NewId.NextGuid();
        await Harness.Bus.Publish(message, c => c.MessageId = messageId);
        Assert.True(await Harness.Consumed.Any<T>(m => m.Context.MessageId == messageId), $"the saga did not consume {typeof(T).Name}");
        Assert.Null(Harness.Consumed.Select<T>(m => m.Context.MessageId == messageId).First().Exception);
    }

    /// <summary>The backup row, read under its lock: a saga step still running on it has committed first.</summary>
    public async Task<Backup> BackupAsync(Guid id)
    {
        await using var db = NewDbContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        return await db.Backups.FromSql($"SELECT *, xmin FROM backups WHERE id = {id} FOR UPDATE").IgnoreQueryFilters().AsNoTracking().SingleAsync();
    }

    public async Task<Volume> VolumeAsync(Guid id)
    {
        await using var db = NewDbContext();
        return await db.Volumes.AsNoTracking().SingleAsync(v => v.Id == id);
    }

    /// <summary>The outbox rows the saga wrote about one backup, of one message type, oldest first.</summary>
    public async Task<List<OutboxMessage>> OutboxAsync<T>(Guid backupId)
    {
        await using var db = NewDbContext();
        var rows = await db.Outbox.AsNoTracking().Where(m => m.MessageType == typeof(T).Name).OrderBy(m => m.CreatedAt).ToListAsync();
        return rows.Where(m => m.Body.Contains(backupId.ToString(), StringComparison.Ordinal)).ToList();
    }

    /// <summary>A volume and a backup of it as the create handler writes them: the row new, the volume reserved.</summary>
    public async Task<(Volume Volume, Backup Backup)> RequestedAsync(string volumeStatus = VolumeStatus.Available, Guid? parentId = null)
    {
        var now = DateTimeOffset.UtcNow;
        var volume = new Volume
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a", Status = volumeStatus, CreatedAt = now,
        };
        volume.StartBackup(now);
        var backup = new Backup
        {
            Id = Guid.NewGuid(), ProjectId = "p", UserId = "u", VolumeId = volume.Id, Container = "c", AvailabilityZone = "nova", Size = 1,
            ParentId = parentId, CreatedAt = now, DataTimestamp = now,
        };
        await using var db = NewDbContext();
        db.AddRange(volume, backup);
        await db.SaveChangesAsync();
        return (volume, backup);
    }
}
