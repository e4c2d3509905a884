//! Spool channels: a campaign's messages handed over to another system through the file system,
//! as one JSON Lines file or as one `.eml` file per message in a directory.
//!
//! **JSON Lines.** Each message is one line `{"campaign", "batch", "id", "to", "subject", "text",
//! "html"?}` (`html` only when the message has one). A batch is written in one write at the end of
//! the file and flushed to disk (`fsync`) before it is answered.
//!
//! A batch may come twice: the runtime sends again, with the same number, every batch that was in
//! flight when phasegate stopped, and some of those were written whole before the stop, some cut
//! short, some not at all. None may end up in the file twice, or in part. So beside the file
//! `PATH`, the index `PATH.batches` says which batches the file holds: its first line is where the
//! spool's part of the file begins (the file's length when the index was made, so that lines
//! someone else wrote before are kept), then one line per batch written, `{"campaign", "batch",
//! "start", "end"}` (byte offsets), appended and flushed to disk only once the batch's lines are.
//! The file is therefore whole up to the last batch the index lists, the *committed end*, and
//! whatever lies beyond it is a batch cut short (a torn last line, or whole lines of a batch whose
//! entry never made it to disk).
//!
//! - [`Spool::open`] reads the index (a last entry cut short is dropped: its batch counts as not
//!   written), notes the batches it lists, and cuts the file back to the committed end, removing
//!   any batch cut short. A file shorter than its index says was changed outside phasegate, and is
//!   refused rather than guessed at.
//! - [`Spool::send`] answers a batch the index lists as `Accepted` without writing it again, and
//!   otherwise writes it at the committed end, flushes it, appends its entry and flushes that. A
//!   write that fails is cut back off, so the next batch starts at the committed end again.
//!
//! The file and its index belong to one [`Spool`] at a time: two spools writing one file at once
//! would each cut off the other's batches. A system that takes the file away takes the index with
//! it.
//!
//! **`.eml` files.** Each message is one RFC 5322 file, `{batch:06}-{id}.eml` in the directory
//! (the recipient id with every character but ASCII letters, digits, `_`, `-` and a `.` that does
//! not lead replaced by `_`; when that changed it, or it is long, a short hash of the id follows,
//! so two ids never share a file). Each file is written under a temporary name, flushed and
//! renamed, so a batch sent again replaces its files and a reader never sees half a message. The
//! message is `From` the channel's sender, `To` the recipient, with the text, and the HTML when
//! there is one, as `multipart/alternative`, and a `Message-ID` derived from the batch's
//! idempotency key and the recipient id: a repeat is the same message to a mail program. A
//! recipient whose address is not an email address is rejected, the rest of the batch written.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lettre::message::{Mailbox, MultiPart, SinglePart};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Answer, Batch, FailureClass, Message};
use crate::runbook::model::SpoolFormat;

/// The suffix of a JSON Lines spool's index: `PATH.batches`.
pub const INDEX_SUFFIX: &str = ".batches";

/// The longest recipient id kept as it is in an `.eml` file's name.
const LONGEST_NAME_ID: usize = 100;

/// Why a spool cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open spool `{path}`: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("spool index `{path}` line {line} is not a batch entry: {reason}; it was changed outside phasegate")]
    Index { path: PathBuf, line: usize, reason: String },
    #[error(
        "spool `{path}` holds {length} bytes, fewer than the {committed} its index `{index}` lists: it was changed outside phasegate; move both files away to start a new spool"
    )]
    Shrunk { path: PathBuf, index: PathBuf, length: u64, committed: u64 },
    #[error("`{path}` is not a directory, so it cannot hold a spool's `.eml` files")]
    NotDirectory { path: PathBuf },
    #[error("the spool's sender `{0}` is not an email address")]
    From(String),
}

