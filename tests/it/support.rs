//! Helpers shared by the integration tests: a builder for running the `phasegate` binary, a
//! stub HTTP server for the binary to call, finding the outside programs some tests need (or
//! skipping those tests loudly when they are missing), waiting for something to happen
//! elsewhere ([`wait_until`]), and the engine's test harness ([`harness`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod browser;
pub mod harness;
pub mod postgres;

/// The templates the runbooks' customer campaigns render: rendered per recipient, with a context
/// of their own, not as status updates.
pub fn campaign_templates<'a>(runbooks: impl Iterator<Item = &'a phasegate::runbook::Runbook>) -> BTreeSet<String> {
    use phasegate::runbook::model::Action;
    runbooks
        .flat_map(|runbook| runbook.phases().iter().flat_map(|phase| phase.steps.iter()))
        .filter_map(
            |step| if let Action::Campaign { template, .. } = &step.action { Some(template.clone()) } else { None },
        )
        .collect()
}

/// The repository root, where `runbooks/` and `templates/` live.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The environment variable that names the Python interpreter the tests run (`scripts/test` sets
/// it to its virtual environment's); `python3` on `PATH` when it is not set.
pub const PYTHON_VARIABLE: &str = "PHASEGATE_TEST_PYTHON";

/// How to install what the tests need: the test command does it all.
const INSTALL: &str = "run `./scripts/test` (as root it installs what the tests need)";

/// Says on the terminal, past the test harness's capture, that the running test skips and why.
/// A skipped test passes, so this line is all that tells it apart from one that ran.
pub fn skip(reason: &str, install: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    // `eprintln!` is captured by the harness and shown only for a failing test; the standard
    // error handle itself is not captured, so the reader sees this whatever the test does.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {reason}\n  to run it: {install}, or {INSTALL}");
}

/// The first of `candidates` that exists: a path (with a `/`), or a name found on `PATH`. `None`
/// after saying that the test skips, naming `what` is missing and the command that installs it.
pub fn program_or_skip(candidates: &[&str], what: &str, install: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = candidates.iter().find_map(|candidate| {
        if candidate.contains('/') {
            return Path::new(candidate).is_file().then(|| PathBuf::from(candidate));
        }
        std::env::split_paths(&path).map(|dir| dir.join(candidate)).find(|full| full.is_file())
    });
    if found.is_none() {
        skip(&format!("{what} is missing (looked for {})", candidates.join(", ")), install);
    }
    found
}

/// A Python interpreter that imports every one of `modules` (PyPI packages the tests use): the
/// one `PHASEGATE_TEST_PYTHON` names, else `python3`. `None` after saying that the test skips,
/// naming what is missing and how to install it.
pub fn python_or_skip(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os(PYTHON_VARIABLE).map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let install = "`python3 -m pip install -r scripts/requirements-test.txt`";
    let imports = format!("import {}", modules.join(", "));
    match Command::new(&python).args(["-c", &imports]).output() {
        Ok(output) if output.status.success() => Some(python),
        Ok(output) => {
            let error = String::from_utf8_lossy(&output.stderr);
            let why = error.lines().last().unwrap_or("the import failed");
            skip(&format!("`{}` cannot `{imports}`: {why}", python.display()), install);
            None
        }
        Err(error) => {
            skip(&format!("the Python interpreter `{}` does not run: {error}", python.display()), install);
            None
        }
    }
}

/// Runs `phasegate` with arguments and checks its output: `Cli::new().args([..]).stdout_has(..).fails()`.
pub struct Cli {
    command: Command,
    output: Option<Output>,
}

impl Cli {
    pub fn new() -> Cli {
        let mut command = Command::new(env!("CARGO_BIN_EXE_phasegate"));
        // What the person running the tests has set for their own use does not reach the tests.
        for variable in ["PHASEGATE_TEMPLATES", "PHASEGATE_CONFIG", "PHASEGATE_DB"] {
            command.env_remove(variable);
        }
        command.current_dir(root());
        Cli { command, output: None }
    }

