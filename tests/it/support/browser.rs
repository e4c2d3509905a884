//! The browser tests' harness: headless Chromium driven through ChromeDriver (WebDriver, with the
//! `fantoccini` crate), with axe-core to check pages for accessibility.
//!
//! ```ignore
//! let Some(browser) = Browser::open_or_skip().await else { return };
//! browser.open(&url).await;
//! browser.fill("#token", DANA).await;
//! browser.press(Key::Enter).await;
//! browser.wait_for("the incident list", "document.querySelector('h1')?.textContent === 'Incidents'").await;
//! browser.screenshot("incidents").await;
//! let found = browser.axe().await;
//! assert!(found.is_empty(), "{found}");
//! ```
//!
//! One ChromeDriver serves the whole test binary: started by the first test that wants a browser,
//! on a free port, and stopped when the test binary exits (a shell beside it waits for the end of
//! a pipe the test process holds, then kills it, so it goes even when the tests are killed). Each
//! test gets a session of its own, a fresh Chromium with a temporary profile, which ends when the
//! [`Browser`] is dropped, also when the test fails.
//!
//! What it needs, and where it looks (`scripts/test` installs all three and sets the variables):
//! Chromium (`PHASEGATE_TEST_CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`),
//! ChromeDriver (`PHASEGATE_TEST_CHROMEDRIVER`, else `/usr/bin/chromedriver` or `chromedriver` on
//! `PATH`), and axe-core's `axe.min.js` (`PHASEGATE_TEST_AXE`, else
//! `target/test-node/node_modules/axe-core/axe.min.js`). A test skips, saying which is missing.

use std::fmt;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::elements::Element;
pub use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{root, skip};

/// The viewport, in CSS pixels: a laptop's screen. Screenshots are of the whole page at this width.
pub const WINDOW: (u32, u32) = (1280, 900);

/// How far down a page [`Browser::screenshot`] goes, in pixels: a long report's first screens
/// (the whole of a 50,000-pixel page takes seconds to take, and is too tall to look at).
pub const SCREENSHOT_MOST: f64 = 6000.0;

/// How long [`Browser::wait_for`] waits before failing.
const WAIT: Duration = Duration::from_secs(10);

/// How often [`Browser::wait_for`] looks again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// The axe-core tags the pages are held to: WCAG 2.0, 2.1 and 2.2, levels A and AA.
pub const AXE_TAGS: [&str; 5] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

const INSTALL_CHROMIUM: &str = "as root, `apt-get install chromium chromium-driver`";

/// The programs and the script the browser tests use.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
    axe: PathBuf,
}

