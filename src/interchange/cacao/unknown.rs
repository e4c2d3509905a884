//! Properties a CACAO 2.0 object does not define: reported as warnings (CA0019), each with its
//! JSON pointer and the line and column of its key, so that nothing is dropped without a word.
//!
//! The lists below are the properties the standard's JSON Schemas define for each object: the
//! playbook, its processing summary, workflow steps, every command type, variables, agents and
//! targets, authentication information, data markings, signatures (countersignatures too) and
//! extension definitions. The contents of extensions (`playbook_extensions`, `step_extensions`,
//! `agent_target_extensions`, ...) follow their extension's own schema and are not checked here;
//! neither are objects of a type outside the standard's vocabulary (an unknown command type is
//! reported as such, CA0025).

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

/// What each of CACAO 2.0's command types adds to [`COMMAND`].
fn command_type(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "manual" | "bash" | "caldera-cmd" | "powershell" | "ssh" => &["command", "command_b64"],
        "elastic" | "jupyter" | "kestrel" | "sigma" | "yara" => &["command_b64"],
        "http-api" => &["command", "command_b64", "headers", "content", "content_b64"],
        "openc2-http" => &["command", "content_b64", "headers"],
        _ => return None,
    })
}

/// Properties a command type does not define that the importer reads all the same, as it reads
/// them of every command (the command's text, its content): reported, but not as dropped.
const COMMAND_READ_ANYWAY: &[&str] = &["command", "command_b64", "content", "content_b64"];

const PROCESSING_SUMMARY: &[&str] = &[
    "manual_playbook",
    "external_playbooks",
    "parallel_processing",
    "if_logic",
    "while_logic",
    "switch_logic",
    "temporal_logic",
    "data_markings",
    "digital_signatures",
    "countersigned_signatures",
    "extensions",
];

const AUTHENTICATION: &[&str] = &["type", "name", "description", "authentication_info_extensions"];

/// What each authentication information type adds to [`AUTHENTICATION`].
fn authentication_type(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "http-basic" => &["user_id", "password", "kms", "kms_key_identifier"],
        "oauth2" => &["oauth_header", "token", "kms", "kms_key_identifier"],
        "user-auth" => &["username", "password", "kms", "kms_key_identifier"],
        "private-key" => &["private_key", "kms", "kms_key_identifier"],
        _ => return None,
    })
}

const MARKING: &[&str] = &[
    "type",
    "id",
    "name",
    "description",
    "created_by",
    "created",
    "revoked",
    "valid_from",
    "valid_until",
    "labels",
    "external_references",
    "marking_extensions",
];

/// What each data marking type adds to [`MARKING`].
fn marking_type(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "marking-statement" => &["statement"],
        "marking-tlp" => &["tlpv2_level"],
        "marking-iep" => &[
            "tlp",
            "iep_version",
            "start_date",
            "end_date",
            "encrypt_in_transit",
            "permitted_actions",
            "affected_party_notifications",
            "attribution",
            "unmodified_resale",
        ],
        _ => return None,
    })
}

const SIGNATURE: &[&str] = &[
    "type",
    "id",
    "created_by",
    "created",
    "modified",
    "revoked",
    "signee",
    "valid_from",
    "valid_until",
    "related_to",
    "related_version",
    "hash_algorithm",
    "algorithm",
    "public_key",
    "public_cert_chain",
    "cert_url",
    "thumbprint",
    "value",
    "signature",
];

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
    let mut read_anyway = Vec::new();
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
    if let Some(summary) = playbook.get("playbook_processing_summary") {
        report(summary, "/playbook_processing_summary", PROCESSING_SUMMARY, &[], "the playbook processing summary");
    }
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
                let defined: Vec<&str> = COMMAND.iter().chain(extra).copied().collect();
                let read: Vec<&str> =
                    COMMAND_READ_ANYWAY.iter().copied().filter(|key| !defined.contains(key)).collect();
                report(command, &command_at, &defined, &read, &format!("this `{kind}` command"));
                if let Value::Object(members) = &command.value {
                    for (key, mark, _) in members.iter().filter(|(key, _, _)| read.contains(&key.as_str())) {
                        let mut problem = Problem::warning(
                            Code::UnknownProperty,
                            &pointer(&command_at, key),
                            *mark,
                            format!(
                                "`{key}` is not a property of this `{kind}` command in CACAO 2.0; it was read all the same, as the command's text or content"
                            ),
                        );
                        let said = extra.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                        problem =
                            problem.with_help(format!("CACAO 2.0 has `{kind}` commands say what they do in {said}"));
                        read_anyway.push(problem);
                    }
                }
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
    for (id, at, definition) in members(playbook, "", "authentication_info_definitions") {
        let kind = definition.get("type").and_then(Json::as_str).unwrap_or_default();
        let Some(extra) = authentication_type(kind) else { continue };
        report(definition, &at, AUTHENTICATION, extra, &format!("the `{kind}` authentication information `{id}`"));
    }
    for (id, at, marking) in members(playbook, "", "data_marking_definitions") {
        let kind = marking.get("type").and_then(Json::as_str).unwrap_or_default();
        let Some(extra) = marking_type(kind) else { continue };
        report(marking, &at, MARKING, extra, &format!("the `{kind}` data marking `{id}`"));
        if kind != "marking-iep" {
            // An IEP marking's external references are IEP's own, plain strings.
            references(marking, &at, &mut report);
        }
    }
    if let Some(Json { value: Value::Array(signatures), .. }) = playbook.get("signatures") {
        for (n, first) in signatures.iter().enumerate() {
            // A signature may be countersigned by another, nested in its `signature`.
            let mut at = pointer(&pointer("", "signatures"), &n.to_string());
            let mut signature = Some(first);
            while let Some(current) = signature {
                report(current, &at, SIGNATURE, &[], "a signature");
                at = pointer(&at, "signature");
                signature = current.get("signature");
            }
        }
    }
    for (id, at, definition) in members(playbook, "", "extension_definitions") {
        report(definition, &at, EXTENSION_DEFINITION, &[], &format!("the extension definition `{id}`"));
        references(definition, &at, &mut report);
    }
    problems.extend(read_anyway);
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
