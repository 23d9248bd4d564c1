using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace VolumeBackup.Api.Migrations
{
    /// <inheritdoc />
    public partial class OneBackupLifecycle : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The backup row becomes the saga's instance: its status and the saga's state merge into one column, which
            // holds the machine's state names (the Cinder word is derived from them).
            migrationBuilder.AddColumn<string>(name: "state", table: "backups", type: "character varying(32)", maxLength: 32, nullable: false, defaultValue: "Initial");
            migrationBuilder.AddColumn<long>(name: "bytes_done", table: "backups", type: "bigint", nullable: false, defaultValue: 0L);
            migrationBuilder.AddColumn<Guid>(name: "restore_id", table: "backups", type: "uuid", nullable: true);
            migrationBuilder.AddColumn<DateTimeOffset>(name: "started_at", table: "backups", type: "timestamp with time zone", nullable: true);
            migrationBuilder.Sql("""
                UPDATE backups SET state = CASE status
                    WHEN 'creating' THEN 'Creating' WHEN 'available' THEN 'Available' WHEN 'restoring' THEN 'Restoring'
                    WHEN 'deleting' THEN 'Deleting' WHEN 'error_deleting' THEN 'ErrorDeleting' ELSE 'Error' END;
                UPDATE backups b SET started_at = s.started_at, bytes_done = s.bytes_done FROM backup_sagas s WHERE s.correlation_id = b.id;
                """);
            migrationBuilder.DropColumn(name: "status", table: "backups");
            migrationBuilder.DropTable(name: "backup_sagas");
            migrationBuilder.CreateIndex(name: "ix_backups_state", table: "backups", column: "state");

            migrationBuilder.AddColumn<DateTimeOffset>(name: "parked_at", table: "outbox", type: "timestamp with time zone", nullable: true);
            migrationBuilder.DropIndex(name: "ix_outbox_created_at", table: "outbox");
            migrationBuilder.CreateIndex(name: "ix_outbox_created_at", table: "outbox", column: "created_at", filter: "sent_at IS NULL AND parked_at IS NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_outbox_created_at",
                table: "outbox");

            migrationBuilder.DropIndex(
                name: "ix_backups_state",
                table: "backups");

            migrationBuilder.DropColumn(
                name: "parked_at",
                table: "outbox");

            migrationBuilder.DropColumn(
                name: "bytes_done",
                table: "backups");

            migrationBuilder.DropColumn(
                name: "restore_id",
                table: "backups");

            migrationBuilder.DropColumn(
                name: "started_at",
                table: "backups");

            migrationBuilder.DropColumn(
                name: "state",
                table: "backups");

            migrationBuilder.AddColumn<string>(
                name: "status",
                table: "backups",
                type: "text",
                nullable: false,
                defaultValue: "");

            migrationBuilder.CreateTable(
                name: "backup_sagas",
                columns: table => new
                {
                    correlation_id = table.Column<Guid>(type: "uuid", nullable: false),
                    agent_host = table.Column<string>(type: "text", nullable: true),
                    bytes_done = table.Column<long>(type: "bigint", nullable: false),
                    completed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    current_state = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    parent_id = table.Column<Guid>(type: "uuid", nullable: true),
                    snapshot_id = table.Column<Guid>(type: "uuid", nullable: true),
                    started_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    xmin = table.Column<uint>(type: "xid", rowVersion: true, nullable: false),
                    volume_id = table.Column<Guid>(type: "uuid", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_backup_sagas", x => x.correlation_id);
                });

            migrationBuilder.CreateIndex(
                name: "ix_outbox_created_at",
                table: "outbox",
                column: "created_at",
                filter: "sent_at IS NULL");
        }
    }
}