/// The first of `candidates` that is a file: what the variable names (when set, and then only
/// that), else a path (with a `/`), or a name found on `PATH`.
fn find(variable: &str, candidates: &[&str]) -> Result<PathBuf, String> {
    if let Some(set) = std::env::var_os(variable) {
        let path = PathBuf::from(set);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{variable} names {}, which is not a file", path.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates
        .iter()
        .find_map(|candidate| {
            if candidate.contains('/') {
                return Path::new(candidate).is_file().then(|| PathBuf::from(candidate));
            }
            std::env::split_paths(&path).map(|dir| dir.join(candidate)).find(|full| full.is_file())
        })
        .ok_or_else(|| format!("{variable} is not set and none of {} is found", candidates.join(", ")))
}

impl Tools {
    /// The tools, or why the browser tests skip and how to install what is missing.
    fn find() -> Result<Tools, (String, &'static str)> {
        let chromium = find("PHASEGATE_TEST_CHROMIUM", &["chromium", "chromium-browser"])
            .map_err(|why| (format!("Chromium is missing: {why}"), INSTALL_CHROMIUM))?;
        let chromedriver = find("PHASEGATE_TEST_CHROMEDRIVER", &["/usr/bin/chromedriver", "chromedriver"])
            .map_err(|why| (format!("ChromeDriver is missing: {why}"), INSTALL_CHROMIUM))?;
        let default_axe = root().join("target/test-node/node_modules/axe-core/axe.min.js");
        let axe = find("PHASEGATE_TEST_AXE", &[&default_axe.to_string_lossy()]).map_err(|why| {
            (format!("axe-core is missing: {why}"), "`npm ci` in a copy of scripts/test-node (see scripts/test)")
        })?;
        Ok(Tools { chromium, chromedriver, axe })
    }
}

/// The test binary's ChromeDriver: its address, and the pipe whose end stops it.
struct Driver {
    url: String,
    /// Held until the test binary exits; its closing tells the watching shell to stop ChromeDriver.
    _lifeline: Mutex<ChildStdin>,
    _watcher: Mutex<Child>,
}

/// A port free now, for ChromeDriver to listen on.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Driver {
    /// Starts ChromeDriver and waits until it accepts connections.
    fn start(program: &Path) -> Result<Driver, String> {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chromedriver.log");
        // A port another process takes between `free_port` and ChromeDriver's start fails the start:
        // a few tries.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            // The shell starts ChromeDriver, then reads its standard input, the pipe this process
            // holds, to its end: the test binary's exit, however it exits. Then it stops ChromeDriver.
            let mut watcher = Command::new("sh")
                .arg("-c")
                .arg(r#""$@" & driver=$!; trap 'kill $driver 2> /dev/null; wait $driver' EXIT; cat > /dev/null"#)
                .arg("phasegate-chromedriver")
                .arg(program)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|error| format!("`sh` does not start: {error}"))?;
            let lifeline = watcher.stdin.take().expect("piped");
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + WAIT;
            loop {
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    return Ok(Driver {
                        url: format!("http://{address}"),
                        _lifeline: Mutex::new(lifeline),
                        _watcher: Mutex::new(watcher),
                    });
                }
                if let Ok(Some(status)) = watcher.try_wait() {
                    last = format!("ChromeDriver exited ({status}); its log is {}", log.display());
                    break;
                }
                if Instant::now() > deadline {
                    last = format!(
                        "ChromeDriver did not listen on {address} within {WAIT:?}; its log is {}",
                        log.display()
                    );
                    drop(lifeline);
                    let _ = watcher.wait();
                    break;
                }
                std::thread::sleep(POLL_EVERY);
            }
        }
        Err(last)
    }
}

/// The tools and the running ChromeDriver, found and started once for the test binary.
struct Shared {
    tools: Tools,
    driver: Driver,
    axe_source: String,
}

fn shared() -> Result<&'static Shared, (String, &'static str)> {
    static SHARED: OnceLock<Result<Shared, (String, &'static str)>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let tools = Tools::find()?;
            let axe_source = std::fs::read_to_string(&tools.axe)
                .map_err(|error| (format!("{} cannot be read: {error}", tools.axe.display()), INSTALL_CHROMIUM))?;
            let driver = Driver::start(&tools.chromedriver).map_err(|why| (why, INSTALL_CHROMIUM))?;
            Ok(Shared { tools, driver, axe_source })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Whether this process runs as root, when Chromium's sandbox cannot work.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Where screenshots are kept: `target/browser-screenshots`, left for people to look at.
pub fn screenshots() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().expect("the target directory").join("browser-screenshots")
}

/// One test's browser: a headless Chromium session of its own.
pub struct Browser {
    pub client: Client,
    /// ChromeDriver's address and the session's id, to end the session when the test ends.
    driver: String,
    session: String,
    /// The session's profile, removed after the session ends.
    _profile: tempfile::TempDir,
}

/// ChromeDriver's command to run a Chrome DevTools Protocol method in the session's page.
#[derive(Debug)]
struct DevTools {
    method: String,
    params: Value,
}

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"cmd": self.method, "params": self.params}).to_string()))
    }
}

