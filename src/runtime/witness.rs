//! The witness, written: every checkpoint the runtime signs is also copied outside the database,
//! to an append-only file, to a webhook, or to both (`audit.witness` in the configuration;
//! `audit::witness` says what the copies are for and checks a log against them).
//!
//! A witness never holds up an append. The checkpoint is stored first (that is what the signing
//! hook hands over), and the copies are made by a thread of their own: [`Witness::record`] only
//! queues. What cannot be written is logged loudly (an error in the log, or on standard error
//! where no log is set up, as in the one-shot commands) and kept, in order, to be tried again
//! with a growing pause, up to a minute, while the process lives; a witness that works again is
//! caught up with everything it missed, in order. When the witness is dropped (a command's end,
//! `serve` stopping) the thread goes on trying for a grace period ([`GRACE`] as the commands
//! start it) and the drop waits for it; what is still not written then is named, incident and
//! checkpoint, loudly. Nothing is kept across
//! processes: a checkpoint that was never witnessed stays in the database only, and
//! `audit verify --witness` shows the witness ending before the log does.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::actions::{Actions, SecretSource};
use crate::audit::keys::SignedCheckpoint;
use crate::audit::witness;
use crate::config::witness::Webhook;
use crate::engine::Outcome;
use crate::engine::effect::HttpRequest;

/// The first pause before a failed witness is tried again; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// How long a dropped witness goes on trying to write what is queued, unless set otherwise.
pub const GRACE: Duration = Duration::from_secs(5);

/// Where checkpoints are copied.
pub enum Sink {
    /// An append-only file of JSON lines, each fsynced before the next is written.
    File(PathBuf),
    /// A URL each checkpoint is posted to, through the outbound policy.
    Webhook { webhook: Webhook, outbound: crate::actions::outbound::Policy, secrets: Arc<dyn SecretSource> },
}

impl Sink {
    /// How the sink is named in messages.
    fn name(&self) -> String {
        match self {
            Sink::File(path) => format!("witness file `{}`", path.display()),
            Sink::Webhook { webhook, .. } => {
                let shown = reqwest::Url::parse(&webhook.url).map_or_else(
                    |_| webhook.url.clone(),
                    // Without credentials or a query, which may hold a secret.
                    |url| {
                        let port = url.port().map(|port| format!(":{port}")).unwrap_or_default();
                        format!("{}://{}{port}{}", url.scheme(), url.host_str().unwrap_or_default(), url.path())
                    },
                );
                format!("witness webhook `{shown}`")
            }
        }
    }
}

/// What the witness thread has done, for [`Witness::settle`] and tests to wait on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Checkpoints handed to the witness.
    pub recorded: u64,
    /// Copies written (one per sink per checkpoint).
    pub written: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Copies waiting to be written.
    pub behind: u64,
}

struct Shared {
    progress: Mutex<Progress>,
    changed: std::sync::Condvar,
}

/// Copies signed checkpoints to the configured sinks, on a thread of its own.
pub struct Witness {
    sender: Option<mpsc::Sender<SignedCheckpoint>>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("progress", &self.progress()).finish_non_exhaustive()
    }
}

impl Witness {
    /// Starts the thread that writes to `sinks`. Once the witness is dropped, the thread goes on
    /// trying to write what is queued for up to `grace`, and the drop waits for it.
    pub fn start(sinks: Vec<Sink>, grace: Duration) -> std::io::Result<Witness> {
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared { progress: Mutex::new(Progress::default()), changed: std::sync::Condvar::new() });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("witness".into()).spawn(move || run(sinks, &receiver, &shared, grace))?
        };
        Ok(Witness { sender: Some(sender), shared, thread: Some(thread) })
    }

    /// Queues `signed` to be copied to every sink. Never waits.
    pub fn record(&self, signed: &SignedCheckpoint) {
        self.update(|progress| progress.recorded += 1);
        if let Some(sender) = &self.sender {
            // The thread ends only after the sender is dropped, so this cannot fail.
            let _ = sender.send(signed.clone());
        }
    }

    pub fn progress(&self) -> Progress {
        *self.shared.progress.lock().expect("never poisoned")
    }

    /// Waits until `done` holds of the progress, or `wait` has passed; returns the progress then.
    pub fn wait_for(&self, wait: Duration, done: impl Fn(&Progress) -> bool) -> Progress {
        let deadline = Instant::now() + wait;
        let mut progress = self.shared.progress.lock().expect("never poisoned");
        while !done(&progress) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            progress = self.shared.changed.wait_timeout(progress, left).expect("never poisoned").0;
        }
        *progress
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        update(&self.shared, change);
    }
}

impl Drop for Witness {
    /// Lets the thread write what is queued, trying for up to its grace period, and waits for it.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn update(shared: &Shared, change: impl FnOnce(&mut Progress)) {
    change(&mut shared.progress.lock().expect("never poisoned"));
    shared.changed.notify_all();
}

