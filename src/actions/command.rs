//! Command steps: a program run from its argument vector, never through a shell, so that no
//! value in it (an input, a step's output) can become shell syntax.
//!
//! The program gets a small, fixed part of phasegate's environment (`PATH`, `HOME`, the locale,
//! the time zone) and the step's `env`; not the rest, because phasegate's own environment holds
//! its secrets (database URLs, webhook keys) and a runbook's command has no business seeing them.
//! The command runs in a process group of its own, so that a timeout kills everything it started,
//! not only the program named. Its output is kept up to a limit and scrubbed of the secrets it was
//! given before it becomes an event.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Error, MAX_OUTPUT, Revealed, SecretSource, scrubbed_text};
use crate::engine::Outcome;
use crate::runbook::model::{Text, format_duration};

/// The variables of phasegate's environment that a command inherits.
const INHERITED: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/// Runs `argv` with `env` (secrets resolved) for at most `timeout`.
pub(super) async fn run(
    secrets: &dyn SecretSource,
    argv: &[String],
    env: &[(String, Text)],
    timeout: Duration,
) -> Result<Outcome, Error> {
    let (program, arguments) = argv.split_first().ok_or(Error::EmptyCommand)?;
    let mut revealed = Revealed::new(secrets);
    let mut variables = Vec::new();
    for (name, text) in env {
        variables.push((name.clone(), revealed.text(text, || format!("environment variable `{name}`"))?));
    }
    let mut command = tokio::process::Command::new(program);
    command
        .args(arguments)
        .env_clear()
        .envs(INHERITED.iter().filter_map(|name| std::env::var_os(name).map(|value| (*name, value))))
        .envs(variables)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // If phasegate stops waiting (it is shutting down), the program stops too.
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|error| Error::Spawn { program: program.clone(), error })?;
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let limit = MAX_OUTPUT + revealed.longest();
    let finished = async {
        let (stdout, stderr, status) =
            tokio::join!(read_capped(stdout, limit), read_capped(stderr, limit), child.wait());
        (stdout, stderr, status)
    };
    let Ok((stdout, stderr, status)) = tokio::time::timeout(timeout, finished).await else {
        if let Some(group) = group {
            // The group may be gone already; killing what is left is all that matters.
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = child.kill().await;
        return Err(Error::CommandTimeout { program: program.clone(), after: format_duration(timeout) });
    };
    let wait_error = |error| Error::Wait { program: program.clone(), error };
    let status = status.map_err(wait_error)?;
    let (stdout, stdout_total) = stdout.map_err(wait_error)?;
    let (stderr, stderr_total) = stderr.map_err(wait_error)?;
    // A program killed by a signal has no exit code; shells report 128 + the signal, so do we.
    let exit_code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(Outcome::Command {
        exit_code,
        stdout: output_text(&stdout, stdout_total, &revealed),
        stderr: output_text(&stderr, stderr_total, &revealed),
    })
}

/// Keeps the first `limit` bytes of a stream and counts the rest, reading to the end so that the
/// program never blocks on a full pipe.
async fn read_capped(mut stream: impl AsyncRead + Unpin, limit: usize) -> std::io::Result<(Vec<u8>, usize)> {
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buffer = [0u8; 8192];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok((kept, total));
        }
        total += read;
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..read.min(room)]);
    }
}

fn output_text(bytes: &[u8], total: usize, revealed: &Revealed<'_>) -> String {
    let mut text = scrubbed_text(bytes, MAX_OUTPUT, revealed);
    if total > MAX_OUTPUT {
        text.push_str(&format!("\n[phasegate: output cut at {MAX_OUTPUT} of {total} bytes]"));
    }
    text
}
