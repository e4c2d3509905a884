//! Templates for status updates, notices and campaign messages, rendered with tera 2.
//!
//! The templates in the project's `templates/` directory are built into the binary; a user's
//! template directory overrides them by file name. A template is named without its extension:
//! `internal-update` is `internal-update.md`, `internal-update.txt` and `internal-update.html`,
//! whichever exist, and each channel picks the variant it sends. [`context`] builds what status
//! updates are rendered with; [`campaign`] renders a campaign's message for each recipient.

pub mod campaign;
mod compiled;
pub mod context;
pub mod json;
pub mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::runbook::{TemplateInfo, Templates};

/// The variants a template may have, by file extension.
pub const VARIANTS: &[&str] = &["md", "txt", "html"];

/// Largest template file read from a directory, in bytes.
pub const MAX_TEMPLATE_SIZE: u64 = 256 * 1024;

/// The templates shipped with phasegate: the project's `templates/` directory, embedded by `build.rs`.
const BUILT_IN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/built_in_templates.rs"));

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read template directory `{path}`: {error}")]
    ReadDir { path: PathBuf, error: std::io::Error },
    #[error("cannot read template `{path}`: {error}")]
    ReadFile { path: PathBuf, error: std::io::Error },
    #[error("template `{path}` is larger than {MAX_TEMPLATE_SIZE} bytes")]
    TooLarge { path: PathBuf },
    #[error("template `{name}` does not exist")]
    Missing { name: String },
    #[error("template `{file}` failed to render: {message}")]
    Render { file: String, message: String },
    #[error("template `{file}` failed to render for recipient `{id}` (line {line} of the list): {message}")]
    Recipient { file: String, line: u64, id: String, message: String },
}

/// Every template available: the built-ins, overridden by a directory's files. A clone shares
/// the parsed templates once they are parsed.
#[derive(Clone)]
pub struct Catalog {
    /// File name (`internal-update.md`) to source text.
    sources: BTreeMap<String, String>,
    /// Parsed on first use: commands that render nothing do not pay for parsing every template.
    /// Shared, so that a campaign's renderer can outlive the catalog it came from.
    parsed: std::sync::OnceLock<std::sync::Arc<Parsed>>,
}

struct Parsed {
    tera: tera::Tera,
    /// Files that do not parse, with tera's message.
    broken: BTreeMap<String, String>,
}

impl Catalog {
    /// The built-in templates only.
    pub fn built_in() -> Catalog {
        Catalog::from_sources(BUILT_IN.iter().map(|(name, source)| (name.to_string(), source.to_string())).collect())
    }

    /// The built-ins, overridden by the template files in `dir` (`NAME.md`, `.txt`, `.html`).
    pub fn with_dir(dir: &Path) -> Result<Catalog, Error> {
        let mut sources: BTreeMap<String, String> =
            BUILT_IN.iter().map(|(name, source)| (name.to_string(), source.to_string())).collect();
        let entries = std::fs::read_dir(dir).map_err(|error| Error::ReadDir { path: dir.to_path_buf(), error })?;
        for entry in entries {
            let entry = entry.map_err(|error| Error::ReadDir { path: dir.to_path_buf(), error })?;
            let path = entry.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let is_template = path.extension().and_then(|e| e.to_str()).is_some_and(|e| VARIANTS.contains(&e));
            if !is_template || !path.is_file() {
                continue;
            }
            let size = entry.metadata().map_err(|error| Error::ReadFile { path: path.clone(), error })?.len();
            if size > MAX_TEMPLATE_SIZE {
                return Err(Error::TooLarge { path });
            }
            let text = std::fs::read_to_string(&path).map_err(|error| Error::ReadFile { path: path.clone(), error })?;
            sources.insert(file_name.to_string(), text);
        }
        Ok(Catalog::from_sources(sources))
    }

    fn from_sources(sources: BTreeMap<String, String>) -> Catalog {
        Catalog { sources, parsed: std::sync::OnceLock::new() }
    }

    fn parsed(&self) -> &std::sync::Arc<Parsed> {
        self.parsed.get_or_init(|| std::sync::Arc::new(parse(&self.sources)))
    }
}

