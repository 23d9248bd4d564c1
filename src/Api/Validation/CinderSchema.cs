using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Versions;

namespace VolumeBackup.Api.Validation;

/// <summary>
/// One of Cinder's request-body schemas (cinder/api/schemas), checked as Cinder checks it: Draft 4 keywords in schema order,
/// the first error wins, and the message is python-jsonschema's inside Cinder's "Invalid input for field/attribute" frame.
/// </summary>
// Hand-written rather than a JSON-schema library: clients show Cinder's exact wording, which no .NET validator produces.
public sealed class CinderSchema(string json)
{
    readonly JsonElement root = JsonDocument.Parse(json).RootElement.Clone();

    /// <summary>Cinder's message for the first error in <paramref name="body"/>, or null when it is valid.</summary>
    public string? Check(JsonElement body) => Errors(body, root, []).FirstOrDefault()?.Detail;

    sealed record Error(IReadOnlyList<string> Path, JsonElement Instance, string Message, bool Raw = false)
    {
        // cinder/api/validation/validators.py: the innermost field, the value as Python prints it, then jsonschema's message.
        public string Detail => Raw || Path.Count == 0 ? Message
            : $"Invalid input for field/attribute {Path[^1]}. Value: {(Instance.ValueKind == JsonValueKind.String ? Instance.GetString() : Py(Instance))}. {Message}";
    }

    static IEnumerable<Error> Errors(JsonElement x, JsonElement schema, IReadOnlyList<string> path)
    {
        foreach (var keyword in schema.EnumerateObject())
        {
            var v = keyword.Value;
            IEnumerable<Error> found = keyword.Name switch
            {
                "type" => Types(v).Any(t => IsType(x, t)) ? [] : [new(path, x, $"{Py(x)} is not of type {string.Join(", ", Types(v).Select(t => $"'{t}'"))}")],
                "properties" when x.ValueKind == JsonValueKind.Object => v.EnumerateObject()
                    .SelectMany(p => x.TryGetProperty(p.Name, out var child) ? Errors(child, p.Value, [.. path, p.Name]) : []),
                "patternProperties" when x.ValueKind == JsonValueKind.Object => v.EnumerateObject()
                    .SelectMany(p => x.EnumerateObject().Where(c => Regex.IsMatch(c.Name, p.Name)).SelectMany(c => Errors(c.Value, p.Value, [.. path, c.Name]))),
                "additionalProperties" when x.ValueKind == JsonValueKind.Object && v.ValueKind == JsonValueKind.False => Additional(x, schema, path),
                "required" when x.ValueKind == JsonValueKind.Object => v.EnumerateArray()
                    .Where(r => !x.TryGetProperty(r.GetString()!, out _)).Select(r => new Error(path, x, $"{Py(r)} is a required property")),
                "minProperties" when x.ValueKind == JsonValueKind.Object && x.EnumerateObject().Count() < v.GetInt32() =>
                    [new(path, x, $"{Py(x)} does not have enough properties")],
                "maxLength" when x.ValueKind == JsonValueKind.String && Length(x) > v.GetInt32() => [new(path, x, $"{Py(x)} is too long")],
                "minLength" when x.ValueKind == JsonValueKind.String && Length(x) < v.GetInt32() => [new(path, x, $"{Py(x)} is too short")],
                "pattern" when x.ValueKind == JsonValueKind.String && !Regex.IsMatch(x.GetString()!, v.GetString()!) =>
                    [new(path, x, $"{Py(x)} does not match {Py(v)}")],
                "enum" when !v.EnumerateArray().Any(e => JsonElement.DeepEquals(e, x)) => [new(path, x, $"{Py(x)} is not one of {Py(v)}")],
                // Cinder compares numbers given as strings too (validators.py _validate_minimum/_maximum).
                "minimum" when Number(x) is { } n && n < v.GetDouble() => [new(path, x, $"{Py(x)} is less than the minimum of {Py(v)}")],
                "maximum" when Number(x) is { } n && n > v.GetDouble() => [new(path, x, $"{Py(x)} is greater than the maximum of {Py(v)}")],
                "oneOf" when v.EnumerateArray().Count(s => !Errors(x, s, path).Any()) != 1 => [new(path, x, $"{Py(x)} is not valid under any of the given schemas")],
                "anyOf" when !v.EnumerateArray().Any(s => !Errors(x, s, path).Any()) => [new(path, x, $"{Py(x)} is not valid under any of the given schemas")],
                "format" => Format(x, v.GetString()!, path),
                _ => [],
            };
            foreach (var error in found) yield return error;
        }
    }