/// A checkpoint queued, and the sinks it has not been written to yet.
struct Queued {
    signed: SignedCheckpoint,
    waiting: Vec<bool>,
}

/// The thread: takes checkpoints as they come and writes each to every sink, in order per sink;
/// once the sender is gone, goes on trying for up to `grace`, then names what is left.
fn run(sinks: Vec<Sink>, receiver: &mpsc::Receiver<SignedCheckpoint>, shared: &Shared, grace: Duration) {
    let writers = match Writers::new(&sinks) {
        Ok(writers) => writers,
        Err(error) => {
            loudly(&format!("the witness cannot start, so no checkpoint is witnessed: {error}"));
            return;
        }
    };
    let mut queue: Vec<Queued> = Vec::new();
    let mut pause = FIRST_PAUSE;
    let mut failing: Vec<Option<String>> = vec![None; sinks.len()];
    let mut closing: Option<Instant> = None;
    loop {
        let next = match closing {
            Some(deadline) => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                Err(mpsc::RecvTimeoutError::Disconnected)
            }
            None if queue.is_empty() => receiver.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            None => receiver.recv_timeout(pause),
        };
        match next {
            Ok(signed) => queue.push(Queued { signed, waiting: vec![true; sinks.len()] }),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                closing.get_or_insert_with(|| Instant::now() + grace);
            }
        }
        queue.extend(receiver.try_iter().map(|signed| Queued { signed, waiting: vec![true; sinks.len()] }));
        update(shared, |progress| progress.behind = waiting(&queue));
        let failed = write_queued(&sinks, &writers, &mut queue, &mut failing, shared);
        pause = if failed { (pause * 2).min(LONGEST_PAUSE) } else { FIRST_PAUSE };
        let Some(deadline) = closing else { continue };
        if queue.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for queued in &queue {
                for (index, _) in queued.waiting.iter().enumerate().filter(|(_, waiting)| **waiting) {
                    let checkpoint = &queued.signed.checkpoint;
                    loudly(&format!(
                        "checkpoint {} of incident `{}` (events 1 to {}) was not written to the {}: it is in the \
                         database only, and `audit verify --witness` will show the witness ending before the log",
                        checkpoint.number,
                        checkpoint.incident,
                        checkpoint.events,
                        sinks[index].name()
                    ));
                }
            }
            return;
        }
    }
}

/// How many copies are waiting.
fn waiting(queue: &[Queued]) -> u64 {
    queue.iter().map(|queued| queued.waiting.iter().filter(|waiting| **waiting).count() as u64).sum()
}

/// Writes what is queued, each sink in order, stopping a sink at its first failure. Returns
/// whether any sink failed. `failing` holds each sink's failure while it lasts: a failure is said
/// when it begins or changes, not at every try.
fn write_queued(
    sinks: &[Sink],
    writers: &Writers,
    queue: &mut Vec<Queued>,
    failing: &mut [Option<String>],
    shared: &Shared,
) -> bool {
    let mut failed = false;
    for (index, sink) in sinks.iter().enumerate() {
        for queued in queue.iter_mut().filter(|queued| queued.waiting[index]) {
            match writers.write(sink, &queued.signed) {
                Ok(()) => {
                    queued.waiting[index] = false;
                    update(shared, |progress| {
                        progress.written += 1;
                        progress.behind = progress.behind.saturating_sub(1);
                    });
                    if failing[index].take().is_some() {
                        loudly_recovered(&sink.name());
                    }
                }
                Err(error) => {
                    let checkpoint = &queued.signed.checkpoint;
                    let message = format!(
                        "cannot write checkpoint {} of incident `{}` to the {}: {error}; it is kept and tried \
                         again",
                        checkpoint.number,
                        checkpoint.incident,
                        sink.name()
                    );
                    if failing[index].as_ref() != Some(&message) {
                        loudly(&message);
                    } else {
                        tracing::debug!("{message}");
                    }
                    failing[index] = Some(message);
                    failed = true;
                    update(shared, |progress| progress.failures += 1);
                    break;
                }
            }
        }
    }
    queue.retain(|queued| queued.waiting.iter().any(|waiting| *waiting));
    update(shared, |progress| progress.behind = waiting(queue));
    failed
}

/// What the sinks need to write: a runtime and the actions, for a webhook.
struct Writers {
    webhook: Option<(tokio::runtime::Runtime, Actions)>,
}

