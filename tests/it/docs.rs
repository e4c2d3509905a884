//! The documentation agrees with the code: every diagnostic documented, every example valid.
//!
//! What the tests read in the documents:
//! - `docs/diagnostics.md`: a `## RBxxxx` section per code; each example is a ```yaml block whose
//!   first line is `# file: NAME` (with an optional note in brackets), templates for it follow as
//!   ```jinja blocks whose first line is `{# file: templates/NAME #}`, and the next ```text block,
//!   introduced by "`phasegate validate NAME` prints:", is what that command prints on standard
//!   error, without the summary line.
//! - `docs/runbook-format.md`, `docs/commands.md`, `docs/editor-setup.md`: every ```yaml block is a
//!   runbook that validates (a block without an `apiVersion:` line once the four header lines are
//!   put in front), unless the line before it is `<!-- invalid: RBxxxx -->`, in which case it must
//!   be refused with that code. A ```text block after `<!-- output of: phasegate ARGS -->` is part
//!   of what `phasegate ARGS FILE` prints for the ```yaml block before it.

use std::collections::BTreeSet;
use std::path::Path;

use phasegate::render::Catalog;
use phasegate::runbook::{self, Code};

use crate::support::{Cli, root};

/// What the examples that leave out the header are put after, as `runbook-format.md` says.
const HEADER: &str = "apiVersion: phasegate/v1\nkind: Runbook\nid: example\ntitle: Example\n";

/// The documents whose ```yaml blocks are runbooks.
const RUNBOOK_DOCS: &[&str] = &["runbook-format.md", "commands.md", "editor-setup.md"];

fn doc(name: &str) -> String {
    let path = root().join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A fenced code block.
struct Block {
    /// The info string: `yaml`, `text`, `jinja`...
    lang: String,
    /// The lines between the fences, each ending in a newline.
    text: String,
    /// The line of the opening fence, 1-based.
    line: usize,
    /// The last non-blank line before the opening fence.
    before: String,
}

/// The fenced code blocks of a Markdown text, with the `## ` heading each falls under.
fn blocks(markdown: &str) -> Vec<(String, Block)> {
    let mut result = Vec::new();
    let mut heading = String::new();
    let mut before = String::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let mut text = String::new();
            for (_, inner) in lines.by_ref() {
                if inner == "```" {
                    break;
                }
                text.push_str(inner);
                text.push('\n');
            }
            let block = Block { lang: lang.trim().to_string(), text, line: index + 1, before: before.clone() };
            result.push((heading.clone(), block));
            before.clear();
        } else if !line.trim().is_empty() {
            if let Some(title) = line.strip_prefix("## ") {
                heading = title.to_string();
            }
            before = line.to_string();
        }
    }
    result
}

fn code(text: &str) -> Option<Code> {
    Code::ALL.iter().copied().find(|code| code.as_str() == text)
}

/// The code a `## RBxxxx words` heading is about.
fn heading_code(heading: &str) -> Option<&str> {
    heading.split_whitespace().next().filter(|word| word.starts_with("RB"))
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_code_has_a_section_and_every_section_a_code() {
    let text = doc("diagnostics.md");
    let headings: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("## ")).collect();
    let mut documented = Vec::new();
    let mut problems = Vec::new();
    for heading in &headings {
        let Some(word) = heading_code(heading) else { continue };
        match code(word) {
            Some(code) if documented.contains(&code) => problems.push(format!("`## {heading}`: {code} again")),
            Some(code) => documented.push(code),
            None => problems.push(format!("`## {heading}` names no code in `Code::ALL`")),
        }
    }
    for code in Code::ALL {
        if !documented.contains(code) {
            problems.push(format!("{code} has no `## {code}` section"));
        }
        // The table of all codes links each section and gives the code's summary.
        let Some(heading) = headings.iter().find(|h| heading_code(h) == Some(code.as_str())) else { continue };
        let row = format!("| [{code}](#{}) | {} |", anchor(heading), code.summary());
        if !text.lines().any(|line| line == row) {
            problems.push(format!("the table of all codes lacks the row `{row}`"));
        }
    }
    let order: Vec<Code> = Code::ALL.iter().copied().filter(|code| documented.contains(code)).collect();
    if documented != order {
        problems.push("the sections are not in the order of the codes".to_string());
    }
    assert!(problems.is_empty(), "docs/diagnostics.md:\n{}", problems.join("\n"));
}

/// The text of a runbook example: complete, or with the header put in front.
fn runbook_text(block: &Block) -> String {
    if block.text.lines().any(|line| line.starts_with("apiVersion:")) {
        block.text.clone()
    } else {
        format!("{HEADER}{}", block.text)
    }
}

