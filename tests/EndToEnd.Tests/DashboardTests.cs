using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using VolumeBackup.TestSupport;

namespace VolumeBackup.EndToEnd.Tests;

/// <summary>The dashboard in a real browser (Debian's chromium, headless, through chromium-driver) on the real processes.</summary>
public sealed class DashboardTests
{
    [Fact]
    public async Task Dashboard_shows_a_backup_appear_advance_and_become_available_after_an_admin_signs_in_with_the_keyboard()
    {
        var backend = new Backend { ProgressEveryBytes = 16 << 20 };   // a 1 GiB volume reports its progress 64 times
        await backend.InitializeAsync();
        try
        {
            var volume = await backend.CreateVolumeAsync(1, "dashboard");
            TestFiles.WriteGuestData(backend.VolumeFile(volume), seed: 21, offset: 0, bytes: 160 << 20);
            using var browser = Browser.Start();
            browser.Navigate().GoToUrl($"{backend.Api.Address}/dashboard");

            // A member of the project is refused: the form says why and stays.
            SignIn(browser, $"tester:{Backend.Project}");
            var refused = Browser.Wait(browser, TimeSpan.FromSeconds(10), "the sign-in form to show the refusal",
                b => b.FindElement(By.Id("signin-error")).Text is { Length: > 0 } text ? text : null);
            Assert.Contains("volume_extension:dashboard:view", refused);

            SignIn(browser, $"admin:{Backend.Project}");
            Browser.Wait(browser, TimeSpan.FromSeconds(20), "the page to go live", b => b.FindElement(By.Id("connection")).Text == "live" ? "" : null);
            Browser.Wait(browser, TimeSpan.FromSeconds(20), "the agents to be listed up",
                b => b.FindElements(By.CssSelector("#agents tr[data-binary='cinder-backup'] .health-up")).Count > 0 ? "" : null);
            // Every value each row's progress bar shows, as the page draws it (a poll from here could miss a quick step).
            ((IJavaScriptExecutor)browser).ExecuteScript("""
                window.seen = {};
                new MutationObserver(() => document.querySelectorAll('#jobs tr[data-id]').forEach(row => {
                  const bar = row.querySelector('[aria-valuenow]');
                  if (bar) (window.seen[row.dataset.id] ??= []).push(Number(bar.getAttribute('aria-valuenow')));
                })).observe(document.querySelector('#jobs tbody'), { childList: true, subtree: true });
                """);

            // A backup whose volume's data is gone fails: it is listed with its reason.
            var lost = await backend.CreateVolumeAsync(1, "lost");
            File.Delete(backend.VolumeFile(lost));
            var failed = (string)(await backend.PostAsync("backups", new { backup = new { volume_id = lost, name = "weekly-lost" } }))["backup"]!["id"]!;
            var reason = Browser.Wait(browser, TimeSpan.FromSeconds(60), "the failed backup under recent failures",
                b => b.FindElements(By.CssSelector($"#failures li[data-id='{failed}'] .reason")).FirstOrDefault()?.Text);
            Assert.Equal((string?)(await backend.GetAsync($"backups/{failed}"))["backup"]!["fail_reason"], reason);

            var created = await backend.PostAsync("backups", new { backup = new { volume_id = volume, name = "nightly-db" } });
            var id = (string)created["backup"]!["id"]!;
            var row = By.CssSelector($"#jobs tr[data-id='{id}']");
            Browser.Wait(browser, TimeSpan.FromSeconds(20), "the backup's row", b => b.FindElements(row).Count > 0 ? "" : null);
            // A picture of the backup under way when the page is caught mid-way; a fast machine may finish first. What the test
            // asserts below is what the page drew (window.seen records every bar value), not whether polling caught it.
            if (Browser.TryWait(browser, TimeSpan.FromSeconds(30),
                    b => b.FindElements(row).FirstOrDefault()?.FindElement(By.CssSelector("[aria-valuenow]")).GetAttribute("aria-valuenow") is "0" or "100" or null ? null : ""))
                Browser.Screenshot(browser, "dashboard-running.png");
            Browser.Wait(browser, TimeSpan.FromSeconds(120), "the row's status to read available",
                b => b.FindElements(row).FirstOrDefault()?.FindElement(By.CssSelector(".status")).Text == "available" ? "" : null);

            var seen = ((IReadOnlyCollection<object>?)((IJavaScriptExecutor)browser).ExecuteScript($"return window.seen['{id}'] || [];"))!.Select(Convert.ToInt32).ToList();
            Assert.Contains(seen, p => p is > 0 and < 100);             // it advanced in steps, live
            Assert.Equal(100, seen[^1]);
            Assert.Equal(seen.Order(), seen);                           // never backwards
            Assert.Equal("available", (string?)(await backend.GetAsync($"backups/{id}"))["backup"]!["status"]);
            Browser.Wait(browser, TimeSpan.FromSeconds(10), "the repository's figures",
                b => b.FindElement(By.Id("stat-ratio")).Text.Contains(':', StringComparison.Ordinal) ? "" : null);

            Browser.Screenshot(browser, "dashboard.png");
            browser.Manage().Window.Size = new System.Drawing.Size(390, 844);   // a phone: nothing wider than the screen but the tables' own scroll
            Assert.True((bool?)((IJavaScriptExecutor)browser).ExecuteScript("return document.documentElement.scrollWidth <= window.innerWidth;") == true,
                "the page scrolls sideways at phone width");
            Browser.Screenshot(browser, "dashboard-phone.png");
        }
        finally { await backend.DisposeAsync(); }
    }