    static IEnumerable<Error> Additional(JsonElement x, JsonElement schema, IReadOnlyList<string> path)
    {
        var known = schema.TryGetProperty("properties", out var p) ? p.EnumerateObject().Select(q => q.Name).ToHashSet() : [];
        var patterns = schema.TryGetProperty("patternProperties", out var pp) ? pp.EnumerateObject().Select(q => q.Name).ToList() : [];
        var extra = x.EnumerateObject().Select(q => q.Name).Where(n => !known.Contains(n) && !patterns.Any(r => Regex.IsMatch(n, r))).Order(StringComparer.Ordinal).ToList();
        if (extra.Count == 0) return [];
        if (patterns.Count > 0)
            return [new(path, x, $"{string.Join(", ", extra.Select(Py))} {(extra.Count == 1 ? "does" : "do")} not match any of the regexes: {string.Join(", ", patterns.Select(Py))}")];
        return [new(path, x, $"Additional properties are not allowed ({string.Join(", ", extra.Select(Py))} {(extra.Count == 1 ? "was" : "were")} unexpected)")];
    }

    /// <summary>Cinder's format checkers (validators.py); those that raise give their own message, without the field frame.</summary>
    static IEnumerable<Error> Format(JsonElement x, string format, IReadOnlyList<string> path)
    {
        var text = x.ValueKind == JsonValueKind.String ? x.GetString()! : null;
        switch (format)
        {
            case "uuid" when text is null || !Guid.TryParse(text, out _):
            case "base64" when text is null || !IsBase64(text):
                return [new(path, x, $"{Py(x)} is not a '{format}'")];
            case "name_non_mandatory_remove_white_spaces" or "description_non_mandatory_remove_white_spaces"
                when text?.Trim() is { } trimmed && trimmed.EnumerateRunes().Count() > 255:
                return [new(path, x, $"Invalid input received: {format.Split('_')[0]} has {trimmed.EnumerateRunes().Count()} characters, more than 255.", Raw: true)];
            case "backup_status" when text?.ToLowerInvariant() is not ("available" or "error"):
                return [new(path, x, $"Backup status: {text} is invalid, valid statuses are: ['available', 'error'].", Raw: true)];
            case "volume_status" when !string.IsNullOrEmpty(text) && !VolumeStatuses.Contains(text.ToLowerInvariant()):
                return [new(path, x, $"Volume status: {text} is invalid, valid statuses are: [{string.Join(", ", VolumeStatuses.Select(s => $"'{s}'"))}].", Raw: true)];
            case "validate_volume_reset_body" when x.ValueKind == JsonValueKind.Object
                && !new[] { "status", "attach_status", "migration_status" }.Any(k => x.TryGetProperty(k, out var s) && s.ValueKind == JsonValueKind.String && s.GetString() != ""):
                return [new(path, x, "Must specify 'status', 'attach_status' or 'migration_status' for update.", Raw: true)];
            case "quota_set" when x.ValueKind == JsonValueKind.Object:
                return QuotaSet(x, path);
        }
        return [];
    }

    static IEnumerable<Error> QuotaSet(JsonElement set, IReadOnlyList<string> path)
    {
        var bad = set.EnumerateObject().Select(p => p.Name).Where(k => !Quotas.QuotasApi.Defaults.ContainsKey(k) && k is not ("tenant_id" or "id")).ToList();
        foreach (var item in set.EnumerateObject().Where(p => Quotas.QuotasApi.Defaults.ContainsKey(p.Name)))
        {
            // oslo strutils.validate_integer(value, key, -1, db.MAX_INT), as Cinder calls it before it looks at the bad keys.
            var limit = Quotas.QuotasApi.ParseLimit(item.Value);
            if (limit is null) return [new(path, set, $"{item.Name} must be an integer.", Raw: true)];
            if (limit < -1) return [new(path, set, $"{item.Name} must be >= -1", Raw: true)];
            if (limit > Quotas.QuotasApi.MaxLimit) return [new(path, set, $"{item.Name} must be <= {Quotas.QuotasApi.MaxLimit}", Raw: true)];
        }
        return bad.Count > 0 ? [new(path, set, $"Invalid input received: Bad key(s) in quota set: {string.Join(", ", bad)}", Raw: true)] : [];
    }

    /// <summary>cinder.objects.fields.VolumeStatus.ALL</summary>
    static readonly string[] VolumeStatuses = ["creating", "available", "deleting", "error", "error_deleting", "error_managing", "managing",
        "attaching", "in-use", "detaching", "maintenance", "restoring-backup", "error_restoring", "reserved", "awaiting-transfer",
        "backing-up", "error_backing-up", "error_extending", "downloading", "uploading", "retyping", "extending"];

