//! The diagnostics corpus: one broken runbook per problem in `tests/corpus/`, each saying in
//! `# expect: CODE LINE:COLUMN` comments which problems it has and where, plus the few inputs that
//! cannot be committed as files (too large, not UTF-8, empty), which are generated here.
//!
//! The tests check that every expected problem is reported at exactly its place and nothing else
//! is, that every code has an entry, and (with `insta` snapshots) how the problems are printed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use phasegate::render::Catalog;
use phasegate::runbook::{self, Code, Diagnostic};

use crate::support::{Cli, root};

/// One broken runbook and the problems it must produce: code, line, column.
struct Case {
    /// The path printed in diagnostics, relative to the repository root.
    path: String,
    bytes: Vec<u8>,
    expected: Vec<(Code, u32, u32)>,
}

impl Case {
    /// The file name without `.yaml`, which names the case's snapshot.
    fn stem(&self) -> &str {
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        name.strip_suffix(".yaml").unwrap_or(name)
    }
}

fn corpus_dir() -> PathBuf {
    root().join("tests/corpus")
}

fn catalog() -> Catalog {
    Catalog::with_dir(&corpus_dir().join("templates")).expect("the corpus templates load")
}

fn code(text: &str) -> Code {
    Code::ALL
        .iter()
        .copied()
        .find(|code| code.as_str() == text)
        .unwrap_or_else(|| panic!("`{text}` is not a diagnostic code"))
}

/// The `# expect: RB0010 9:5` lines in the comments that open a corpus file.
fn expectations(path: &Path, text: &str) -> Vec<(Code, u32, u32)> {
    let mut expected = Vec::new();
    for line in text.lines().take_while(|line| line.starts_with('#')) {
        let Some(rest) = line.strip_prefix("# expect:") else { continue };
        let parsed = rest.trim().split_once(' ').and_then(|(code_text, place)| {
            let (line, column) = place.trim().split_once(':')?;
            Some((code(code_text), line.parse().ok()?, column.parse().ok()?))
        });
        expected
            .push(parsed.unwrap_or_else(|| panic!("{}: `{line}` is not `# expect: CODE LINE:COLUMN`", path.display())));
    }
    assert!(!expected.is_empty(), "{}: the file opens with no `# expect: CODE LINE:COLUMN` comment", path.display());
    expected
}

/// Every `*.yaml` file in `tests/corpus/`, in name order.
fn corpus() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .map(|entry| entry.expect("tests/corpus is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file is readable");
            let text = String::from_utf8(bytes.clone()).expect("corpus files are UTF-8; generate the others");
            let name = path.file_name().and_then(|n| n.to_str()).expect("corpus file names are UTF-8");
            Case { path: format!("tests/corpus/{name}"), expected: expectations(&path, &text), bytes }
        })
        .collect()
}

/// The inputs that cannot be committed: a file over the size limit, one that is not UTF-8, and
/// empty ones.
fn generated() -> Vec<Case> {
    let valid = "apiVersion: phasegate/v1\nkind: Runbook\nid: corpus\ntitle: Corpus\nphases:\n  - id: triage\n    steps:\n      - id: look\n        manual: { instructions: Look at the alert }\n";
    let mut too_large = valid.as_bytes().to_vec();
    too_large.extend(std::iter::repeat_n(b'#', runbook::MAX_FILE_SIZE + 1 - too_large.len()));
    // `é` in Latin-1, as an editor set to the wrong encoding saves it: line 4, column 11.
    let mut not_utf8 = valid.as_bytes().to_vec();
    let title_value = find(&not_utf8, b"title: Corpus") + "title: ".len();
    not_utf8.splice(title_value..title_value + "Corpus".len(), *b"Caf\xE9");
    vec![
        Case {
            path: "generated/rb0001-too-large.yaml".into(),
            bytes: too_large,
            expected: vec![(Code::FileTooLarge, 1, 1)],
        },
        Case { path: "generated/rb0002-not-utf8.yaml".into(), bytes: not_utf8, expected: vec![(Code::NotUtf8, 4, 11)] },
        Case { path: "generated/rb0003-empty.yaml".into(), bytes: Vec::new(), expected: vec![(Code::EmptyFile, 1, 1)] },
        Case {
            path: "generated/rb0003-blank-lines.yaml".into(),
            bytes: b"\n   \n\t\n".to_vec(),
            expected: vec![(Code::EmptyFile, 1, 1)],
        },
    ]
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|window| window == needle).expect("needle is in haystack")
}

