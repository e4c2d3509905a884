//! The runbooks of a directory, loaded once: every file validated, every id unique, each runbook
//! found by its id. The CLI, the API and the webhook triggers all ask one [`Registry`].
//!
//! This is pure: the shell reads the files (`runtime::runbooks`) and hands in their bytes, and
//! says how to parse text (the runtime's parse, so that incidents started from a runbook share
//! it). A file that does not validate, or whose id another file also has, is kept as
//! [`Rejected`] with every problem located, never half-loaded: asking for its id says why it is
//! not there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::Trigger;
use super::{Code, Diagnostic, Mark, Runbook, decode, yaml};
use crate::spelling::did_you_mean;

/// A runbook file as the shell read it.
pub struct Source {
    pub path: PathBuf,
    pub read: Result<Vec<u8>, Unread>,
}

/// Why the shell has no bytes of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Its size, past [`super::MAX_FILE_SIZE`]: it was not read.
    TooLarge(u64),
    /// Reading it failed; the operating system's reason.
    Failed(String),
}

/// A runbook that validated, with the text incidents started from it pin.
#[derive(Debug)]
pub struct Entry {
    path: PathBuf,
    text: String,
    runbook: Arc<Runbook>,
}

impl Entry {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn runbook(&self) -> &Arc<Runbook> {
        &self.runbook
    }
}

/// A file left out, with every problem found in it (or, unread, why it could not be read).
#[derive(Debug)]
pub struct Rejected {
    pub path: PathBuf,
    /// The id the file gives itself, when its YAML says one: so that asking for it explains.
    pub id: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// Set when the file could not be read at all (it then has no diagnostics).
    pub unreadable: Option<String>,
}

/// Why no runbook answers to an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no runbook `{id}` in `{}`{}", .dir.display(), suggest(.suggestion.as_deref()))]
    Unknown { id: String, dir: PathBuf, suggestion: Option<String> },
    #[error("runbook `{id}` does not validate ({problems} problem(s) in `{}`; `phasegate validate` lists them)", .path.display())]
    Invalid { id: String, path: PathBuf, problems: usize },
    #[error("runbook id `{id}` is used by several files ({}); ids must be unique", list(.paths))]
    Duplicate { id: String, paths: Vec<PathBuf> },
}

fn suggest(suggestion: Option<&str>) -> String {
    suggestion.map(|meant| format!("; did you mean `{meant}`?")).unwrap_or_default()
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|path| format!("`{}`", path.display())).collect::<Vec<_>>().join(", ")
}

/// The runbooks of one directory, as they were when it was built.
#[derive(Debug, Default)]
pub struct Registry {
    dir: PathBuf,
    /// In the order of their files' paths.
    entries: Vec<Entry>,
    rejected: Vec<Rejected>,
}

impl Registry {
    /// Validates every source with `parse` (text in, runbook or every problem out) and refuses
    /// ids that several files share: each of those files is rejected, naming the others, since
    /// picking one of them would depend on file names.
    pub fn build(
        dir: &Path,
        sources: Vec<Source>,
        mut parse: impl FnMut(&str) -> Result<Arc<Runbook>, Vec<Diagnostic>>,
    ) -> Registry {
        let mut sources = sources;
        sources.sort_by(|a, b| a.path.cmp(&b.path));
        let mut valid: Vec<Entry> = Vec::new();
        let mut rejected = Vec::new();
        for Source { path, read } in sources {
            let bytes = match read {
                Ok(bytes) => bytes,
                Err(Unread::TooLarge(size)) => {
                    let diagnostics = vec![super::too_large(size)];
                    rejected.push(Rejected { path, id: None, diagnostics, unreadable: None });
                    continue;
                }
                Err(Unread::Failed(why)) => {
                    rejected.push(Rejected { path, id: None, diagnostics: Vec::new(), unreadable: Some(why) });
                    continue;
                }
            };
            let parsed = decode(&bytes).and_then(|text| Ok((text, parse(text)?)));
            match parsed {
                Ok((text, runbook)) => valid.push(Entry { path, text: text.to_string(), runbook }),
                Err(diagnostics) => {
                    let id = std::str::from_utf8(&bytes).ok().and_then(declared_id).map(|(id, _)| id);
                    rejected.push(Rejected { path, id, diagnostics, unreadable: None });
                }
            }
        }
        let mut files_of: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for entry in &valid {
            files_of.entry(entry.runbook.id().to_string()).or_default().push(entry.path.clone());
        }
        let mut entries = Vec::new();
        for entry in valid {
            let id = entry.runbook.id().to_string();
            let paths = &files_of[&id];
            if paths.len() == 1 {
                entries.push(entry);
                continue;
            }
            let others: Vec<PathBuf> = paths.iter().filter(|path| **path != entry.path).cloned().collect();
            let mark = declared_id(&entry.text).map_or(Mark::START, |(_, mark)| mark);
            let diagnostic = Diagnostic::new(
                Code::DuplicateId,
                mark,
                format!("runbook id `{id}` is also used by {}", list(&others)),
            )
            .with_help("runbook ids are unique among the runbooks: give one of the files another `id`");
            rejected.push(Rejected { path: entry.path, id: Some(id), diagnostics: vec![diagnostic], unreadable: None });
        }
        rejected.sort_by(|a, b| a.path.cmp(&b.path));
        Registry { dir: dir.to_path_buf(), entries, rejected }
    }