    /// <summary>Types the token and presses Enter, as a keyboard user would.</summary>
    static void SignIn(IWebDriver browser, string token)
    {
        var input = browser.FindElement(By.Id("token"));
        Browser.Wait(browser, TimeSpan.FromSeconds(10), "the token field to be shown", _ => input.Displayed ? "" : null);
        input.Clear();
        input.SendKeys(token + Keys.Enter);
    }
}

/// <summary>Headless chromium from Debian's packages: the driver is /usr/bin/chromedriver, nothing is downloaded.</summary>
static class Browser
{
    public static ChromeDriver Start()
    {
        var options = new ChromeOptions { BinaryLocation = "/usr/bin/chromium" };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100");
        var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
        service.HideCommandPromptWindow = true;
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }

    /// <summary>Waits until <paramref name="until"/> returns non-null, or says it did not happen in time.</summary>
    public static bool TryWait(IWebDriver browser, TimeSpan within, Func<IWebDriver, string?> until)
    {
        var wait = new WebDriverWait(browser, within) { PollingInterval = TimeSpan.FromMilliseconds(50) };
        wait.IgnoreExceptionTypes(typeof(StaleElementReferenceException));
        try { return wait.Until(until) is not null; }
        catch (WebDriverTimeoutException) { return false; }
    }

    /// <summary>Waits until <paramref name="until"/> returns non-null; a timeout names what was awaited and what the page said.</summary>
    public static string Wait(IWebDriver browser, TimeSpan within, string what, Func<IWebDriver, string?> until)
    {
        var wait = new WebDriverWait(browser, within) { PollingInterval = TimeSpan.FromMilliseconds(100) };
        wait.IgnoreExceptionTypes(typeof(StaleElementReferenceException));   // the page redraws its tables on every event
        try { return wait.Until(until)!; }
        catch (WebDriverTimeoutException)
        {
            var page = browser.FindElement(By.TagName("body")).Text;
            throw new TimeoutException($"Waited {within.TotalSeconds} s for {what}. The page read:\n{page}");
        }
    }

    /// <summary>Saves a screenshot under tests/TestResults/ (the README's copy lives in docs/).</summary>
    public static void Screenshot(ITakesScreenshot browser, string name)
    {
        var folder = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(folder, "Distributed.sln"))) folder = Path.GetDirectoryName(folder) ?? throw new InvalidOperationException("No Distributed.sln above the tests");
        var results = Directory.CreateDirectory(Path.Combine(folder, "tests", "TestResults")).FullName;
        browser.GetScreenshot().SaveAsFile(Path.Combine(results, name));
    }
}
