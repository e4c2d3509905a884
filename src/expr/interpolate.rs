//! Strings with CEL expressions in them: `https://edr.example/api/hosts/${inputs.host}/isolate`.
//!
//! `${` opens an expression and the matching `}` closes it (braces and quotes inside the
//! expression are respected); `$${` writes a literal `${`. The engine evaluates each expression
//! when the step runs and writes its value as text.

use super::{Condition, Error, Names, compile};

/// A piece of an interpolated string.
#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    Expression(Condition),
}

/// Splits `source` into text and compiled expressions, or reports every expression that fails.
pub fn interpolate(source: &str, names: &Names) -> Result<Vec<Part>, Vec<Error>> {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    let mut text = String::new();
    let mut rest = source;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${` is an escaped `${`.
            text.push_str(&rest[..start - 1]);
            text.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        text.push_str(&rest[..start]);
        let body = &rest[start + 2..];
        let Some(end) = closing_brace(body) else {
            errors.push(Error::Syntax {
                message: format!("`${{` at byte {} has no closing `}}`", source.len() - rest.len() + start),
            });
            return Err(errors);
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        let expression = body[..end].trim();
        if expression.is_empty() {
            errors.push(Error::Syntax { message: "`${}` holds no expression".to_string() });
        } else {
            match compile(expression, names) {
                Ok(condition) => parts.push(Part::Expression(condition)),
                Err(found) => errors.extend(found),
            }
        }
        rest = &body[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    if errors.is_empty() { Ok(parts) } else { Err(errors) }
}

/// The byte index of the `}` that closes an expression, skipping nested braces and string literals.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, character) in body.char_indices() {
        if let Some(open) = quote {
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if character == open => quote = None,
                _ => {}
            }
            continue;
        }
        match character {
            '"' | '\'' => quote = Some(character),
            '{' => depth += 1,
            '}' if depth == 0 => return Some(index),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names { variables: vec!["inputs", "incident"], inputs: vec!["host".into()], ..Names::default() }
    }

    /// The parts as `text` and `{expression}`, or the first error.
    fn shape(source: &str) -> Result<String, String> {
        interpolate(source, &names())
            .map(|parts| {
                parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(text) => text.clone(),
                        Part::Expression(condition) => format!("{{{}}}", condition.source()),
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .map_err(|errors| errors[0].to_string())
    }

    #[test]
    fn table() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("plain", Ok("plain")),
            ("https://edr/api/${inputs.host}/isolate", Ok("https://edr/api/|{inputs.host}|/isolate")),
            ("${inputs.host}", Ok("{inputs.host}")),
            ("cost $${not an expression}", Ok("cost ${not an expression}")),
            ("${ {'a': inputs.host}['a'] }", Ok("{{'a': inputs.host}['a']}")),
            ("${ '}' + inputs.host }", Ok("{'}' + inputs.host}")),
            ("Incident ${incident.id}: ${inputs.host}", Ok("Incident |{incident.id}|: |{inputs.host}")),
            ("${inputs.hots}", Err("condition refers to unknown input `hots`")),
            ("${inputs.host", Err("condition does not parse: `${` at byte 0 has no closing `}`")),
            ("a ${ }", Err("condition does not parse: `${}` holds no expression")),
        ];
        for (source, expected) in table {
            assert_eq!(shape(source).as_deref().map_err(String::as_str), *expected, "{source}");
        }
    }
}
