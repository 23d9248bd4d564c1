using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using VolumeBackup.Api.Services;
using VolumeBackup.Api.Volumes;
using VolumeBackup.TestSupport;

namespace VolumeBackup.Api.Tests;

/// <summary>The Api in-process on a database and virtual host of its own; no agents (tests publish their events).</summary>
public class ApiFactory : WebApplicationFactory<Program>, IAsyncLifetime
{
    string database = "";
    string broker = "";

    /// <summary>The AMQP URI of this fixture's virtual host.</summary>
    public string Broker => broker;

    public async Task InitializeAsync()
    {
        database = await TestServices.CreateDatabaseAsync("api");
        broker = await TestServices.CreateVirtualHostAsync("api");
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("ConnectionStrings:Postgres", database);
        builder.UseSetting("ConnectionStrings:RabbitMq", broker);
        builder.UseSetting("Auth:Mode", "noauth");
        builder.UseSetting("Storage:Hosts:0:Name", "host-a");
        builder.UseSetting("Storage:Hosts:0:Zone", "nova");
        builder.UseSetting("Storage:Hosts:0:Address", "https://127.0.0.1:9");   // no VolumeAgent: these tests never reach it
        foreach (var (key, value) in TestPki.Deployment.Settings(TestPki.Deployment.Api, ":")) builder.UseSetting(key, value);
        builder.UseSetting("Encryption:MasterKeyFile", TestServices.MasterKeyFile);
        Configure(builder);
    }

    /// <summary>More settings, for a fixture that needs them.</summary>
    protected virtual void Configure(IWebHostBuilder builder) { }

    /// <summary>Starts the host and waits for its bus: a message published before the saga's queue is bound to its exchange is lost.</summary>
    public async Task StartedAsync()
    {
        _ = Server;
        var status = await Services.GetRequiredService<IBusControl>().WaitForHealthStatus(BusHealthStatus.Healthy, TimeSpan.FromSeconds(60));
        if (status != BusHealthStatus.Healthy) throw new InvalidOperationException($"The Api's bus is {status} after 60 s");
    }

    /// <summary>A client of the Api acting as <paramref name="user"/> of <paramref name="project"/> (noauth token).</summary>
    public HttpClient ClientFor(string project, string user = "u")
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Add("X-Auth-Token", $"{user}:{project}");
        return client;
    }

    /// <summary>
    /// Available 1 GiB volumes of <paramref name="project"/> in zone nova, and a live backup agent there (named after the
    /// project), so that backups of them are accepted.
    /// </summary>
    public async Task<Volume[]> VolumesWithLiveAgentAsync(string project, int count = 1)
    {
        var now = DateTimeOffset.UtcNow;
        var volumes = Enumerable.Range(0, count).Select(_ => new Volume
        {
            Id = Guid.NewGuid(), ProjectId = project, UserId = "u", Size = 1, AvailabilityZone = "nova", Host = "host-a",
            Status = VolumeStatus.Available, CreatedAt = now,
        }).ToArray();
        await using var db = NewDbContext();
        db.AddRange(volumes);
        db.Add(new AgentService { Binary = AgentService.Backup, Host = project, Zone = "nova", CreatedAt = now, LastHeartbeat = now });
        await db.SaveChangesAsync();
        return volumes;
    }

    /// <summary>Polls the database, each time in a fresh DbContext, until <paramref name="condition"/> holds; fails after 30 s.</summary>
    public Task WaitUntilAsync(Func<AppDbContext, Task<bool>> condition, string what = "a condition on the Api's rows") => Eventually.UntilAsync(async () =>
    {
        await using var db = NewDbContext();
        return await condition(db);
    }, TimeSpan.FromSeconds(30), what);

    public AppDbContext NewDbContext() => new((DbContextOptions<AppDbContext>)AppDbContext.Configure(new DbContextOptionsBuilder<AppDbContext>(), database).Options);

    async Task IAsyncLifetime.DisposeAsync()
    {
        await DisposeAsync();                                   // the host first: its bus lets go of the virtual host
        if (broker.Length > 0) await TestServices.DeleteVirtualHostAsync(broker);
        if (database.Length > 0) await TestServices.DropDatabaseAsync(database);   // else every run leaves its databases behind
    }
}
