//! How big a condition is, counted on CEL's tokens before CEL's parser sees it.
//!
//! CEL's parser recurses on every bracket and every left-nested operator, and in a debug build it
//! overflows a 2 MiB thread stack at a dozen brackets, so conditions are measured first. The
//! measuring reads the text the way CEL's lexer does; see [`check_size`].

use super::{Error, MAX_LENGTH, MAX_NESTING, MAX_OPERATORS};

/// Refuses conditions that could exhaust the parser's stack, before the parser sees them.
///
/// The text is split into tokens the way CEL's lexer splits it, so brackets and operators inside
/// string literals and comments do not count. Text that CEL's lexer would not accept (a string that
/// is not closed, a lone `&`) is refused here as a syntax error: CEL's lexer skips such text and
/// parses what follows it, so brackets hidden behind it would reach the parser uncounted. For the
/// same reason a closing bracket must close the bracket opened last.
pub fn check_size(source: &str) -> Result<(), Error> {
    if source.len() > MAX_LENGTH {
        return Err(Error::TooComplex {
            message: format!("it is {} bytes long, the limit is {MAX_LENGTH}", source.len()),
        });
    }
    let chars: Vec<char> = source.chars().collect();
    let mut open: Vec<char> = Vec::new();
    let mut operators = 0usize;
    let mut at = 0;
    while let Some(&character) = chars.get(at) {
        let next = chars.get(at + 1).copied();
        let mut operator = true;
        at = match character {
            '\t' | ' ' | '\r' | '\n' | '\u{c}' => {
                operator = false;
                at + 1
            }
            '/' if next == Some('/') => {
                operator = false;
                chars[at..].iter().position(|&c| c == '\n').map_or(chars.len(), |offset| at + offset)
            }
            '"' | '\'' => {
                operator = false;
                string_end(&chars, at, false).map_err(|problem| syntax(&chars, at, problem))?
            }
            'a'..='z' | 'A'..='Z' | '_' => {
                let end = chars[at..]
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(chars.len(), |offset| at + offset);
                let word: String = chars[at..end].iter().collect();
                let prefixed = matches!(word.as_str(), "r" | "R" | "b" | "B" | "br" | "bR" | "Br" | "BR");
                match chars.get(end) {
                    Some('"' | '\'') if prefixed => {
                        operator = false;
                        let raw = word.contains(['r', 'R']);
                        string_end(&chars, end, raw).map_err(|problem| syntax(&chars, at, problem))?
                    }
                    _ => {
                        operator = word == "in";
                        end
                    }
                }
            }
            '0'..='9' => {
                operator = false;
                number_end(&chars, at)
            }
            '.' if next.is_some_and(|c| c.is_ascii_digit()) => {
                operator = false;
                fraction_end(&chars, at)
            }
            '`' => {
                operator = false;
                let name = chars[at + 1..]
                    .iter()
                    .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ' '))
                    .count();
                if name == 0 || chars.get(at + 1 + name) != Some(&'`') {
                    return Err(syntax(&chars, at, "a quoted name is not closed with `` ` ``"));
                }
                at + name + 2
            }
            '(' | '[' | '{' => {
                open.push(character);
                if open.len() > MAX_NESTING {
                    return Err(Error::TooComplex {
                        message: format!("brackets nest deeper than {MAX_NESTING} levels"),
                    });
                }
                at + 1
            }
            ')' | ']' | '}' => {
                operator = false;
                let expected = match open.pop() {
                    Some('(') => ')',
                    Some('[') => ']',
                    Some(_) => '}',
                    None => return Err(syntax(&chars, at, "a closing bracket has no opening bracket")),
                };
                if character != expected {
                    return Err(syntax(&chars, at, "a closing bracket does not match the bracket it closes"));
                }
                at + 1
            }
            '&' | '|' | '=' if next == Some(character) => at + 2,
            '!' | '<' | '>' if next == Some('=') => at + 2,
            '!' | '<' | '>' | '-' | '+' | '*' | '/' | '%' | '.' | '?' | ',' => at + 1,
            ':' => {
                operator = false;
                at + 1
            }
            _ => return Err(syntax(&chars, at, &format!("unexpected character `{character}`"))),
        };
        if operator {
            operators += 1;
            if operators > MAX_OPERATORS {
                return Err(Error::TooComplex {
                    message: format!("it has more than {MAX_OPERATORS} operators and brackets"),
                });
            }
        }
    }
    Ok(())
}

/// A syntax error found while counting, placed the way [`super::compile`] places the parser's errors.
fn syntax(chars: &[char], at: usize, problem: &str) -> Error {
    let line_start = chars[..at].iter().rposition(|&c| c == '\n').map_or(0, |index| index + 1);
    let column = at - line_start + 1;
    let place = if chars.contains(&'\n') {
        format!("line {}, column {column}", chars[..at].iter().filter(|&&c| c == '\n').count() + 1)
    } else {
        format!("column {column}")
    };
    Error::Syntax { message: format!("{problem} (at {place})") }
}

