using MassTransit;
using MassTransit.Context;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;

namespace VolumeBackup.Api.Messaging;

/// <summary>
/// The storage half of a MassTransit saga repository on the Api's DbContext (MassTransit.EntityFrameworkCore is not
/// available to this project). Each message runs in one transaction; the instance is loaded with
/// SELECT ... FOR UPDATE, so two messages for one saga queue behind each other, and the saga's changes commit
/// together with whatever its steps changed in the same DbContext (backup and volume rows, outbox rows).
/// </summary>
public sealed class PostgresSagaRepositoryContextFactory<TSaga>(AppDbContext db, ISagaConsumeContextFactory<AppDbContext, TSaga> factory)
    : ISagaRepositoryContextFactory<TSaga> where TSaga : class, ISaga
{
    public void Probe(ProbeContext context) => context.Add("persistence", "postgresql");

    public async Task Send<T>(ConsumeContext<T> context, IPipe<SagaRepositoryContext<TSaga, T>> next) where T : class
    {
        await using var tx = await db.Database.BeginTransactionAsync(context.CancellationToken);
        await next.Send(new PostgresSagaRepositoryContext<TSaga, T>(db, context, factory));
        await tx.CommitAsync(context.CancellationToken);
    }

    public async Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<TSaga> query, IPipe<SagaRepositoryQueryContext<TSaga, T>> next) where T : class
    {
        await using var tx = await db.Database.BeginTransactionAsync(context.CancellationToken);
        // Only the keys (the key may be mapped under another name than CorrelationId); each instance is then loaded under its lock.
        var key = db.Model.FindEntityType(typeof(TSaga))!.FindPrimaryKey()!.Properties.Single().Name;
        var ids = await db.Set<TSaga>().IgnoreQueryFilters().AsNoTracking().Where(query.FilterExpression)
            .Select(s => EF.Property<Guid>(s, key)).ToListAsync(context.CancellationToken);
        var repository = new PostgresSagaRepositoryContext<TSaga, T>(db, context, factory);
        var instances = new List<TSaga>();
        foreach (var id in ids)
            if (await repository.LockAsync(id) is { } saga) instances.Add(saga);
        await next.Send(new LoadedSagaRepositoryQueryContext<TSaga, T>(repository, instances));
        await tx.CommitAsync(context.CancellationToken);
    }
}

public sealed class PostgresSagaRepositoryContext<TSaga, TMessage> : ConsumeContextScope<TMessage>, SagaRepositoryContext<TSaga, TMessage>
    where TSaga : class, ISaga where TMessage : class
{
    readonly AppDbContext db;
    readonly ConsumeContext<TMessage> context;
    readonly ISagaConsumeContextFactory<AppDbContext, TSaga> factory;
    readonly string table;
    readonly string key;

    public PostgresSagaRepositoryContext(AppDbContext db, ConsumeContext<TMessage> context, ISagaConsumeContextFactory<AppDbContext, TSaga> factory)
        : base(context, db)
    {
        this.db = db;
        this.context = context;
        this.factory = factory;
        var entity = db.Model.FindEntityType(typeof(TSaga))!;
        table = entity.GetTableName()!;
        key = entity.FindPrimaryKey()!.Properties.Single().GetColumnName();
    }

#pragma warning disable EF1002 // the table and key names come from the EF model, the id is a parameter
    // Query filters off: the saga sees every instance, a soft-deleted backup included, to ignore its late events.
    internal Task<TSaga?> LockAsync(Guid correlationId) => db.Set<TSaga>()
        .FromSqlRaw($"SELECT *, xmin FROM {table} WHERE {key} = {{0}} FOR UPDATE", correlationId)
        .IgnoreQueryFilters()
        .SingleOrDefaultAsync(CancellationToken);
#pragma warning restore EF1002

    public Task<SagaConsumeContext<TSaga, TMessage>> Add(TSaga instance) =>
        factory.CreateSagaConsumeContext(db, context, instance, SagaConsumeContextMode.Add);

    public async Task<SagaConsumeContext<TSaga, TMessage>> Insert(TSaga instance)
    {
        db.Set<TSaga>().Add(instance);
        await db.SaveChangesAsync(CancellationToken);        // a duplicate key fails here and the message is retried into Load
        return await factory.CreateSagaConsumeContext(db, context, instance, SagaConsumeContextMode.Insert);
    }

    public async Task<SagaConsumeContext<TSaga, TMessage>> Load(Guid correlationId) =>
        await LockAsync(correlationId) is { } instance
            ? await factory.CreateSagaConsumeContext(db, context, instance, SagaConsumeContextMode.Load)
            : default!;

    public async Task Save(SagaConsumeContext<TSaga> context)
    {
        db.Set<TSaga>().Add(context.Saga);
        await db.SaveChangesAsync(CancellationToken);
    }

    public Task Update(SagaConsumeContext<TSaga> context) => db.SaveChangesAsync(CancellationToken);

    public async Task Delete(SagaConsumeContext<TSaga> context)
    {
        db.Set<TSaga>().Remove(context.Saga);
        await db.SaveChangesAsync(CancellationToken);
    }

    public Task Discard(SagaConsumeContext<TSaga> context) => Task.CompletedTask;

    public Task Undo(SagaConsumeContext<TSaga> context)
    {
        db.ChangeTracker.Clear();                            // the transaction rolls back; forget what the steps changed
        return Task.CompletedTask;
    }

    public Task<SagaConsumeContext<TSaga, T>> CreateSagaConsumeContext<T>(ConsumeContext<T> consumeContext, TSaga instance, SagaConsumeContextMode mode)
        where T : class => factory.CreateSagaConsumeContext(db, consumeContext, instance, mode);
}