fn all_cases() -> Vec<Case> {
    let mut cases = corpus();
    cases.extend(generated());
    cases
}

/// The problems found in `case`; a case that validates is a failure of the corpus.
fn problems(case: &Case, catalog: &Catalog) -> Vec<Diagnostic> {
    match runbook::load(&case.bytes, catalog) {
        Ok(runbook) => panic!("{}: validates as runbook `{}`, but should not", case.path, runbook.id()),
        Err(diagnostics) => diagnostics,
    }
}

/// Diagnostics as `phasegate validate` prints them.
fn printed(path: &str, diagnostics: &[Diagnostic]) -> String {
    let mut text = String::new();
    for diagnostic in diagnostics {
        let mark = diagnostic.mark;
        writeln!(text, "{path}:{}:{}: error[{}]: {}", mark.line, mark.column, diagnostic.code, diagnostic.message)
            .expect("writing to a string");
        if let Some(help) = &diagnostic.help {
            writeln!(text, "  help: {help}").expect("writing to a string");
        }
    }
    text
}

fn places(diagnostics: &[Diagnostic]) -> Vec<(Code, u32, u32)> {
    diagnostics.iter().map(|d| (d.code, d.mark.line, d.mark.column)).collect()
}

#[test]
fn corpus_problems_are_reported_where_the_files_say() {
    let catalog = catalog();
    let mut failures = String::new();
    for case in all_cases() {
        let diagnostics = problems(&case, &catalog);
        let mut found = places(&diagnostics);
        found.sort();
        let mut expected = case.expected.clone();
        expected.sort();
        if found != expected {
            let show = |list: &[(Code, u32, u32)]| {
                list.iter().map(|(code, line, column)| format!("{code} {line}:{column}")).collect::<Vec<_>>().join(", ")
            };
            writeln!(
                failures,
                "{}:\n  expected: {}\n  found:    {}\n{}",
                case.path,
                show(&expected),
                show(&found),
                printed(&case.path, &diagnostics)
            )
            .expect("writing to a string");
        }
    }
    assert!(failures.is_empty(), "corpus files whose problems are not as expected:\n{failures}");
}

#[test]
fn every_code_has_a_corpus_entry() {
    let cases = all_cases();
    let exercised: Vec<Code> = cases.iter().flat_map(|case| case.expected.iter().map(|(code, _, _)| *code)).collect();
    let missing: Vec<&str> =
        Code::ALL.iter().filter(|code| !exercised.contains(code)).map(|code| code.as_str()).collect();
    assert!(missing.is_empty(), "codes without a file in tests/corpus/ or a generated input: {missing:?}");
    // Each case is named after a code it expects, so that `ls tests/corpus` is an index.
    for case in &cases {
        let prefix = case.stem().split('-').next().unwrap_or_default().to_ascii_uppercase();
        assert!(
            case.expected.iter().any(|(code, _, _)| code.as_str() == prefix),
            "{}: named after {prefix}, which it does not expect",
            case.path
        );
    }
}

#[test]
fn printed_diagnostics() {
    let catalog = catalog();
    for case in all_cases() {
        let diagnostics = problems(&case, &catalog);
        insta::with_settings!({ description => case.path.clone(), omit_expression => true }, {
            insta::assert_snapshot!(case.stem().to_string(), printed(&case.path, &diagnostics));
        });
    }
}

#[test]
fn the_command_line_prints_what_the_snapshots_show() {
    let catalog = catalog();
    let mut cli = Cli::new().args(["--templates", "tests/corpus/templates", "validate", "tests/corpus"]).fails();
    let stderr = cli.stderr();
    for case in corpus() {
        let expected = printed(&case.path, &problems(&case, &catalog));
        assert!(stderr.contains(&expected), "the output of `phasegate validate` lacks\n{expected}\nit is:\n{stderr}");
    }
}

