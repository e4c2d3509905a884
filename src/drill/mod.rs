//! Drills: a runbook rehearsed start to close on a simulated clock, with stand-ins for the outside
//! systems, scripted people and webhooks, and expectations checked at the end (`docs/drill.md`).
//!
//! This is the core's part, with no I/O: the scenario's YAML read into `raw` with the runbook
//! parser's locations and checked into `model` (`validate`), what the script does next given the
//! incident and the simulated time (`script`), what a scripted webhook asks of the incident
//! (`webhook`), which answer an HTTP stand-in gives (`model::HttpStandIn::answer`), and the
//! verdicts on the expectations (`expect`). The loop with the clock is `runtime::drill`; the
//! stand-in transport is `actions::StandIn`.

pub mod expect;
pub mod model;
pub mod raw;
pub mod script;
pub mod validate;
pub mod webhook;

use std::fmt;

use serde::Serialize;

pub use model::Scenario;

use crate::runbook::{self, Mark, de, yaml};

/// Largest scenario file accepted, in bytes.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;

/// The stable code of each kind of problem in a scenario (`docs/drill.md` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The file is not readable YAML (syntax, size, encoding, duplicate keys).
    Yaml,
    /// A key this place in a scenario does not have.
    UnknownKey,
    /// A required key is missing.
    MissingKey,
    /// A value has the wrong type.
    WrongType,
    /// `apiVersion` or `kind` is not `phasegate/v1` / `Drill`.
    BadKind,
    /// A time or duration does not parse.
    BadTime,
    /// An action or expectation says not exactly one thing, or not when.
    ActionShape,
    /// A `when` that is not something an incident waits for.
    BadWhen,
    /// A person who is not among the drill's `people`.
    UnknownPerson,
    /// The runbook cannot be found, read or validated.
    Runbook,
    /// A phase, step, gate, audience, control, role, input or source the runbook does not have.
    UnknownReference,
}

impl Code {
    pub const ALL: &'static [Code] = &[
        Code::Yaml,
        Code::UnknownKey,
        Code::MissingKey,
        Code::WrongType,
        Code::BadKind,
        Code::BadTime,
        Code::ActionShape,
        Code::BadWhen,
        Code::UnknownPerson,
        Code::Runbook,
        Code::UnknownReference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Yaml => "DR0001",
            Code::UnknownKey => "DR0002",
            Code::MissingKey => "DR0003",
            Code::WrongType => "DR0004",
            Code::BadKind => "DR0005",
            Code::BadTime => "DR0010",
            Code::ActionShape => "DR0011",
            Code::BadWhen => "DR0012",
            Code::UnknownPerson => "DR0013",
            Code::Runbook => "DR0020",
            Code::UnknownReference => "DR0021",
        }
    }

    /// The scenario code for a problem the runbook parser found in the scenario's YAML.
    fn of(code: runbook::Code) -> Code {
        match code {
            runbook::Code::UnknownKey => Code::UnknownKey,
            runbook::Code::MissingKey => Code::MissingKey,
            runbook::Code::WrongType | runbook::Code::InvalidValue => Code::WrongType,
            _ => Code::Yaml,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One problem in a scenario: its code, where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    #[serde(flatten)]
    pub mark: Mark,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, mark: Mark, message: impl Into<String>) -> Diagnostic {
        Diagnostic { code, mark, message: message.into(), help: None }
    }
}

impl From<runbook::Diagnostic> for Diagnostic {
    fn from(found: runbook::Diagnostic) -> Diagnostic {
        let message = found.message.replace("a runbook", "a drill scenario");
        Diagnostic { code: Code::of(found.code), mark: found.mark, message, help: found.help }
    }
}

/// Parses and validates scenario text (the runbook's references are checked by
/// [`validate::check`] once the runbook is loaded).
pub fn parse(text: &str) -> Result<Scenario, Vec<Diagnostic>> {
    if text.len() > MAX_FILE_SIZE {
        let message = format!("the file is {} bytes, scenarios may be at most {MAX_FILE_SIZE} bytes", text.len());
        return Err(vec![Diagnostic::new(Code::Yaml, Mark::START, message)]);
    }
    if text.trim().is_empty() {
        return Err(vec![Diagnostic::new(Code::Yaml, Mark::START, "the file is empty")]);
    }
    let (node, found) = yaml::parse(text, yaml::Limits::default());
    let mut diagnostics: Vec<Diagnostic> = found.into_iter().map(Diagnostic::from).collect();
    let Some(node) = node else {
        if diagnostics.is_empty() {
            diagnostics.push(Diagnostic::new(Code::Yaml, Mark::START, "the file holds no YAML document"));
        }
        return Err(diagnostics);
    };
    if !matches!(node.value, yaml::Value::Map(_)) {
        diagnostics.push(Diagnostic::new(
            Code::WrongType,
            node.mark,
            format!("a drill scenario is a mapping, this is {}", node.describe()),
        ));
        return Err(diagnostics);
    }
    let sink = de::Sink::default();
    let raw: Option<raw::Scenario> = de::from_node(&node, &sink);
    let (found, lossy) = sink.finish();
    diagnostics.extend(found.into_iter().map(Diagnostic::from));
    let result = match raw {
        Some(raw) if !lossy => validate::validate(&raw),
        _ => Err(Vec::new()),
    };
    match result {
        Ok(scenario) if diagnostics.is_empty() => Ok(scenario),
        Ok(_) => Err(sorted(diagnostics)),
        Err(more) => {
            diagnostics.extend(more);
            Err(sorted(diagnostics))
        }
    }
}

fn sorted(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by_key(|diagnostic| (diagnostic.mark, diagnostic.code));
    diagnostics.dedup();
    diagnostics
}
