//! Templates for status updates, notices and campaign messages, rendered with tera 2.
//!
//! The templates in the project's `templates/` directory are built into the binary; a user's
//! template directory overrides them by file name. A template is named without its extension:
//! `internal-update` is `internal-update.md`, `internal-update.txt` and `internal-update.html`,
//! whichever exist, and each channel picks the variant it sends.

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
    #[error("cannot read template directory `{path}`: {source}")]
    ReadDir { path: PathBuf, source: std::io::Error },
    #[error("cannot read template `{path}`: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("template `{path}` is larger than {MAX_TEMPLATE_SIZE} bytes")]
    TooLarge { path: PathBuf },
    #[error("template `{name}` does not exist")]
    Missing { name: String },
    #[error("template `{file}` failed to render: {message}")]
    Render { file: String, message: String },
}

/// Every template available: the built-ins, overridden by a directory's files.
pub struct Catalog {
    /// File name (`internal-update.md`) to source text.
    sources: BTreeMap<String, String>,
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
        let mut sources: BTreeMap<String, String> = BUILT_IN.iter().map(|(name, source)| (name.to_string(), source.to_string())).collect();
        let entries = std::fs::read_dir(dir).map_err(|source| Error::ReadDir { path: dir.to_path_buf(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::ReadDir { path: dir.to_path_buf(), source })?;
            let path = entry.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let is_template = path.extension().and_then(|e| e.to_str()).is_some_and(|e| VARIANTS.contains(&e));
            if !is_template || !path.is_file() {
                continue;
            }
            let size = entry.metadata().map_err(|source| Error::ReadFile { path: path.clone(), source })?.len();
            if size > MAX_TEMPLATE_SIZE {
                return Err(Error::TooLarge { path });
            }
            let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadFile { path: path.clone(), source })?;
            sources.insert(file_name.to_string(), text);
        }
        Ok(Catalog::from_sources(sources))
    }

    fn from_sources(sources: BTreeMap<String, String>) -> Catalog {
        let mut broken = BTreeMap::new();
        let mut tera = tera::Tera::new();
        tera.autoescape_on(vec![".html"]);
        if tera.add_raw_templates(sources.iter().map(|(n, s)| (n.as_str(), s.as_str()))).is_err() {
            // Find which files are at fault, then load the others so they can still be used.
            let mut good = Vec::new();
            for (name, source) in &sources {
                let mut alone = tera::Tera::new();
                match alone.add_raw_template(name, source) {
                    Ok(()) => good.push((name.as_str(), source.as_str())),
                    Err(error) => {
                        broken.insert(name.clone(), error_text(&error));
                    }
                }
            }
            tera = tera::Tera::new();
            tera.autoescape_on(vec![".html"]);
            if let Err(error) = tera.add_raw_templates(good) {
                // Inheritance between otherwise valid files failed: blame every file.
                for name in sources.keys() {
                    broken.entry(name.clone()).or_insert_with(|| error_text(&error));
                }
                tera = tera::Tera::new();
            }
        }
        Catalog { sources, tera, broken }
    }

    /// The files of template `name`, in variant order.
    pub fn files(&self, name: &str) -> Vec<String> {
        VARIANTS.iter().map(|variant| format!("{name}.{variant}")).filter(|file| self.sources.contains_key(file)).collect()
    }

    /// Renders one file of a template with `context`.
    pub fn render(&self, file: &str, context: &serde_json::Value) -> Result<String, Error> {
        if !self.sources.contains_key(file) {
            return Err(Error::Missing { name: file.to_string() });
        }
        let context = tera::Context::from_serialize(context).map_err(|error| Error::Render { file: file.to_string(), message: error_text(&error) })?;
        self.tera.render(file, &context).map_err(|error| Error::Render { file: file.to_string(), message: error_text(&error) })
    }
}

impl Templates for Catalog {
    fn lookup(&self, name: &str) -> TemplateInfo {
        let files = self.files(name);
        if files.is_empty() {
            return TemplateInfo::Missing;
        }
        if let Some((file, message)) = files.iter().find_map(|file| self.broken.get(file).map(|m| (file, m))) {
            return TemplateInfo::Broken { file: file.clone(), message: message.clone() };
        }
        let mut variables = Vec::new();
        for file in files {
            let mut used: Vec<String> = self.tera.get_template_variables(&file).map(|vars| vars.into_iter().map(str::to_string).collect()).unwrap_or_default();
            used.sort();
            variables.extend(used.into_iter().map(|variable| (variable, file.clone())));
        }
        TemplateInfo::Found { variables }
    }
}

/// tera's message and the causes under it, on one line.
fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
    fn render_errors_name_the_file() {
        let catalog = catalog(&[("note.txt", "{{ incident.title }}")]);
        let rendered = catalog.render("note.txt", &serde_json::json!({ "incident": { "title": "Breach" } })).unwrap();
        assert_eq!(rendered, "Breach");
        let error = catalog.render("note.txt", &serde_json::json!({})).unwrap_err().to_string();
        assert!(error.starts_with("template `note.txt` failed to render"), "{error}");
    }
}
