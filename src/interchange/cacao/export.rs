//! A runbook to a CACAO 2.0 playbook (`phasegate export cacao`).
//!
//! The playbook says in CACAO what CACAO can say: one `action` step per phase with one command
//! per step, the phases' order as the workflow (phases that need nothing of each other side by
//! side under a `parallel` step), `when` as `if-condition` steps, inputs as `playbook_variables`,
//! roles as `group` agents. What CACAO has no word for (gates, approvals, relaxations, status
//! updates, campaigns, timers, triggers, rights) travels in the `phasegate` extension, on the
//! playbook and on each action step, so that importing the export gives the runbook back
//! ([`super::restore`]). Ids are name-based UUIDs of the runbook's own ids, and the timestamps are
//! fixed, so the same runbook always exports to the same bytes.

use std::collections::HashMap;

use super::json::pointer;
use super::yaml::{self, Yaml};
use super::{Code, Problem, condition};
use crate::runbook::Mark;
use crate::runbook::yaml::{Node, Value};

/// The id of phasegate's extension definition: the same in every export.
pub const EXTENSION: &str = "extension-definition--6c7d0a52-5a8c-5f0e-9d0b-3f1f4f3e2a17";

/// Where the extension's schema is described.
const EXTENSION_SCHEMA: &str = "https://github.com/phasegate/phasegate/blob/main/docs/cacao.md#the-phasegate-extension";

/// The namespace of the name-based UUIDs of an export.
const NAMESPACE: &str = "phasegate.cacao-export.v1";

/// CACAO wants `created` and `modified`; a runbook records neither, so both are this fixed time
/// (which says "not known" plainly) and an export is reproducible.
const TIMESTAMP: &str = "1970-01-01T00:00:00.000Z";

/// The agent of phases that no person is assigned to: phasegate itself and whoever runs it.
const ENGINE_AGENT: &str = "phasegate";

/// The keys of a runbook that CACAO's playbook object says itself.
const SAID_BY_PLAYBOOK: &[&str] = &["title", "description", "inputs", "phases"];

/// The keys of a phase that the action step says itself.
const SAID_BY_ACTION: &[&str] = &["title", "description", "steps"];

