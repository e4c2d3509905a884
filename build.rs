//! Embeds the project's `templates/` directory into the binary as the built-in templates, and
//! the dashboard's pages (`src/server/web/pages/`).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    // Relative to the package, so that a build directory copied beside another checkout (a
    // worktree, a clone seeded with a build) embeds that checkout's templates, not the first one's.
    println!("cargo::rerun-if-changed=templates");
    // sqlx embeds the migrations at compile time; a new one must rebuild the crate.
    println!("cargo::rerun-if-changed=migrations");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.path().is_file())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| name.ends_with(".md") || name.ends_with(".txt") || name.ends_with(".html"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut code = String::from("&[\n");
    for name in names {
        let path = dir.join(&name);
        let _ = writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string());
    }
    code.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("built_in_templates.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");

    // The dashboard's pages: `src/server/web/pages/*.html`, named `web/NAME.html`. They are kept
    // out of `templates/`, which sites copy to override notices: a copy of the pages there would
    // stay behind, old, after an upgrade (`server.pages` overrides pages on purpose).
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/web/pages");
    println!("cargo::rerun-if-changed=src/server/web/pages");
    let mut pages: Vec<String> = std::fs::read_dir(&web)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.path().is_file())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| name.ends_with(".html"))
                .collect()
        })
        .unwrap_or_default();
    pages.sort();
    let mut code = String::from("&[\n");
    for name in pages {
        let path = web.join(&name);
        let _ = writeln!(code, "    (\"web/{name}\", include_str!({:?})),", path.display().to_string());
    }
    code.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("built_in_pages.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
