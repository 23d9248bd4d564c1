using System.Text.Json;
using VolumeBackup.Api.Versions;

namespace VolumeBackup.Api.Validation;

/// <summary>Cinder 21's schemas for the bodies this service accepts (cinder/api/schemas/*.py), with its parameter types.</summary>
public static class Schemas
{
    // cinder/api/validation/parameter_types.py
    const string Uuid = """{"type": "string", "format": "uuid"}""";
    const string UuidAllowNull = """{"oneOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]}""";
    const string OptionalUuid = """{"oneOf": [{"type": "null"}, {"type": "string", "format": "uuid"}]}""";
    const string Name = """{"type": ["string", "null"], "minLength": 0, "maxLength": 255}""";
    const string Description = """{"type": ["string", "null"], "minLength": 0, "maxLength": 255}""";
    const string Boolean = """
        {"type": ["boolean", "string"], "enum": [true, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t",
                                                false, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"]}
        """;
    const string OptionalBoolean = $$"""{"oneOf": [{"type": "null"}, {{Boolean}}]}""";
    const string ExtraSpecs = """{"type": "object", "patternProperties": {"^[a-zA-Z0-9-_:. /]{1,255}$": {"type": "string", "maxLength": 255}}, "additionalProperties": false}""";
    const string MetadataAllowsNull = """{"type": ["object", "null"], "patternProperties": {"^[a-zA-Z0-9-_:. /]{1,255}$": {"type": "string", "maxLength": 255}}, "additionalProperties": false}""";
    const string NullableString = """{"type": ["string", "null"], "minLength": 0, "maxLength": 255}""";

    /// <summary>Metadata as a create takes it, for metadata that arrives another way (an imported record).</summary>
    public static readonly CinderSchema Metadata = new(MetadataAllowsNull);

    /// <summary>{"key": {properties}}, the key required and nothing else beside it.</summary>
    static CinderSchema Wrapped(string key, string inner) => new($$"""
        {"type": "object", "properties": {"{{key}}": {{inner}}}, "required": ["{{key}}"], "additionalProperties": false}
        """);

    static string BackupCreate(string more) => $$"""
        {"type": "object", "properties": {
            "volume_id": {{Uuid}}, "container": {{NullableString}}, "description": {{Description}}, "incremental": {{Boolean}},
            "force": {{Boolean}}, "name": {{Name}}, "snapshot_id": {{UuidAllowNull}}{{more}}},
         "required": ["volume_id"], "additionalProperties": false}
        """;

    static readonly CinderSchema BackupCreateV30 = Wrapped("backup", BackupCreate(""));
    static readonly CinderSchema BackupCreateV343 = Wrapped("backup", BackupCreate($$""", "metadata": {{MetadataAllowsNull}}"""));
    static readonly CinderSchema BackupCreateV351 = Wrapped("backup", BackupCreate($$""", "metadata": {{MetadataAllowsNull}}, "availability_zone": {{NullableString}}"""));

    public static CinderSchema ForBackupCreate(Microversion v, JsonElement _) =>
        v >= new Microversion(3, 51) ? BackupCreateV351 : v >= Microversion.BackupMetadata ? BackupCreateV343 : BackupCreateV30;

    static string BackupUpdate(string more) => $$"""
        {"type": ["object", "null"], "properties": {"name": {{Name}}, "description": {{Description}}{{more}}}, "additionalProperties": false}
        """;

    static readonly CinderSchema BackupUpdateV39 = Wrapped("backup", BackupUpdate(""));
    static readonly CinderSchema BackupUpdateV343 = Wrapped("backup", BackupUpdate($$""", "metadata": {{ExtraSpecs}}"""));

    /// <summary>Before 3.9 there is no update (the handler answers 404).</summary>
    public static CinderSchema? ForBackupUpdate(Microversion v, JsonElement _) =>
        v >= Microversion.BackupMetadata ? BackupUpdateV343 : v >= Microversion.BackupUpdate ? BackupUpdateV39 : null;

    public static readonly CinderSchema BackupRestore = Wrapped("restore", $$"""
        {"type": ["object", "null"], "properties": {"name": {{Name}}, "volume_id": {{UuidAllowNull}}}, "additionalProperties": false}
        """);

