//! Properties a CACAO 2.0 object does not define: reported as warnings (CA0019), each with its
//! JSON pointer and the line and column of its key, so that nothing is dropped without a word.
//!
//! The lists below are the properties the standard's JSON Schemas define for each object. The
//! contents of extensions (`playbook_extensions`, `step_extensions`, `agent_target_extensions`)
//! follow their extension's own schema and are not checked here; neither are objects whose
//! vocabulary is open (an unknown command or agent type, already reported as such) and those the
//! importer only names (authentication information, data markings, signatures).

use super::json::{Json, Value, pointer};
use super::{Code, Problem};

const PLAYBOOK: &[&str] = &[
    "type",
    "spec_version",
    "id",
    "name",
    "description",
    "playbook_types",
    "playbook_activities",
    "playbook_processing_summary",
    "created_by",
    "created",
    "modified",
    "revoked",
    "valid_from",
    "valid_until",
    "derived_from",
    "related_to",
    "priority",
    "severity",
    "impact",
    "industry_sectors",
    "labels",
    "external_references",
    "markings",
    "playbook_variables",
    "workflow_start",
    "workflow_exception",
    "workflow",
    "playbook_extensions",
    "authentication_info_definitions",
    "agent_definitions",
    "target_definitions",
    "extension_definitions",
    "data_marking_definitions",
    "signatures",
];

const STEP: &[&str] = &[
    "type",
    "name",
    "description",
    "external_references",
    "delay",
    "timeout",
    "step_variables",
    "owner",
    "on_completion",
    "on_success",
    "on_failure",
    "step_extensions",
];

/// What each workflow step type adds to [`STEP`].
fn step_type(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "start" | "end" => &[],
        "action" => &["commands", "agent", "targets", "in_args", "out_args"],
        "playbook-action" => &["playbook_id", "playbook_version", "agent", "targets", "in_args", "out_args"],
        "parallel" => &["next_steps"],
        "if-condition" | "while-condition" => &["condition", "on_true", "on_false"],
        "switch-condition" => &["switch", "cases"],
        _ => return None,
    })
}

const COMMAND: &[&str] = &["type", "description", "version", "playbook_activity", "external_references"];

/// What the command types whose schemas phasegate reads add to [`COMMAND`].
fn command_type(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "manual" | "bash" => &["command", "command_b64"],
        "http-api" => &["command", "command_b64", "headers", "content", "content_b64"],
        _ => return None,
    })
}

const AGENT: &[&str] = &["type", "name", "description", "location", "agent_target_extensions"];

/// What each agent and target type adds to [`AGENT`].
fn agent_type(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "group" | "individual" | "organization" => &["contact"],
        "location" => &["logical"],
        "sector" => &["sector"],
        "security-category" => &["category"],
        "net-address" => &["address", "authentication_info", "category"],
        "http-api" | "linux" | "ssh" => &["address", "port", "authentication_info", "category"],
        _ => return None,
    })
}

const VARIABLE: &[&str] = &["type", "description", "value", "constant", "external"];

const EXTENSION_DEFINITION: &[&str] =
    &["type", "name", "description", "created_by", "schema", "version", "external_references"];

const EXTERNAL_REFERENCE: &[&str] = &["name", "description", "source", "url", "external_id", "reference_id"];

/// Every property of the playbook that its object does not define, as a warning.
pub fn check(playbook: &Json) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut report = |json: &Json, at: &str, known: &[&str], extra: &[&str], what: &str| {
        let Value::Object(members) = &json.value else { return };
        for (key, mark, _) in members {
            if !known.contains(&key.as_str()) && !extra.contains(&key.as_str()) {
                problems.push(
                    Problem::warning(
                        Code::UnknownProperty,
                        &pointer(at, key),
                        *mark,
                        format!("`{key}` is not a property of {what} in CACAO 2.0; it was not read"),
                    )
                    .with_help("put what the standard has no property for in an extension (`extension_definitions`)"),
                );
            }
        }
    };
    report(playbook, "", PLAYBOOK, &[], "the playbook");
    references(playbook, "", &mut report);
    for (id, at, step) in members(playbook, "", "workflow") {
        let kind = step.get("type").and_then(Json::as_str).unwrap_or_default();
        let Some(extra) = step_type(kind) else { continue };
        report(step, &at, STEP, extra, &format!("the `{kind}` step `{id}`"));
        references(step, &at, &mut report);
        for (name, variable_at, variable) in members(step, &at, "step_variables") {
            report(variable, &variable_at, VARIABLE, &[], &format!("the variable `{name}`"));
        }
        if let Some(Json { value: Value::Array(commands), .. }) = step.get("commands") {
            for (n, command) in commands.iter().enumerate() {
                let kind = command.get("type").and_then(Json::as_str).unwrap_or_default();
                let Some(extra) = command_type(kind) else { continue };
                let command_at = pointer(&pointer(&at, "commands"), &n.to_string());
                report(command, &command_at, COMMAND, extra, &format!("this `{kind}` command"));
                references(command, &command_at, &mut report);
            }
        }
    }
    for (name, at, variable) in members(playbook, "", "playbook_variables") {
        report(variable, &at, VARIABLE, &[], &format!("the variable `{name}`"));
    }
    for field in ["agent_definitions", "target_definitions"] {
        for (id, at, agent) in members(playbook, "", field) {
            let kind = agent.get("type").and_then(Json::as_str).unwrap_or_default();
            let Some(extra) = agent_type(kind) else { continue };
            report(agent, &at, AGENT, extra, &format!("the `{kind}` agent or target `{id}`"));
        }
    }
    for (id, at, definition) in members(playbook, "", "extension_definitions") {
        report(definition, &at, EXTENSION_DEFINITION, &[], &format!("the extension definition `{id}`"));
        references(definition, &at, &mut report);
    }
    problems
}

/// The members of the object `json[field]`: each key, its pointer and its value.
fn members<'a>(json: &'a Json, at: &str, field: &str) -> Vec<(&'a str, String, &'a Json)> {
    let field_at = pointer(at, field);
    match json.get(field).map(|value| &value.value) {
        Some(Value::Object(members)) => {
            members.iter().map(|(key, _, value)| (key.as_str(), pointer(&field_at, key), value)).collect()
        }
        _ => Vec::new(),
    }
}

/// The object's `external_references`, each checked.
fn references(json: &Json, at: &str, report: &mut impl FnMut(&Json, &str, &[&str], &[&str], &str)) {
    if let Some(Json { value: Value::Array(items), .. }) = json.get("external_references") {
        let list_at = pointer(at, "external_references");
        for (n, item) in items.iter().enumerate() {
            report(item, &pointer(&list_at, &n.to_string()), EXTERNAL_REFERENCE, &[], "an external reference");
        }
    }
}