impl Browser {
    /// A new browser session, or `None` after saying why the test skips (Chromium, ChromeDriver
    /// or axe-core missing). A ChromeDriver that is there but does not work fails the test.
    pub async fn open_or_skip() -> Option<Browser> {
        let shared = match shared() {
            Ok(shared) => shared,
            Err((why, install)) => {
                skip(&why, install);
                return None;
            }
        };
        let profile = tempfile::tempdir().unwrap();
        let (width, height) = WINDOW;
        let mut args = vec![
            "--headless".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
            "--force-device-scale-factor=1".into(),
            "--hide-scrollbars".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--lang=en-GB".into(),
        ];
        if is_root() {
            args.push("--no-sandbox".into());
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": shared.tools.chromium, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client =
            ClientBuilder::new(connector).capabilities(capabilities).connect(&shared.driver.url).await.unwrap_or_else(
                |error| {
                    panic!(
                        "ChromeDriver ({}) did not start Chromium ({}): {error}",
                        shared.tools.chromedriver.display(),
                        shared.tools.chromium.display()
                    )
                },
            );
        let session = client.session_id().await.unwrap().expect("a session was opened");
        let browser = Browser { client, driver: shared.driver.url.clone(), session, _profile: profile };
        browser.viewport(width, height).await;
        Some(browser)
    }

    /// Sets the page's viewport to exactly `width` by `height` CSS pixels (a phone is 390 by 844),
    /// for this session's pages from now on.
    pub async fn viewport(&self, width: u32, height: u32) {
        let metrics = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        self.devtools("Emulation.setDeviceMetricsOverride", metrics).await;
    }

    /// Goes to `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|error| panic!("the browser did not open {url}: {error}"));
    }

