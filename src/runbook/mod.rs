//! The runbook language: YAML text in, a validated [`model::Runbook`] or every problem out.
//!
//! The pipeline is `bytes -> text -> yaml::Node -> raw::Runbook -> model::Runbook`. Each stage
//! reports what it finds with a location; later stages run only on what earlier stages kept.

pub mod de;
pub mod diagnostic;
pub mod model;
pub mod needs;
mod raw;
pub mod registry;
pub mod spanned;
pub mod validate;
pub mod yaml;

/// What the runbook module's own tests give the parser for templates.
#[cfg(test)]
pub(crate) mod testing {
    use super::{TemplateInfo, Templates};

    /// Every template exists and uses nothing: for tests that read the model, not the templates.
    pub(crate) struct AnyTemplate;

    impl Templates for AnyTemplate {
        fn lookup(&self, _name: &str) -> TemplateInfo {
            TemplateInfo::Found { variables: Vec::new() }
        }
    }
}

pub use diagnostic::{Code, Diagnostic, Mark};
pub use model::Runbook;

/// The JSON Schema of the runbook format (`phasegate/v1`), derived from the YAML shape. The shape
/// itself (`raw.rs`) stays inside this module: this is the one thing the rest of the crate needs
/// from it.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(raw::Runbook)).expect("a schema always serializes");
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".to_string(), "https://phasegate.dev/schema/runbook-v1.json".into());
        object.insert("title".to_string(), "phasegate runbook (phasegate/v1)".into());
    }
    schema
}

/// Largest runbook file accepted, in bytes.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;

/// The variables the engine gives status-update and notify templates.
pub const STATUS_CONTEXT: &[&str] =
    &["incident", "runbook", "phases", "blocking", "relaxations", "timeline", "audience", "update", "now"];

/// The variables the engine gives campaign templates, one render per recipient. `code` is the
/// recipient's offer code, given when the campaign has offer codes.
pub const CAMPAIGN_CONTEXT: &[&str] = &["recipient", "code", "campaign", "incident", "runbook", "now"];

/// The variables of a campaign without offer codes: `code` would be undefined at every render.
pub const CAMPAIGN_CONTEXT_WITHOUT_CODE: &[&str] = &["recipient", "campaign", "incident", "runbook", "now"];

/// What validation learns about a template it is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateInfo {
    /// No variant of the template exists.
    Missing,
    /// A variant does not parse; `file` names it.
    Broken { file: String, message: String },
    /// Every variant parses; these are the top-level variables they use, with the file using each.
    Found { variables: Vec<(String, String)> },
}

/// The templates a runbook may name. Implemented by the render adapter; validation only asks.
pub trait Templates {
    fn lookup(&self, name: &str) -> TemplateInfo;
}

/// Shared templates answer as the templates they share.
impl<T: Templates + ?Sized> Templates for std::sync::Arc<T> {
    fn lookup(&self, name: &str) -> TemplateInfo {
        (**self).lookup(name)
    }
}

/// Loads a runbook from the bytes of a file: refuses oversized, non-UTF-8 and empty files, then
/// parses and validates.
pub fn load(bytes: &[u8], templates: &dyn Templates) -> Result<Runbook, Vec<Diagnostic>> {
    parse(decode(bytes)?, templates)
}

/// The problem with a file of `size` bytes, past [`MAX_FILE_SIZE`]: for a reader that checks the
/// size before reading, so that a huge file costs nothing.
pub fn too_large(size: u64) -> Diagnostic {
    Diagnostic::new(
        Code::FileTooLarge,
        Mark::START,
        format!("the file is {size} bytes, runbooks may be at most {MAX_FILE_SIZE} bytes"),
    )
}

/// The text of a runbook file's bytes: refuses an oversized file and one that is not UTF-8.
pub fn decode(bytes: &[u8]) -> Result<&str, Vec<Diagnostic>> {
    if bytes.len() > MAX_FILE_SIZE {
        return Err(vec![too_large(bytes.len() as u64)]);
    }
    std::str::from_utf8(bytes).map_err(|error| {
        let before = &bytes[..error.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        vec![
            Diagnostic::new(
                Code::NotUtf8,
                Mark::new(u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX)),
                format!("the file is not valid UTF-8 (byte {} is the first that is not)", error.valid_up_to()),
            )
            .with_help("save the runbook as UTF-8"),
        ]
    })
}

/// Parses and validates runbook text.
pub fn parse(text: &str, templates: &dyn Templates) -> Result<Runbook, Vec<Diagnostic>> {
    let empty = |message: &str| {
        vec![
            Diagnostic::new(Code::EmptyFile, Mark::START, message)
                .with_help("a runbook needs at least `apiVersion`, `kind`, `id`, `title` and one phase"),
        ]
    };
    if text.trim().is_empty() {
        return Err(empty("the file is empty"));
    }
    let (node, mut diagnostics) = yaml::parse(text, yaml::Limits::default());
    let Some(node) = node else {
        // Text with no YAML document in it (comments, a byte-order mark, `...`) is refused with a
        // reason like any other: a refusal without a diagnostic would leave nothing to fix.
        return Err(if diagnostics.is_empty() {
            empty("the file holds no YAML document, only comments or markers")
        } else {
            diagnostics
        });
    };
    if !matches!(node.value, yaml::Value::Map(_)) {
        diagnostics.push(Diagnostic::new(
            Code::WrongType,
            node.mark,
            format!("a runbook is a mapping, this is {}", node.describe()),
        ));
        return Err(diagnostics);
    }
    let sink = de::Sink::default();
    let raw: Option<raw::Runbook> = de::from_node(&node, &sink);
    let (found, lossy) = sink.finish();
    diagnostics.extend(found);
    let result = match raw {
        // Validation needs the whole runbook: a dropped phase would make its dependants look wrong.
        Some(raw) if !lossy => validate::validate(&raw, templates),
        _ => Err(Vec::new()),
    };
    match result {
        Ok(runbook) if diagnostics.is_empty() => Ok(runbook),
        Ok(_) => Err(sort(diagnostics)),
        Err(more) => {
            diagnostics.extend(more);
            Err(sort(diagnostics))
        }
    }
}

fn sort(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by_key(|diagnostic| (diagnostic.mark, diagnostic.code));
    diagnostics.dedup();
    diagnostics
}