/// A campaign channel writing to the file system. Cheap to share between the batches in flight.
#[derive(Clone)]
pub struct Spool {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Jsonl(Arc<Mutex<Jsonl>>),
    Eml(Arc<Eml>),
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Jsonl(jsonl) => match jsonl.lock() {
                Ok(jsonl) => f.debug_struct("Spool").field("jsonl", &jsonl.path).field("end", &jsonl.end).finish(),
                Err(_) => f.debug_struct("Spool").field("jsonl", &"(poisoned)").finish(),
            },
            Kind::Eml(eml) => f.debug_struct("Spool").field("eml", &eml.dir).finish(),
        }
    }
}

impl Spool {
    /// Opens the spool at `path` in `format`, repairing what a stop cut short (see the module's
    /// documentation), creating the file or directory and its parents when missing. `from` is the
    /// sender of `.eml` messages (`address` or `Name <address>`); JSON Lines ignore it. Blocks
    /// while it reads the index and repairs the file.
    pub fn open(path: &Path, format: SpoolFormat, from: &str) -> Result<Spool, Error> {
        let kind = match format {
            SpoolFormat::Jsonl => Kind::Jsonl(Arc::new(Mutex::new(Jsonl::open(path)?))),
            SpoolFormat::Eml => Kind::Eml(Arc::new(Eml::open(path, from)?)),
        };
        Ok(Spool { kind })
    }

    /// Writes `batch` and says how it went. Never fails: what goes wrong is [`Answer::Failed`].
    pub async fn send(&self, batch: Batch<'_>) -> Answer {
        let campaign = batch.campaign.to_string();
        let number = batch.number;
        let result = match &self.kind {
            Kind::Jsonl(jsonl) => {
                let lines = lines(&batch);
                let jsonl = Arc::clone(jsonl);
                tokio::task::spawn_blocking(move || {
                    let mut jsonl =
                        jsonl.lock().map_err(|_| "the spool is unusable after a failed write".to_string())?;
                    jsonl.write(&campaign, number, &lines).map(|()| Vec::new())
                })
                .await
            }
            Kind::Eml(eml) => {
                let eml = Arc::clone(eml);
                let key = batch.idempotency_key();
                let messages = batch.messages.to_vec();
                tokio::task::spawn_blocking(move || eml.write(&key, number, &messages)).await
            }
        };
        match result {
            Ok(Ok(rejected)) => Answer::Accepted { rejected },
            Ok(Err(error)) => Answer::Failed { error, class: FailureClass::Local },
            Err(error) => {
                Answer::Failed { error: format!("the spool's writer stopped: {error}"), class: FailureClass::Local }
            }
        }
    }
}

/// One line of a JSON Lines spool, in the format's field order.
#[derive(Serialize)]
struct Line<'a> {
    campaign: &'a str,
    batch: u32,
    id: &'a str,
    to: &'a str,
    subject: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<&'a str>,
}

/// The batch's lines, each ending in a newline, in one buffer.
fn lines(batch: &Batch<'_>) -> Vec<u8> {
    let payload: usize = batch
        .messages
        .iter()
        .map(|m| m.id.len() + m.to.len() + m.subject.len() + m.text.len() + m.html.as_ref().map_or(0, String::len))
        .sum();
    let mut bytes = Vec::with_capacity(payload + payload / 8 + batch.messages.len() * (96 + batch.campaign.len()));
    for message in batch.messages {
        let line = Line {
            campaign: batch.campaign,
            batch: batch.number,
            id: &message.id,
            to: &message.to,
            subject: &message.subject,
            text: &message.text,
            html: message.html.as_deref(),
        };
        serde_json::to_writer(&mut bytes, &line).expect("writing JSON to memory cannot fail");
        bytes.push(b'\n');
    }
    bytes
}

/// One line of the index.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    /// A batch: its campaign, number, and where its lines are.
    Batch { campaign: String, batch: u32, start: u64, end: u64 },
    /// The first line: where the spool's part of the file begins.
    Begin { begin: u64 },
}

