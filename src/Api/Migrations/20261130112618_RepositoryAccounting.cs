using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace VolumeBackup.Api.Migrations
{
    /// <inheritdoc />
    public partial class RepositoryAccounting : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "bytes_freed",
                table: "backups",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<long>(
                name: "bytes_written",
                table: "backups",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "bytes_freed",
                table: "backups");

            migrationBuilder.DropColumn(
                name: "bytes_written",
                table: "backups");
        }
    }
}