/// CACAO's `TYPE--UUID` identifier of `name`, the same for the same name. The standard lets a
/// playbook's id be a name-based UUID (version 5, here in phasegate's own namespace, not the
/// standard's, whose naming rules an export does not follow); every other object's must have the
/// form of a version 4 UUID, which is given the name's hash as its random bits.
pub fn identifier(kind: &str, name: &str) -> String {
    use sha1::Digest as _;
    let mut hash = sha1::Sha1::new();
    hash.update(NAMESPACE.as_bytes());
    hash.update([0]);
    hash.update(name.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let uuid = if kind == "playbook" {
        uuid::Builder::from_sha1_bytes(bytes).into_uuid()
    } else {
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    };
    format!("{kind}--{uuid}")
}

/// The playbook of a runbook, as JSON text, and warnings of what a CACAO reader cannot use as
/// written (located in the runbook, with the JSON pointer of the place in the playbook). `node`
/// is the runbook's YAML tree, which the caller has validated (a runbook that does not validate
/// is not exported).
pub fn export(node: &Node) -> (String, Vec<Problem>) {
    let runbook = to_tree(node);
    let runbook_id = text(get(&runbook, "id"));
    let phases: Vec<&Yaml> = list(get(&runbook, "phases"));
    let mut out = Out {
        runbook_id: runbook_id.clone(),
        workflow: Vec::new(),
        agents: Vec::new(),
        when_marks: when_marks(node),
        warnings: Vec::new(),
    };
    let variables = variables(get(&runbook, "inputs"));
    let start = out.id("start", "");
    out.workflow.push((start.clone(), Yaml::map([("type", Yaml::str("start"))])));
    let end = out.id("end", "");
    let mut next_of_start = end.clone();
    // Levels are laid out last to first, so that each knows the step that follows it.
    let levels = levels(&phases);
    let mut laid = Vec::new();
    let mut next = end.clone();
    for level in levels.iter().rev() {
        let (entry, steps) = out.level(level, &phases, &next);
        laid.push(steps);
        next = entry;
    }
    if !levels.is_empty() {
        next_of_start = next;
    }
    out.workflow[0].1 = Yaml::map([("type", Yaml::str("start")), ("on_completion", Yaml::str(next_of_start))]);
    for steps in laid.into_iter().rev() {
        out.workflow.extend(steps);
    }
    out.workflow.push((end, Yaml::map([("type", Yaml::str("end"))])));

    let mut playbook = vec![
        pair("type", Yaml::str("playbook")),
        pair("spec_version", Yaml::str("cacao-2.0")),
        pair("id", Yaml::str(identifier("playbook", &runbook_id))),
        pair("name", get(&runbook, "title").cloned().unwrap_or_else(|| Yaml::str(&runbook_id))),
    ];
    if let Some(description) = get(&runbook, "description") {
        playbook.push(pair("description", description.clone()));
    }
    playbook.extend([
        pair("created_by", Yaml::str(identifier("identity", "phasegate"))),
        pair("created", Yaml::str(TIMESTAMP)),
        pair("modified", Yaml::str(TIMESTAMP)),
    ]);
    if !variables.is_empty() {
        playbook.push(pair("playbook_variables", Yaml::Map(variables)));
    }
    playbook.push(pair("workflow_start", Yaml::str(start)));
    playbook.push(pair("workflow", Yaml::Map(out.workflow)));
    playbook.push(pair("agent_definitions", Yaml::Map(out.agents)));
    playbook.push(pair(
        "extension_definitions",
        Yaml::Map(vec![(
            EXTENSION.to_string(),
            Yaml::map([
                ("type", Yaml::str("extension-definition")),
                ("name", Yaml::str("phasegate")),
                (
                    "description",
                    Yaml::str(
                        "What a phasegate runbook holds that CACAO has no property for: gates (approvals, \
                         four-eyes, checks, timers, signals), control relaxations and reinstatements, \
                         status updates, campaigns, triggers and rights. `phasegate import cacao` \
                         restores the runbook from it.",
                    ),
                ),
                ("created_by", Yaml::str(identifier("identity", "phasegate"))),
                ("schema", Yaml::str(EXTENSION_SCHEMA)),
                ("version", Yaml::str("1.0.0")),
            ]),
        )]),
    ));
    let kept = without(&runbook, SAID_BY_PLAYBOOK);
    let mut extension = vec![pair("runbook", kept)];
    let allowed = allowed_values(get(&runbook, "inputs"));
    if !allowed.is_empty() {
        extension.push(pair("input_allowed", Yaml::Map(allowed)));
    }
    playbook.push(pair("playbook_extensions", Yaml::Map(vec![(EXTENSION.to_string(), Yaml::Map(extension))])));
    // In the runbook's order, as its author reads it (phases are laid out by level).
    out.warnings.sort_by_key(|warning| warning.mark);
    (yaml::to_json(&Yaml::Map(playbook)), out.warnings)
}

struct Out {
    runbook_id: String,
    workflow: Vec<(String, Yaml)>,
    agents: Vec<(String, Yaml)>,
    /// Where each phase's `when` is written in the runbook, by the phase's position.
    when_marks: Vec<Mark>,
    warnings: Vec<Problem>,
}

impl Out {
    fn id(&self, kind: &str, name: &str) -> String {
        identifier(kind, &format!("{}/{kind}/{name}", self.runbook_id))
    }

    /// The steps of one level of phases, which run side by side, and the id of its first step.
    fn level(&mut self, level: &[usize], phases: &[&Yaml], next: &str) -> (String, Vec<(String, Yaml)>) {
        let mut steps = Vec::new();
        if let [only] = level {
            let entry = self.phase(*only, phases[*only], next, &mut steps);
            return (entry, steps);
        }
        let mut heads = Vec::new();
        for &i in level {
            let phase_id = text(get(phases[i], "id"));
            let branch_end = self.id("end", &format!("{phase_id}/branch"));
            heads.push(Yaml::str(self.phase(i, phases[i], &branch_end, &mut steps)));
            steps.push((branch_end, Yaml::map([("type", Yaml::str("end"))])));
        }
        let names: Vec<String> = level.iter().map(|&i| text(get(phases[i], "id"))).collect();
        let parallel = self.id("parallel", &names.join(","));
        let step = Yaml::map([
            ("type", Yaml::str("parallel")),
            ("name", Yaml::str(format!("Phases side by side: {}", names.join(", ")))),
            ("next_steps", Yaml::List(heads)),
            ("on_completion", Yaml::str(next)),
        ]);
        steps.insert(0, (parallel.clone(), step));
        (parallel, steps)
    }

    /// The steps of one phase (an `if-condition` first when it has `when`), leading to `next`;
    /// the id of its first step.
    fn phase(&mut self, position: usize, phase: &Yaml, next: &str, steps: &mut Vec<(String, Yaml)>) -> String {
        let phase_id = text(get(phase, "id"));
        let action = self.id("action", &phase_id);
        let guard = get(phase, "when").map(|when| {
            let when = text(Some(when));
            let true_end = self.id("end", &format!("{phase_id}/when"));
            let condition = self.id("if-condition", &phase_id);
            let (stix, description) = match condition::to_stix(&when) {
                Ok(stix) => (stix, format!("STIX patterning over the playbook's variables, translated from the phase's `when` (CEL): {when}")),
                Err(why) => {
                    let mark = self.when_marks.get(position).copied().unwrap_or(Mark::START);
                    self.warnings.push(
                        Problem::warning(
                            Code::ConditionKept,
                            &pointer(&pointer("/workflow", &condition), "condition"),
                            mark,
                            format!("the `when` of phase `{phase_id}` is not translated to STIX ({why}); the if-condition holds its CEL, which a CACAO executor cannot evaluate"),
                        )
                        .with_help("phasegate reads the condition from its extension, so importing the export gives it back; STIX has a form for comparisons of inputs (`inputs.NAME == VALUE`, `in`, `.matches`, joined by `&&` and `||`)"),
                    );
                    (when.clone(), format!("Not STIX: phasegate's CEL, written as the runbook has it ({why}). A CACAO executor cannot evaluate it; phasegate reads it from the phasegate extension."))
                }
            };
            let step = Yaml::map([
                ("type", Yaml::str("if-condition")),
                ("name", Yaml::str(format!("When phase `{phase_id}` runs"))),
                ("description", Yaml::str(description)),
                ("condition", Yaml::str(stix)),
                ("on_true", Yaml::str(&action)),
                ("on_completion", Yaml::str(next)),
            ]);
            (condition, step, true_end)
        });
        let after_action = guard.as_ref().map_or(next.to_string(), |(_, _, end)| end.clone());
        let step_list = list(get(phase, "steps"));
        let mut commands: Vec<Yaml> = step_list.iter().map(|step| command(step)).collect();
        if commands.is_empty() {
            commands.push(Yaml::map([
                ("type", Yaml::str("manual")),
                ("command", Yaml::str("Nothing to do but wait for this phase's gates (see the phasegate extension).")),
            ]));
        }
        let assignee = step_list
            .iter()
            .find_map(|step| get(step, "manual").and_then(|manual| get(manual, "assignee")))
            .map_or(ENGINE_AGENT.to_string(), |role| text(Some(role)));
        let agent = self.agent(&assignee);
        let mut pairs = vec![pair("type", Yaml::str("action"))];
        for key in ["title", "description"] {
            if let Some(value) = get(phase, key) {
                pairs.push(pair(if key == "title" { "name" } else { key }, value.clone()));
            }
        }
        pairs.push(pair("on_completion", Yaml::str(after_action)));
        pairs.push(pair("commands", Yaml::List(commands)));
        pairs.push(pair("agent", Yaml::str(agent)));
        let kept_steps: Vec<Yaml> = step_list.iter().map(|step| kept_step(step)).collect();
        let extension = Yaml::map([
            ("position", Yaml::Int(i64::try_from(position).unwrap_or(i64::MAX))),
            ("phase", without(phase, SAID_BY_ACTION)),
            ("steps", Yaml::List(kept_steps)),
        ]);
        pairs.push(pair("step_extensions", Yaml::Map(vec![(EXTENSION.to_string(), extension)])));
        let mut first = action.clone();
        if let Some((condition, step, true_end)) = guard {
            first = condition.clone();
            steps.push((condition, step));
            steps.push((action, Yaml::Map(pairs)));
            steps.push((true_end, Yaml::map([("type", Yaml::str("end"))])));
        } else {
            steps.push((action, Yaml::Map(pairs)));
        }
        first
    }

    /// The `group` agent of a role (or of phasegate itself), defined once.
    fn agent(&mut self, role: &str) -> String {
        let id = identifier("group", &format!("{}/agent/{role}", self.runbook_id));
        if !self.agents.iter().any(|(known, _)| *known == id) {
            let description = if role == ENGINE_AGENT {
                "phasegate, which carries out automated steps, and whoever operates it".to_string()
            } else {
                format!("The people holding the runbook's role `{role}`")
            };
            self.agents.push((
                id.clone(),
                Yaml::map([
                    ("type", Yaml::str("group")),
                    ("name", Yaml::str(role)),
                    ("description", Yaml::str(description)),
                ]),
            ));
        }
        id
    }
}

/// The CACAO command of a step: what a CACAO reader or executor is told to do.
fn command(step: &Yaml) -> Yaml {
    let mut pairs = Vec::new();
    let mut kind = "manual";
    let mut text_of = String::new();
    if let Some(manual) = get(step, "manual") {
        text_of = text(get(manual, "instructions"));
    } else if let Some(http) = get(step, "http") {
        kind = "http-api";
        let method = get(http, "method").map_or("POST".to_string(), |m| text(Some(m)));
        let url = text(get(http, "url"));
        text_of = format!("{method} {} HTTP/1.1", variables_in(&url));
        let headers: Vec<(String, Yaml)> = match get(http, "headers") {
            Some(Yaml::Map(headers)) => headers
                .iter()
                .filter_map(|(name, value)| match value {
                    Yaml::Str(literal) => Some((name.clone(), Yaml::List(vec![Yaml::str(variables_in(literal))]))),
                    // A secret's value is configuration's, never the export's.
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if !headers.is_empty() {
            pairs.push(pair("headers", Yaml::Map(headers)));
        }
        if let Some(body) = get(http, "body") {
            pairs.push(pair("content", Yaml::str(yaml::to_json(body).trim_end())));
        }
    } else if let Some(command) = get(step, "command") {
        kind = "bash";
        let argv: Vec<String> = list(get(command, "argv")).iter().map(|a| text(Some(a))).collect();
        text_of = match argv.as_slice() {
            [shell, flag, script] if shell == "bash" && flag == "-c" => script.clone(),
            _ => argv.iter().map(|arg| quoted(arg)).collect::<Vec<_>>().join(" "),
        };
    } else if let Some(notify) = get(step, "notify") {
        text_of = format!(
            "phasegate renders a status update for the audience `{}` and sends it to its channels.",
            text(get(notify, "audience"))
        );
    } else if let Some(relax) = get(step, "relax") {
        text_of = format!(
            "Relax the control `{}` for at most {}: {}",
            text(get(relax, "control")),
            text(get(relax, "expires_in")),
            text(get(relax, "reason"))
        );
    } else if let Some(reinstate) = get(step, "reinstate") {
        text_of = format!("Reinstate the control `{}`.", text(get(reinstate, "control")));
    } else if let Some(campaign) = get(step, "campaign") {
        text_of = format!(
            "phasegate sends the template `{}` to each recipient of the list the input `{}` names, through the channel `{}`.",
            text(get(campaign, "template")),
            text(get(get(campaign, "recipients").unwrap_or(&Yaml::Null), "input")),
            text(get(campaign, "channel"))
        );
    }
    let mut command = vec![pair("type", Yaml::str(kind))];
    if let Some(title) = get(step, "title") {
        command.push(pair("description", title.clone()));
    }
    command.push(pair("command", Yaml::str(text_of)));
    command.extend(pairs);
    Yaml::Map(command)
}

/// A step without what its command says and [`super::restore`] reads back from it: the title,
/// and a manual step's instructions.
fn kept_step(step: &Yaml) -> Yaml {
    let Yaml::Map(pairs) = without(step, &["title"]) else { unreachable!("`without` gives a map") };
    Yaml::Map(
        pairs
            .into_iter()
            .map(|(key, value)| if key == "manual" { (key, without(&value, &["instructions"])) } else { (key, value) })
            .collect(),
    )
}

/// Inputs as CACAO variables: `__name__`, the type, the description and the default as text.
fn variables(inputs: Option<&Yaml>) -> Vec<(String, Yaml)> {
    let Some(Yaml::Map(inputs)) = inputs else { return Vec::new() };
    inputs
        .iter()
        .map(|(name, input)| {
            let kind = match text(get(input, "type")).as_str() {
                "integer" => "integer",
                "number" => "float",
                "boolean" => "bool",
                _ => "string",
            };
            let mut pairs = vec![pair("type", Yaml::str(kind))];
            if let Some(description) = get(input, "description") {
                pairs.push(pair("description", description.clone()));
            }
            if let Some(default) = get(input, "default").filter(|d| **d != Yaml::Null) {
                pairs.push(pair("value", Yaml::str(text(Some(default)))));
            }
            pairs.push(pair("external", Yaml::Bool(true)));
            (format!("__{name}__"), Yaml::Map(pairs))
        })
        .collect()
}

/// Inputs' `allowed` lists, which CACAO variables cannot say.
fn allowed_values(inputs: Option<&Yaml>) -> Vec<(String, Yaml)> {
    let Some(Yaml::Map(inputs)) = inputs else { return Vec::new() };
    inputs.iter().filter_map(|(name, input)| get(input, "allowed").map(|a| (name.clone(), a.clone()))).collect()
}

/// The phases grouped by how long the longest chain of `needs` before each is: the phases of a
/// level need only phases of earlier levels, so each level's phases can run side by side.
fn levels(phases: &[&Yaml]) -> Vec<Vec<usize>> {
    let index: HashMap<String, usize> = phases.iter().enumerate().map(|(i, p)| (text(get(p, "id")), i)).collect();
    let mut depth: Vec<Option<usize>> = vec![None; phases.len()];
    fn depth_of(i: usize, phases: &[&Yaml], index: &HashMap<String, usize>, depth: &mut Vec<Option<usize>>) -> usize {
        if let Some(known) = depth[i] {
            return known;
        }
        // Validation has refused cycles; mark the phase first all the same, so a cycle cannot recurse.
        depth[i] = Some(0);
        let needs: Vec<usize> =
            list(get(phases[i], "needs")).iter().filter_map(|n| index.get(&text(Some(n))).copied()).collect();
        let mine = needs.into_iter().map(|n| depth_of(n, phases, index, depth) + 1).max().unwrap_or(0);
        depth[i] = Some(mine);
        mine
    }
    let mut levels: Vec<Vec<usize>> = Vec::new();
    for i in 0..phases.len() {
        let level = depth_of(i, phases, &index, &mut depth);
        if levels.len() <= level {
            levels.resize(level + 1, Vec::new());
        }
        levels[level].push(i);
    }
    levels
}

/// `${inputs.NAME}` as CACAO's `__NAME__:value`, for readers of the command.
fn variables_in(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${inputs.") {
        let after = &rest[start + "${inputs.".len()..];
        let Some(end) = after.find('}').filter(|&e| after[..e].chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&format!("__{}__:value", &after[..end]));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// An argument as a POSIX shell word.
fn quoted(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain { arg.to_string() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

/// Where each phase's `when` is written, by the phase's position (the phase's own place when it
/// has no `when`).
fn when_marks(node: &Node) -> Vec<Mark> {
    let value_of = |node: &'_ Node, key: &str| match &node.value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == key))
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    match value_of(node, "phases").map(|phases| phases.value) {
        Some(Value::Seq(phases)) => {
            phases.iter().map(|phase| value_of(phase, "when").map_or(phase.mark, |when| when.mark)).collect()
        }
        _ => Vec::new(),
    }
}

/// The YAML tree as the ordered tree the JSON is written from: plain scalars typed as YAML 1.2's
/// core schema types them, quoted and block scalars as strings.
fn to_tree(node: &Node) -> Yaml {
    match &node.value {
        Value::Scalar { .. } if node.is_null() => Yaml::Null,
        Value::Scalar { text, plain: true } => match text.as_str() {
            "true" | "True" | "TRUE" => Yaml::Bool(true),
            "false" | "False" | "FALSE" => Yaml::Bool(false),
            _ => match text.parse::<i64>() {
                Ok(number) => Yaml::Int(number),
                Err(_) if serde_json::from_str::<serde_json::Number>(text).is_ok() => Yaml::Num(text.clone()),
                Err(_) => Yaml::Str(text.clone()),
            },
        },
        Value::Scalar { text, .. } => Yaml::Str(text.clone()),
        Value::Seq(items) => Yaml::List(items.iter().map(to_tree).collect()),
        Value::Map(pairs) => Yaml::Map(
            pairs
                .iter()
                .map(|(key, value)| {
                    let key = match &key.value {
                        Value::Scalar { text, .. } => text.clone(),
                        _ => key.describe(),
                    };
                    (key, to_tree(value))
                })
                .collect(),
        ),
    }
}

pub(super) fn get<'a>(map: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    match map {
        Yaml::Map(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

fn list(value: Option<&Yaml>) -> Vec<&Yaml> {
    match value {
        Some(Yaml::List(items)) => items.iter().collect(),
        _ => Vec::new(),
    }
}

/// A scalar as text: strings as they are, numbers and booleans as written.
fn text(value: Option<&Yaml>) -> String {
    match value {
        Some(Yaml::Str(text) | Yaml::Num(text)) => text.clone(),
        Some(Yaml::Int(number)) => number.to_string(),
        Some(Yaml::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// The mapping without `keys`.
fn without(map: &Yaml, keys: &[&str]) -> Yaml {
    match map {
        Yaml::Map(pairs) => Yaml::Map(pairs.iter().filter(|(k, _)| !keys.contains(&k.as_str())).cloned().collect()),
        _ => Yaml::Map(Vec::new()),
    }
}

fn pair(key: &str, value: Yaml) -> (String, Yaml) {
    (key.to_string(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_uuids_of_the_name_version_5_for_the_playbook_else_4() {
        for (kind, version) in [("playbook", "5"), ("action", "4"), ("end", "4")] {
            let id = identifier(kind, "r/p");
            assert_eq!(id, identifier(kind, "r/p"));
            assert_ne!(id, identifier(kind, "r/q"));
            let uuid = id.strip_prefix(&format!("{kind}--")).expect("prefixed");
            assert_eq!(uuid.len(), 36);
            assert_eq!(&uuid[14..15], version, "{id}");
            assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
    }

    #[test]
    fn commands_read_inputs_as_variables_and_quote_arguments() {
        assert_eq!(variables_in("https://${inputs.host}/x?${nope}"), "https://__host__:value/x?${nope}");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(quoted("--flag=1"), "--flag=1");
    }
}