impl Writers {
    fn new(sinks: &[Sink]) -> anyhow::Result<Writers> {
        let Some((outbound, secrets)) = sinks.iter().find_map(|sink| match sink {
            Sink::Webhook { outbound, secrets, .. } => Some((outbound, secrets)),
            Sink::File(_) => None,
        }) else {
            return Ok(Writers { webhook: None });
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Built on this thread's runtime, so its connections live where they are used.
        let actions = runtime.block_on(async {
            Actions::new(Arc::new(crate::render::Catalog::built_in()), Arc::clone(secrets))?
                .with_outbound(outbound.clone())
        })?;
        Ok(Writers { webhook: Some((runtime, actions)) })
    }

    fn write(&self, sink: &Sink, signed: &SignedCheckpoint) -> Result<(), String> {
        match (sink, &self.webhook) {
            (Sink::File(path), _) => append_line(path, &witness::line(signed)).map_err(|error| error.to_string()),
            (Sink::Webhook { webhook, .. }, Some((runtime, actions))) => {
                let request = HttpRequest {
                    method: "POST".into(),
                    url: webhook.url.clone(),
                    headers: webhook.headers.clone(),
                    body: Some(serde_json::from_str(&witness::line(signed)).map_err(|error| error.to_string())?),
                    timeout: webhook.timeout,
                };
                // The same key for every attempt at the same checkpoint: a receiver can tell a retry.
                let checkpoint = &signed.checkpoint;
                let key = format!("{}/checkpoint-{}", checkpoint.incident, checkpoint.number);
                match runtime.block_on(actions.send_request(&request, Some(&key))) {
                    Ok(Outcome::Http { status, .. }) if (200..300).contains(&status) => Ok(()),
                    Ok(Outcome::Http { status, .. }) => Err(format!("it answered {status}")),
                    Ok(other) => Err(format!("unexpected outcome {other:?}")),
                    Err(error) => Err(error.to_string()),
                }
            }
            (Sink::Webhook { .. }, None) => Err("the webhook witness has no client".to_string()),
        }
    }
}

/// Appends `line` to the file at `path` (created if missing, opened to append only), on a line
/// of its own even if the file ends in a line cut short, and waits until it is on the disk.
fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
    let mut file = options.open(path)?;
    let mut text = String::with_capacity(line.len() + 2);
    if file.seek(SeekFrom::End(0))? > 0 {
        file.seek(SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            // A line cut short by a crash: reading reports it, and this one still reads.
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    // One write: with O_APPEND it goes at the end whatever else appends to the file.
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// A witness problem, said where someone will see it: in the log when there is one, else on
/// standard error (the one-shot commands set up no log).
fn loudly(message: &str) {
    tracing::error!("{message}");
    if !tracing::dispatcher::has_been_set() {
        eprintln!("error: {message}");
    }
}

fn loudly_recovered(sink: &str) {
    let message = format!("the {sink} is written again; what it missed has been caught up");
    tracing::warn!("{message}");
    if !tracing::dispatcher::has_been_set() {
        eprintln!("note: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::{Checkpoint, FORMAT, Signer};

    fn signed(number: u64) -> SignedCheckpoint {
        let signer = Signer::from_seed(&[3; 32]);
        signer.sign(Checkpoint {
            format: FORMAT,
            incident: "inc-1".into(),
            number,
            events: number * 4,
            head: "cd".repeat(32),
            prev: "00".repeat(32),
            at: chrono::DateTime::UNIX_EPOCH,
            key: signer.public().fingerprint().to_string(),
        })
    }

    #[test]
    fn a_file_witness_gets_a_line_per_checkpoint_and_a_cut_line_stays_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.jsonl");
        std::fs::write(&path, "{\"type\":\"checkp").unwrap();
        let witness = Witness::start(vec![Sink::File(path.clone())], Duration::ZERO).unwrap();
        witness.record(&signed(1));
        witness.record(&signed(2));
        let progress = witness.wait_for(Duration::from_secs(10), |progress| progress.written == 2);
        assert_eq!(progress, Progress { recorded: 2, written: 2, failures: 0, behind: 0 });
        drop(witness);
        let read = witness::read(std::fs::read(&path).unwrap().as_slice()).unwrap();
        assert_eq!(read.bad_lines.iter().map(|bad| bad.line).collect::<Vec<_>>(), [1]);
        assert_eq!(
            read.checkpoints.iter().map(|w| (w.line, w.signed.clone())).collect::<Vec<_>>(),
            [(2, signed(1)), (3, signed(2))]
        );
    }

    /// A witness that cannot be written is tried again, and catches up in order once it can.
    #[test]
    fn a_failing_file_witness_is_caught_up_in_order_once_it_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-yet").join("witness.jsonl");
        let witness = Witness::start(vec![Sink::File(path.clone())], Duration::ZERO).unwrap();
        witness.record(&signed(1));
        witness.record(&signed(2));
        let progress =
            witness.wait_for(Duration::from_secs(10), |progress| progress.failures >= 1 && progress.behind == 2);
        assert_eq!((progress.written, progress.behind), (0, 2), "{progress:?}");
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        witness.record(&signed(3));
        let progress = witness.wait_for(Duration::from_secs(30), |progress| progress.written == 3);
        assert_eq!((progress.written, progress.behind), (3, 0), "{progress:?}");
        let read = witness::read(std::fs::read(&path).unwrap().as_slice()).unwrap();
        let numbers: Vec<u64> = read.checkpoints.iter().map(|w| w.signed.checkpoint.number).collect();
        assert_eq!(numbers, [1, 2, 3]);
    }
}