/// A JSON Lines spool, opened and repaired.
struct Jsonl {
    path: PathBuf,
    index_path: PathBuf,
    file: File,
    index: File,
    /// The committed end: where the next batch goes.
    end: u64,
    /// The index's length: where its next entry goes.
    index_end: u64,
    /// The batches the file holds whole, by campaign: a bit per batch number.
    written: HashMap<String, Vec<u64>>,
}

impl Jsonl {
    fn open(path: &Path) -> Result<Jsonl, Error> {
        let index_path = index_path(path);
        let failed = |source: std::io::Error| Error::Open { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(failed)?;
        let mut index = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&index_path)
            .map_err(|source| Error::Open { path: index_path.clone(), source })?;
        let index_failed = |source: std::io::Error| Error::Open { path: index_path.clone(), source };
        let length = file.seek(SeekFrom::End(0)).map_err(failed)?;
        let mut text = Vec::new();
        index.read_to_end(&mut text).map_err(index_failed)?;

        let mut jsonl = Jsonl {
            path: path.to_path_buf(),
            index_path: index_path.clone(),
            file,
            index,
            end: 0,
            index_end: 0,
            written: HashMap::new(),
        };
        // An index without one whole line is new, or was cut short while its first line was
        // written, before any batch could be.
        if !text.contains(&b'\n') {
            // A new index: the spool's part of the file begins where the file ends now.
            let begin = format!("{}\n", serde_json::to_string(&Entry::Begin { begin: length }).expect("JSON"));
            jsonl
                .index
                .set_len(0)
                .and_then(|()| jsonl.index.seek(SeekFrom::Start(0)))
                .and_then(|_| jsonl.index.write_all(begin.as_bytes()))
                .and_then(|()| jsonl.index.sync_data())
                .map_err(index_failed)?;
            jsonl.end = length;
            jsonl.index_end = begin.len() as u64;
            return Ok(jsonl);
        }

        let mut committed: Option<u64> = None;
        let mut offset = 0usize;
        for (number, line) in text.split_inclusive(|byte| *byte == b'\n').enumerate() {
            let line_number = number + 1;
            let bad = |reason: String| Error::Index { path: index_path.clone(), line: line_number, reason };
            // The last entry may be cut short by a stop while it was written: its batch is not
            // committed, and the entry goes.
            if !line.ends_with(b"\n") {
                break;
            }
            let entry: Entry = serde_json::from_slice(line).map_err(|error| bad(error.to_string()))?;
            match (entry, committed) {
                (Entry::Begin { begin }, None) => committed = Some(begin),
                (Entry::Begin { .. }, Some(_)) => return Err(bad("a second beginning".to_string())),
                (Entry::Batch { .. }, None) => return Err(bad("a batch before the beginning".to_string())),
                (Entry::Batch { campaign, batch, start, end }, Some(last)) => {
                    if start != last || end < start {
                        return Err(bad(format!("batch {batch} at bytes {start}..{end} does not follow byte {last}")));
                    }
                    committed = Some(end);
                    jsonl.mark(&campaign, batch);
                }
            }
            offset += line.len();
        }
        let Some(committed) = committed else {
            return Err(Error::Index { path: index_path, line: 1, reason: "no beginning".to_string() });
        };
        if length < committed {
            return Err(Error::Shrunk { path: path.to_path_buf(), index: index_path, length, committed });
        }
        if offset < text.len() {
            jsonl.index.set_len(offset as u64).and_then(|()| jsonl.index.sync_data()).map_err(index_failed)?;
        }
        if length > committed {
            let removed = length - committed;
            tracing::warn!(spool = %path.display(), bytes = removed, "removing a batch cut short from the end of the spool");
            jsonl.file.set_len(committed).and_then(|()| jsonl.file.sync_data()).map_err(failed)?;
        }
        jsonl.end = committed;
        jsonl.index_end = offset as u64;
        Ok(jsonl)
    }

