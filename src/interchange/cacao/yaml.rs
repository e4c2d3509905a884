//! The runbook the importer writes, as an ordered tree, and its YAML text.
//!
//! Keys keep the order they are given in, so the runbook reads as runbooks are written (id and
//! title first, phases in the workflow's order). Strings that YAML could read as anything else
//! are written in double quotes, which YAML reads as JSON does, so no value changes type.

/// A value of the runbook being written.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Str(String),
    Int(i64),
    /// A number as written in the CACAO file.
    Num(String),
    Bool(bool),
    Null,
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub fn str(text: impl Into<String>) -> Yaml {
        Yaml::Str(text.into())
    }

    /// A mapping from pairs, in the order given.
    pub fn map<const N: usize>(pairs: [(&str, Yaml); N]) -> Yaml {
        Yaml::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// The JSON value the CACAO file gave, as YAML.
    pub fn from_serde(value: &serde_json::Value) -> Yaml {
        match value {
            serde_json::Value::Null => Yaml::Str(String::new()),
            serde_json::Value::Bool(b) => Yaml::Bool(*b),
            serde_json::Value::Number(n) => Yaml::Num(n.to_string()),
            serde_json::Value::String(s) => Yaml::Str(s.clone()),
            serde_json::Value::Array(items) => Yaml::List(items.iter().map(Yaml::from_serde).collect()),
            serde_json::Value::Object(members) => {
                Yaml::Map(members.iter().map(|(k, v)| (k.clone(), Yaml::from_serde(v))).collect())
            }
        }
    }
}

/// The JSON text of `value`, indented by two spaces, keys in the order given: the text of an
/// export, which must come out the same, byte for byte, each time.
pub fn to_json(value: &Yaml) -> String {
    let mut out = String::new();
    json(&mut out, value, 0);
    out.push('\n');
    out
}

fn json(out: &mut String, value: &Yaml, depth: usize) {
    let quoted = |text: &str| serde_json::to_string(text).expect("a string always serializes");
    match value {
        Yaml::List(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                json(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        Yaml::Map(pairs) if !pairs.is_empty() => {
            out.push('{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                out.push_str(&quoted(key));
                out.push_str(": ");
                json(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push('}');
        }
        Yaml::Str(text) => out.push_str(&quoted(text)),
        other => out.push_str(&inline(other)),
    }
}

/// The YAML text of a document whose top is `value`.
pub fn to_text(value: &Yaml) -> String {
    let mut out = String::new();
    match value {
        Yaml::Map(pairs) if !pairs.is_empty() => map(&mut out, pairs, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn map(out: &mut String, pairs: &[(String, Yaml)], depth: usize) {
    for (key, value) in pairs {
        indent(out, depth);
        out.push_str(&scalar_key(key));
        out.push(':');
        nested(out, value, depth);
    }
}

/// What follows `key:` or `- `: a scalar on the same line, or a block below.
fn nested(out: &mut String, value: &Yaml, depth: usize) {
    match value {
        Yaml::Map(pairs) if !pairs.is_empty() => {
            out.push('\n');
            map(out, pairs, depth + 1);
        }
        Yaml::List(items) if !items.is_empty() => {
            out.push('\n');
            list(out, items, depth + 1);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn list(out: &mut String, items: &[Yaml], depth: usize) {
    for item in items {
        indent(out, depth);
        match item {
            Yaml::Map(pairs) if !pairs.is_empty() => {
                out.push_str("- ");
                // The first key goes on the dash's line; the rest line up under it.
                let (key, value) = &pairs[0];
                out.push_str(&scalar_key(key));
                out.push(':');
                nested(out, value, depth + 1);
                map(out, &pairs[1..], depth + 1);
            }
            Yaml::List(inner) if !inner.is_empty() => {
                out.push_str("-\n");
                list(out, inner, depth + 1);
            }
            other => {
                out.push_str("- ");
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

fn inline(value: &Yaml) -> String {
    match value {
        Yaml::Str(text) => scalar(text),
        Yaml::Int(n) => n.to_string(),
        Yaml::Num(n) => n.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => "null".to_string(),
        Yaml::List(_) => "[]".to_string(),
        Yaml::Map(_) => "{}".to_string(),
    }
}

/// A string as a plain scalar when YAML would read it back as the same string, else quoted.
fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "nan" | "inf"
        );
    if plain { text.to_string() } else { serde_json::to_string(text).expect("a string always serializes") }
}

fn scalar_key(text: &str) -> String {
    scalar(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_block_yaml_with_risky_strings_quoted() {
        let doc = Yaml::map([
            ("id", Yaml::str("a-b")),
            ("title", Yaml::str("yes: no")),
            (
                "list",
                Yaml::List(vec![
                    Yaml::map([("id", Yaml::str("x")), ("count", Yaml::Int(3)), ("n", Yaml::str("n"))]),
                    Yaml::str("true"),
                ]),
            ),
            ("empty", Yaml::List(Vec::new())),
        ]);
        assert_eq!(
            to_text(&doc),
            "id: a-b\ntitle: \"yes: no\"\nlist:\n  - id: x\n    count: 3\n    \"n\": \"n\"\n  - \"true\"\nempty: []\n"
        );
    }
}
