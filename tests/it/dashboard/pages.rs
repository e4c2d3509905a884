//! Where the dashboard's pages come from: the binary, unless the configuration's `server.pages`
//! names a folder of replacements on purpose. A template directory's `web/` folder (a copy of an
//! older repository's `templates/`) is not read, and `serve` says so once at start.

use std::path::Path;
use std::time::Duration;

use crate::support::{Cli, root, wait_until};

/// What the built-in sign-in page says, and what the site's old copy says instead.
const BUILT_IN: &str = "Sign in with your phasegate API token";
const OLD_COPY: &str = "An old sign-in page, copied with templates/";

/// The warning `serve` gives of a template directory's unread `web/` folder.
const UNREAD: &str = "holds dashboard pages, which are not read";

/// A site as a team made it by copying the repository's `templates/` before an upgrade: its
/// templates directory holds `web/signin.html`, an old page.
fn site(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates/web")).unwrap();
    std::fs::write(dir.path().join("templates/web/signin.html"), format!("<p>{OLD_COPY}</p>")).unwrap();
    std::fs::write(
        dir.path().join("phasegate.yaml"),
        format!("runbooks: {}\ntemplates: templates\n{extra}", root().join("runbooks").display()),
    )
    .unwrap();
    dir
}

/// Runs the binary's `serve` in `dir` with its configuration, reads `/signin`, stops it with
/// SIGTERM, and returns the page and what it logged.
async fn serve(dir: &Path) -> (String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .current_dir(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config", "phasegate.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let signin = format!("http://127.0.0.1:{port}/signin");
    let page = wait_until("the server up", Duration::from_secs(10), async || match client.get(&signin).send().await {
        Ok(response) => response.text().await.map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "a clean stop");
    (page, String::from_utf8(output.stderr).unwrap())
}

/// Regression: a site's copied `templates/web/*.html` silently replaced the built-in pages, so
/// after an upgrade the dashboard kept the old ones. The pages are the binary's, and `serve`
/// names the unread folder once, with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_templates_web_folder_is_not_read_and_serve_says_so_once() {
    let dir = site("");
    let (page, logs) = serve(dir.path()).await;
    assert!(page.contains(BUILT_IN) && !page.contains(OLD_COPY), "{page}");
    assert_eq!(logs.matches(UNREAD).count(), 1, "{logs}");
    let warning = logs.lines().find(|line| line.contains(UNREAD)).unwrap();
    assert!(warning.contains("templates/web`") && warning.contains("server.pages"), "{warning}");
}

/// A site that means to replace a page names the folder in `server.pages`: its page is served,
/// the start says which pages are the site's, and a name that replaces nothing is warned of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_named_in_server_pages_replace_the_built_in_ones_and_are_named_at_start() {
    let dir = site("server:\n  pages: templates/web\n");
    std::fs::write(dir.path().join("templates/web/incidnets.html"), "<p>misspelt</p>").unwrap();
    let (page, logs) = serve(dir.path()).await;
    assert!(page.contains(OLD_COPY) && !page.contains(BUILT_IN), "{page}");
    assert!(!logs.contains(UNREAD), "the folder is read, on purpose: {logs}");
    assert!(logs.contains("the dashboard's pages `signin.html` come from"), "{logs}");
    assert!(logs.contains("holds `incidnets.html`, which replace(s) no built-in page"), "{logs}");
}

/// A `server.pages` folder that does not exist stops `serve` at start, naming it (exit 2: a file
/// that cannot be read).
#[test]
fn a_missing_server_pages_folder_stops_serve_naming_it() {
    let dir = site("server:\n  pages: my-pages\n");
    Cli::new()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--config", "phasegate.yaml"])
        .status(2)
        .stderr_has("the dashboard's pages of `server.pages` (`my-pages`) cannot be loaded")
        .stderr_has("No such file or directory");
}
