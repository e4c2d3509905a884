//! OASIS CACAO v2.0 security playbooks (JSON) to phasegate runbooks (YAML).
//!
//! `import` checks the playbook's workflow as a graph first (steps named that do not exist,
//! loops, no end, a CACAO 1.x list, something that is not a playbook), then maps it onto phases,
//! `needs`, `when` conditions and steps, and finally validates the runbook it wrote with
//! phasegate's own validator. Every problem is reported at once, with its JSON pointer and its
//! line and column; what is kept but changed in meaning is a warning. `docs/cacao.md` is the
//! mapping, construct by construct.

use std::fmt;

use serde::Serialize;

use crate::runbook::{self, Mark, Templates};

mod condition;
mod convert;
mod export;
mod graph;
pub mod json;
mod restore;
mod unknown;
mod yaml;

pub use export::{EXTENSION, identifier};

/// Whether a problem stops the import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

crate::runbook::diagnostic::codes! {
    "CA0012";
    JsonSyntax = "CA0001": "the file is not JSON (or not UTF-8)",
    TooComplex = "CA0002": "the file is too large, nests too deeply or holds too many values",
    NotAnObject = "CA0003": "the file is JSON but not an object, so not a playbook at all",
    NotAPlaybook = "CA0004": "the object is not a CACAO playbook (`type` is not `playbook`)",
    SpecVersion = "CA0005": "the playbook is not CACAO 2.0 (`spec_version` is not `cacao-2.0`)",
    WorkflowList = "CA0006": "the workflow is a list: a CACAO 1.x playbook",
    DuplicateKey = "CA0007": "a key appears twice in one object",
    MissingField = "CA0010": "a field the standard requires is missing",
    WrongType = "CA0011": "a field has the wrong JSON type",
    UnknownStep = "CA0012": "a step names a workflow step that does not exist",
    NoEnd = "CA0013": "the workflow has no end step, or none that the start reaches",
    EndlessLoop = "CA0014": "steps loop with no way out",
    Loop = "CA0015": "the workflow loops (a while-condition, or steps that lead back): phasegate runs each phase once",
    UnknownStepType = "CA0016": "a workflow step has a type CACAO 2.0 does not define",
    BadStart = "CA0017": "`workflow_start` names no start step",
    Unreachable = "CA0018": "a step the start never reaches (warning: left out)",
    UnknownProperty = "CA0019": "a property a CACAO object does not define (warning: not read)",
    Unsupported = "CA0020": "a construct phasegate cannot honour (it would be dropped)",
    Condition = "CA0021": "a condition that is not a simple comparison of variables",
    Variable = "CA0022": "a variable that is unknown, of a type or name phasegate cannot take",
    Command = "CA0023": "a command that cannot be turned into a step as written",
    KeptManual = "CA0024": "a command kept as a manual step, since phasegate cannot run it here (warning)",
    UnknownCommandType = "CA0025": "a command type CACAO 2.0 does not define, kept as a manual step (warning)",
    Credential = "CA0026": "the file holds a credential's value, which was not copied (warning)",
    UnknownReference = "CA0027": "an agent, target, authentication or marking reference that is not defined",
    Timing = "CA0028": "a delay or timeout phasegate rounds or leaves out (warning)",
    SubPlaybook = "CA0029": "a playbook-action kept as a manual step that runs the other playbook (warning)",
    Extension = "CA0030": "an extension phasegate does not act on, kept in the description (warning)",
    ConditionKept = "CA0031": "a phase's condition exported as phasegate's CEL, not STIX, which a CACAO executor cannot evaluate (warning)",
    Invalid = "CA0090": "the runbook written does not validate (a fault of the importer)",
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

/// One problem: its code, how serious, where (JSON pointer, line, column), what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: Code,
    pub severity: Severity,
    pub pointer: String,
    #[serde(flatten)]
    pub mark: Mark,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Problem {
    pub fn error(code: Code, pointer: &str, mark: Mark, message: impl Into<String>) -> Problem {
        Problem {
            code,
            severity: Severity::Error,
            pointer: pointer.to_string(),
            mark,
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(code: Code, pointer: &str, mark: Mark, message: impl Into<String>) -> Problem {
        Problem { severity: Severity::Warning, ..Problem::error(code, pointer, mark, message) }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }
}

/// A playbook that was imported: the runbook's YAML text, and what was kept but changed.
#[derive(Debug, Clone)]
pub struct Imported {
    pub runbook_id: String,
    pub yaml: String,
    pub warnings: Vec<Problem>,
}

/// Imports a CACAO 2.0 playbook. `Err` holds every problem found, warnings among them. The
/// runbook written names no templates, unless the playbook is one phasegate exported: that one
/// is validated against `templates`, since its audiences name them.
pub fn import(bytes: &[u8], templates: &dyn Templates) -> Result<Imported, Vec<Problem>> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let before = &bytes[..error.valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
            let mark = Mark::new(u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX));
            return Err(vec![
                Problem::error(Code::JsonSyntax, "", mark, "the file is not valid UTF-8")
                    .with_help("CACAO playbooks are UTF-8 JSON"),
            ]);
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (json, duplicates) = match json::parse(text, json::Limits::default()) {
        Ok(parsed) => parsed,
        Err(error) => {
            let code = if error.limit { Code::TooComplex } else { Code::JsonSyntax };
            return Err(vec![Problem::error(code, "", error.mark, error.message)]);
        }
    };
    let mut problems: Vec<Problem> = duplicates
        .into_iter()
        .map(|d| {
            Problem::error(
                Code::DuplicateKey,
                &d.pointer,
                d.mark,
                format!("the key `{}` appears twice in this object", d.key),
            )
            .with_help("JSON readers disagree on which one counts; keep one")
        })
        .collect();
    if json.get("type").and_then(json::Json::as_str) == Some("playbook") {
        problems.extend(unknown::check(&json));
    }
    let result = convert::convert(&json, templates, &mut problems);
    let sorted = |mut problems: Vec<Problem>| {
        problems.sort_by(|a, b| (a.mark, a.code, &a.message).cmp(&(b.mark, b.code, &b.message)));
        problems.dedup();
        problems
    };
    match result {
        Some((runbook_id, yaml)) if !problems.iter().any(|p| p.severity == Severity::Error) => {
            Ok(Imported { runbook_id, yaml, warnings: sorted(problems) })
        }
        _ => Err(sorted(problems)),
    }
}

/// A runbook exported: the playbook's JSON text, and warnings of what a CACAO executor cannot
/// use as written (located in the runbook; the pointer is the place in the playbook).
#[derive(Debug, Clone)]
pub struct Exported {
    pub json: String,
    pub warnings: Vec<Problem>,
}

/// Exports a runbook (its text) as a CACAO 2.0 playbook; every problem of the runbook when it
/// does not validate (a runbook that does not validate is not exported).
pub fn export(text: &str, templates: &dyn Templates) -> Result<Exported, Vec<runbook::Diagnostic>> {
    runbook::parse(text, templates)?;
    let (node, diagnostics) = runbook::yaml::parse(text, runbook::yaml::Limits::default());
    match node {
        Some(node) if diagnostics.is_empty() => {
            let (json, warnings) = export::export(&node);
            Ok(Exported { json, warnings })
        }
        _ => Err(diagnostics),
    }
}

/// Templates for a runbook that names none: every lookup is missing.
pub struct NoTemplates;

impl Templates for NoTemplates {
    fn lookup(&self, _name: &str) -> runbook::TemplateInfo {
        runbook::TemplateInfo::Missing
    }
}

/// The CACAO variable referenced at the start of `text` (`__name__` or `__name__:value`): its
/// name and how many bytes the reference takes.
pub(crate) fn variable_at(text: &str) -> Option<(String, usize)> {
    let rest = text.strip_prefix("__")?;
    let end = rest.find("__")?;
    let name = &rest[..end];
    let good = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if !good {
        return None;
    }
    let mut used = 2 + end + 2;
    if text[used..].starts_with(":value") {
        used += ":value".len();
    }
    Some((name.to_string(), used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_ordered() {
        let printed: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
        let mut sorted = printed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(printed, sorted);
    }

    #[test]
    fn variable_references_are_found() {
        assert_eq!(variable_at("__host__:value/x"), Some(("host".into(), 14)));
        assert_eq!(variable_at("__host__ rest"), Some(("host".into(), 8)));
        assert_eq!(variable_at("__ x__"), None);
    }
}