    pub fn args<I, S>(mut self, args: I) -> Cli
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Cli {
        self.command.current_dir(dir);
        self
    }

    fn output(&mut self) -> &Output {
        if self.output.is_none() {
            self.output = Some(self.command.output().expect("the phasegate binary runs"));
        }
        self.output.as_ref().expect("just set")
    }

    pub fn stdout(&mut self) -> String {
        String::from_utf8_lossy(&self.output().stdout).into_owned()
    }

    pub fn stderr(&mut self) -> String {
        String::from_utf8_lossy(&self.output().stderr).into_owned()
    }

    pub fn stdout_has(mut self, text: &str) -> Cli {
        let stdout = self.stdout();
        assert!(stdout.contains(text), "stdout lacks {text:?}:\n{stdout}\nstderr:\n{}", self.stderr());
        self
    }

    pub fn stderr_has(mut self, text: &str) -> Cli {
        let stderr = self.stderr();
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
        self
    }

    /// Asserts the exit status and returns the builder for further checks.
    pub fn status(mut self, expected: i32) -> Cli {
        let status = self.output().status.code();
        assert_eq!(status, Some(expected), "stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }

    pub fn succeeds(self) -> Cli {
        self.status(0)
    }

    pub fn fails(self) -> Cli {
        self.status(1)
    }
}

impl Cli {
    /// Sets an environment variable for the command.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Cli {
        self.command.env(key, value);
        self
    }

    /// The exit status, without asserting anything about it.
    pub fn code(&mut self) -> Option<i32> {
        self.output().status.code()
    }
}

/// One request as a [`Stub`] saw it. Header names are lowercase.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What a [`Stub`] answers: a status and a JSON body (none for `204`), after a delay.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Option<serde_json::Value>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply { status, body: Some(body), delay: Duration::ZERO }
    }

    pub fn empty(status: u16) -> Reply {
        Reply { status, body: None, delay: Duration::ZERO }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Answer = dyn Fn(&Received) -> Reply + Send + Sync;

/// What the stub's handler shares: the requests so far, and what to answer.
type StubState = (Arc<Mutex<Vec<Received>>>, Arc<Answer>);

/// A stub HTTP server on `127.0.0.1:0`, on a runtime of its own so that tests that block on the
/// `phasegate` binary can use it. It records every request as it arrives, then asks `answer`
/// what to reply (so what the answer does to the stub's own state happens even if the client
/// goes away before the reply), and replies after the reply's delay.
pub struct Stub {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Stub {
    pub fn start(answer: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Stub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the stub");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("a bound address"));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let state: StubState = (Arc::clone(&received), Arc::new(answer));
        let app = axum::Router::new().fallback(stub_answer).with_state(state);
        runtime.spawn(async move { axum::serve(listener, app).await.expect("the stub serves") });
        Stub { base, received, runtime: Some(runtime) }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Every request so far, in the order they arrived.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the stub's log is never poisoned").clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn stub_answer(
    axum::extract::State((received, answer)): axum::extract::State<StubState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 22).await.unwrap_or_default();
    let request = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    received.lock().expect("the stub's log is never poisoned").push(request.clone());
    let reply = answer(&request);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = axum::http::StatusCode::from_u16(reply.status).expect("a valid status");
    match reply.body {
        Some(body) => (status, axum::Json(body)).into_response(),
        None => status.into_response(),
    }
}

/// Carries out nothing: every effect fails, as it would with the retailer's systems out of reach.
pub struct Unreachable;

impl phasegate::runtime::Executor for Unreachable {
    async fn carry_out(
        &self,
        _: &phasegate::engine::Effect,
        _: &phasegate::runbook::Runbook,
        _: &phasegate::engine::Incident,
        _: &[phasegate::engine::Event],
        _: chrono::DateTime<chrono::Utc>,
    ) -> phasegate::engine::Outcome {
        phasegate::engine::Outcome::Failed { error: "no network in tests".into() }
    }

    async fn send_campaign_batch(
        &self,
        _: phasegate::actions::campaign::BatchJob<'_>,
    ) -> phasegate::actions::campaign::BatchSent {
        let error = "this test's executor sends no campaigns".to_string();
        phasegate::actions::campaign::BatchSent {
            answer: phasegate::actions::campaign::Answer::Failed {
                error,
                class: phasegate::campaign::FailureClass::Local,
            },
            leaves: Vec::new(),
        }
    }
}

/// `phasegate serve` in this process, with the configuration file `config`, on `listen`, its
/// runtime loop passing every `interval` and its effects reaching nothing.
pub struct Serving {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Serving {
    pub async fn start(config: &Path, listen: &str, interval: Duration) -> Serving {
        let config = phasegate::config::Config::load(Some(config), &Default::default()).unwrap();
        // A file or a `postgres://` URL, as `phasegate serve` opens it.
        let store = phasegate::store::AnyStore::open(&config.database).await.unwrap();
        Serving::start_over(store, config, listen, interval).await
    }

    /// [`Serving::start`] over any store, with the configuration loaded.
    pub async fn start_over<S: phasegate::store::Store>(
        store: S,
        config: phasegate::config::Config,
        listen: &str,
        interval: Duration,
    ) -> Serving {
        Serving::start_executing(store, config, listen, interval, Unreachable).await
    }

    /// [`Serving::start_over`], its effects carried out by `executor` (a drill's stand-ins for
    /// the outside systems, say) instead of reaching nothing.
    pub async fn start_executing<S: phasegate::store::Store>(
        store: S,
        config: phasegate::config::Config,
        listen: &str,
        interval: Duration,
        executor: impl phasegate::runtime::Executor + 'static,
    ) -> Serving {
        let catalog = phasegate::render::Catalog::built_in();
        // As `phasegate serve` makes it: campaigns keep their files where the configuration says.
        let runtime = phasegate::runtime::Runtime::new(store, catalog, config.directory.clone())
            .with_campaigns(config.campaigns.clone());
        let app = Arc::new(phasegate::server::App::new(runtime, config).unwrap());
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            phasegate::server::serve(app, Arc::new(executor), listener, interval, shutdown).await.unwrap();
        });
        Serving { base, stop: Some(stop), task: Some(task) }
    }

    /// Stops the server as a signal would, and waits until it has.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        self.task.take().expect("stopped once").await.unwrap();
    }
}

