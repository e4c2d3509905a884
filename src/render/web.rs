//! The dashboard's pages: tera templates named `web/NAME.html`, built in from the project's
//! `templates/web/` and overridden by file name from a template directory's `web/` folder.
//! Everything they print is HTML-escaped unless a template says `| safe` (none of the built-ins
//! does), so text from runbooks, notes, evidence and webhook payloads renders inert.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Error, MAX_TEMPLATE_SIZE, error_text, escape_html};

/// The built-in pages, embedded by `build.rs`.
const BUILT_IN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/built_in_pages.rs"));

/// The dashboard's templates, parsed once.
pub struct Pages {
    tera: tera::Tera,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Pages").finish_non_exhaustive()
    }
}

impl Pages {
    /// The built-in pages only.
    pub fn built_in() -> Result<Pages, Error> {
        Pages::from_sources(BUILT_IN.iter().map(|(name, source)| (name.to_string(), source.to_string())).collect())
    }

    /// The built-ins, overridden by the `.html` files in `dir/web/` (if that folder exists).
    pub fn with_dir(dir: &Path) -> Result<Pages, Error> {
        let mut sources: BTreeMap<String, String> =
            BUILT_IN.iter().map(|(name, source)| (name.to_string(), source.to_string())).collect();
        let web = dir.join("web");
        if web.is_dir() {
            let entries = std::fs::read_dir(&web).map_err(|error| Error::ReadDir { path: web.to_path_buf(), error })?;
            for entry in entries {
                let entry = entry.map_err(|error| Error::ReadDir { path: web.to_path_buf(), error })?;
                let path = entry.path();
                let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else { continue };
                if !file_name.ends_with(".html") || !path.is_file() {
                    continue;
                }
                let size = entry.metadata().map_err(|error| Error::ReadFile { path: path.clone(), error })?.len();
                if size > MAX_TEMPLATE_SIZE {
                    return Err(Error::TooLarge { path });
                }
                let text =
                    std::fs::read_to_string(&path).map_err(|error| Error::ReadFile { path: path.clone(), error })?;
                sources.insert(format!("web/{file_name}"), text);
            }
        }
        Pages::from_sources(sources)
    }

    fn from_sources(sources: BTreeMap<String, String>) -> Result<Pages, Error> {
        let mut tera = tera::Tera::new();
        tera.autoescape_on(vec![".html"]);
        tera.set_escape_fn(escape_html);
        tera.add_raw_templates(sources.iter().map(|(name, source)| (name.as_str(), source.as_str())))
            .map_err(|error| Error::Render { file: "web/".into(), message: error_text(&error) })?;
        Ok(Pages { tera })
    }

    /// Renders page `name` (`web/incident.html`) with `context`.
    pub fn render(&self, name: &str, context: &impl serde::Serialize) -> Result<String, Error> {
        let context = tera::Context::from_serialize(context)
            .map_err(|error| Error::Render { file: name.to_string(), message: error_text(&error) })?;
        self.tera
            .render(name, &context)
            .map_err(|error| Error::Render { file: name.to_string(), message: error_text(&error) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_a_built_in_page_and_a_broken_one_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("web")).unwrap();
        std::fs::write(dir.path().join("web/signin.html"), "<p>{{ title }}</p>").unwrap();
        let pages = Pages::with_dir(dir.path()).unwrap();
        let page = pages.render("web/signin.html", &serde_json::json!({ "title": "<b>x</b>" })).unwrap();
        assert_eq!(page, "<p>&lt;b&gt;x&lt;&#x2F;b&gt;</p>".replace("&#x2F;", "/"));
        std::fs::write(dir.path().join("web/signin.html"), "<p>{{ title </p>").unwrap();
        let error = Pages::with_dir(dir.path()).unwrap_err().to_string();
        assert!(error.contains("signin.html"), "{error}");
    }
}
