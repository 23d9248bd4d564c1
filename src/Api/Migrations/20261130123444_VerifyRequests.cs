using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace VolumeBackup.Api.Migrations
{
    /// <inheritdoc />
    public partial class VerifyRequests : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "verify_requested_at",
                table: "backups",
                type: "timestamp with time zone",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "verify_requested_at",
                table: "backups");
        }
    }
}