fn parse(sources: &BTreeMap<String, String>) -> Parsed {
    {
        // A file that does not parse on its own is broken; missing includes and parents are
        // only known once the others are loaded, so they are not held against a file yet.
        let mut broken: BTreeMap<String, String> = BTreeMap::new();
        for (name, source) in sources {
            if let Err(error) = load(&[(name.as_str(), source.as_str())])
                && missing_reference(&error).is_none()
            {
                broken.insert(name.clone(), error_text(&error));
            }
        }
        // Then blame the files that include or extend a broken or missing one, until the rest loads.
        let tera = loop {
            let good: Vec<(&str, &str)> = sources
                .iter()
                .filter(|(name, _)| !broken.contains_key(*name))
                .map(|(n, s)| (n.as_str(), s.as_str()))
                .collect();
            let error = match load(&good) {
                Ok(tera) => break tera,
                Err(error) => error,
            };
            let blamed: Vec<(String, String)> = match missing_reference(&error) {
                Some(Reference::Parent { file, parent }) => {
                    vec![(file, format!("extends `{parent}`, which does not exist or does not parse"))]
                }
                Some(Reference::Include { file, missing }) => good
                    .iter()
                    .filter(|(name, source)| {
                        file.as_deref().map_or_else(|| source.contains(&format!("\"{missing}\"")), |file| file == *name)
                    })
                    .map(|(name, _)| {
                        (name.to_string(), format!("includes `{missing}`, which does not exist or does not parse"))
                    })
                    .collect(),
                None => Vec::new(),
            };
            if blamed.is_empty() {
                // Nothing to single out (say, templates that extend each other in a circle).
                for (name, _) in &good {
                    broken.insert(name.to_string(), error_text(&error));
                }
                break tera::Tera::new();
            }
            broken.extend(blamed);
        };
        Parsed { tera, broken }
    }
}

impl Catalog {
    /// The files of template `name`, in variant order.
    pub fn files(&self, name: &str) -> Vec<String> {
        VARIANTS
            .iter()
            .map(|variant| format!("{name}.{variant}"))
            .filter(|file| self.sources.contains_key(file))
            .collect()
    }

    /// Renders one file of a template with `context`.
    pub fn render(&self, file: &str, context: &serde_json::Value) -> Result<String, Error> {
        if !self.sources.contains_key(file) {
            return Err(Error::Missing { name: file.to_string() });
        }
        self.render_prepared(file, &self.prepare(file, context)?)
    }

    /// `context` as templates read it, for rendering several files with it
    /// ([`Catalog::render_prepared`]) without converting it again for each. `file` names the
    /// file in the error.
    pub fn prepare(&self, file: &str, context: &serde_json::Value) -> Result<Prepared, Error> {
        tera::Context::from_serialize(context)
            .map(Prepared)
            .map_err(|error| Error::Render { file: file.to_string(), message: error_text(&error) })
    }

    /// Renders one file of a template with a context from [`Catalog::prepare`].
    pub fn render_prepared(&self, file: &str, context: &Prepared) -> Result<String, Error> {
        if !self.sources.contains_key(file) {
            return Err(Error::Missing { name: file.to_string() });
        }
        self.parsed()
            .tera
            .render(file, &context.0)
            .map_err(|error| Error::Render { file: file.to_string(), message: error_text(&error) })
    }
}

/// A context converted for the templates once ([`Catalog::prepare`]).
pub struct Prepared(tera::Context);

impl Templates for Catalog {
    fn lookup(&self, name: &str) -> TemplateInfo {
        let files = self.files(name);
        if files.is_empty() {
            return TemplateInfo::Missing;
        }
        if let Some((file, message)) = files.iter().find_map(|file| self.parsed().broken.get(file).map(|m| (file, m))) {
            return TemplateInfo::Broken { file: file.clone(), message: message.clone() };
        }
        let mut variables = Vec::new();
        for file in files {
            let mut used: Vec<String> = self
                .parsed()
                .tera
                .get_template_variables(&file)
                .map(|vars| vars.into_iter().map(str::to_string).collect())
                .unwrap_or_default();
            used.sort();
            variables.extend(used.into_iter().map(|variable| (variable, file.clone())));
        }
        TemplateInfo::Found { variables }
    }
}

/// A template that names another that is not there: a missing parent or include.
enum Reference {
    Parent { file: String, parent: String },
    Include { file: Option<String>, missing: String },
}

fn missing_reference(error: &tera::Error) -> Option<Reference> {
    match error.kind() {
        tera::ErrorKind::MissingParent { current, parent } => {
            Some(Reference::Parent { file: current.clone(), parent: parent.clone() })
        }
        tera::ErrorKind::TemplateNotFound(missing) => Some(Reference::Include { file: None, missing: missing.clone() }),
        // An include of an unknown template is reported as a message naming both files:
        // "error: Unknown template `partial.md`\n --> inc.md:1:12 ...".
        tera::ErrorKind::Msg(message) => {
            let missing = message.split("Unknown template `").nth(1)?.split('`').next()?;
            let file = message.split("--> ").nth(1).and_then(|place| place.split(':').next()).map(str::to_string);
            Some(Reference::Include { file, missing: missing.to_string() })
        }
        _ => None,
    }
}

fn load(templates: &[(&str, &str)]) -> Result<tera::Tera, tera::Error> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(vec![".html"]);
    tera.set_escape_fn(escape_html);
    tera.add_raw_templates(templates.iter().copied())?;
    Ok(tera)
}

/// HTML escaping as tera's own (`&`, `<`, `>`, `"` and `'`), writing the text between the
/// characters it replaces in one piece: tera's writes each byte on its own through the writer,
/// which is most of an HTML campaign message's rendering time.
fn escape_html(input: &str, output: &mut dyn std::io::Write) -> std::io::Result<()> {
    let bytes = input.as_bytes();
    let mut written = 0;
    for (at, byte) in bytes.iter().enumerate() {
        let replacement: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&#39;",
            _ => continue,
        };
        output.write_all(&bytes[written..at])?;
        output.write_all(replacement)?;
        written = at + 1;
    }
    output.write_all(&bytes[written..])
}