    /// The directory the runbooks came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runbooks that validated, in the order of their files' paths.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The files left out, in the order of their paths.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// The runbook with this id; if none, why not, with the nearest id when one is close.
    pub fn find(&self, id: &str) -> Result<&Entry, Error> {
        if let Some(entry) = self.entries.iter().find(|entry| entry.runbook.id() == id) {
            return Ok(entry);
        }
        let claimed: Vec<&Rejected> = self.rejected.iter().filter(|file| file.id.as_deref() == Some(id)).collect();
        let duplicated = claimed.iter().any(|file| file.diagnostics.iter().any(|d| d.code == Code::DuplicateId));
        match claimed.as_slice() {
            [] => {
                let known = self.entries.iter().map(|entry| entry.runbook.id());
                let known = known.chain(self.rejected.iter().filter_map(|file| file.id.as_deref()));
                let suggestion = did_you_mean(id, known).map(str::to_string);
                Err(Error::Unknown { id: id.to_string(), dir: self.dir.clone(), suggestion })
            }
            [file] if !duplicated => {
                Err(Error::Invalid { id: id.to_string(), path: file.path.clone(), problems: file.diagnostics.len() })
            }
            files => {
                Err(Error::Duplicate { id: id.to_string(), paths: files.iter().map(|f| f.path.clone()).collect() })
            }
        }
    }

    /// Every trigger of every runbook loaded, with its runbook.
    pub fn triggers(&self) -> impl Iterator<Item = (&Entry, &Trigger)> {
        self.entries.iter().flat_map(|entry| entry.runbook.triggers().iter().map(move |trigger| (entry, trigger)))
    }
}