    /// The element `css` selects, failing the test naming it when there is none.
    pub async fn element(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => panic!("no element {css:?} on {}: {error}", self.url().await),
        }
    }

    /// The page's address now.
    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|url| url.to_string()).unwrap_or_else(|e| format!("(no address: {e})"))
    }

    /// The text of the element `css` selects, as shown.
    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.unwrap()
    }

    /// Types `text` into the form field `css` selects, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.element(css).await;
        field.clear().await.unwrap_or_else(|error| panic!("{css:?} cannot be cleared: {error}"));
        field.send_keys(text).await.unwrap_or_else(|error| panic!("{css:?} cannot be typed into: {error}"));
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap_or_else(|error| panic!("{css:?} cannot be clicked: {error}"));
    }

    /// Submits the form `form` selects with its submit button, as a person would.
    pub async fn submit(&self, form: &str) {
        let button = format!("{form} button:not([type=button]):not([type=reset]), {form} input[type=submit]");
        self.click(&button).await;
    }

    /// Presses `key` on whatever has the keyboard's focus.
    pub async fn press(&self, key: Key) {
        let key = char::from(key);
        self.keys(&[KeyAction::Down { value: key }, KeyAction::Up { value: key }]).await;
    }

    /// Types `text` on the keyboard, into whatever has its focus.
    pub async fn type_text(&self, text: &str) {
        let actions: Vec<KeyAction> =
            text.chars().flat_map(|c| [KeyAction::Down { value: c }, KeyAction::Up { value: c }]).collect();
        self.keys(&actions).await;
    }

    async fn keys(&self, actions: &[KeyAction]) {
        let keyboard =
            actions.iter().cloned().fold(KeyActions::new("keyboard".into()), |keys, action| keys.then(action));
        self.client
            .perform_actions(keyboard)
            .await
            .unwrap_or_else(|error| panic!("the keys were not pressed: {error}"));
    }

    /// The element that has the keyboard's focus, described: its tag, id, name and text.
    pub async fn focused(&self) -> String {
        let script = "const e = document.activeElement; if (!e) return 'nothing';
            return [e.tagName.toLowerCase(), e.id && '#' + e.id, e.name && '[name=' + e.name + ']',
                    (e.innerText || e.value || '').trim().slice(0, 60)].filter(Boolean).join(' ');";
        self.script(script).await.as_str().unwrap_or_default().to_string()
    }

    /// Runs `script` (a function body: `return` gives the value) in the page, and gives its value.
    pub async fn script(&self, script: &str) -> Value {
        match self.client.execute(script, Vec::new()).await {
            Ok(value) => value,
            Err(error) => panic!("the script failed on {}: {error}\n{script}", self.url().await),
        }
    }

    /// Waits until the JavaScript expression `condition` is true in the page, looking again every
    /// 25 ms; after 10 s fails naming `what` was awaited, with a screenshot of the page. A page
    /// that is being replaced (a form submitted, a link followed) counts as not yet.
    pub async fn wait_for(&self, what: &str, condition: &str) {
        self.wait_for_within(what, condition, WAIT).await;
    }

    /// [`Browser::wait_for`], failing after `limit`.
    pub async fn wait_for_within(&self, what: &str, condition: &str, limit: Duration) {
        let script = format!("return !!({condition});");
        let deadline = Instant::now() + limit;
        loop {
            let seen = match self.client.execute(&script, Vec::new()).await {
                Ok(Value::Bool(true)) => return,
                Ok(value) => value.to_string(),
                Err(error) => format!("the script failed: {error}"),
            };
            if Instant::now() > deadline {
                let shot = self.screenshot(&format!("timeout-{}", slug(what))).await;
                panic!(
                    "waited {limit:?} for {what} ({condition}) on {}; last seen: {seen}; the page is in {}",
                    self.url().await,
                    shot.display()
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The Chrome DevTools Protocol, through ChromeDriver.
    pub async fn devtools(&self, method: &str, params: Value) -> Value {
        self.client
            .issue_cmd(DevTools { method: method.to_string(), params })
            .await
            .unwrap_or_else(|error| panic!("DevTools {method} failed: {error}"))
    }

    /// A screenshot of the page from its top, as far down as it goes up to [`SCREENSHOT_MOST`]
    /// pixels (beyond the viewport), kept as `target/browser-screenshots/NAME.png`; gives its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let size =
            self.script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];").await;
        let (width, height) = (size[0].as_f64().unwrap_or(1.0), size[1].as_f64().unwrap_or(1.0));
        let clip = json!({"x": 0, "y": 0, "width": width, "height": height.min(SCREENSHOT_MOST), "scale": 1});
        let shot = self
            .devtools("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip}))
            .await;
        let data = shot["data"].as_str().unwrap_or_else(|| panic!("no screenshot: {shot}"));
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs axe-core on the page as it is now, held to [`AXE_TAGS`], and gives what it found.
    pub async fn axe(&self) -> Axe {
        self.axe_run(json!({"type": "tag", "values": AXE_TAGS})).await
    }

    /// Runs only the axe-core rules named (like `region`, of its best practices), and gives what
    /// they found.
    pub async fn axe_rules(&self, rules: &[&str]) -> Axe {
        self.axe_run(json!({"type": "rule", "values": rules})).await
    }

    /// Loads axe-core into the page unless it is there, and runs it with `run_only`.
    async fn axe_run(&self, run_only: Value) -> Axe {
        let shared = shared().expect("a browser was opened, so the tools are there");
        // WebDriver's scripts run as DevTools' `Runtime.callFunctionOn`, which the page's
        // Content-Security-Policy does not govern (the harness's own test serves a page under
        // `script-src 'self'` to hold this true); the script defines `window.axe`.
        if self.script("return typeof window.axe;").await != json!("object") {
            let inject = format!("{}\nreturn typeof window.axe;", shared.axe_source);
            let defined = self.script(&inject).await;
            assert_eq!(defined, json!("object"), "axe-core did not load into {}", self.url().await);
        }
        let run = "const done = arguments[arguments.length - 1];
            axe.run(document, { runOnly: arguments[0], resultTypes: ['violations'] })
              .then(r => done(JSON.stringify({ violations: r.violations, passed: r.passes.length, url: r.url })),
                    e => done(JSON.stringify({ error: String(e && e.stack || e) })));";
        let result = match self.client.execute_async(run, vec![run_only.clone()]).await {
            Ok(result) => result,
            Err(error) => panic!("axe-core did not run on {}: {error}", self.url().await),
        };
        let text = result.as_str().expect("axe's result, as JSON text").to_string();
        let outcome: AxeOutcome = serde_json::from_str(&text).unwrap_or_else(|e| panic!("axe's result: {e}: {text}"));
        if let Some(error) = outcome.error {
            panic!("axe-core failed on {}: {error}", self.url().await);
        }
        Axe { url: outcome.url.unwrap_or_default(), violations: outcome.violations, passed: outcome.passed }
    }
}

impl Drop for Browser {
    /// Ends the session, and with it the browser, also when the test has failed (its runtime may
    /// be gone by then, so not with the WebDriver client but a request of its own).
    fn drop(&mut self) {
        let Some(address) = self.driver.strip_prefix("http://") else { return };
        if let Ok(mut stream) = TcpStream::connect(address) {
            let _ = stream.set_read_timeout(Some(WAIT));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                // ChromeDriver answers once the browser is gone.
                let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
            }
        }
    }
}

fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

#[derive(Deserialize)]
struct AxeOutcome {
    #[serde(default)]
    violations: Vec<Violation>,
    #[serde(default)]
    passed: usize,
    url: Option<String>,
    error: Option<String>,
}

/// One rule of axe-core's that the page breaks, and where.
#[derive(Debug, Deserialize)]
pub struct Violation {
    /// The rule's id, like `color-contrast`.
    pub id: String,
    pub impact: Option<String>,
    pub help: String,
    #[serde(rename = "helpUrl")]
    pub help_url: String,
    pub nodes: Vec<Node>,
}

/// An element that breaks a rule.
#[derive(Debug, Deserialize)]
pub struct Node {
    /// The CSS selectors that reach it (more than one inside frames or shadow roots).
    pub target: Vec<Value>,
    #[serde(rename = "failureSummary", default)]
    pub failure_summary: Option<String>,
    #[serde(default)]
    pub html: String,
}

/// What axe-core found on a page; shown as one paragraph per rule broken, to be read in a failed
/// assertion: `assert!(found.is_empty(), "{found}")`.
#[derive(Debug)]
pub struct Axe {
    pub url: String,
    pub violations: Vec<Violation>,
    /// How many rules the page passed: a page with nothing on it passes few.
    pub passed: usize,
}

impl Axe {
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// The ids of the rules broken.
    pub fn rules(&self) -> Vec<&str> {
        self.violations.iter().map(|v| v.id.as_str()).collect()
    }
}

impl fmt::Display for Axe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.violations.is_empty() {
            return write!(f, "axe-core found nothing on {} ({} rules passed)", self.url, self.passed);
        }
        writeln!(f, "axe-core found {} rule(s) broken on {}:", self.violations.len(), self.url)?;
        for violation in &self.violations {
            let impact = violation.impact.as_deref().unwrap_or("no impact given");
            writeln!(f, "\n- {} ({impact}): {}\n  {}", violation.id, violation.help, violation.help_url)?;
            for node in violation.nodes.iter().take(10) {
                let target: Vec<String> =
                    node.target.iter().map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_string)).collect();
                writeln!(f, "  at {}  {}", target.join(" > "), shorten(&node.html, 120))?;
                if let Some(summary) = &node.failure_summary {
                    for line in summary.lines() {
                        writeln!(f, "      {line}")?;
                    }
                }
            }
            if violation.nodes.len() > 10 {
                writeln!(f, "  and {} more element(s)", violation.nodes.len() - 10)?;
            }
        }
        Ok(())
    }
}

fn shorten(text: &str, most: usize) -> String {
    let text = text.replace('\n', " ");
    match text.char_indices().nth(most) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}