    fn mark(&mut self, campaign: &str, batch: u32) {
        let bits = self.written.entry(campaign.to_string()).or_default();
        let word = batch as usize / 64;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (batch % 64);
    }

    fn holds(&self, campaign: &str, batch: u32) -> bool {
        let word = batch as usize / 64;
        self.written.get(campaign).and_then(|bits| bits.get(word)).is_some_and(|bits| bits & (1 << (batch % 64)) != 0)
    }

    /// Writes a batch's `lines` at the committed end and commits them, unless the file holds the
    /// batch already. A failed write is cut back off.
    fn write(&mut self, campaign: &str, batch: u32, lines: &[u8]) -> Result<(), String> {
        if self.holds(campaign, batch) {
            tracing::info!(spool = %self.path.display(), campaign, batch, "the spool holds this batch already; not written again");
            return Ok(());
        }
        let start = self.end;
        let end = start + lines.len() as u64;
        let entry = Entry::Batch { campaign: campaign.to_string(), batch, start, end };
        let entry = format!("{}\n", serde_json::to_string(&entry).expect("JSON"));
        let written = self
            .file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.write_all(lines))
            .and_then(|()| self.file.sync_data())
            .map_err(|error| format!("cannot write to spool `{}`: {error}", self.path.display()))
            .and_then(|()| {
                self.index
                    .seek(SeekFrom::Start(self.index_end))
                    .and_then(|_| self.index.write_all(entry.as_bytes()))
                    .and_then(|()| self.index.sync_data())
                    .map_err(|error| format!("cannot write to spool index `{}`: {error}", self.index_path.display()))
            });
        match written {
            Ok(()) => {
                self.end = end;
                self.index_end += entry.len() as u64;
                self.mark(campaign, batch);
                Ok(())
            }
            Err(error) => {
                // What was written of the batch goes, so the next batch starts at the committed end.
                let rolled_back = self.file.set_len(start).and_then(|()| self.index.set_len(self.index_end));
                if let Err(cut) = rolled_back {
                    tracing::error!(spool = %self.path.display(), error = %cut, "cannot cut a failed batch off the spool");
                    // The next write overwrites from `start` anyway; a file longer than that is
                    // cut back when the spool is next opened.
                }
                Err(error)
            }
        }
    }
}

/// The index of the JSON Lines spool at `path`: `PATH.batches`.
pub fn index_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(INDEX_SUFFIX);
    PathBuf::from(name)
}

/// A directory of `.eml` files.
struct Eml {
    dir: PathBuf,
    from: Mailbox,
}

impl Eml {
    fn open(dir: &Path, from: &str) -> Result<Eml, Error> {
        let from: Mailbox = from.parse().map_err(|_| Error::From(from.to_string()))?;
        if dir.exists() && !dir.is_dir() {
            return Err(Error::NotDirectory { path: dir.to_path_buf() });
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Open { path: dir.to_path_buf(), source })?;
        Ok(Eml { dir: dir.to_path_buf(), from })
    }