    public static readonly CinderSchema BackupImportRecord = Wrapped("backup-record", """
        {"type": "object", "properties": {"backup_service": {"type": "string", "minLength": 0, "maxLength": 255},
                                          "backup_url": {"type": "string", "minLength": 1, "format": "base64"}},
         "required": ["backup_service", "backup_url"], "additionalProperties": false}
        """);

    public static readonly IReadOnlyDictionary<string, CinderSchema> BackupActions = new Dictionary<string, CinderSchema>
    {
        ["os-reset_status"] = Wrapped("os-reset_status", """
            {"type": "object", "properties": {"status": {"type": "string", "format": "backup_status"}}, "required": ["status"], "additionalProperties": false}
            """),
        // Cinder gives os-force_delete no schema; its body is {"os-force_delete": {}}, so anything beside it is refused.
        ["os-force_delete"] = Wrapped("os-force_delete", """{"type": ["object", "null"]}"""),
        // Ours (Cinder has no verify): {"os-verify": null} or {"os-verify": {}}.
        ["os-verify"] = Wrapped("os-verify", """{"type": ["object", "null"], "additionalProperties": false}"""),
    };

    /// <summary>Ours: verify every available backup of a container, {"verify": {"container": "backups"}}.</summary>
    public static readonly CinderSchema BackupVerifyContainer = Wrapped("verify", $$"""
        {"type": "object", "properties": {"container": {{NullableString}}}, "additionalProperties": false}
        """);

    static string VolumeCreate(string more, bool additional) => $$"""
        {"type": "object", "properties": {"volume": {"type": "object", "properties": {
            "name": {"type": ["string", "null"], "format": "name_non_mandatory_remove_white_spaces"},
            "description": {"type": ["string", "null"], "format": "description_non_mandatory_remove_white_spaces"},
            "display_name": {"type": ["string", "null"], "format": "name_non_mandatory_remove_white_spaces"},
            "display_description": {"type": ["string", "null"], "format": "description_non_mandatory_remove_white_spaces"},
            "volume_type": {{Name}}, "metadata": {{MetadataAllowsNull}}, "snapshot_id": {{OptionalUuid}}, "source_volid": {{OptionalUuid}},
            "consistencygroup_id": {{OptionalUuid}},
            "size": {"type": ["integer", "string", "null"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": 2147483647},
            "availability_zone": {"type": ["string", "null"], "minLength": 1, "maxLength": 255}, "multiattach": {{OptionalBoolean}},
            "image_id": {"type": ["string", "null"], "minLength": 0, "maxLength": 255},
            "imageRef": {"type": ["string", "null"], "minLength": 0, "maxLength": 255}{{more}}},
          "additionalProperties": {{(additional ? "true" : "false")}}},
          "OS-SCH-HNT:scheduler_hints": {"type": ["object", "null"]} },
         "required": ["volume"], "additionalProperties": false}
        """;

    const string GroupId = """, "group_id": {"type": ["string", "null"], "minLength": 0, "maxLength": 255}""";
    static readonly CinderSchema VolumeCreateV30 = new(VolumeCreate("", additional: true));
    static readonly CinderSchema VolumeCreateV313 = new(VolumeCreate(GroupId, additional: true));
    static readonly CinderSchema VolumeCreateV347 = new(VolumeCreate($$"""{{GroupId}}, "backup_id": {{OptionalUuid}}""", additional: true));
    static readonly CinderSchema VolumeCreateV353 = new(VolumeCreate($$"""{{GroupId}}, "backup_id": {{OptionalUuid}}""", additional: false));

    public static CinderSchema ForVolumeCreate(Microversion v, JsonElement _) =>
        v >= new Microversion(3, 53) ? VolumeCreateV353 : v >= new Microversion(3, 47) ? VolumeCreateV347 : v >= new Microversion(3, 13) ? VolumeCreateV313 : VolumeCreateV30;

