using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace VolumeBackup.Api.Migrations
{
    /// <inheritdoc />
    public partial class ManifestIdIndex : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "ix_backups_manifest_id",
                table: "backups",
                column: "manifest_id",
                filter: "manifest_id IS NOT NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_backups_manifest_id",
                table: "backups");
        }
    }
}
