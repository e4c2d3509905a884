//! Which of the crate's modules a source file names: the reader behind the import rules.
//!
//! A line-by-line search for `crate::store` misses `use crate::{engine, store::X}`, a group spread
//! over several lines, `super::super::store` and `crate :: store`, and it trips over prose in
//! comments. So the file is read as tokens (comments, strings and character literals left out),
//! every path that starts at `crate`, `super` or `self` is resolved against the file's own module
//! (and the inline `mod` blocks it is in), groups are expanded, and each path is given as its
//! segments from the crate's root.

/// A token of Rust source: what the path reader needs to tell apart, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// `::`
    PathSeparator,
    Punct(char),
}

/// The tokens of `text` with their 1-based lines, leaving out comments, string and character
/// literals, and lifetimes.
fn tokens(text: &str) -> Vec<(usize, Token)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut at = 0;
    // Moves past `count` characters, counting the lines they end.
    let advance = |at: &mut usize, line: &mut usize, count: usize| {
        for &c in &chars[*at..(*at + count).min(chars.len())] {
            if c == '\n' {
                *line += 1;
            }
        }
        *at = (*at + count).min(chars.len());
    };
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if c == '/' && next == Some('/') {
            let end = chars[at..].iter().position(|&c| c == '\n').map_or(chars.len() - at, |n| n);
            advance(&mut at, &mut line, end);
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            let mut length = 0;
            while at + length < chars.len() {
                match (chars[at + length], chars.get(at + length + 1)) {
                    ('/', Some('*')) => (depth, length) = (depth + 1, length + 2),
                    ('*', Some('/')) => (depth, length) = (depth - 1, length + 2),
                    _ => length += 1,
                }
                if depth == 0 {
                    break;
                }
            }
            advance(&mut at, &mut line, length);
        } else if let Some(length) = string_literal(&chars[at..]) {
            advance(&mut at, &mut line, length);
        } else if c == '\'' {
            // A character literal (`'"'`, `'\''`, `'\u{7f}'`) or a lifetime (`'a`), skipped alike.
            let length = match (next, chars.get(at + 2)) {
                (Some('\\'), _) => chars
                    .get(at + 3..)
                    .unwrap_or_default()
                    .iter()
                    .position(|&c| c == '\'')
                    .map_or(chars.len() - at, |n| n + 4),
                (Some(_), Some('\'')) => 3,
                _ => 1 + chars[at + 1..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').count(),
            };
            advance(&mut at, &mut line, length);
        } else if c.is_alphabetic() || c == '_' {
            let start = if c == 'r' && next == Some('#') { at + 2 } else { at };
            let length = chars[start..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').count();
            out.push((line, Token::Word(chars[start..start + length].iter().collect())));
            at = start + length;
        } else if c == ':' && next == Some(':') {
            out.push((line, Token::PathSeparator));
            at += 2;
        } else if c.is_whitespace() {
            advance(&mut at, &mut line, 1);
        } else {
            out.push((line, Token::Punct(c)));
            at += 1;
        }
    }
    out
}