/// Where the string literal whose quote is at `quote` ends, as CEL's lexer reads it: a tripled
/// quote that is never closed is read as an empty string followed by a quote.
fn string_end(chars: &[char], quote: usize, raw: bool) -> Result<usize, &'static str> {
    let delimiter = chars[quote];
    let is_delimiter = |index: usize| chars.get(index) == Some(&delimiter);
    if is_delimiter(quote + 1) && is_delimiter(quote + 2) {
        let mut at = quote + 3;
        while at < chars.len() {
            if is_delimiter(at) && is_delimiter(at + 1) && is_delimiter(at + 2) {
                return Ok(at + 3);
            }
            at = if chars[at] == '\\' && !raw {
                match escape_end(chars, at) {
                    Some(end) => end,
                    None => return Ok(quote + 2),
                }
            } else {
                at + 1
            };
        }
        return Ok(quote + 2);
    }
    let mut at = quote + 1;
    loop {
        at = match chars.get(at) {
            None | Some('\n' | '\r') => return Err("a string is not closed on its line"),
            Some(&c) if c == delimiter => return Ok(at + 1),
            Some('\\') if !raw => escape_end(chars, at).ok_or("a string has an invalid escape sequence")?,
            Some(_) => at + 1,
        };
    }
}

/// Where the escape sequence starting with the backslash at `at` ends, if it is one CEL knows.
fn escape_end(chars: &[char], at: usize) -> Option<usize> {
    let digits = |from: usize, count: usize, valid: fn(&char) -> bool| {
        (chars.len() >= from + count && chars[from..from + count].iter().all(valid)).then_some(from + count)
    };
    match chars.get(at + 1)? {
        'a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '"' | '\'' | '\\' | '?' | '`' => Some(at + 2),
        'x' | 'X' => digits(at + 2, 2, char::is_ascii_hexdigit),
        'u' => digits(at + 2, 4, char::is_ascii_hexdigit),
        'U' => digits(at + 2, 8, char::is_ascii_hexdigit),
        '0'..='3' => digits(at + 2, 2, |c| matches!(c, '0'..='7')),
        _ => None,
    }
}

/// Where the number starting with the digit at `at` ends: `0x1f`, `12`, `12u`, `1.5`, `1e-3`.
fn number_end(chars: &[char], at: usize) -> usize {
    let run = |from: usize, valid: fn(&char) -> bool| {
        from + chars[from.min(chars.len())..].iter().take_while(|c| valid(c)).count()
    };
    if chars[at] == '0' && chars.get(at + 1) == Some(&'x') && chars.get(at + 2).is_some_and(char::is_ascii_hexdigit) {
        let end = run(at + 2, char::is_ascii_hexdigit);
        return if matches!(chars.get(end), Some('u' | 'U')) { end + 1 } else { end };
    }
    let end = run(at, char::is_ascii_digit);
    if chars.get(end) == Some(&'.') && chars.get(end + 1).is_some_and(char::is_ascii_digit) {
        return fraction_end(chars, end);
    }
    match chars.get(end) {
        Some('u' | 'U') => end + 1,
        Some('e' | 'E') => exponent_end(chars, end).unwrap_or(end),
        _ => end,
    }
}

