using Microsoft.EntityFrameworkCore;
using VolumeBackup.Api.Backups;
using VolumeBackup.Api.Messaging;
using VolumeBackup.Api.Quotas;
using VolumeBackup.Api.Services;
using VolumeBackup.Api.Volumes;

namespace VolumeBackup.Api;

public sealed class AppDbContext(DbContextOptions<AppDbContext> options) : DbContext(options)
{
    public DbSet<Volume> Volumes => Set<Volume>();
    public DbSet<Snapshot> Snapshots => Set<Snapshot>();
    public DbSet<Backup> Backups => Set<Backup>();
    public DbSet<OutboxMessage> Outbox => Set<OutboxMessage>();
    public DbSet<AgentService> Services => Set<AgentService>();
    public DbSet<Quota> Quotas => Set<Quota>();

    /// <summary>The one way the Api and its tests connect: snake_case names, metadata dictionaries as jsonb.</summary>
    public static DbContextOptionsBuilder Configure(DbContextOptionsBuilder options, string connectionString) => options
        .UseNpgsql(connectionString, npgsql => npgsql.ConfigureDataSource(source => source.EnableDynamicJson()))
        .UseSnakeCaseNamingConvention();

    protected override void OnModelCreating(ModelBuilder model)
    {
        model.Entity<Volume>(e =>
        {
            e.Property(v => v.Metadata).HasColumnType("jsonb");
            e.Property<uint>("xmin").IsRowVersion();          // concurrent status changes fail instead of overwriting
            e.HasIndex(v => v.ProjectId);
        });
        model.Entity<Snapshot>(e =>
        {
            e.Property(s => s.Metadata).HasColumnType("jsonb");
            e.Property<uint>("xmin").IsRowVersion();
            e.HasIndex(s => s.VolumeId);
        });
        model.Entity<Backup>(e =>
        {
            e.Property(b => b.Metadata).HasColumnType("jsonb");
            e.Property<uint>("xmin").IsRowVersion();
            e.HasIndex(b => new { b.ProjectId, b.CreatedAt });
            e.HasIndex(b => b.VolumeId);
            e.Ignore(b => b.IsIncremental);
            e.Ignore(b => b.HasDependentBackups);
            e.Ignore(b => b.Status);
            e.Property(b => b.State).HasMaxLength(32);
            e.HasIndex(b => b.State);
            // A delete asks whether another row shares its data (an import names the manifest of another id): only imports have one.
            e.HasIndex(b => b.ManifestId).HasFilter("manifest_id IS NOT NULL");
            // A deleted backup keeps its row (the saga ignores its late events) but is gone from every query of the Api.
            e.HasQueryFilter(b => b.State != nameof(BackupSaga.Deleted));
        });
        model.Entity<AgentService>(e =>
        {
            e.ToTable("services");
            e.HasIndex(s => new { s.Binary, s.Host }).IsUnique();
        });
        model.Entity<Quota>(e => e.HasKey(q => new { q.ProjectId, q.Resource }));
        model.Entity<OutboxMessage>(e =>
        {
            e.ToTable("outbox");
            e.Property(m => m.Body).HasColumnType("jsonb");
            e.HasIndex(m => m.CreatedAt).HasFilter("sent_at IS NULL AND parked_at IS NULL");
        });
    }
}
