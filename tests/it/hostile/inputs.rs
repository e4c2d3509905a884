//! The hostile runbooks, shared by the tests in `tests/it/hostile.rs` and the timing in
//! `benches/hostile.rs`: each is a name, the bytes of a file, and how `runbook::load` must answer.

use phasegate::expr::{MAX_LENGTH, MAX_NESTING, MAX_OPERATORS};
use phasegate::runbook::{Code, MAX_FILE_SIZE};

/// How `runbook::load` must answer a hostile file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Valid: the file is large or odd, but within every limit.
    Accepted,
    /// Refused with this one diagnostic, at this line and column.
    RefusedAt(Code, u32, u32),
    /// Refused with diagnostics of these codes, in this order.
    Refused(&'static [Code]),
    /// Refused with this many diagnostics, every one with this code.
    RefusedTimes(Code, usize),
}

pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

fn case(name: &'static str, text: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case { name, bytes: text.into(), expect }
}

const HEADER: &str = "apiVersion: phasegate/v1\nkind: Runbook\nid: hostile\ntitle: Hostile input\n";

/// One phase with one step: what a runbook needs besides its header.
const PHASES: &str =
    "phases:\n  - id: triage\n    steps:\n      - id: look\n        manual:\n          instructions: Look.\n";

/// A valid runbook with `extra` inserted between the header and the phases.
pub fn runbook(extra: &str) -> String {
    format!("{HEADER}{extra}{PHASES}")
}

/// A valid runbook whose second phase runs `when` the condition holds; the condition may name
/// `inputs.severity`, `phases.triage` and `steps["triage/look"]`.
pub fn with_condition(condition: &str) -> String {
    let mut quoted = String::with_capacity(condition.len() + 2);
    quoted.push('"');
    for character in condition.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(character),
        }
    }
    quoted.push('"');
    format!(
        "{HEADER}inputs:\n  severity: {{ type: string, default: high }}\n{PHASES}  - id: contain\n    needs: [triage]\n    when: {quoted}\n    steps:\n      - id: isolate\n        manual:\n          instructions: Isolate.\n"
    )
}

/// `levels` brackets around `inner`: `nested("[", "]", 2, "1")` is `[[1]]`.
fn nested(open: &str, close: &str, levels: usize, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(levels), close.repeat(levels))
}

/// Ten levels of ten aliases each: 10^10 nodes once expanded, from about 600 bytes.
fn billion_laughs() -> String {
    let mut text = String::from("lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let aliases = vec![format!("*lol{}", level - 1); 10].join(", ");
        text.push_str(&format!("lol{level}: &lol{level} [{aliases}]\n"));
    }
    runbook(&text)
}

/// A file of exactly `size` bytes: a valid runbook padded with a comment.
fn padded_to(size: usize) -> Vec<u8> {
    let mut text = runbook("");
    text.push('#');
    text.push_str(&"x".repeat(size - text.len() - 1));
    text.push('\n');
    text.into_bytes()
}

/// `text` with `bytes` put in at byte `at`.
fn spliced(text: &str, at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut spliced = text.as_bytes()[..at].to_vec();
    spliced.extend_from_slice(bytes);
    spliced.extend_from_slice(&text.as_bytes()[at..]);
    spliced
}