/// Where the fraction starting with the `.` at `at` (a digit follows it) ends, with its exponent.
fn fraction_end(chars: &[char], at: usize) -> usize {
    let end = at + 1 + chars[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    exponent_end(chars, end).unwrap_or(end)
}

/// Where the exponent (`e5`, `E-3`) at `at` ends, if there is a whole one.
fn exponent_end(chars: &[char], at: usize) -> Option<usize> {
    if !matches!(chars.get(at), Some('e' | 'E')) {
        return None;
    }
    let digits_from = if matches!(chars.get(at + 1), Some('+' | '-')) { at + 2 } else { at + 1 };
    let digits = chars.get(digits_from..)?.iter().take_while(|c| c.is_ascii_digit()).count();
    (digits > 0).then_some(digits_from + digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok`, or the refusal's message.
    fn outcome(source: &str) -> Result<(), String> {
        check_size(source).map_err(|error| error.to_string())
    }

    fn nested(open: &str, close: &str, levels: usize) -> String {
        format!("{}1{}", open.repeat(levels), close.repeat(levels))
    }

    #[test]
    fn limits_are_exact() {
        let deep = "condition is too complex: brackets nest deeper than 8 levels";
        let many = "condition is too complex: it has more than 256 operators and brackets";
        let table: Vec<(String, Result<(), &str>)> = vec![
            (nested("(", ")", MAX_NESTING), Ok(())),
            (nested("(", ")", MAX_NESTING + 1), Err(deep)),
            (nested("[", "]", MAX_NESTING + 1), Err(deep)),
            (nested("{1: ", "}", MAX_NESTING + 1), Err(deep)),
            (format!("{}true", "!".repeat(MAX_OPERATORS)), Ok(())),
            (format!("{}true", "!".repeat(MAX_OPERATORS + 1)), Err(many)),
            (vec!["a"; MAX_OPERATORS + 1].join(" && "), Ok(())),
            (vec!["a"; MAX_OPERATORS + 2].join(" && "), Err(many)),
            // Neither keeps a character for itself: `in` and an index's bracket nest like operators.
            (format!("a{}", " in b".repeat(MAX_OPERATORS + 1)), Err(many)),
            (format!("a{}", "[0]".repeat(MAX_OPERATORS + 1)), Err(many)),
            (format!("'{}'", "a".repeat(MAX_LENGTH - 2)), Ok(())),
            (
                format!("'{}'", "a".repeat(MAX_LENGTH - 1)),
                Err("condition is too complex: it is 4097 bytes long, the limit is 4096"),
            ),
        ];
        for (source, expected) in &table {
            assert_eq!(outcome(source), expected.map_err(str::to_string), "{source}");
        }
    }

    #[test]
    fn strings_and_comments_hide_brackets_only_where_cel_reads_them() {
        let too_deep = Err("condition is too complex: brackets nest deeper than 8 levels");
        let deep = nested("(", ")", MAX_NESTING + 1);
        let table: Vec<(String, Result<(), &str>)> = vec![
            ("'((((((((((' == \"]]]]]]]]]]\"".to_string(), Ok(())),
            ("\"\\\"((((((((((\" == 'x'".to_string(), Ok(())),
            ("'''it's ((((((((((''' == \"\"\"a\"b))))))))))\"\"\"".to_string(), Ok(())),
            ("b'((((((((((' == br\"\\(((((((((((\"".to_string(), Ok(())),
            ("x // ((((((((((\n && y".to_string(), Ok(())),
            // A raw string ends at its first quote: a backslash does not escape it.
            (format!("r\"\\\" + {deep}"), too_deep),
            (format!("br'\\' + {deep}"), too_deep),
            // A triple-quoted string ends at the first tripled quote, and holds single ones.
            (format!("'''it's''' + {deep}"), too_deep),
            // A quote in a comment opens no string.
            (format!("x // it's\n && {deep}"), too_deep),
            // `0xb` is a number, so `r` starts a raw string.
            (format!("0xbr\"\\\" + {deep}"), too_deep),
            // `rb` is a name, so `\"` escapes nothing and the string closes at the last quote.
            ("rb\"\\\"((((((((((\" == x".to_string(), Ok(())),
        ];
        for (source, expected) in &table {
            assert_eq!(outcome(source), expected.map_err(str::to_string), "{source}");
        }
    }

    #[test]
    fn what_cel_would_skip_is_refused_as_a_syntax_error() {
        let table: &[(&str, &str)] = &[
            ("\"unclosed ((((((((((", "a string is not closed on its line (at column 1)"),
            ("x == 'two\nlines'", "a string is not closed on its line (at line 1, column 6)"),
            ("'''never closed", "a string is not closed on its line (at column 3)"),
            ("\"a\\qb\" == x", "a string has an invalid escape sequence (at column 1)"),
            ("x &\"((((((((((\"", "unexpected character `&` (at column 3)"),
            ("x &&\n  y # z", "unexpected character `#` (at line 2, column 5)"),
            ("(]", "a closing bracket does not match the bracket it closes (at column 2)"),
            (")(", "a closing bracket has no opening bracket (at column 1)"),
            ("`a-b", "a quoted name is not closed with `` ` `` (at column 1)"),
        ];
        for (source, expected) in table {
            assert_eq!(outcome(source), Err(format!("condition does not parse: {expected}")), "{source}");
            // Refusing early never refuses what CEL would accept.
            assert!(cel::Program::compile(source).is_err(), "CEL accepts {source:?}");
        }
    }

    #[test]
    fn cel_reads_the_same_tokens() {
        // Each counts as shallow here, so CEL must read the brackets inside as string or comment too:
        // were they brackets to CEL, these would not parse.
        for source in [
            "'(((' == \"]]]\"",
            "'''it's ((''' == \"\"\"a\"b))\"\"\"",
            "b'((' == br\"\\(\"",
            "r'\\' == R\"\\\"",
            "x // ((((\n && y",
            "\"\\x41\\u0042\\U00000043\\101\\n\" == '\\''",
            "0x1fu + 1.5e-3 + .5e2 + 12u + 1e5 > 0.0",
            "a.`b-c` == 1",
        ] {
            assert_eq!(outcome(source), Ok(()), "{source}");
            if !source.contains('`') {
                assert!(cel::Program::compile(source).is_ok(), "CEL refuses {source:?}");
            }
        }
    }
}
