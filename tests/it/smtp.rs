//! A real SMTP server for the tests that send email: `scripts/smtp-sink.py` (PyPI `aiosmtpd`) run
//! as a child process on an address of the test's choosing, keeping every message it accepts as
//! JSON in a temporary directory.
//!
//! The interpreter is `$PHASEGATE_TEST_PYTHON` when set, else `python3`. When it or `aiosmtpd` is
//! missing, [`Sink::start`] says so loudly on standard error and gives `None`: the test skips,
//! it does not fail for what the machine lacks.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::Value;

use crate::support::root;

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The message as sent, headers and all.
    pub data: String,
    pub headers: Vec<(String, String)>,
    /// Each leaf part's content type and decoded text, in order.
    pub parts: Vec<(String, String)>,
}

impl Mail {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The decoded text of the first part of `content_type`.
    pub fn part(&self, content_type: &str) -> Option<&str> {
        self.parts.iter().find(|(kind, _)| kind == content_type).map(|(_, text)| text.as_str())
    }
}

/// Says that a test skipped, and why, on the real standard error: the test harness captures
/// `eprintln!` of a test that passes, and a skip must be seen.
pub fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
}

/// A running sink; stopped when dropped.
pub struct Sink {
    child: Child,
    /// Held open: the sink stops when it closes.
    _stdin: ChildStdin,
    dir: tempfile::TempDir,
    pub host: String,
    pub port: u16,
}

/// The options of `scripts/smtp-sink.py`, beyond its directory.
#[derive(Default)]
pub struct Options<'a> {
    pub host: Option<&'a str>,
    pub login: Option<(&'a str, &'a str)>,
    pub reject_rcpt: Option<&'a str>,
    /// The server's certificate chain and key (PEM files): STARTTLS offered and required, or
    /// with `implicit_tls` TLS from the first byte.
    pub tls: Option<(&'a std::path::Path, &'a std::path::Path)>,
    pub implicit_tls: bool,
    /// Offer PIPELINING in the `EHLO` answer.
    pub pipelining: bool,
}

impl Sink {
    /// A sink on 127.0.0.1 that takes every message, or `None` (said loudly) when it cannot run.
    pub fn start(test: &str) -> Option<Sink> {
        Sink::with(test, Options::default())
    }

    /// A sink with `options`, or `None` when it cannot run, said loudly as the skip of `test`.
    pub fn with(test: &str, options: Options<'_>) -> Option<Sink> {
        Sink::launch(options).map_err(|why| skipped(&format!("{test}: {why}"))).ok()
    }

    /// A sink with `options`, or why it cannot run (for the caller to say).
    pub fn launch(options: Options<'_>) -> Result<Sink, String> {
        let python = std::env::var("PHASEGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
        let probe = Command::new(&python).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status();
        if !probe.is_ok_and(|status| status.success()) {
            return Err(format!(
                "it needs a real SMTP server, `scripts/smtp-sink.py`, which needs `{python}` with the PyPI package \
                 `aiosmtpd` (install it with `{python} -m pip install aiosmtpd==1.4.6`, or point \
                 PHASEGATE_TEST_PYTHON at an interpreter that has it)"
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let host = options.host.unwrap_or("127.0.0.1").to_string();
        let mut command = Command::new(&python);
        command.arg(root().join("scripts/smtp-sink.py")).arg(dir.path()).args(["--host", &host]);
        if let Some((user, password)) = options.login {
            command.args(["--user", user, "--password", password]);
        }
        if let Some(address) = options.reject_rcpt {
            command.args(["--reject-rcpt", address]);
        }
        if let Some((cert, key)) = options.tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if options.implicit_tls {
            command.arg("--implicit-tls");
        }
        if options.pipelining {
            command.arg("--pipelining");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP sink starts");
        let stdin = child.stdin.take().expect("piped");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("port ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not say its port: {first:?}"));
        Ok(Sink { child, _stdin: stdin, dir, host, port })
    }

    /// `smtp://[LOGIN@]HOST:PORT`, the relay URL of this sink.
    pub fn url(&self, login: &str) -> String {
        format!("smtp://{login}{}:{}", self.host, self.port)
    }

    /// Every message accepted so far, in order. A message is on file before the sink answers
    /// the client that sent it, so whatever a send was told is accepted is here.
    pub fn received(&self) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|file| {
                let record: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
                let pairs = |value: &Value, first: &str, second: &str| -> Vec<(String, String)> {
                    value
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|item| match item {
                            Value::Array(pair) => (pair[0].as_str().unwrap().into(), pair[1].as_str().unwrap().into()),
                            object => (object[first].as_str().unwrap().into(), object[second].as_str().unwrap().into()),
                        })
                        .collect()
                };
                Mail {
                    mail_from: record["mail_from"].as_str().unwrap().into(),
                    rcpt_tos: serde_json::from_value(record["rcpt_tos"].clone()).unwrap(),
                    data: record["data"].as_str().unwrap().into(),
                    headers: pairs(&record["headers"], "", ""),
                    parts: pairs(&record["parts"], "content_type", "text"),
                }
            })
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