/// Every hostile file, grouped as the issue lists them: the file, YAML, then conditions.
pub fn cases() -> Vec<Case> {
    use Expect::*;
    let valid = runbook("");
    let mut cases = vec![
        // The file as a whole.
        case("oversized", vec![b'#'; MAX_FILE_SIZE + 1], RefusedAt(Code::FileTooLarge, 1, 1)),
        case("exactly-the-size-limit", padded_to(MAX_FILE_SIZE), Accepted),
        case("not-utf8-first-byte", spliced(&valid, 0, b"\xff"), RefusedAt(Code::NotUtf8, 1, 1)),
        case("not-utf8-in-first-line", spliced(&valid, 10, b"\xfe"), RefusedAt(Code::NotUtf8, 1, 11)),
        // Columns count characters, not bytes: `é` is two bytes and the emoji four.
        case(
            "not-utf8-after-accents",
            spliced(&runbook("description: Café \u{1F600} !\n"), HEADER.len() + 24, b"\xff"),
            RefusedAt(Code::NotUtf8, 5, 21),
        ),
        case(
            "not-utf8-inside-a-character",
            spliced(&runbook("description: Café \u{1F600} !\n"), HEADER.len() + 21, b"\xff"),
            RefusedAt(Code::NotUtf8, 5, 19),
        ),
        case("not-utf8-truncated-at-the-end", [valid.as_bytes(), b"# \xc3"].concat(), RefusedAt(Code::NotUtf8, 11, 3)),
        case("not-utf8-overlong-slash", spliced(&valid, HEADER.len(), b"\xc0\xaf"), RefusedAt(Code::NotUtf8, 5, 1)),
        case("not-utf8-surrogate", spliced(&valid, HEADER.len() + 3, b"\xed\xa0\x80"), RefusedAt(Code::NotUtf8, 5, 4)),
        case(
            "utf16-with-byte-order-mark",
            [b"\xff\xfe".as_slice(), &valid.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>()].concat(),
            RefusedAt(Code::NotUtf8, 1, 1),
        ),
        case("utf8-byte-order-mark", format!("\u{feff}{valid}"), Accepted),
        case("empty", "", RefusedAt(Code::EmptyFile, 1, 1)),
        case("whitespace-only", " \n\t\n\r\n   ", RefusedAt(Code::EmptyFile, 1, 1)),
        case("newlines-only", "\n".repeat(100_000), RefusedAt(Code::EmptyFile, 1, 1)),
        // Regression: text with no YAML document was refused with no diagnostic at all.
        case("comments-only", "# a runbook\n# to be written\n", RefusedAt(Code::EmptyFile, 1, 1)),
        case("byte-order-mark-only", "\u{feff}\n", RefusedAt(Code::EmptyFile, 1, 1)),
        case("document-end-marker-only", "...\n", RefusedAt(Code::EmptyFile, 1, 1)),
        case("nul-byte", spliced(&valid, HEADER.len(), b"\0"), RefusedAt(Code::YamlSyntax, 5, 1)),
        // YAML.
        case("billion-laughs", billion_laughs(), Refused(&[Code::YamlTooComplex])),
        // Regression: aliases of one long string stayed under the node limit and took gigabytes.
        case(
            "alias-bomb-of-one-long-string",
            runbook(&format!("big: &big {}\nbomb: [{}]\n", "x".repeat(400_000), vec!["*big"; 100_000].join(","))),
            Refused(&[Code::YamlTooComplex]),
        ),
        case("alias-of-itself", runbook("loop: &loop [*loop]\n"), RefusedAt(Code::YamlSyntax, 5, 14)),
        case("alias-without-anchor", runbook("description: *nothing\n"), RefusedAt(Code::YamlSyntax, 5, 14)),
        // Regression: flow nesting past the scanner's own limit was reported as a syntax error.
        case(
            "flow-sequences-100k-deep",
            runbook(&format!("x: {}\n", "[".repeat(100_000))),
            RefusedAt(Code::YamlTooComplex, 5, 259),
        ),
        case(
            "flow-mappings-100k-deep",
            runbook(&format!("x: {}\n", "{".repeat(100_000))),
            RefusedAt(Code::YamlTooComplex, 5, 259),
        ),
        case(
            "flow-sequences-100k-deep-closed",
            runbook(&format!("x: {}\n", nested("[", "]", 100_000, ""))),
            Refused(&[Code::YamlTooComplex]),
        ),
        case(
            "flow-mixed-50k-deep",
            runbook(&format!("x: {}\n", "[{a: ".repeat(50_000))),
            Refused(&[Code::YamlTooComplex]),
        ),
        case(
            "flow-sequences-49-deep",
            runbook(&format!("x: {}\n", nested("[", "]", 48, "1"))),
            RefusedAt(Code::YamlTooComplex, 5, 51),
        ),
        case(
            "block-mappings-1400-deep",
            (0..1400).map(|level| format!("{}a:\n", " ".repeat(level))).collect::<String>(),
            RefusedAt(Code::YamlTooComplex, 49, 49),
        ),
        case(
            "block-sequences-100k-deep",
            format!("{}x\n", "- ".repeat(100_000)),
            RefusedAt(Code::YamlTooComplex, 1, 97),
        ),
        // A step's JSON body is the one place arbitrary YAML is valid: 42 levels there make 48 in all.
        case("json-body-at-the-depth-limit", http_body(&nested("[", "]", 42, "1")), Accepted),
        case("json-body-over-the-depth-limit", http_body(&nested("[", "]", 43, "1")), Refused(&[Code::YamlTooComplex])),
        case("long-line", runbook(&format!("description: {}\n", "y".repeat(MAX_FILE_SIZE - 300))), Accepted),
        case(
            "long-quoted-line",
            runbook(&format!("description: \"{}\"\n", "\\t".repeat((MAX_FILE_SIZE - 300) / 2))),
            Accepted,
        ),
        // YAML caps a plain key at 1024 characters.
        case("long-key", runbook(&format!("{}: 1\n", "k".repeat(MAX_FILE_SIZE - 300))), Refused(&[Code::YamlSyntax])),
        case("long-id", long_id(), Refused(&[Code::BadId])),
        // Regression: suggesting a near name compared two 300 KB ids, which took minutes.
        case("long-ids-suggested", long_ids_suggested(), Refused(&[Code::BadId, Code::UnknownPhase])),
        case(
            "many-unknown-keys",
            runbook(&(0..20_000).map(|key| format!("k{key}: 1\n")).collect::<String>()),
            RefusedTimes(Code::UnknownKey, 20_000),
        ),
        case(
            "many-duplicate-keys",
            runbook(&"title: Again\n".repeat(50_000)),
            RefusedTimes(Code::DuplicateKey, 50_000),
        ),
        case(
            "many-aliases",
            runbook(&format!("description: &d text\nx-aliases: [{}]\n", vec!["*d"; 50_000].join(", "))),
            RefusedAt(Code::UnknownKey, 6, 1),
        ),
        case("needs-chain", needs_chain(300, false), Accepted),
        case("needs-cycle", needs_chain(300, true), Refused(&[Code::DependencyCycle])),
        // Regression: a 12,000-phase chain (under the size limit) kept validation busy for 82 s.
        case("too-many-phases", needs_chain(10_000, false), Refused(&[Code::YamlTooComplex])),
        case("phases-at-the-limit", needs_chain(phasegate::runbook::validate::MAX_PHASES, false), Accepted),
        case("unknown-needs-suggested", unknown_needs(100, true), RefusedTimes(Code::UnknownPhase, 100)),
        case("unknown-needs-listed", unknown_needs(100, false), RefusedTimes(Code::UnknownPhase, 100)),
        case("many-documents", "---\na: 1\n".repeat(50_000), RefusedAt(Code::YamlUnsupported, 3, 1)),
        case("tag", runbook("description: !!binary aGVsbG8=\n"), RefusedAt(Code::YamlUnsupported, 5, 14)),
        case("list-as-key", runbook("? [a]\n: b\n"), Refused(&[Code::YamlUnsupported])),
        case(
            "huge-number",
            runbook("inputs:\n  n: { type: integer, default: 99999999999999999999999999999 }\n"),
            Refused(&[Code::BadInputDefault]),
        ),
        case(
            "huge-duration",
            runbook("controls:\n  c: { title: C, max_relaxation: 99999999999999999999999h }\n"),
            Refused(&[Code::BadDuration]),
        ),
    ];
    cases.extend(condition_cases());
    cases
}

