//! A playbook that `phasegate export cacao` wrote, back to its runbook.
//!
//! The runbook comes from the CACAO properties where CACAO says it (the title, the description,
//! the inputs' types, descriptions and defaults, each phase's title and description, each step's
//! title and a manual step's instructions, the order of the commands) and from the `phasegate`
//! extension for the rest (ids, `needs`, `when`, gates, the steps' kinds and settings, controls,
//! audiences, status updates, triggers, rights). The workflow's shape is checked as any
//! playbook's is before this runs; `needs` come from the extension, which has them exactly.

use super::export::{EXTENSION, get};
use super::json::{Json, Value, pointer};
use super::yaml::Yaml;
use super::{Code, Problem};

/// Whether the playbook carries phasegate's extension on the playbook itself.
pub fn is_export(playbook: &Json) -> bool {
    playbook.get("playbook_extensions").and_then(|e| e.get(EXTENSION)).is_some()
}

/// The runbook of an exported playbook, as a tree; `None` (with problems) when the extension is
/// not as `phasegate export cacao` writes it.
pub fn restore(playbook: &Json, problems: &mut Vec<Problem>) -> Option<Yaml> {
    let at = format!("/playbook_extensions/{EXTENSION}");
    let extension = playbook.get("playbook_extensions")?.get(EXTENSION)?;
    let kept = object(extension, "runbook", &at, problems)?;
    let Yaml::Map(kept) = tree(kept) else { return None };
    let allowed = extension.get("input_allowed").map(tree);
    let mut top: Vec<(String, Yaml)> = kept;
    // The title and description follow the id and the version, as runbooks are written.
    let after = top.iter().rposition(|(k, _)| k == "id" || k == "version").map_or(0, |i| i + 1);
    let said: Vec<(String, Yaml)> = [("name", "title"), ("description", "description")]
        .into_iter()
        .filter_map(|(from, to)| playbook.get(from).map(|value| (to.to_string(), tree(value))))
        .collect();
    top.splice(after..after, said);
    if let Some(inputs) = inputs(playbook, allowed.as_ref()) {
        top.push(("inputs".into(), inputs));
    }
    let mut phases: Vec<(i64, Yaml)> = Vec::new();
    if let Some(Json { value: Value::Object(steps), .. }) = playbook.get("workflow") {
        for (id, _, step) in steps {
            let step_at = pointer("/workflow", id);
            if step.get("type").and_then(Json::as_str) != Some("action") {
                continue;
            }
            let Some(extension) = step.get("step_extensions").and_then(|e| e.get(EXTENSION)) else {
                problems.push(
                    Problem::error(
                        Code::MissingField,
                        &step_at,
                        step.mark,
                        "this action step of a phasegate export has no `phasegate` step extension",
                    )
                    .with_help(
                        "an export's action steps each carry their phase in the extension; export the runbook again",
                    ),
                );
                continue;
            };
            if let Some(phase) = phase(step, extension, &step_at, problems) {
                phases.push(phase);
            }
        }
    }
    phases.sort_by_key(|(position, _)| *position);
    top.push(("phases".into(), Yaml::List(phases.into_iter().map(|(_, phase)| phase).collect())));
    Some(Yaml::Map(top))
}

/// The inputs from `playbook_variables`, with the `allowed` lists the extension keeps.
fn inputs(playbook: &Json, allowed: Option<&Yaml>) -> Option<Yaml> {
    let Value::Object(variables) = &playbook.get("playbook_variables")?.value else { return None };
    let inputs = variables
        .iter()
        .map(|(name, _, variable)| {
            let name = name.trim_start_matches("__").trim_end_matches("__").to_string();
            let kind = match variable.get("type").and_then(Json::as_str) {
                Some("integer" | "long") => "integer",
                Some("float") => "number",
                Some("bool") => "boolean",
                _ => "string",
            };
            let mut pairs = vec![("type".to_string(), Yaml::str(kind))];
            if let Some(description) = variable.get("description") {
                pairs.push(("description".into(), tree(description)));
            }
            if let Some(value) = variable.get("value").and_then(Json::as_str) {
                let typed = match kind {
                    "integer" => value.parse().map(Yaml::Int).unwrap_or_else(|_| Yaml::str(value)),
                    "number" => Yaml::Num(value.to_string()),
                    "boolean" => Yaml::Bool(value == "true"),
                    _ => Yaml::str(value),
                };
                pairs.push(("default".into(), typed));
            }
            if let Some(values) = allowed.and_then(|a| get(a, &name)) {
                pairs.push(("allowed".into(), values.clone()));
            }
            (name, Yaml::Map(pairs))
        })
        .collect();
    Some(Yaml::Map(inputs))
}