/// The `id` a runbook's text gives itself at its top level, and where, if its YAML says one.
fn declared_id(text: &str) -> Option<(String, Mark)> {
    let (Some(root), _) = yaml::parse(text, yaml::Limits::default()) else { return None };
    let yaml::Value::Map(entries) = root.value else { return None };
    entries.into_iter().find_map(|(key, value)| match (key.value, value.value) {
        (yaml::Value::Scalar { text: key, .. }, yaml::Value::Scalar { text: id, .. }) if key == "id" => {
            Some((id, value.mark))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::parse;
    use crate::runbook::testing::AnyTemplate;

    /// A valid runbook with this id, one trigger on source `am`.
    fn runbook(id: &str) -> Vec<u8> {
        format!(
            "apiVersion: phasegate/v1\nkind: Runbook\nid: {id}\ntitle: A runbook\n\
             phases:\n  - id: contain\n    exit:\n      - {{ id: isolated, signal: {{}} }}\n\
             triggers:\n  - {{ id: page, source: am, key: payload.case, satisfy: contain/isolated }}\n"
        )
        .into_bytes()
    }

    fn registry(files: &[(&str, Result<Vec<u8>, Unread>)]) -> Registry {
        let sources =
            files.iter().map(|(path, read)| Source { path: PathBuf::from(path), read: read.clone() }).collect();
        Registry::build(Path::new("books"), sources, |text| parse(text, &AnyTemplate).map(Arc::new))
    }

    /// What `find(id)` answers: the file found, or the error's message.
    fn found(registry: &Registry, id: &str) -> Result<String, String> {
        registry.find(id).map(|entry| entry.path().display().to_string()).map_err(|error| error.to_string())
    }

    #[test]
    fn finding_by_id() {
        let bad_yaml = b"id: broken\ntitle: [unclosed\n".to_vec();
        let invalid = b"apiVersion: phasegate/v1\nkind: Runbook\nid: invalid\ntitle: T\nphases: []\n".to_vec();
        let files = [
            ("books/a.yaml", Ok(runbook("retail-breach"))),
            ("books/b.yaml", Ok(runbook("ransomware"))),
            ("books/c.yaml", Ok(runbook("ransomware"))),
            ("books/d.yaml", Ok(bad_yaml)),
            ("books/e.yaml", Ok(invalid)),
            ("books/f.yaml", Err(Unread::TooLarge(2 << 20))),
            ("books/g.yaml", Err(Unread::Failed("permission denied".into()))),
            ("books/h.yaml", Ok(vec![0xff, 0xfe])),
        ];
        let registry = registry(&files);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("retail-breach", Ok("books/a.yaml")),
            ("retal-breach", Err("no runbook `retal-breach` in `books`; did you mean `retail-breach`?")),
            ("banana", Err("no runbook `banana` in `books`")),
            (
                "ransomware",
                Err(
                    "runbook id `ransomware` is used by several files (`books/b.yaml`, `books/c.yaml`); ids must be unique",
                ),
            ),
            ("ransomwar", Err("no runbook `ransomwar` in `books`; did you mean `ransomware`?")),
            (
                "invalid",
                Err(
                    "runbook `invalid` does not validate (1 problem(s) in `books/e.yaml`; `phasegate validate` lists them)",
                ),
            ),
        ];
        for (id, expected) in cases {
            let expected = expected.map(str::to_string).map_err(str::to_string);
            assert_eq!(found(&registry, id), expected, "find `{id}`");
        }
        let ids: Vec<&str> = registry.entries().iter().map(|entry| entry.runbook().id()).collect();
        assert_eq!(ids, ["retail-breach"], "only the runbook that validated and is alone with its id");
    }

    #[test]
    fn every_file_left_out_says_why_and_where() {
        let invalid = b"apiVersion: phasegate/v1\nkind: Runbook\nid: invalid\ntitle: T\nphases: []\n".to_vec();
        let registry = registry(&[
            ("books/a.yaml", Ok(runbook("fine"))),
            ("books/d.yaml", Ok(b"id: broken\ntitle: [unclosed\n".to_vec())),
            ("books/e.yaml", Ok(invalid)),
            ("books/f.yaml", Err(Unread::TooLarge(2 << 20))),
            ("books/g.yaml", Err(Unread::Failed("permission denied".into()))),
            ("books/h.yaml", Ok(vec![b'a', 0xff])),
        ]);
        type Told<'a> = (String, Option<&'a str>, Vec<(Code, u32, u32)>, Option<&'a str>);
        let told: Vec<Told> = registry
            .rejected()
            .iter()
            .map(|file| {
                let marks = file.diagnostics.iter().map(|d| (d.code, d.mark.line, d.mark.column)).collect();
                (file.path.display().to_string(), file.id.as_deref(), marks, file.unreadable.as_deref())
            })
            .collect();
        let expected: Vec<Told> = vec![
            ("books/d.yaml".into(), None, vec![(Code::YamlSyntax, 3, 1)], None),
            ("books/e.yaml".into(), Some("invalid"), vec![(Code::EmptyList, 5, 9)], None),
            ("books/f.yaml".into(), None, vec![(Code::FileTooLarge, 1, 1)], None),
            ("books/g.yaml".into(), None, vec![], Some("permission denied")),
            ("books/h.yaml".into(), None, vec![(Code::NotUtf8, 1, 2)], None),
        ];
        assert_eq!(told, expected);
        assert_eq!(registry.entries().len(), 1, "the valid file is still loaded");
    }

    #[test]
    fn a_duplicate_id_rejects_both_files_each_naming_the_other_at_its_id() {
        let registry =
            registry(&[("books/b.yaml", Ok(runbook("ransomware"))), ("books/c.yaml", Ok(runbook("ransomware")))]);
        assert!(registry.entries().is_empty());
        let told: Vec<(String, String, u32, u32)> = registry
            .rejected()
            .iter()
            .map(|file| {
                let [diagnostic] = file.diagnostics.as_slice() else { panic!("one problem each: {file:?}") };
                assert_eq!(diagnostic.code, Code::DuplicateId);
                (
                    file.path.display().to_string(),
                    diagnostic.message.clone(),
                    diagnostic.mark.line,
                    diagnostic.mark.column,
                )
            })
            .collect();
        assert_eq!(
            told,
            [
                ("books/b.yaml".into(), "runbook id `ransomware` is also used by `books/c.yaml`".into(), 3, 5),
                ("books/c.yaml".into(), "runbook id `ransomware` is also used by `books/b.yaml`".into(), 3, 5),
            ]
        );
    }

    #[test]
    fn triggers_are_listed_with_their_runbooks() {
        let registry = registry(&[("books/b.yaml", Ok(runbook("second"))), ("books/a.yaml", Ok(runbook("first")))]);
        let listed: Vec<(&str, &str, &str)> = registry
            .triggers()
            .map(|(entry, trigger)| (entry.runbook().id(), trigger.id.as_str(), trigger.source.as_str()))
            .collect();
        assert_eq!(listed, [("first", "page", "am"), ("second", "page", "am")], "in the order of the files");
    }
}