/// The length of the string literal at the start of `chars` (`"…"`, `b"…"`, `r#"…"#`, `br"…"`,
/// `c"…"`), if one starts there.
fn string_literal(chars: &[char]) -> Option<usize> {
    let prefix = chars.iter().take_while(|c| matches!(c, 'b' | 'r' | 'c')).count().min(2);
    let raw = chars[..prefix].contains(&'r');
    let hashes = if raw { chars[prefix..].iter().take_while(|&&c| c == '#').count() } else { 0 };
    if chars.get(prefix + hashes) != Some(&'"') {
        return None;
    }
    let mut at = prefix + hashes + 1;
    while at < chars.len() {
        match chars[at] {
            '\\' if !raw => at += 2,
            '"' if chars[at + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes => {
                return Some(at + 1 + hashes);
            }
            _ => at += 1,
        }
    }
    Some(chars.len())
}

/// Every path in `text` that starts at `crate`, `super` or `self`, as its segments from the
/// crate's root, with the line of its last segment. `module` is the file's module path
/// (`["audit", "export"]` for `src/audit/export.rs`). A group gives one path per member
/// (`crate::{engine, store::X}` gives `engine` and `store::X`); a glob ends in `*`.
pub fn crate_paths(text: &str, module: &[&str]) -> Vec<(usize, Vec<String>)> {
    let tokens = tokens(text);
    let word = |at: usize| match tokens.get(at) {
        Some((_, Token::Word(word))) => Some(word.as_str()),
        _ => None,
    };
    let is = |at: usize, token: &Token| tokens.get(at).is_some_and(|(_, t)| t == token);
    let mut here: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    // The depth of braces at which each inline `mod NAME {` block the reader is in was opened.
    let mut inline_modules: Vec<usize> = Vec::new();
    let mut depth = 0;
    let mut paths = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        match &tokens[at].1 {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = usize::saturating_sub(depth, 1);
                if inline_modules.last() == Some(&depth) {
                    inline_modules.pop();
                    here.pop();
                }
            }
            Token::Word(keyword) if keyword == "mod" && is(at + 2, &Token::Punct('{')) => {
                if let Some(name) = word(at + 1) {
                    here.push(name.to_string());
                    inline_modules.push(depth);
                }
                at += 2;
                continue;
            }
            Token::Word(start)
                if matches!(start.as_str(), "crate" | "super" | "self")
                    && is(at + 1, &Token::PathSeparator)
                    && !(at > 0 && is(at - 1, &Token::PathSeparator)) =>
            {
                // Resolve the prefix (`crate`, `self`, any number of `super`) to a module.
                let mut base: Vec<String> = if start == "crate" { Vec::new() } else { here.clone() };
                if start == "super" {
                    base.pop();
                }
                at += 2;
                while word(at) == Some("super") && is(at + 1, &Token::PathSeparator) {
                    base.pop();
                    at += 2;
                }
                at = path_tree(&tokens, at, base, &mut paths);
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    paths
}

/// Reads the rest of a path (or a group of them) from `at`, below `prefix`, into `paths`; returns
/// where it stopped.
fn path_tree(
    tokens: &[(usize, Token)],
    mut at: usize,
    mut prefix: Vec<String>,
    paths: &mut Vec<(usize, Vec<String>)>,
) -> usize {
    let mut line = tokens.get(at).map_or(0, |(line, _)| *line);
    loop {
        match tokens.get(at) {
            Some((word_line, Token::Word(word))) if word != "self" && word != "as" => {
                prefix.push(word.clone());
                line = *word_line;
                at += 1;
                if !matches!(tokens.get(at), Some((_, Token::PathSeparator))) {
                    break;
                }
                at += 1;
            }
            Some((_, Token::Punct('{'))) => {
                at += 1;
                while let Some((_, token)) = tokens.get(at) {
                    match token {
                        Token::Punct('}') => return at + 1,
                        Token::Punct(',') => at += 1,
                        _ => {
                            at = path_tree(tokens, at, prefix.clone(), paths);
                            // Past the member's `as NAME`, if any, to the `,` or `}` after it.
                            while tokens.get(at).is_some_and(|(_, t)| !matches!(t, Token::Punct(',' | '}'))) {
                                at += 1;
                            }
                        }
                    }
                }
                return at;
            }
            Some((star_line, Token::Punct('*'))) => {
                prefix.push("*".to_string());
                line = *star_line;
                at += 1;
                break;
            }
            Some((self_line, Token::Word(word))) if word == "self" => {
                line = *self_line;
                at += 1;
                break;
            }
            _ => break,
        }
    }
    paths.push((line, prefix));
    at
}

/// The paths in `text` (a file of module `module`) that reach into one of `forbidden` (each a
/// module's segments from the crate root, as `["store"]` or `["runbook", "de"]`), as the line and
/// the path written from the root. A glob counts when it could bring a forbidden module in.
pub fn forbidden_paths(text: &str, module: &[&str], forbidden: &[&[&str]]) -> Vec<(usize, String)> {
    crate_paths(text, module)
        .into_iter()
        .filter(|(_, path)| {
            forbidden.iter().any(|forbidden| {
                let reaches = path.len() >= forbidden.len() && path.iter().zip(forbidden.iter()).all(|(a, b)| a == b);
                let glob_over = path.last().is_some_and(|last| last == "*")
                    && path.len() - 1 <= forbidden.len()
                    && path[..path.len() - 1].iter().zip(forbidden.iter()).all(|(a, b)| a == b);
                reaches || glob_over
            })
        })
        .map(|(line, path)| (line, path.join("::")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADAPTERS_AND_SHELL: &[&[&str]] =
        &[&["store"], &["actions"], &["render"], &["runtime"], &["server"], &["config"], &["cli"]];

    /// What the core rule finds in `text` as the file `src/audit/export.rs`.
    fn found(text: &str) -> Vec<(usize, String)> {
        forbidden_paths(text, &["audit", "export"], ADAPTERS_AND_SHELL)
    }

    fn one(line: usize, path: &str) -> Vec<(usize, String)> {
        vec![(line, path.to_string())]
    }

    #[test]
    fn every_way_of_writing_an_import_is_caught() {
        let cases: &[(&str, Vec<(usize, String)>)] = &[
            ("use crate::store::ChainLink;", one(1, "store::ChainLink")),
            ("use crate::store;", one(1, "store")),
            ("use crate::{engine, store::ChainLink};", one(1, "store::ChainLink")),
            ("use crate::{engine::Event, render};", one(1, "render")),
            (
                "use crate::{\n    engine::{self, Event},\n    runtime::{\n        Runtime,\n    },\n};",
                one(4, "runtime::Runtime"),
            ),
            ("use crate::{engine, config::{self as settings}};", one(1, "config")),
            ("use super::super::store::StoredCheckpoint;", one(1, "store::StoredCheckpoint")),
            ("use crate :: store :: ChainLink ;", one(1, "store::ChainLink")),
            ("use crate\n    ::cli\n    ::Args;", one(3, "cli::Args")),
            ("fn f(link: &crate::actions::Outcome) {}", one(1, "actions::Outcome")),
            ("let server = crate::server::App::new();", one(1, "server::App::new")),
            ("let quote = '\\''; use crate::store::X;", one(1, "store::X")),
            ("use crate::*;", one(1, "*")),
            ("use crate::store as adapter;", one(1, "store")),
            ("macro_rules! m { () => { $crate::render::Catalog } }", one(1, "render::Catalog")),
            ("mod tests {\n    use super::super::super::store::Store;\n}", one(2, "store::Store")),
            (
                "use crate::{engine, store::ChainLink, runtime::Runtime};",
                vec![(1, "store::ChainLink".to_string()), (1, "runtime::Runtime".to_string())],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&found(text), expected, "in {text:?}");
        }
    }

    #[test]
    fn super_resolves_from_where_the_file_is() {
        // From `src/audit/mod.rs`, one `super` is the crate's root.
        assert_eq!(forbidden_paths("use super::store::Store;", &["audit"], ADAPTERS_AND_SHELL), one(1, "store::Store"));
        // From `src/audit/export.rs`, one `super` is `audit`, which may have its own modules.
        assert_eq!(found("use super::store::Store;"), vec![]);
        // Inside `mod tests` of `src/audit/mod.rs`, `super` is `audit`.
        assert_eq!(forbidden_paths("mod tests {\n    use super::store;\n}", &["audit"], ADAPTERS_AND_SHELL), vec![]);
        assert_eq!(found("mod tests { use super::*; }"), vec![]);
    }

    #[test]
    fn prose_strings_and_lookalikes_are_not_imports() {
        let clean = [
            "// This used to import crate::store::ChainLink.",
            "/// See [`crate::store::Store`] for how it is kept.",
            "//! The core never names crate::runtime.",
            "/* use crate::{engine, store::X}; */",
            "/* outer /* nested */ crate::store */",
            r#"let message = "crate::store is not imported";"#,
            r##"let message = r#"use crate::{store}"#;"##,
            "let quote = '\"'; let text = \"crate::cli\";",
            "fn f<'a>(text: &'a str) -> &'a str { text }",
            "use crate::engine::store;",
            "use crate::storage::Thing;",
            "use crate::{engine::Event, audit::report};",
            "use super::verify::{Outcome, Problem};",
        ];
        for text in clean {
            assert_eq!(found(text), vec![], "in {text:?}");
        }
        // What follows a string, a character or a lifetime is still read.
        assert_eq!(found("let c = '\"'; use crate::store::X;"), one(1, "store::X"));
        assert_eq!(found("fn f<'a>(x: &'a crate::cli::Args) {}"), one(1, "cli::Args"));
        assert_eq!(found("let s = \"a \\\" b\"; use crate::config;"), one(1, "config"));
    }

    #[test]
    fn a_module_inside_the_core_can_be_forbidden() {
        let spanned = ["runbook", "spanned"];
        let de: &[&[&str]] = &[&["runbook", "de"]];
        assert_eq!(
            forbidden_paths("use super::de::{SPANNED, is_reported};", &spanned, de),
            vec![(1, "runbook::de::SPANNED".to_string()), (1, "runbook::de::is_reported".to_string())]
        );
        assert_eq!(forbidden_paths("use super::diagnostic::Mark;", &spanned, de), vec![]);
        assert_eq!(forbidden_paths("use crate::runbook::*;", &spanned, de), one(1, "runbook::*"));
        let runbook: &[&[&str]] = &[&["runbook"]];
        assert_eq!(
            forbidden_paths("let help = crate::runbook::diagnostic::did_you_mean(name, known);", &["expr"], runbook),
            one(1, "runbook::diagnostic::did_you_mean")
        );
        assert_eq!(forbidden_paths("use crate::spelling::did_you_mean;", &["expr"], runbook), vec![]);
    }
}