    static IEnumerable<string> Types(JsonElement type) => type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()!) : [type.GetString()!];

    static bool IsType(JsonElement x, string type) => type switch
    {
        "object" => x.ValueKind == JsonValueKind.Object,
        "array" => x.ValueKind == JsonValueKind.Array,
        "string" => x.ValueKind == JsonValueKind.String,
        "boolean" => x.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => x.ValueKind == JsonValueKind.Null,
        "number" => x.ValueKind == JsonValueKind.Number,
        "integer" => x.ValueKind == JsonValueKind.Number && x.TryGetDecimal(out var d) && decimal.Truncate(d) == d,
        _ => false,
    };

    static int Length(JsonElement x) => x.GetString()!.EnumerateRunes().Count();          // Python counts code points

    static double? Number(JsonElement x) => x.ValueKind switch
    {
        JsonValueKind.Number => x.GetDouble(),
        JsonValueKind.String when double.TryParse(x.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var n) => n,
        _ => null,
    };

    static bool IsBase64(string text)
    {
        var bytes = new byte[text.Length];
        return Convert.TryFromBase64String(text, bytes, out _);
    }

    static string Py(string text) => text.Contains('\'') && !text.Contains('"') ? $"\"{text}\"" : $"'{text.Replace("\\", "\\\\").Replace("'", "\\'")}'";

    /// <summary>The value as Python's repr prints it, as jsonschema's messages do.</summary>
    static string Py(JsonElement x) => x.ValueKind switch
    {
        JsonValueKind.String => Py(x.GetString()!),
        JsonValueKind.True => "True",
        JsonValueKind.False => "False",
        JsonValueKind.Null => "None",
        JsonValueKind.Array => $"[{string.Join(", ", x.EnumerateArray().Select(Py))}]",
        JsonValueKind.Object => $"{{{string.Join(", ", x.EnumerateObject().Select(p => $"{Py(p.Name)}: {Py(p.Value)}"))}}}",
        _ => x.GetRawText(),
    };
}

/// <summary>Checks a route's body against its schema before it is bound, so a refused body reaches no handler and changes nothing.</summary>
public static class BodyValidation
{
    sealed record BodySchema(Func<Microversion, JsonElement, CinderSchema?> Pick);

    /// <summary>
    /// <paramref name="schema"/> picks the schema for the request's microversion and body (an action's schema is its key's);
    /// null leaves the body to the handler.
    /// </summary>
    public static RouteHandlerBuilder Validate(this RouteHandlerBuilder route, Func<Microversion, JsonElement, CinderSchema?> schema) =>
        route.WithMetadata(new BodySchema(schema));

    public static RouteHandlerBuilder Validate(this RouteHandlerBuilder route, CinderSchema schema) => route.Validate((_, _) => schema);

    /// <summary>An action's schema, by the body's one key; an unknown action is the handler's to refuse.</summary>
    public static Func<Microversion, JsonElement, CinderSchema?> ByAction(IReadOnlyDictionary<string, CinderSchema> actions) => (_, body) =>
        body.ValueKind == JsonValueKind.Object && body.EnumerateObject().FirstOrDefault() is { Name: { } name } && actions.TryGetValue(name, out var s) ? s : null;

    /// <summary>
    /// Runs after authorization and before binding: a type Cinder's schema refuses (a number for a boolean) would otherwise fail
    /// binding as a malformed body. A body that is not JSON, or a microversion Cinder refuses, is left to binding and the filter.
    /// </summary>
    public static IApplicationBuilder UseBodyValidation(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        if (http.GetEndpoint()?.Metadata.GetMetadata<BodySchema>() is { } schema && MicroversionFilter.Negotiate(http.Request) is (var version, null))
        {
            http.Request.EnableBuffering();                     // the handler binds the same body afterwards
            string? error = null;
            try
            {
                using var body = await JsonDocument.ParseAsync(http.Request.Body, cancellationToken: http.RequestAborted);
                error = schema.Pick(version, body.RootElement)?.Check(body.RootElement);
            }
            catch (JsonException) { }                           // binding refuses it, with the one "Malformed request body" message
            http.Request.Body.Position = 0;
            if (error is not null)
            {
                await CinderErrors.BadRequest(error).ExecuteAsync(http);
                return;
            }
        }
        await next(http);
    });
}

/// <summary>Cinder's booleans (parameter_types.boolean, oslo strutils.bool_from_string): true/false or words such as "yes" and "0".</summary>
public sealed class CinderBooleanConverter : JsonConverter<bool>
{
    static readonly HashSet<string> True = new(["1", "t", "true", "on", "y", "yes"], StringComparer.OrdinalIgnoreCase);

    public override bool Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.True => true,
        JsonTokenType.False => false,
        JsonTokenType.String => True.Contains(reader.GetString()!),           // the schema has refused any other word
        _ => throw new JsonException($"Expected a boolean, got {reader.TokenType}"),
    };

    public override void Write(Utf8JsonWriter writer, bool value, JsonSerializerOptions options) => writer.WriteBooleanValue(value);
}