/// tera's message on one line: its first line, then where (`at FILE:LINE:COL`), then the causes.
fn error_text(error: &dyn std::error::Error) -> String {
    let full = error.to_string();
    let mut lines = full.lines().map(str::trim).filter(|line| !line.is_empty());
    let mut text = lines.next().unwrap_or_default().trim_start_matches("error: ").to_string();
    if let Some(place) = lines.find_map(|line| line.strip_prefix("--> ")) {
        text = format!("{text} (at {place})");
    }
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(cause_text.lines().next().unwrap_or_default());
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(files: &[(&str, &str)]) -> Catalog {
        Catalog::from_sources(files.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect())
    }

    #[test]
    fn lookups() {
        let catalog = catalog(&[
            ("ok.md", "{{ incident.title }} {% for p in phases %}{{ p.id }}{% endfor %}"),
            ("ok.txt", "{{ runbook.id }}"),
            ("bad.md", "{{ incident.title "),
        ]);
        assert_eq!(catalog.lookup("none"), TemplateInfo::Missing);
        assert!(matches!(catalog.lookup("bad"), TemplateInfo::Broken { file, .. } if file == "bad.md"));
        let TemplateInfo::Found { variables } = catalog.lookup("ok") else { panic!("ok is not found") };
        let names: Vec<&str> = variables.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(names, ["incident", "phases", "runbook"]);
    }

    #[test]
    fn a_broken_file_does_not_break_the_templates_that_include_or_extend_others() {
        let catalog = catalog(&[
            ("partial.md", "{{ incident.id }}"),
            ("inc.md", "{% include \"partial.md\" %} {{ incident.title }}"),
            ("base.md", "[{% block body %}{% endblock body %}]"),
            ("child.md", "{% extends \"base.md\" %}{% block body %}{{ runbook.id }}{% endblock body %}"),
            ("glob.md", "{{ incident.title "),
        ]);
        assert!(matches!(catalog.lookup("inc"), TemplateInfo::Found { .. }), "{:?}", catalog.lookup("inc"));
        assert!(matches!(catalog.lookup("child"), TemplateInfo::Found { .. }), "{:?}", catalog.lookup("child"));
        let TemplateInfo::Broken { file, message } = catalog.lookup("glob") else { panic!("glob.md is broken") };
        assert_eq!(file, "glob.md");
        assert!(message.contains("(at glob.md:1:"), "{message}");
        let context = serde_json::json!({ "runbook": { "id": "rb" } });
        assert_eq!(catalog.render("child.md", &context).unwrap(), "[rb]");
    }

    #[test]
    fn a_broken_include_breaks_only_the_templates_that_use_it() {
        let catalog = catalog(&[
            ("partial.md", "{{ runbook.id "),
            ("inc.md", "{% include \"partial.md\" %}"),
            ("base.md", "[{% block body %}{% endblock body %}]"),
            ("orphan.md", "{% extends \"missing.md\" %}{% block body %}x{% endblock body %}"),
            ("fine.md", "{{ incident.title }}"),
        ]);
        assert!(matches!(catalog.lookup("fine"), TemplateInfo::Found { .. }), "{:?}", catalog.lookup("fine"));
        assert!(matches!(catalog.lookup("base"), TemplateInfo::Found { .. }));
        let TemplateInfo::Broken { message, .. } = catalog.lookup("inc") else { panic!("inc.md is broken") };
        assert_eq!(message, "includes `partial.md`, which does not exist or does not parse");
        let TemplateInfo::Broken { message, .. } = catalog.lookup("orphan") else { panic!("orphan.md is broken") };
        assert_eq!(message, "extends `missing.md`, which does not exist or does not parse");
        assert!(matches!(catalog.lookup("partial"), TemplateInfo::Broken { .. }));
    }

    #[test]
    fn html_is_escaped_as_tera_escapes_it() {
        let table = ["", "plain", "<b>\"Tom\" & 'Jerry'</b>", "&&", "end<", ">start", "café £20 <ü>", "a'b\"c"];
        for input in table {
            let (mut ours, mut teras) = (Vec::new(), Vec::new());
            escape_html(input, &mut ours).unwrap();
            tera::escape_html(input, &mut teras).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(teras).unwrap(), "{input:?}");
        }
    }

    #[test]
    fn render_errors_name_the_file() {
        let catalog = catalog(&[("note.txt", "{{ incident.title }}")]);
        let rendered = catalog.render("note.txt", &serde_json::json!({ "incident": { "title": "Breach" } })).unwrap();
        assert_eq!(rendered, "Breach");
        let error = catalog.render("note.txt", &serde_json::json!({})).unwrap_err().to_string();
        assert!(error.starts_with("template `note.txt` failed to render"), "{error}");
    }
}