/// A response's status and body: JSON, or the text as a JSON string when it is not JSON.
pub async fn answer(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// What a condition that [`wait_until`] polls gives: whether it holds, and its value once it does.
pub trait Awaited {
    type Value;
    /// The value once the condition holds, or what was seen instead (for the failure's message).
    fn settled(self) -> Result<Self::Value, String>;
}

impl Awaited for bool {
    type Value = ();
    fn settled(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("not yet".to_string()) }
    }
}

impl<T> Awaited for Option<T> {
    type Value = T;
    fn settled(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_string())
    }
}

/// `Err` says what was seen instead.
impl<T> Awaited for Result<T, String> {
    type Value = T;
    fn settled(self) -> Result<T, String> {
        self
    }
}

/// How often [`wait_until`] looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Waits until `check` holds (another thread, task or process has done what the test waits for)
/// and gives its value: looks every 20 ms, and past `limit` fails naming `what` was awaited and
/// what `check` saw last. The one way these tests wait for something to happen elsewhere; a test
/// never sleeps for a while and then assumes it has.
pub async fn wait_until<A: Awaited>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> A) -> A::Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let seen = match check().await.settled() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(std::time::Instant::now() < deadline, "waited {limit:?} for {what}; last seen: {seen}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_gives_the_value_once_the_condition_holds() {
        let mut looks = 0;
        let value = wait_until("the third look", Duration::from_secs(10), async || {
            looks += 1;
            (looks == 3).then_some(looks)
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "for the door to open; last seen: closed")]
    async fn waiting_past_the_limit_names_what_was_awaited_and_what_was_seen() {
        wait_until("the door to open", Duration::from_millis(50), async || Err::<(), _>("closed".to_string())).await;
    }
}
