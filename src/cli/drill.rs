//! `phasegate drill SCENARIO [--out DIR] [--junit FILE]`: rehearse a runbook start to close on a
//! simulated clock (`docs/drill.md`). Prints the timeline as it happens and a verdict per
//! expectation; exits 0 when every one holds, 1 when one does not, 2 when the scenario (or its
//! runbook) is not valid. With `--out`, the directory keeps the database, the export and its
//! offline verification, the report (HTML and Markdown) and every captured message.

use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::actions::standin::Captured;
use crate::audit::{export, report};
use crate::drill::{self, Diagnostic, Scenario};
use crate::runbook::{Mark, registry};
use crate::runtime::drill::{Ending, Finished, Line};
use crate::store::{SqliteStore, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file (`kind: Drill`).
    scenario: PathBuf,
    /// Keep the database, the export, the report and the captured messages in this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write the verdicts as JUnit XML, for CI.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print only the verdicts, not the timeline.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args, templates: Option<&Path>) -> anyhow::Result<u8> {
    let Some((scenario, runbook_path, runbook_text, runbook, catalog)) = load(&args.scenario, templates)? else {
        return Ok(super::exit::USAGE);
    };
    let (database, temporary) = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
            let database = dir.join("drill.db");
            // A drill starts from nothing: the database of an earlier run goes.
            for suffix in ["", "-wal", "-shm"] {
                let old = PathBuf::from(format!("{}{suffix}", database.display()));
                if old.exists() {
                    std::fs::remove_file(&old).with_context(|| format!("cannot remove `{}`", old.display()))?;
                }
            }
            (database, None)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("phasegate-drill-{}", std::process::id()));
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
            (dir.join("drill.db"), Some(dir))
        }
    };
    let store = SqliteStore::open_for_drill(&database)
        .await
        .with_context(|| format!("cannot open the drill's database `{}`", database.display()))?;
    let quiet = args.quiet;
    println!(
        "drill `{}`: runbook `{}` ({}) from {}",
        scenario.name,
        runbook.id(),
        runbook_path.display(),
        scenario.start_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let mut timeline = String::new();
    let tell = |line: &Line| {
        let text = format!("{:>12}  {}  [{}]\n", line.offset, line.what, line.who);
        if !quiet {
            let _ = super::print_stdout(&text);
        }
        timeline.push_str(&text);
    };
    // A campaign's rejects file goes beside the drill's database, not where phasegate runs.
    let campaigns = crate::runtime::campaign::Settings {
        dir: database.parent().unwrap_or(Path::new("")).join(crate::runtime::campaign::DEFAULT_DIR),
        suppression: None,
        lists_from: Some(args.scenario.parent().map(Path::to_path_buf).unwrap_or_default()),
        test_recipients: Vec::new(),
        ..crate::runtime::campaign::Settings::default()
    };
    let finished =
        crate::runtime::drill::run(&scenario, &runbook, &runbook_text, catalog, store, campaigns, tell).await?;
    let ending = match finished.ending {
        Ending::Closed => "closed".to_string(),
        Ending::Stuck => "stopped: nothing more was due".to_string(),
        Ending::Horizon => "stopped at `until`".to_string(),
    };
    let mut summary = format!(
        "\nincident {}: {} events, {} messages captured, {} after {}\n\n",
        finished.incident,
        finished.events.len(),
        finished.captured.len(),
        ending,
        crate::drill::expect::offset(scenario.start_at, finished.ended_at)
    );
    for verdict in &finished.verdicts {
        let mark = if verdict.held { "PASS" } else { "FAIL" };
        summary.push_str(&format!("{mark}  {}: {}\n", verdict.expectation, verdict.found));
    }
    let held = finished.verdicts.iter().filter(|verdict| verdict.held).count();
    summary.push_str(&format!("\n{held} of {} expectations held\n", finished.verdicts.len()));
    super::print_stdout(&summary)?;
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&scenario, &finished))
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if let Some(dir) = &args.out {
        keep(dir, &finished, &format!("{timeline}{summary}")).await?;
    }
    let passed = finished.passed();
    finished.runtime.into_store().close().await;
    if let Some(dir) = temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(if passed { super::exit::OK } else { super::exit::INVALID })
}

