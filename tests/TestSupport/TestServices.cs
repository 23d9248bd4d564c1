using System.Diagnostics;
using Npgsql;
using Testcontainers.PostgreSql;
using Testcontainers.RabbitMq;

namespace VolumeBackup.TestSupport;

/// <summary>
/// The real services tests run against. deploy/test.sh starts RabbitMQ, PostgreSQL and the NFS server and exports
/// where they are; where a Docker engine answers and nothing is exported, RabbitMQ and PostgreSQL come from
/// Testcontainers instead. Each fixture gets its own database and RabbitMQ virtual host, so test projects running
/// side by side never consume each other's messages.
/// </summary>
public static class TestServices
{
    static readonly SemaphoreSlim Gate = new(1);
    static string? postgres;
    static string? rabbitMq;

    public static string NfsUrl => Required("VB_NFS_URL");
    public static string NfsExport => Required("VB_NFS_EXPORT");
    public static string Pool => Required("VB_POOL");

    static readonly Lazy<string> masterKeyFile = new(() => CreateMasterKeyFile());

    /// <summary>This test run's master key file (Encryption:MasterKeyFile), made like deploy/ makes one.</summary>
    public static string MasterKeyFile => masterKeyFile.Value;

    /// <summary>A new master key file: 32 random bytes, mode 0600, in a folder only its owner can enter.</summary>
    public static string CreateMasterKeyFile()
    {
        var path = Path.Join(Directory.CreateTempSubdirectory("vb-master-key-").FullName, "master.key");   // the folder is 0700
        File.WriteAllBytes(path, []);
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllBytes(path, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        return path;
    }

    /// <summary>A fresh, empty database; its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string prefix)
    {
        var server = await PostgresAsync();
        var name = $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(40, prefix.Length + 17)].ToLowerInvariant();
        await using (var connection = new NpgsqlConnection(server))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", connection);   // name made here, not input
            await create.ExecuteNonQueryAsync();
        }
        return new NpgsqlConnectionStringBuilder(server) { Database = name }.ConnectionString;
    }

    /// <summary>Drops a database of <see cref="CreateDatabaseAsync"/>, whoever is still connected (a fixture's end).</summary>
    public static async Task DropDatabaseAsync(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database;
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(await PostgresAsync());
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);   // a name CreateDatabaseAsync made
        await drop.ExecuteNonQueryAsync();
    }

    /// <summary>A fresh virtual host on the broker; the AMQP URI that selects it.</summary>
    public static async Task<string> CreateVirtualHostAsync(string prefix)
    {
        var broker = new Uri(await RabbitMqAsync());
        var vhost = $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];
        var script = Environment.GetEnvironmentVariable("VB_SERVICES");
        if (script is not null)
            await RunAsync(script, "vhost", vhost);
        else
            return broker.ToString();                    // a Testcontainers broker belongs to this test run alone
        return new UriBuilder(broker) { Path = "/" + vhost }.Uri.ToString();
    }

    /// <summary>
    /// The same virtual host with the BackupAgents' broker user (VB_RABBITMQ_AGENT, from deploy/services.sh env), whose
    /// permissions let it read its commands and publish its events only; a Testcontainers broker has one user for all.
    /// </summary>
    public static string AgentBroker(string amqpUri) => As("VB_RABBITMQ_AGENT", amqpUri);

    /// <summary>The same virtual host with a notifications subscriber's broker user (VB_RABBITMQ_NOTIFICATIONS): its oslo queues only.</summary>
    public static string NotificationsBroker(string amqpUri) => As("VB_RABBITMQ_NOTIFICATIONS", amqpUri);

    static string As(string variable, string amqpUri)
    {
        if (Environment.GetEnvironmentVariable(variable) is not { } user) return amqpUri;
        var credentials = new Uri(user).UserInfo.Split(':');
        return new UriBuilder(amqpUri) { UserName = credentials[0], Password = credentials[1] }.Uri.ToString();
    }

    /// <summary>Removes a virtual host <see cref="CreateVirtualHostAsync"/> made (its queues with it); a Testcontainers broker goes whole.</summary>
    public static async Task DeleteVirtualHostAsync(string amqpUri)
    {
        var vhost = Uri.UnescapeDataString(new Uri(amqpUri).AbsolutePath.TrimStart('/'));
        if (Environment.GetEnvironmentVariable("VB_SERVICES") is { } script && vhost.Length > 0)
            await RunAsync(script, "delete-vhost", vhost);
    }

    /// <summary>A new folder on the reflink-capable pool.</summary>
    public static string CreatePoolFolder(string prefix)
    {
        var path = Path.Combine(Pool, $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)]);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>Stops or starts only the NFS server (for failure tests); deploy/services.sh does it by PID.</summary>
    public static Task SetNfsRunningAsync(bool running) => RunAsync(Required("VB_SERVICES"), running ? "start-nfs" : "stop-nfs");

    /// <summary>Stops one of the real services (postgres, rabbitmq), leaves it down for a while, and starts it again, as an outage would.</summary>
    public static async Task OutageAsync(string part, TimeSpan down)
    {
        await RunAsync(Required("VB_SERVICES"), "stop", part);
        await Task.Delay(down);
        await RunAsync(Required("VB_SERVICES"), "start");
    }

    static async Task<string> PostgresAsync()
    {
        await Gate.WaitAsync();
        try
        {
            if (postgres is not null) return postgres;
            var configured = Environment.GetEnvironmentVariable("ConnectionStrings__Postgres");
            if (configured is null && DockerAvailable())
            {
                var container = new PostgreSqlBuilder("postgres:15-alpine").Build();
                await container.StartAsync();
                configured = container.GetConnectionString();
            }
            return postgres = new NpgsqlConnectionStringBuilder(configured ?? Required("ConnectionStrings__Postgres")) { Database = "postgres" }.ConnectionString;
        }
        finally { Gate.Release(); }
    }

    static async Task<string> RabbitMqAsync()
    {
        await Gate.WaitAsync();
        try
        {
            if (rabbitMq is not null) return rabbitMq;
            var configured = Environment.GetEnvironmentVariable("ConnectionStrings__RabbitMq");
            if (configured is null && DockerAvailable())
            {
                var container = new RabbitMqBuilder("rabbitmq:3.10-management-alpine").Build();
                await container.StartAsync();
                configured = container.GetConnectionString();
            }
            return rabbitMq = configured ?? Required("ConnectionStrings__RabbitMq");
        }
        finally { Gate.Release(); }
    }

    static bool DockerAvailable() => File.Exists("/var/run/docker.sock") || Environment.GetEnvironmentVariable("DOCKER_HOST") is not null;

    public static string Required(string name) => Environment.GetEnvironmentVariable(name)
        ?? throw new InvalidOperationException($"{name} is not set: run the tests with ./deploy/test.sh, which starts the real services and exports where they are.");

    public static async Task RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        info.Environment.Remove("VB_STARTED_FILE");     // a service a test restarts is not one deploy/test.sh started
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({process.ExitCode}): {await output}{await error}");
    }
}