    /// Writes each message to its file; a message whose address is not one is rejected.
    fn write(&self, key: &str, batch: u32, messages: &[Message]) -> Result<Vec<(String, String)>, String> {
        let mut rejected = Vec::new();
        for message in messages {
            let bytes = match self.compose(key, message) {
                Ok(bytes) => bytes,
                Err(reason) => {
                    rejected.push((message.id.clone(), reason));
                    continue;
                }
            };
            let name = file_name(batch, &message.id);
            let path = self.dir.join(&name);
            let temporary = self.dir.join(format!(".{name}.tmp"));
            let written = File::create(&temporary)
                .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_data()))
                .and_then(|()| std::fs::rename(&temporary, &path));
            if let Err(error) = written {
                let _ = std::fs::remove_file(&temporary);
                return Err(format!("cannot write `{}`: {error}", path.display()));
            }
        }
        // The renames are in the directory: flush it, so the files survive a power cut too.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| format!("cannot flush the spool directory `{}`: {error}", self.dir.display()))?;
        Ok(rejected)
    }

    /// The message as RFC 5322 bytes, or why it cannot be one.
    fn compose(&self, key: &str, message: &Message) -> Result<Vec<u8>, String> {
        let to: Mailbox = message.to.parse().map_err(|_| format!("`{}` is not an email address", message.to))?;
        let hash: String =
            Sha256::digest(format!("{key}\n{}", message.id)).iter().map(|byte| format!("{byte:02x}")).collect();
        let builder = lettre::Message::builder()
            .message_id(Some(format!("<{}@{}>", &hash[..32], self.from.email.domain())))
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone());
        let built = match &message.html {
            Some(html) => builder.multipart(
                MultiPart::alternative()
                    .boundary(format!("phasegate-{}", &hash[32..56]))
                    .singlepart(SinglePart::plain(message.text.clone()))
                    .singlepart(SinglePart::html(html.clone())),
            ),
            None => builder.singlepart(SinglePart::plain(message.text.clone())),
        };
        built.map(|message| message.formatted()).map_err(|error| format!("cannot build the message: {error}"))
    }
}

/// `{batch:06}-{id}.eml`, the id made safe for a file name; a hash of the id follows when that
/// changed it, so that two ids never share a file.
pub fn file_name(batch: u32, id: &str) -> String {
    let safe: String = id
        .chars()
        .enumerate()
        .map(|(index, c)| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            '.' if index > 0 => c,
            _ => '_',
        })
        .collect();
    if safe == id && !id.is_empty() && id.len() <= LONGEST_NAME_ID {
        return format!("{batch:06}-{id}.eml");
    }
    let hash: String = Sha256::digest(id.as_bytes()).iter().take(6).map(|byte| format!("{byte:02x}")).collect();
    let kept: String = safe.chars().take(LONGEST_NAME_ID).collect();
    format!("{batch:06}-{kept}-{hash}.eml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_never_shared() {
        let table = [
            ("m-1", "000007-m-1.eml"),
            ("Member_42.x", "000007-Member_42.x.eml"),
            ("a/b", "000007-a_b-"),
            ("a_b", "000007-a_b.eml"),
            ("../etc", "000007-_._etc-"),
            ("", "000007--"),
            ("é", "000007-_-"),
        ];
        for (id, expected) in table {
            let name = file_name(7, id);
            assert!(name.starts_with(expected), "{id}: {name}");
            assert!(name.ends_with(".eml") && !name.contains('/'), "{id}: {name}");
        }
        assert_ne!(file_name(7, "a/b"), file_name(7, "a:b"));
        assert!(file_name(1, &"x".repeat(500)).len() < LONGEST_NAME_ID + 30);
    }

    #[test]
    fn lines_are_the_format_with_html_only_where_there_is_one() {
        let messages = [
            Message {
                id: "m-1".into(),
                to: "a@example.com".into(),
                subject: "S".into(),
                text: "T\n".into(),
                html: None,
            },
            Message {
                id: "m-2".into(),
                to: "b@example.com".into(),
                subject: "S".into(),
                text: "T".into(),
                html: Some("<p>H</p>".into()),
            },
        ];
        let batch = Batch { campaign: "inc-1/p/s", number: 3, messages: &messages };
        assert_eq!(
            String::from_utf8(lines(&batch)).unwrap(),
            "{\"campaign\":\"inc-1/p/s\",\"batch\":3,\"id\":\"m-1\",\"to\":\"a@example.com\",\"subject\":\"S\",\"text\":\"T\\n\"}\n\
             {\"campaign\":\"inc-1/p/s\",\"batch\":3,\"id\":\"m-2\",\"to\":\"b@example.com\",\"subject\":\"S\",\"text\":\"T\",\"html\":\"<p>H</p>\"}\n"
        );
    }
}
