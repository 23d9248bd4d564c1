using System.Collections.Concurrent;
using System.Data.Common;
using Microsoft.AspNetCore.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;

namespace VolumeBackup.Api.Tests;

/// <summary>What the Api's DbContext read: every entity it materialised and the SQL of every query it sent.</summary>
public sealed class QueryRecorder : DbCommandInterceptor, IMaterializationInterceptor
{
    readonly ConcurrentQueue<object> entities = new();
    readonly ConcurrentQueue<string> commands = new();

    public IReadOnlyCollection<object> Entities => entities;
    public IReadOnlyCollection<string> Commands => commands;

    /// <summary>Forgets what was recorded, before the request a test looks at.</summary>
    public void Clear()
    {
        entities.Clear();
        commands.Clear();
    }

    public object InitializedInstance(MaterializationInterceptionData materializationData, object entity)
    {
        entities.Enqueue(entity);
        return entity;
    }

    public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
    {
        commands.Enqueue(command.CommandText);
        return result;
    }

    public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(
        DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        commands.Enqueue(command.CommandText);
        return ValueTask.FromResult(result);
    }
}

/// <summary>The Api with a <see cref="QueryRecorder"/> on its DbContext.</summary>
public class RecordingApiFactory : ApiFactory
{
    public QueryRecorder Queries { get; } = new();

    protected override void Configure(IWebHostBuilder builder) =>
        builder.ConfigureServices(services => services.ConfigureDbContext<AppDbContext>(o => o.AddInterceptors(Queries)));
}