type Loaded = (Scenario, PathBuf, String, crate::runbook::Runbook, Arc<crate::render::Catalog>);

/// The scenario, its runbook (path, text, model) and the templates; `None` when something is not
/// valid (reported on standard error).
fn load(path: &Path, templates: Option<&Path>) -> anyhow::Result<Option<Loaded>> {
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if metadata.len() > drill::MAX_FILE_SIZE as u64 {
        let message =
            format!("the file is {} bytes, scenarios may be at most {} bytes", metadata.len(), drill::MAX_FILE_SIZE);
        print(path, &[Diagnostic::new(drill::Code::Yaml, Mark::START, message)]);
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read `{}` as UTF-8 text", path.display()))?;
    let scenario = match drill::parse(&text) {
        Ok(scenario) => scenario,
        Err(diagnostics) => {
            print(path, &diagnostics);
            return Ok(None);
        }
    };
    let catalog = Arc::new(super::catalog(templates)?);
    let runbook_path = match find_runbook(path, &scenario.runbook, catalog.as_ref()) {
        Ok(found) => found,
        Err(why) => {
            let mut diagnostic = Diagnostic::new(
                drill::Code::Runbook,
                scenario.runbook_mark,
                format!("runbook `{}` is not a file next to the scenario, and {why}", scenario.runbook),
            );
            diagnostic.help = Some(
                "give the runbook's path relative to the scenario file, or the id of a runbook in the scenario's folder or `./runbooks`"
                    .to_string(),
            );
            print(path, &[diagnostic]);
            return Ok(None);
        }
    };
    let runbook_text =
        std::fs::read_to_string(&runbook_path).with_context(|| format!("cannot read `{}`", runbook_path.display()))?;
    let runbook = match crate::runbook::parse(&runbook_text, catalog.as_ref()) {
        Ok(runbook) => runbook,
        Err(diagnostics) => {
            let message = format!(
                "runbook `{}` is invalid ({} problems, below); `phasegate validate` checks it",
                runbook_path.display(),
                diagnostics.len()
            );
            print(path, &[Diagnostic::new(drill::Code::Runbook, scenario.runbook_mark, message)]);
            super::print_diagnostics(&runbook_path, &diagnostics);
            return Ok(None);
        }
    };
    let problems = drill::validate::check(&scenario, &runbook);
    if !problems.is_empty() {
        print(path, &problems);
        return Ok(None);
    }
    Ok(Some((scenario, runbook_path, runbook_text, runbook, catalog)))
}

/// The runbook a scenario names: a path relative to the scenario's folder, else the id of a
/// runbook in that folder, its `../runbooks`, or `./runbooks` (each loaded as a registry, the
/// first that knows the id answering; one whose file does not validate gives that file, for its
/// problems to be printed). `Err` says why none was found, with the nearest id if one is close.
fn find_runbook(scenario: &Path, name: &str, catalog: &crate::render::Catalog) -> Result<PathBuf, String> {
    let folder = scenario.parent().map(Path::to_path_buf).unwrap_or_default();
    let relative = folder.join(name);
    if relative.is_file() {
        return Ok(relative);
    }
    let mut why = Vec::new();
    for dir in [folder.clone(), folder.join("../runbooks"), PathBuf::from("runbooks")] {
        let Ok(registry) = crate::runtime::runbooks::load_with(catalog, &dir) else { continue };
        match registry.find(name) {
            Ok(entry) => return Ok(entry.path().to_path_buf()),
            Err(registry::Error::Invalid { path, .. }) => return Ok(path),
            Err(error) => why.push(error.to_string()),
        }
    }
    Err(if why.is_empty() { "no runbooks directory could be read".to_string() } else { why.join(", and ") })
}

/// `PATH:LINE:COL: error[DRnnnn]: message`, with the hint on the next line.
fn print(path: &Path, diagnostics: &[Diagnostic]) {
    for diagnostic in diagnostics {
        super::print_located(path, &diagnostic.mark, &diagnostic.code, &diagnostic.message, diagnostic.help.as_deref());
    }
}

/// Writes what a drill leaves into `dir`: the export and its verification, the public key, the
/// report in both layouts, the timeline and every captured message.
async fn keep(dir: &Path, finished: &Finished, timeline: &str) -> anyhow::Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write `{}`", path.display()))
    };
    write("timeline.txt", timeline.as_bytes())?;
    write("drill-key.pub", finished.public_key.to_pem()?.as_bytes())?;
    let store = finished.runtime.store();
    let summary = store.incident(&finished.incident).await?.context("the drill's incident is not in its database")?;
    let export_path = dir.join("export.jsonl");
    let file =
        std::fs::File::create(&export_path).with_context(|| format!("cannot create `{}`", export_path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    crate::runtime::audit::export_stored(store, &summary, &mut out).await?;
    out.flush()?;
    drop(out);
    // Verified as anyone would verify it: the file and the public key, nothing else.
    let file = std::fs::File::open(&export_path)?;
    let outcome = export::verify(BufReader::new(file), Some(&finished.public_key))?;
    let verification = super::audit::describe(&outcome);
    write("export-verification.txt", verification.as_bytes())?;
    super::print_stdout(&format!("\nexport {}: {}", export_path.display(), verification))?;
    let integrity = outcome.integrity();
    write("report.md", report::render(&finished.events, &integrity, report::Format::Markdown)?.as_bytes())?;
    write("report.html", report::render(&finished.events, &integrity, report::Format::Html)?.as_bytes())?;
    let messages = dir.join("messages");
    if messages.exists() {
        std::fs::remove_dir_all(&messages).with_context(|| format!("cannot clear `{}`", messages.display()))?;
    }
    std::fs::create_dir_all(&messages)?;
    for (number, message) in finished.captured.iter().enumerate() {
        let audience = message.audience.replace(['/', ' '], "-");
        let stem = format!("{:04}-{audience}-{}", number + 1, message.channel);
        std::fs::write(messages.join(format!("{stem}.txt")), message_text(message))?;
        if let Some(html) = &message.html {
            std::fs::write(messages.join(format!("{stem}.html")), html)?;
        }
    }
    super::print_stdout(&format!(
        "kept in {}: drill.db, export.jsonl, export-verification.txt, drill-key.pub, report.html, report.md, timeline.txt, messages/ ({} files)\n",
        dir.display(),
        finished.captured.len()
    ))?;
    Ok(())
}

/// A captured message as a person reads it: where it would have gone, then what it said.
fn message_text(message: &Captured) -> String {
    let mut text = format!(
        "channel: {} ({})\naudience: {}\noccasion: {}\nat: {}\n",
        message.channel,
        message.kind,
        message.audience,
        message.occasion,
        message.at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if !message.to.is_empty() {
        text.push_str(&format!("to: {}\n", message.to.join(", ")));
    }
    if let Some(from) = &message.from {
        text.push_str(&format!("from: {from}\n"));
    }
    if let Some(subject) = &message.subject {
        text.push_str(&format!("subject: {subject}\n"));
    }
    text.push('\n');
    match (&message.text, &message.body) {
        (Some(body), _) => text.push_str(body),
        (None, Some(json)) => text.push_str(&serde_json::to_string_pretty(json).unwrap_or_default()),
        (None, None) => {}
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The verdicts as a JUnit test suite: one test case per expectation.
fn junit(scenario: &Scenario, finished: &Finished) -> String {
    let escape =
        |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let failures = finished.verdicts.iter().filter(|verdict| !verdict.held).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"drill {}\" tests=\"{}\" failures=\"{failures}\">\n",
        escape(&scenario.name),
        finished.verdicts.len()
    );
    for verdict in &finished.verdicts {
        xml.push_str(&format!(
            "    <testcase classname=\"drill.{}\" name=\"{}\">\n",
            escape(&scenario.name),
            escape(&verdict.expectation)
        ));
        if verdict.held {
            xml.push_str(&format!("      <system-out>{}</system-out>\n", escape(&verdict.found)));
        } else {
            xml.push_str(&format!("      <failure message=\"{}\"/>\n", escape(&verdict.found)));
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}