/// A runbook of `phases` phases, each needing the one before it, the first needing the last when
/// `cycle` is set. Validation's phase-graph checks grow faster than linearly with this: see
/// `benches/hostile.rs`.
pub fn needs_chain(phases: usize, cycle: bool) -> String {
    let mut text = format!("{HEADER}phases:\n");
    for index in 0..phases {
        text.push_str(&format!("  - id: p{index}\n"));
        match index.checked_sub(1) {
            Some(previous) => text.push_str(&format!("    needs: [p{previous}]\n")),
            None if cycle => text.push_str(&format!("    needs: [p{}]\n", phases - 1)),
            None => {}
        }
        text.push_str("    steps: [{ id: look, manual: { instructions: Look. } }]\n");
    }
    text
}

/// A runbook of `phases` phases, each needing a phase that does not exist: `phase-xN` (which a
/// suggestion is found for) when `similar`, else `qN` (which none is, so the help lists every id).
pub fn unknown_needs(phases: usize, similar: bool) -> String {
    let mut text = format!("{HEADER}phases:\n");
    for index in 0..phases {
        let need = if similar { format!("phase-x{index}") } else { format!("q{index}") };
        text.push_str(&format!("  - id: phase-{index}\n    needs: [{need}]\n"));
        text.push_str("    steps: [{ id: look, manual: { instructions: Look. } }]\n");
    }
    text
}