#[test]
fn the_command_line_refuses_large_and_non_utf8_files() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cases = generated();
    for case in &cases {
        let name = case.path.rsplit('/').next().expect("a file name");
        std::fs::write(dir.path().join(name), &case.bytes).expect("writing a generated case");
    }
    let mut cli = Cli::new().current_dir(dir.path()).args(["validate", "."]).fails();
    let stderr = cli.stderr();
    for case in &cases {
        let name = case.path.rsplit('/').next().expect("a file name");
        for (code, line, column) in &case.expected {
            let expected = format!("./{name}:{line}:{column}: error[{code}]");
            assert!(stderr.contains(&expected), "the output of `phasegate validate` lacks `{expected}`:\n{stderr}");
        }
    }
}

/// Validation goes on after the first problem: each of these is reported, in the order written.
#[test]
fn many_problems_are_all_reported() {
    let text = "\
apiVersion: phasegate/v2
kind: Runbook
id: Retail_Breach
title: Retail breach
title: Retail breach, again
inputs:
  severity:
    type: string
    default: urgent
    allowed: [low, high]
roles:
  ciso: {}
controls:
  till-mfa:
    title: MFA for till sign-in
    max_relaxation: 72h
channels:
  stdout:
    stdout: {}
audiences:
  internal:
    template: war-room-update
    channels: [stdout, slack]
phases:
  - id: triage
    neds: [intake]
    steps:
      - id: look
        manual: { instructions: Look at the alert, assignee: soc-analyst }
  - id: contain
    needs: [triage, traige]
    when: inputs.severty == \"high\"
    steps:
      - id: relax-mfa
        relax: { control: till-mfa, reason: The identity provider is quarantined, expires_in: 4d }
      - id: hold-logs
        timeout: soon
        http: { url: siem.internal.example/holds }
    exit:
      - steps_done: [look]
triggers:
  - id: siem-alert
    source: siem
    key: payload.alert_id
    satisfy: contain/sweep
";
    let diagnostics = runbook::parse(text, &catalog()).expect_err("the runbook has problems");
    let expected = [
        (Code::BadApiVersion, 1, 13),
        (Code::BadId, 3, 5),
        (Code::DuplicateKey, 5, 1),
        (Code::BadInputDefault, 9, 14),
        (Code::MissingTemplate, 22, 15),
        (Code::UnknownChannel, 23, 24),
        (Code::UnknownKey, 26, 5),
        (Code::UnknownRole, 29, 62),
        (Code::UnknownPhase, 31, 21),
        (Code::ConditionReference, 32, 11),
        (Code::NeverReinstated, 35, 27),
        (Code::UnapprovedRelaxation, 35, 27),
        (Code::RelaxationTooLong, 35, 95),
        (Code::BadDuration, 37, 18),
        (Code::BadUrl, 38, 22),
        (Code::BadStepReference, 40, 22),
        (Code::UnknownGate, 45, 14),
    ];
    assert_eq!(places(&diagnostics), expected, "{}", printed("many-problems.yaml", &diagnostics));
    insta::assert_snapshot!("many-problems", printed("many-problems.yaml", &diagnostics));
}

/// Values of the wrong type, missing keys and unknown keys in different steps are all reported,
/// not only the first: a broken step is dropped and the next one is still read.
#[test]
fn broken_values_in_several_steps_are_all_reported() {
    let text = "\
apiVersion: phasegate/v1
kind: Runbook
id: corpus
title: Corpus
phases:
  - id: triage
    steps:
      - id: look
        optional: maybe
        manual: { instructions: Look at the alert }
      - id: hold-logs
        retry: { attempts: three }
        http: { url: https://siem.internal.example/holds }
  - id: contain
    needs: [triage]
    steps:
      - title: Isolate the hosts
        manual: { instructions: Isolate the hosts }
      - id: rotate
        manual: { instrutions: Rotate the keys }
";
    let diagnostics = runbook::parse(text, &catalog()).expect_err("the runbook has problems");
    let expected = [
        (Code::WrongType, 9, 19),
        (Code::WrongType, 12, 28),
        (Code::MissingKey, 17, 9),
        (Code::MissingKey, 20, 17),
        (Code::UnknownKey, 20, 19),
    ];
    assert_eq!(places(&diagnostics), expected, "{}", printed("broken-values.yaml", &diagnostics));
}
