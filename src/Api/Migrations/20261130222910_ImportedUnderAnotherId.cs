using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace VolumeBackup.Api.Migrations
{
    /// <inheritdoc />
    public partial class ImportedUnderAnotherId : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<Guid>(
                name: "manifest_id",
                table: "backups",
                type: "uuid",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "manifest_id",
                table: "backups");
        }
    }
}