fn http_body(body: &str) -> String {
    format!(
        "{HEADER}phases:\n  - id: triage\n    steps:\n      - id: call\n        http:\n          url: https://example.com/hook\n          body: {body}\n"
    )
}

fn long_id() -> String {
    format!(
        "{HEADER}phases:\n  - id: {}\n    steps:\n      - id: look\n        manual:\n          instructions: Look.\n",
        "a".repeat(300_000)
    )
}

fn long_ids_suggested() -> String {
    let id = "a".repeat(300_000);
    let almost = format!("{}b", "a".repeat(299_999));
    format!(
        "{HEADER}phases:\n  - id: {id}\n    steps: [{{ id: look, manual: {{ instructions: Look. }} }}]\n  - id: next\n    needs: [{almost}]\n    steps: [{{ id: look, manual: {{ instructions: Look. }} }}]\n"
    )
}

/// Conditions in `when:`: each is valid but for its size, or hides its size from a naive count.
fn condition_cases() -> Vec<Case> {
    use Expect::*;
    let too_complex = Refused(&[Code::ConditionTooComplex]);
    let syntax = Refused(&[Code::ConditionSyntax]);
    let chain = |operator: &str, terms: usize| vec!["true"; terms].join(operator);
    let over = MAX_NESTING + 1;
    vec![
        case("condition-parentheses-100k-deep", with_condition(&nested("(", ")", 100_000, "true")), too_complex),
        case("condition-parentheses-at-the-limit", with_condition(&nested("(", ")", MAX_NESTING, "true")), Accepted),
        case("condition-parentheses-over-the-limit", with_condition(&nested("(", ")", over, "true")), too_complex),
        case(
            "condition-lists-at-the-limit",
            with_condition(&format!("{} != []", nested("[", "]", MAX_NESTING, "1"))),
            Accepted,
        ),
        case(
            "condition-lists-over-the-limit",
            with_condition(&format!("{} != []", nested("[", "]", over, "1"))),
            too_complex,
        ),
        case(
            "condition-maps-at-the-limit",
            with_condition(&format!("{} != {{}}", nested("{1: ", "}", MAX_NESTING, "1"))),
            Accepted,
        ),
        case(
            "condition-maps-over-the-limit",
            with_condition(&format!("{} != {{}}", nested("{1: ", "}", over, "1"))),
            too_complex,
        ),
        case(
            "condition-calls-over-the-limit",
            with_condition(&format!("{} > 0", nested("size(", ")", over, "'x'"))),
            too_complex,
        ),
        case(
            "condition-macros-at-the-limit",
            with_condition(&nested("[1].all(x, ", ")", MAX_NESTING, "true")),
            Accepted,
        ),
        case("condition-macros-over-the-limit", with_condition(&nested("[1].all(x, ", ")", over, "true")), too_complex),
        case("condition-not-at-the-limit", with_condition(&format!("{}true", "!".repeat(MAX_OPERATORS))), Accepted),
        case(
            "condition-not-over-the-limit",
            with_condition(&format!("{}true", "!".repeat(MAX_OPERATORS + 1))),
            too_complex,
        ),
        case(
            "condition-negation-at-the-limit",
            with_condition(&format!("{}1 > 0", "-".repeat(MAX_OPERATORS - 1))),
            Accepted,
        ),
        case(
            "condition-negation-over-the-limit",
            with_condition(&format!("{}1 > 0", "-".repeat(MAX_OPERATORS))),
            too_complex,
        ),
        case("condition-and-chain-at-the-limit", with_condition(&chain(" && ", MAX_OPERATORS + 1)), Accepted),
        case("condition-and-chain-over-the-limit", with_condition(&chain(" && ", MAX_OPERATORS + 2)), too_complex),
        case("condition-or-chain-over-the-limit", with_condition(&chain(" || ", 300)), too_complex),
        case(
            "condition-members-at-the-limit",
            with_condition(&format!("inputs{} == 1", ".severity".repeat(MAX_OPERATORS - 1))),
            Accepted,
        ),
        case(
            "condition-members-over-the-limit",
            with_condition(&format!("inputs{} == 1", ".severity".repeat(MAX_OPERATORS))),
            too_complex,
        ),
        // Regression: index chains and `in` chains nest in the parser but have no operator character.
        case(
            "condition-index-chain",
            with_condition(&format!("inputs.severity{} == 'h'", "[0]".repeat(1300))),
            too_complex,
        ),
        case("condition-in-chain", with_condition(&format!("[]{}", "in[]".repeat(1000))), too_complex),
        // The worst a condition within the limits can do to the stack: deepest nesting, longest chain.
        case(
            "condition-deepest-and-longest",
            with_condition(&format!(
                "{} != []",
                nested(
                    "[",
                    "]",
                    MAX_NESTING,
                    &format!("inputs{}", ".severity".repeat(MAX_OPERATORS - MAX_NESTING - 2))
                )
            )),
            Accepted,
        ),
        case(
            "condition-exactly-the-length-limit",
            with_condition(&format!("'{}' != ''", "a".repeat(MAX_LENGTH - 8))),
            Accepted,
        ),
        case(
            "condition-one-byte-too-long",
            with_condition(&format!("'{}' != ''", "a".repeat(MAX_LENGTH - 7))),
            too_complex,
        ),
        case(
            "condition-brackets-in-strings",
            with_condition(&format!(
                "'{}' != \"{}\" && '''it's {}''' != r'\\'",
                "(".repeat(1000),
                "[".repeat(1000),
                "{".repeat(1000)
            )),
            Accepted,
        ),
        case(
            "condition-brackets-in-comment",
            with_condition(&format!("true // {}\n && true", "(".repeat(1000))),
            Accepted,
        ),
        // Regressions: each hid brackets from the nesting count, and CEL's parser overflowed the stack.
        case(
            "condition-raw-string-ending-in-backslash",
            with_condition(&format!("r'\\' != {}", nested("(", ")", 1000, "''"))),
            too_complex,
        ),
        case(
            "condition-triple-quoted-string-with-a-quote",
            with_condition(&format!("'''it's''' != {}", nested("(", ")", 1000, "''"))),
            too_complex,
        ),
        case(
            "condition-quote-in-a-comment",
            with_condition(&format!("true // it's\n && {}", nested("(", ")", 1000, "true"))),
            too_complex,
        ),
        case(
            "condition-unclosed-string",
            with_condition(&format!("true || \"{}", nested("(", ")", 1000, "true"))),
            syntax,
        ),
        case(
            "condition-lone-ampersand-before-a-string",
            with_condition(&format!("true &\"{}\"", nested("(", ")", 1000, "true"))),
            syntax,
        ),
        case("condition-mismatched-brackets", with_condition(&"(]".repeat(1000)), syntax),
    ]
}