/// The code an `<!-- invalid: RBxxxx -->` line expects, if the line is one.
fn invalid_marker(line: &str) -> Option<&str> {
    line.strip_prefix("<!-- invalid:")?.strip_suffix("-->").map(str::trim)
}

#[test]
fn runbook_examples_validate() {
    let catalog = Catalog::built_in();
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in RUNBOOK_DOCS {
        for (_, block) in blocks(&doc(name)).iter().filter(|(_, block)| block.lang == "yaml") {
            let place = format!("docs/{name}:{}", block.line);
            let outcome = runbook::parse(&runbook_text(block), &catalog);
            checked += 1;
            match (invalid_marker(&block.before), outcome) {
                (None, Ok(_)) => {}
                (None, Err(diagnostics)) => {
                    let found: Vec<String> = diagnostics
                        .iter()
                        .map(|d| format!("  {}:{}: {}: {}", d.mark.line, d.mark.column, d.code, d.message))
                        .collect();
                    problems.push(format!("{place}: the example does not validate:\n{}", found.join("\n")));
                }
                (Some(expected), Ok(_)) => {
                    problems.push(format!("{place}: marked invalid ({expected}), but the example validates"))
                }
                (Some(expected), Err(diagnostics)) => {
                    if code(expected).is_none() {
                        problems.push(format!("{place}: `{expected}` is not a code"));
                    } else if !diagnostics.iter().any(|d| d.code.as_str() == expected) {
                        let codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
                        problems.push(format!("{place}: marked invalid ({expected}), but refused with {codes:?}"));
                    }
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} YAML examples found; did the fences change?");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Whether `part` is a run of whole lines of `whole`.
fn has_lines(whole: &str, part: &str) -> bool {
    whole.starts_with(part) || whole.contains(&format!("\n{part}"))
}

#[test]
fn shown_outputs_are_what_phasegate_prints() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in RUNBOOK_DOCS {
        let mut runbook: Option<&Block> = None;
        let blocks = blocks(&doc(name));
        for (_, block) in &blocks {
            if block.lang == "yaml" {
                runbook = Some(block);
                continue;
            }
            let Some(command) = block.before.strip_prefix("<!-- output of: phasegate ") else { continue };
            let command = command.strip_suffix("-->").expect("`<!-- output of: phasegate ARGS -->`").trim();
            let place = format!("docs/{name}:{}", block.line);
            let Some(runbook) = runbook else {
                problems.push(format!("{place}: no ```yaml example before this output"));
                continue;
            };
            std::fs::write(dir.path().join("example.yaml"), runbook_text(runbook)).expect("the example is written");
            let mut args: Vec<&str> = command.split_whitespace().collect();
            args.push("example.yaml");
            let mut cli = Cli::new().current_dir(dir.path()).args(&args);
            let printed = cli.stdout();
            checked += 1;
            if !has_lines(&printed, &block.text) {
                problems.push(format!(
                    "{place}: `phasegate {}` prints\n{printed}{}\nwhich does not contain the lines shown:\n{}",
                    args.join(" "),
                    cli.stderr(),
                    block.text
                ));
            }
        }
    }
    assert!(checked > 0, "no `<!-- output of: phasegate ... -->` blocks found");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// One example of `docs/diagnostics.md`: the file, its templates, and the output shown.
struct Example {
    section: String,
    line: usize,
    file: String,
    bytes: Vec<u8>,
    templates: Vec<(String, String)>,
    output: Option<String>,
}

/// The file an example's first line names, and its bytes once the line's note is applied:
/// `(saved as Latin-1)` or `(line N repeated M times)`.
fn example_file(block: &Block) -> Result<(String, Vec<u8>), String> {
    let first = block.text.lines().next().unwrap_or_default();
    let named = first.strip_prefix("# file: ").ok_or("no `# file: NAME` line")?;
    let (file, note) = match named.split_once(' ') {
        Some((file, note)) => {
            let note = note.strip_prefix('(').and_then(|n| n.strip_suffix(')'));
            (file, Some(note.ok_or_else(|| format!("`{named}`: a note is written in brackets"))?))
        }
        None => (named, None),
    };
    let bytes = match note {
        None => block.text.clone().into_bytes(),
        Some("saved as Latin-1") => block
            .text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("`{c}` is not in Latin-1")))
            .collect::<Result<_, _>>()?,
        Some(note) => {
            let words: Vec<&str> = note.split(' ').collect();
            let ["line", line, "repeated", times, "times"] = words[..] else {
                return Err(format!("unknown note `({note})`"));
            };
            let line: usize = line.parse().map_err(|_| format!("`{line}` is not a line number"))?;
            let times: usize = times.parse().map_err(|_| format!("`{times}` is not a number"))?;
            let lines: Vec<&str> = block.text.split_inclusive('\n').collect();
            let repeated = lines.get(line - 1).ok_or_else(|| format!("the example has no line {line}"))?;
            let mut text = lines[..line - 1].concat();
            text.push_str(&repeated.repeat(times));
            text.push_str(&lines[line..].concat());
            text.into_bytes()
        }
    };
    Ok((file.to_string(), bytes))
}

fn diagnostics_examples() -> (Vec<Example>, Vec<String>) {
    let mut examples: Vec<Example> = Vec::new();
    let mut problems = Vec::new();
    for (section, block) in blocks(&doc("diagnostics.md")) {
        let place = format!("docs/diagnostics.md:{}", block.line);
        let pending = examples.last_mut().filter(|example| example.output.is_none());
        match block.lang.as_str() {
            "yaml" if block.text.starts_with("# file:") => {
                if pending.is_some() {
                    problems.push(format!("{place}: the example before this one shows no output"));
                }
                match example_file(&block) {
                    Ok((file, bytes)) => examples.push(Example {
                        section,
                        line: block.line,
                        file,
                        bytes,
                        templates: Vec::new(),
                        output: None,
                    }),
                    Err(problem) => problems.push(format!("{place}: {problem}")),
                }
            }
            "jinja" if block.text.starts_with("{# file:") => {
                let first = block.text.lines().next().unwrap_or_default();
                let name = first.strip_prefix("{# file: ").and_then(|n| n.strip_suffix(" #}"));
                match (pending, name) {
                    (Some(example), Some(name)) => example.templates.push((name.to_string(), block.text.clone())),
                    (None, _) => problems.push(format!("{place}: a template outside an example")),
                    (_, None) => problems.push(format!("{place}: the first line is not `{{# file: NAME #}}`")),
                }
            }
            "text" => {
                if let Some(example) = pending {
                    let expected = format!("`phasegate validate {}` prints:", example.file);
                    if block.before != expected {
                        problems.push(format!("{place}: the output is not introduced by {expected}"));
                    }
                    example.output = Some(block.text.clone());
                }
            }
            _ => {}
        }
    }
    if examples.last().is_some_and(|example| example.output.is_none()) {
        problems.push("docs/diagnostics.md: the last example shows no output".to_string());
    }
    (examples, problems)
}

#[test]
fn diagnostics_examples_print_what_the_doc_shows() {
    let (examples, mut problems) = diagnostics_examples();
    for code in Code::ALL {
        if !examples.iter().any(|example| heading_code(&example.section) == Some(code.as_str())) {
            problems.push(format!("the section on {code} has no example"));
        }
    }
    for example in &examples {
        let place = format!("docs/diagnostics.md:{}", example.line);
        let Some(shown) = &example.output else { continue };
        let dir = tempfile::tempdir().expect("a temporary directory");
        write(dir.path(), &example.file, &example.bytes);
        for (name, text) in &example.templates {
            write(dir.path(), name, text.as_bytes());
        }
        let mut cli = Cli::new().current_dir(dir.path()).args(["validate", &example.file]);
        let stderr = cli.stderr();
        let mut lines: Vec<&str> = stderr.lines().collect();
        let summary = lines.pop().unwrap_or_default();
        if !summary.starts_with("1 file(s) checked, 1 invalid") {
            problems.push(format!("{place}: the example is not refused:\n{}{stderr}", cli.stdout()));
            continue;
        }
        let printed = lines.iter().map(|line| format!("{line}\n")).collect::<String>();
        if &printed != shown {
            problems.push(format!(
                "{place}: `phasegate validate {}` prints\n{printed}but the doc shows\n{shown}",
                example.file
            ));
        }
        let code = heading_code(&example.section).unwrap_or_default();
        if !printed.contains(&format!("error[{code}]")) {
            problems.push(format!("{place}: the example in the section on {code} does not produce {code}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("the example's directory is created");
    }
    std::fs::write(path, bytes).expect("the example is written");
}

#[test]
fn the_cel_functions_listed_are_those_the_engine_provides() {
    let text = doc("runbook-format.md");
    let (_, after) = text.split_once("<!-- functions -->\n").expect("runbook-format.md marks the functions");
    let paragraph = after.split("\n\n").next().unwrap_or_default();
    let listed: BTreeSet<&str> = paragraph.split('`').skip(1).step_by(2).collect();
    let provided: BTreeSet<&str> = phasegate::expr::FUNCTIONS.iter().copied().collect();
    assert_eq!(listed, provided, "docs/runbook-format.md lists other functions than `expr::FUNCTIONS`");
}
