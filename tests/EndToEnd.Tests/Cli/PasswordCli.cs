using System.Net.Http.Json;
using System.Text.Json.Nodes;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests.Cli;

/// <summary>
/// The unmodified <c>openstack</c> (python3-openstackclient) and <c>cinder</c> clients as a cloud user runs them: password
/// authentication through OS_* variables, the Api found in Keystone's catalog (in the fixture's own region).
/// </summary>
public sealed class PasswordCli(string user, string region)
{
    IReadOnlyDictionary<string, string?> Environment => new Dictionary<string, string?>
    {
        ["OS_AUTH_URL"] = Keystone.Url, ["OS_IDENTITY_API_VERSION"] = "3", ["OS_AUTH_TYPE"] = "password",
        ["OS_USERNAME"] = user, ["OS_PASSWORD"] = Keystone.Password(user), ["OS_PROJECT_NAME"] = Keystone.ProjectOf(user),
        ["OS_USER_DOMAIN_ID"] = "default", ["OS_PROJECT_DOMAIN_ID"] = "default", ["OS_REGION_NAME"] = region, ["OS_INTERFACE"] = "public",
        ["OS_TOKEN"] = null, ["OS_ENDPOINT"] = null, ["OS_VOLUME_API_VERSION"] = null,
    };

    /// <summary><c>openstack ARGS</c>, at volume API microversion 3.44 (backup set --name needs 3.9).</summary>
    public Task<CliResult> OpenStackAsync(params string[] args) => CinderCli.RunProcessAsync("openstack", ["--os-volume-api-version", "3.44"], args, Environment);

    /// <summary><c>openstack ARGS -f json</c>, required to succeed.</summary>
    public async Task<JsonNode> OpenStackJsonAsync(params string[] args)
    {
        var result = await OpenStackAsync([.. args, "-f", "json"]);
        Assert.True(result.ExitCode == 0, $"openstack {result.Command} failed ({result.ExitCode}): {result.Error}{result.Output}");
        return JsonNode.Parse(result.Output)!;
    }

    public async Task OpenStackOkAsync(params string[] args)
    {
        var result = await OpenStackAsync(args);
        Assert.True(result.ExitCode == 0, $"openstack {result.Command} failed ({result.ExitCode}): {result.Error}{result.Output}");
    }

    /// <summary>
    /// <c>openstack ARGS</c> configured as a cloud user configures it, by a clouds.yaml (0600) with the same password, that also
    /// tells openstacksdk the image API's version and endpoint: python3-openstackclient 6.0's <c>volume create</c> builds an
    /// image client before it reads its arguments, and without both it looks for Glance in the catalog (this cloud has none).
    /// Nothing is ever sent to that endpoint unless an image is named.
    /// </summary>
    public async Task<CliResult> OpenStackWithCloudsYamlAsync(params string[] args)
    {
        var folder = Directory.CreateTempSubdirectory("clouds-");
        try
        {
            var file = Path.Combine(folder.FullName, "clouds.yaml");
            File.WriteAllText(file, "");
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);   // it holds a password
            File.WriteAllText(file, $"""
                clouds:
                  vb:
                    auth:
                      auth_url: "{Keystone.Url}"
                      username: "{user}"
                      password: "{Keystone.Password(user)}"
                      project_name: "{Keystone.ProjectOf(user)}"
                      user_domain_id: default
                      project_domain_id: default
                    identity_api_version: 3
                    region_name: "{region}"
                    interface: public
                    image_api_version: "2"
                    image_endpoint_override: "http://127.0.0.1:9/"
                """);
            var environment = Environment.ToDictionary(e => e.Key, _ => (string?)null);   // the clouds.yaml alone
            environment["OS_CLIENT_CONFIG_FILE"] = file;
            environment["OS_CLOUD"] = "vb";
            return await CinderCli.RunProcessAsync("openstack", ["--os-volume-api-version", "3.44"], args, environment);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary><c>cinder ARGS</c> with the same password authentication.</summary>
    public Task<CliResult> CinderAsync(params string[] args) => CinderCli.RunProcessAsync("cinder", ["--os-volume-api-version", CinderCli.ApiVersion], args, Environment);

    /// <summary>A Python script (tests/EndToEnd.Tests/Sdk, copied to the output) run with Debian's python3 and its openstacksdk.</summary>
    public Task<CliResult> PythonAsync(string script) =>
        CinderCli.RunProcessAsync("/usr/bin/python3", [Path.Combine(AppContext.BaseDirectory, "Sdk", script)], [], Environment, TimeSpan.FromMinutes(5));

    /// <summary>Polls <c>openstack KIND show ID</c> until its status is one of <paramref name="statuses"/>.</summary>
    public Task<JsonNode> WaitForStatusAsync(string kind, string id, params string[] statuses) => Eventually.UntilAsync(
        () => OpenStackJsonAsync([.. kind.Split(' '), "show", id]), shown => statuses.Contains((string?)shown["status"]),
        TimeSpan.FromSeconds(90), $"{kind} {id} to reach {string.Join('|', statuses)}", shown => shown.ToJsonString(), TimeSpan.FromMilliseconds(300));
}

/// <summary>
/// The whole service with its Api in keystone mode, entered in Keystone's catalog as region <see cref="Region"/> of its own
/// (volumev3 and block-storage endpoints with the project id), so clients find it as they find a cloud's Cinder.
/// </summary>
public sealed class KeystoneBackend : IAsyncLifetime
{
    public Backend Backend { get; } = new() { Keystone = true };
    public string Region { get; } = $"e2e-{Guid.NewGuid():N}"[..12];
    readonly List<string> endpoints = [];

    public async Task InitializeAsync()
    {
        await Backend.InitializeAsync();
        using var admin = await Keystone.AdminClientAsync();
        (await admin.PostAsJsonAsync("regions", new { region = new { id = Region } })).EnsureSuccessStatusCode();
        foreach (var type in new[] { "volumev3", "block-storage" })
        {
            var existing = await admin.GetFromJsonAsync<JsonObject>($"services?type={type}");
            var id = (string)existing!["services"]![0]!["id"]!;
            var created = await admin.PostAsJsonAsync("endpoints", new
            {
                endpoint = new { service_id = id, @interface = "public", url = $"{Backend.Api.Address}/v3/%(project_id)s", region_id = Region, enabled = true },
            });
            created.EnsureSuccessStatusCode();
            endpoints.Add((string)(await created.Content.ReadFromJsonAsync<JsonObject>())!["endpoint"]!["id"]!);
        }
    }

    public async Task DisposeAsync()
    {
        using (var admin = await Keystone.AdminClientAsync())
        {
            foreach (var endpoint in endpoints) await admin.DeleteAsync($"endpoints/{endpoint}");
            await admin.DeleteAsync($"regions/{Region}");
        }
        await Backend.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class KeystoneBackendCollection : ICollectionFixture<KeystoneBackend>
{
    public const string Name = "keystone-backend";
}