/// One phase: its position among the phases, and the phase.
fn phase(step: &Json, extension: &Json, at: &str, problems: &mut Vec<Problem>) -> Option<(i64, Yaml)> {
    let ext_at = pointer(&pointer(at, "step_extensions"), EXTENSION);
    let position = match extension.get("position").map(|p| &p.value) {
        Some(Value::Number(n)) => n.parse::<i64>().ok(),
        _ => None,
    };
    let Some(position) = position else {
        problems.push(Problem::error(
            Code::WrongType,
            &ext_at,
            extension.mark,
            "the `phasegate` extension has no whole-number `position`",
        ));
        return None;
    };
    let Yaml::Map(kept) = tree(object(extension, "phase", &ext_at, problems)?) else { return None };
    let mut pairs = Vec::new();
    for (key, value) in kept {
        pairs.push((key.clone(), value));
        if key == "id" {
            for (from, to) in [("name", "title"), ("description", "description")] {
                if let Some(value) = step.get(from) {
                    pairs.push((to.to_string(), tree(value)));
                }
            }
        }
    }
    let commands = match step.get("commands").map(|c| &c.value) {
        Some(Value::Array(commands)) => commands.as_slice(),
        _ => &[],
    };
    let kept_steps = match extension.get("steps").map(|s| &s.value) {
        Some(Value::Array(steps)) => steps.as_slice(),
        _ => &[],
    };
    if !kept_steps.is_empty() && kept_steps.len() != commands.len() {
        problems.push(
            Problem::error(
                Code::Unsupported,
                &pointer(at, "commands"),
                step.mark,
                format!(
                    "the action has {} command(s) but its `phasegate` extension {} step(s); they go one to one",
                    commands.len(),
                    kept_steps.len()
                ),
            )
            .with_help(
                "a command added or removed after the export cannot be matched to its step; export the runbook again",
            ),
        );
        return None;
    }
    let steps: Vec<Yaml> = kept_steps.iter().zip(commands).map(|(kept, command)| step_of(kept, command)).collect();
    if !steps.is_empty() {
        pairs.push(("steps".into(), Yaml::List(steps)));
    }
    Some((position, Yaml::Map(pairs)))
}

/// A step from what the extension kept and its command (the title, a manual step's instructions).
fn step_of(kept: &Json, command: &Json) -> Yaml {
    let Yaml::Map(kept) = tree(kept) else { return Yaml::Map(Vec::new()) };
    let mut pairs = Vec::new();
    for (key, value) in kept {
        let value = match (key.as_str(), value) {
            ("manual", Yaml::Map(mut manual)) => {
                let instructions = command.get("command").map_or(Yaml::str(""), tree);
                manual.insert(0, ("instructions".into(), instructions));
                Yaml::Map(manual)
            }
            (_, value) => value,
        };
        pairs.push((key.clone(), value));
        if key == "id"
            && let Some(title) = command.get("description")
        {
            pairs.push(("title".into(), tree(title)));
        }
    }
    Yaml::Map(pairs)
}

fn object<'a>(json: &'a Json, key: &str, at: &str, problems: &mut Vec<Problem>) -> Option<&'a Json> {
    match json.get(key) {
        Some(value @ Json { value: Value::Object(_), .. }) => Some(value),
        Some(other) => {
            problems.push(Problem::error(
                Code::WrongType,
                &pointer(at, key),
                other.mark,
                format!("`{key}` of the `phasegate` extension is an object, this is {}", other.describe()),
            ));
            None
        }
        None => {
            problems.push(Problem::error(
                Code::MissingField,
                at,
                json.mark,
                format!("the `phasegate` extension has no `{key}`"),
            ));
            None
        }
    }
}

/// A JSON value as the runbook's tree, in the order written.
fn tree(json: &Json) -> Yaml {
    match &json.value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Bool(*b),
        Value::Number(text) => text.parse().map(Yaml::Int).unwrap_or_else(|_| Yaml::Num(text.clone())),
        Value::String(text) => Yaml::Str(text.clone()),
        Value::Array(items) => Yaml::List(items.iter().map(tree).collect()),
        Value::Object(members) => Yaml::Map(members.iter().map(|(k, _, v)| (k.clone(), tree(v))).collect()),
    }
}