    public static readonly CinderSchema VolumeUpdate = Wrapped("volume", $$"""
        {"type": "object", "properties": {
            "name": {"type": ["string", "null"], "format": "name_non_mandatory_remove_white_spaces"},
            "description": {"type": ["string", "null"], "format": "description_non_mandatory_remove_white_spaces"},
            "display_name": {"type": ["string", "null"], "format": "name_non_mandatory_remove_white_spaces"},
            "display_description": {"type": ["string", "null"], "format": "description_non_mandatory_remove_white_spaces"},
            "metadata": {{ExtraSpecs}}},
         "additionalProperties": false}
        """);

    public static readonly IReadOnlyDictionary<string, CinderSchema> VolumeActions = new Dictionary<string, CinderSchema>
    {
        ["os-attach"] = Wrapped("os-attach", $$"""
            {"type": "object", "properties": {"instance_uuid": {{Uuid}}, "mountpoint": {"type": "string", "minLength": 1, "maxLength": 255},
                                              "host_name": {"type": "string", "maxLength": 255}, "mode": {"type": "string", "enum": ["rw", "ro"]} },
             "required": ["mountpoint"], "anyOf": [{"required": ["instance_uuid"]}, {"required": ["host_name"]}], "additionalProperties": false}
            """),
        ["os-detach"] = Wrapped("os-detach", $$"""
            {"type": ["object", "null"], "properties": {"attachment_id": {{UuidAllowNull}}}, "additionalProperties": false}
            """),
        // Cinder gives os-reserve and os-unreserve no schema; their body is {"os-reserve": null}.
        ["os-reserve"] = Wrapped("os-reserve", """{"type": ["object", "null"]}"""),
        ["os-unreserve"] = Wrapped("os-unreserve", """{"type": ["object", "null"]}"""),
        ["os-reset_status"] = Wrapped("os-reset_status", """
            {"type": "object", "format": "validate_volume_reset_body", "properties": {
                "status": {"type": ["string", "null"], "format": "volume_status"},
                "attach_status": {"type": ["string", "null"], "enum": [null, "attached", "detached"]},
                "migration_status": {"type": ["string", "null"]}},
             "additionalProperties": false}
            """),
    };

    public static readonly CinderSchema SnapshotCreate = Wrapped("snapshot", $$"""
        {"type": "object", "properties": {"name": {{Name}}, "display_name": {{Name}}, "description": {{Description}},
                                          "volume_id": {{UuidAllowNull}}, "force": {{Boolean}}, "metadata": {{MetadataAllowsNull}}},
         "required": ["volume_id"], "additionalProperties": false}
        """);

    public static readonly CinderSchema SnapshotUpdate = Wrapped("snapshot", $$"""
        {"type": "object", "properties": {"name": {{Name}}, "description": {{Description}}, "display_name": {{Name}}, "display_description": {{Description}}},
         "additionalProperties": false,
         "anyOf": [{"required": ["name"]}, {"required": ["description"]}, {"required": ["display_name"]}, {"required": ["display_description"]}]}
        """);

    static string AttachmentCreate(string more) => $$"""
        {"type": "object", "properties": {"instance_uuid": {{Uuid}}, "connector": {"type": ["object", "null"]}, "volume_uuid": {{Uuid}}{{more}}},
         "required": ["volume_uuid"], "additionalProperties": false}
        """;

    static readonly CinderSchema AttachmentCreateV327 = Wrapped("attachment", AttachmentCreate(""));
    static readonly CinderSchema AttachmentCreateV354 = Wrapped("attachment", AttachmentCreate(""", "mode": {"type": "string", "enum": ["rw", "ro"]}"""));

    /// <summary>Before 3.27 there are no attachments (the handler answers 404).</summary>
    public static CinderSchema? ForAttachmentCreate(Microversion v, JsonElement _) =>
        v >= new Microversion(3, 54) ? AttachmentCreateV354 : v >= Microversion.NewAttach ? AttachmentCreateV327 : null;

    public static readonly CinderSchema QuotaUpdate = new("""
        {"type": "object", "properties": {"quota_set": {"type": "object", "minProperties": 1, "format": "quota_set"}},
         "required": ["quota_set"], "additionalProperties": false}
        """);
}
