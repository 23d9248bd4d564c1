using VolumeBackup.Contracts;
using VolumeBackup.BackupAgent.Repository;

namespace VolumeBackup.BackupAgent.Tests.Repository;

public sealed class ContainerNameTests
{
    [Theory]
    [InlineData(null, "backups")]
    [InlineData("", "backups")]
    [InlineData("backups", "backups")]
    [InlineData("team-1/volume_backups.v2", "team-1/volume_backups.v2")]
    [InlineData("a/b/c", "a/b/c")]
    [InlineData("team/backups", "team/backups")]
    [InlineData("..a", "..a")]
    public void Valid_names_are_kept_and_empty_means_the_default(string? name, string expected) =>
        Assert.Equal(expected, ContainerName.Validate(name));

    [Theory]
    [InlineData("..")]
    [InlineData("a/../b")]
    [InlineData("a/..")]
    [InlineData(".")]
    [InlineData("a/./b")]
    [InlineData("/etc")]
    [InlineData("a\\b")]
    [InlineData("..\\..\\x")]
    [InlineData("a//b")]
    [InlineData("a/")]
    [InlineData("tab\there")]
    [InlineData("new\nline")]
    [InlineData("nul\0")]
    [InlineData("with space")]
    [InlineData("ümlaut")]
    [InlineData("a/gc.lock")]
    [InlineData("a/keys.json")]
    [InlineData(" ")]
    public void Unsafe_names_are_refused_with_a_message_for_the_user(string name)
    {
        var error = Assert.Throws<ArgumentException>(() => ContainerName.Validate(name));

        Assert.StartsWith("The container name ", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(error.Message, char.IsControl);   // never echoed back
    }

    [Fact]
    public void Names_over_255_characters_are_refused()
    {
        Assert.Equal(255, ContainerName.Validate(new string('a', 255)).Length);
        Assert.Throws<ArgumentException>(() => ContainerName.Validate(new string('a', 256)));
    }
}
