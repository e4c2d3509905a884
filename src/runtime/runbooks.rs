//! The runbooks directory read once into the one [`Registry`] that `serve` (the API and the
//! webhook triggers), `run` and the CLI's commands ask for a runbook by id. The registry itself
//! is pure (`runbook::registry`); this reads the files.
//!
//! `serve` loads the directory when it starts and never again: a runbook added, edited or removed
//! while it runs is seen at the next start. Incidents pin the text they started with, so an edit
//! would not change a running incident anyway; reloading only what new incidents start from is
//! left for when someone needs it (it would be a new registry swapped in whole, never a file
//! read per request).

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use super::Runtime;
use crate::runbook::registry::{Registry, Source, Unread};
use crate::runbook::{self, MAX_FILE_SIZE, Templates};
use crate::store::Store;

/// The runbook files of `dir` (`*.yaml`, `*.yml`, not in subdirectories), each read unless it is
/// larger than [`MAX_FILE_SIZE`] (its size says so) or cannot be read (the reason says why).
/// `Err` only when the directory cannot be listed.
pub fn read(dir: &Path) -> std::io::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.extension().is_some_and(|e| e == "yaml" || e == "yml") || path.is_dir() {
            continue;
        }
        sources.push(read_file(&path));
    }
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(sources)
}

/// One runbook file, read unless it is larger than [`MAX_FILE_SIZE`] or cannot be read.
pub fn read_file(path: &Path) -> Source {
    Source { path: path.to_path_buf(), read: read_bytes(path) }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, Unread> {
    let failed = |error: std::io::Error| Unread::Failed(error.to_string());
    let file = std::fs::File::open(path).map_err(failed)?;
    let size = file.metadata().map_err(failed)?.len();
    if size > MAX_FILE_SIZE as u64 {
        return Err(Unread::TooLarge(size));
    }
    // At most one byte past the limit, whatever the metadata said: a file growing meanwhile
    // costs no more, and is refused as too large by the registry.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE as u64 + 1).read_to_end(&mut bytes).map_err(failed)?;
    Ok(bytes)
}

/// The registry of `dir`, each runbook parsed by `runtime` (so that the incidents started from it
/// share the parse), with every file left out logged once, located.
pub fn load<S: Store, T: Templates + Send + Sync>(
    runtime: &Runtime<S, T>,
    dir: &Path,
) -> std::io::Result<Arc<Registry>> {
    let registry = Registry::build(dir, read(dir)?, |text| runtime.runbook(text));
    log_rejected(&registry);
    Ok(Arc::new(registry))
}

/// The registry of `dir` parsed with `templates` alone, for commands without a runtime.
pub fn load_with(templates: &dyn Templates, dir: &Path) -> std::io::Result<Registry> {
    Ok(Registry::build(dir, read(dir)?, |text| runbook::parse(text, templates).map(Arc::new)))
}

/// A warning for each file left out, each problem as `PATH:LINE:COL: error[CODE]: message`.
fn log_rejected(registry: &Registry) {
    for file in registry.rejected() {
        let path = file.path.display();
        if let Some(why) = &file.unreadable {
            tracing::warn!(file = %path, "the runbook file cannot be read ({why}); it is left out");
        }
        for diagnostic in &file.diagnostics {
            let mark = diagnostic.mark;
            tracing::warn!(
                file = %path,
                runbook = file.id.as_deref(),
                "{path}:{}:{}: error[{}]: {}; the runbook is left out, its triggers off",
                mark.line,
                mark.column,
                diagnostic.code,
                diagnostic.message
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `read` gives for each kind of entry: file names and what was read of each.
    #[test]
    fn reading_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yml"), "id: b\n").unwrap();
        std::fs::write(dir.path().join("a.yaml"), "id: a\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a runbook").unwrap();
        std::fs::create_dir(dir.path().join("folder.yaml")).unwrap();
        // Past the limit without writing a megabyte: the size alone refuses it, unread.
        let huge = std::fs::File::create(dir.path().join("huge.yaml")).unwrap();
        huge.set_len(MAX_FILE_SIZE as u64 + 10).unwrap();
        let read: Vec<(String, Result<Vec<u8>, Unread>)> = read(dir.path())
            .unwrap()
            .into_iter()
            .map(|source| (source.path.file_name().unwrap().to_string_lossy().into_owned(), source.read))
            .collect();
        assert_eq!(
            read,
            [
                ("a.yaml".to_string(), Ok(b"id: a\n".to_vec())),
                ("b.yml".to_string(), Ok(b"id: b\n".to_vec())),
                ("huge.yaml".to_string(), Err(Unread::TooLarge(MAX_FILE_SIZE as u64 + 10))),
            ]
        );
        assert!(super::read(&dir.path().join("missing")).is_err(), "a directory that is not there is an error");
    }
}
