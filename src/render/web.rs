//! The dashboard's pages: tera templates named `web/NAME.html`, built in from the project's
//! `src/server/web/pages/`. A site replaces some of them only on purpose, by naming a folder of
//! its own pages (`server.pages`); a template directory's `web/` folder is not read (it is where
//! older versions took overrides from, and a copy of the repository's `templates/` carried the
//! pages of its day there, which would stay behind after an upgrade: `serve` warns of one).
//! Everything they print is HTML-escaped unless a template says `| safe` (none of the built-ins
//! does), so text from runbooks, notes, evidence and webhook payloads renders inert.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Error, MAX_TEMPLATE_SIZE, error_text, escape_html};

/// The built-in pages, embedded by `build.rs`.
const BUILT_IN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/built_in_pages.rs"));

/// The dashboard's templates, parsed once.
pub struct Pages {
    tera: tera::Tera,
    /// The files of the site's folder (`server.pages`) read, by file name (`incident.html`).
    overrides: Vec<String>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Pages").field("overrides", &self.overrides).finish_non_exhaustive()
    }
}

impl Pages {
    /// The built-in pages only.
    pub fn built_in() -> Result<Pages, Error> {
        Pages::from_sources(built_in_sources(), Vec::new())
    }

    /// The built-ins, with those of the same name replaced by the `.html` files in `dir` (the
    /// configuration's `server.pages`), which must exist: a folder named on purpose and missing
    /// is an error, not the built-ins.
    pub fn with_overrides(dir: &Path) -> Result<Pages, Error> {
        let mut sources = built_in_sources();
        let mut overrides = Vec::new();
        let read_dir = |error| Error::ReadDir { path: dir.to_path_buf(), error };
        for entry in std::fs::read_dir(dir).map_err(read_dir)? {
            let entry = entry.map_err(read_dir)?;
            let path = entry.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if !file_name.ends_with(".html") || !path.is_file() {
                continue;
            }
            let size = entry.metadata().map_err(|error| Error::ReadFile { path: path.clone(), error })?.len();
            if size > MAX_TEMPLATE_SIZE {
                return Err(Error::TooLarge { path });
            }
            let text = std::fs::read_to_string(&path).map_err(|error| Error::ReadFile { path: path.clone(), error })?;
            sources.insert(format!("web/{file_name}"), text);
            overrides.push(file_name.to_string());
        }
        overrides.sort();
        Pages::from_sources(sources, overrides)
    }

    fn from_sources(sources: BTreeMap<String, String>, overrides: Vec<String>) -> Result<Pages, Error> {
        let mut tera = tera::Tera::new();
        tera.autoescape_on(vec![".html"]);
        tera.set_escape_fn(escape_html);
        tera.add_raw_templates(sources.iter().map(|(name, source)| (name.as_str(), source.as_str())))
            .map_err(|error| Error::Render { file: "web/".into(), message: error_text(&error) })?;
        Ok(Pages { tera, overrides })
    }

    /// Of the site's pages, those that replace a built-in page, and those that replace none (a
    /// page of the site's own, used only if one of its pages includes it; or a misspelt name).
    pub fn overrides(&self) -> (Vec<&str>, Vec<&str>) {
        self.overrides.iter().map(String::as_str).partition(|name| is_built_in(name))
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

fn built_in_sources() -> BTreeMap<String, String> {
    BUILT_IN.iter().map(|(name, source)| (name.to_string(), source.to_string())).collect()
}

/// Whether `file_name` (`incident.html`) is a built-in page's.
fn is_built_in(file_name: &str) -> bool {
    BUILT_IN.iter().any(|(name, _)| name.strip_prefix("web/") == Some(file_name))
}

/// The folder of pages a template directory holds that is not read, if any: `DIR/web/` with an
/// `.html` file in it, where overrides came from before `server.pages` (and where a copy of the
/// repository's `templates/` brought its day's pages), unless `server.pages` names that very
/// folder. `serve` says so once at start.
pub fn unread_folder(templates: Option<&Path>, pages: Option<&Path>) -> Option<PathBuf> {
    let web = templates?.join("web");
    let holds_pages = std::fs::read_dir(&web)
        .ok()?
        .flatten()
        .any(|entry| entry.path().is_file() && entry.file_name().to_str().is_some_and(|name| name.ends_with(".html")));
    let same = |pages: &Path| match (web.canonicalize(), pages.canonicalize()) {
        (Ok(web), Ok(pages)) => web == pages,
        _ => false,
    };
    (holds_pages && !pages.is_some_and(same)).then_some(web)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_a_built_in_page_and_a_broken_one_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signin.html"), "<p>{{ title }}</p>").unwrap();
        std::fs::write(dir.path().join("banner.html"), "<p>ours</p>").unwrap();
        let pages = Pages::with_overrides(dir.path()).unwrap();
        let page = pages.render("web/signin.html", &serde_json::json!({ "title": "<b>x</b>" })).unwrap();
        assert_eq!(page, "<p>&lt;b&gt;x&lt;/b&gt;</p>");
        assert_eq!(pages.overrides(), (vec!["signin.html"], vec!["banner.html"]));
        std::fs::write(dir.path().join("signin.html"), "<p>{{ title </p>").unwrap();
        let error = Pages::with_overrides(dir.path()).unwrap_err().to_string();
        assert!(error.contains("signin.html"), "{error}");
        let missing = Pages::with_overrides(&dir.path().join("nowhere")).unwrap_err().to_string();
        assert!(missing.contains("nowhere"), "{missing}");
    }

    /// Regression: a template directory's `web/` (a copy of the repository's `templates/` made
    /// before an upgrade) silently replaced the built-in pages with old ones. It is no longer
    /// read, and it is found, to be named at start, unless `server.pages` names it on purpose.
    #[test]
    fn a_templates_web_folder_is_not_read_and_is_found_unless_named_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web");
        std::fs::create_dir(&web).unwrap();
        assert_eq!(unread_folder(Some(dir.path()), None), None, "an empty folder holds no pages");
        std::fs::write(web.join("signin.html"), "<p>an old sign-in page</p>").unwrap();
        assert_eq!(unread_folder(Some(dir.path()), None), Some(web.clone()));
        assert_eq!(unread_folder(Some(dir.path()), Some(&dir.path().join("elsewhere"))), Some(web.clone()));
        assert_eq!(unread_folder(Some(dir.path()), Some(&dir.path().join("./web"))), None, "named on purpose");
        assert_eq!(unread_folder(None, None), None);
    }
}
