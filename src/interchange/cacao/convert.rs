//! The mapping itself: a checked CACAO playbook onto a runbook. One phase per workflow step that
//! does something (start and end steps are the graph's ends); `needs` from the steps that lead to
//! it; `when` from how they lead to it (a branch's condition, a predecessor's success or failure,
//! and that the predecessor was not itself skipped); steps from an action's commands.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;

use super::graph::{self, Graph, Via};
use super::json::{Json, Value, pointer};
use super::restore;
use super::yaml::{self, Yaml};
use super::{Code, Problem, condition};
use crate::runbook::{self, Mark, Templates};

mod commands;
mod flow;
mod provenance;
mod variables;

/// The command types of CACAO 2.0's vocabulary.
const COMMAND_TYPES: &[&str] = &[
    "manual",
    "bash",
    "caldera-cmd",
    "elastic",
    "http-api",
    "jupyter",
    "kestrel",
    "openc2-http",
    "powershell",
    "sigma",
    "ssh",
    "yara",
];

/// Agent and target types that are people or groups of them: they become roles.
const PEOPLE: &[&str] = &["individual", "group", "organization", "sector", "location"];

// What CEL reserves, which input names may not be.
use crate::runbook::validate::CEL_RESERVED as RESERVED;

struct Variable {
    input: String,
    kind: String,
}

/// The converter's state: the playbook, what is known of it, and the problems found.
struct Cx<'a, 'p> {
    playbook: &'a Json,
    graph: Graph<'a>,
    problems: &'p mut Vec<Problem>,
    variables: BTreeMap<String, Variable>,
    inputs: Vec<(String, Yaml)>,
    /// The phase id of each step of the graph that becomes a phase.
    phase_of: Vec<Option<String>>,
    /// Each phase's ancestors, by graph index.
    ancestors: Vec<HashSet<usize>>,
    /// Variables set by steps' `out_args`: variable name to (graph index, step id holding it).
    setters: HashMap<String, Vec<(usize, String)>>,
    /// Each phase's `when`, worked out in an order where every step comes after those leading to it.
    guards: Vec<Option<String>>,
    /// Steps that always run once the steps before them have: the start, and phases without `when`.
    always: Vec<bool>,
    roles: Vec<(String, Yaml)>,
    notes: Vec<String>,
}

/// Converts `playbook`, adding every problem to `problems`; the runbook's id and YAML when the
/// mapping went through (the caller decides, from the problems' severities, whether it stands).
pub fn convert(playbook: &Json, templates: &dyn Templates, problems: &mut Vec<Problem>) -> Option<(String, String)> {
    let Value::Object(_) = &playbook.value else {
        problems.push(
            Problem::error(
                Code::NotAnObject,
                "",
                playbook.mark,
                format!("a CACAO playbook is a JSON object, this is {}", playbook.describe()),
            )
            .with_help("the file should hold one object with `\"type\": \"playbook\"`"),
        );
        return None;
    };
    match playbook.get("type") {
        Some(t) if t.as_str() == Some("playbook") => {}
        Some(t) => {
            problems.push(
                Problem::error(
                    Code::NotAPlaybook,
                    "/type",
                    t.mark,
                    format!("`type` is {}, not `\"playbook\"`", shown(t)),
                )
                .with_help("only whole CACAO playbooks are imported, not playbook templates' parts or other objects"),
            );
            return None;
        }
        None => {
            problems.push(
                Problem::error(
                    Code::NotAPlaybook,
                    "",
                    playbook.mark,
                    "the object has no `type`: it is not a CACAO playbook",
                )
                .with_help("a CACAO playbook has `\"type\": \"playbook\"` and `\"spec_version\": \"cacao-2.0\"`"),
            );
            return None;
        }
    }
    match playbook.get("spec_version") {
        Some(v) if v.as_str() == Some("cacao-2.0") => {}
        Some(v) => problems.push(
            Problem::error(
                Code::SpecVersion,
                "/spec_version",
                v.mark,
                format!("`spec_version` is {}; phasegate imports `cacao-2.0`", shown(v)),
            )
            .with_help(
                "CACAO 1.x playbooks need converting to 2.0 first (the workflow becomes an object keyed by step id)",
            ),
        ),
        None => problems.push(
            Problem::error(Code::MissingField, "", playbook.mark, "the playbook has no `spec_version`")
                .with_help("write `\"spec_version\": \"cacao-2.0\"`"),
        ),
    }
    let title = required_str(playbook, "", "name", problems);
    let Some(workflow) = playbook.get("workflow") else {
        problems.push(Problem::error(Code::MissingField, "", playbook.mark, "the playbook has no `workflow`"));
        return None;
    };
    let graph = graph::build(playbook, workflow, problems)?;
    if restore::is_export(playbook) {
        let runbook = restore::restore(playbook, problems)?;
        let id = match super::export::get(&runbook, "id") {
            Some(Yaml::Str(id)) => id.clone(),
            _ => String::new(),
        };
        let text = format!(
            "# Restored from a CACAO 2.0 playbook that `phasegate export cacao` wrote; see docs/cacao.md.\n{}",
            yaml::to_text(&runbook)
        );
        return checked(id, text, templates, problems);
    }
    let mut cx = Cx {
        playbook,
        phase_of: vec![None; graph.steps.len()],
        ancestors: vec![HashSet::new(); graph.steps.len()],
        graph,
        problems,
        variables: BTreeMap::new(),
        inputs: Vec::new(),
        setters: HashMap::new(),
        guards: Vec::new(),
        always: Vec::new(),
        roles: Vec::new(),
        notes: Vec::new(),
    };
    cx.variables("/playbook_variables", playbook.get("playbook_variables"));
    cx.agents();
    cx.phase_ids();
    cx.needs_and_ancestors();
    let needs = cx.needs();
    cx.out_args();
    cx.guards();
    let mut phases = Vec::new();
    for &i in &cx.graph.reached.clone() {
        if cx.phase_of[i].is_some() {
            phases.push(cx.phase(i, &needs[i]));
        }
    }
    cx.exception();
    let description = cx.description();
    let title = title.unwrap_or_default();
    let id = slug(&title, "cacao-playbook");
    if !cx.roles.iter().any(|(id, _)| id == "incident-commander") {
        cx.roles.push((
            "incident-commander".into(),
            Yaml::map([("title", Yaml::str("Incident commander (added on import: closes the incident)"))]),
        ));
    }
    let mut top = vec![
        ("apiVersion".to_string(), Yaml::str("phasegate/v1")),
        ("kind".to_string(), Yaml::str("Runbook")),
        ("id".to_string(), Yaml::str(id.clone())),
        (
            "title".to_string(),
            Yaml::str(if title.trim().is_empty() { "Imported CACAO playbook".to_string() } else { title }),
        ),
    ];
    if let Some(modified) = playbook.get("modified").and_then(Json::as_str) {
        top.push(("version".into(), Yaml::str(modified)));
    }
    top.push(("description".into(), Yaml::str(description)));
    if !cx.inputs.is_empty() {
        top.push(("inputs".into(), Yaml::Map(std::mem::take(&mut cx.inputs))));
    }
    top.push(("roles".into(), Yaml::Map(std::mem::take(&mut cx.roles))));
    if phases.is_empty() {
        // A workflow from start straight to end does nothing; a runbook still needs a phase.
        phases.push(Yaml::map([
            ("id", Yaml::str("respond")),
            ("title", Yaml::str("The playbook's workflow has no steps between start and end")),
        ]));
    }
    top.push(("phases".into(), Yaml::List(phases)));
    let text = format!(
        "# Imported from a CACAO 2.0 playbook by `phasegate import cacao`; see docs/cacao.md.\n{}",
        yaml::to_text(&Yaml::Map(top))
    );
    checked(id, text, templates, cx.problems)
}

/// The runbook written, if there was no error and it validates.
fn checked(
    id: String,
    text: String,
    templates: &dyn Templates,
    problems: &mut Vec<Problem>,
) -> Option<(String, String)> {
    if problems.iter().any(|p| p.severity == super::Severity::Error) {
        return None;
    }
    if let Err(diagnostics) = runbook::parse(&text, templates) {
        for d in diagnostics {
            problems.push(
                Problem::error(
                    Code::Invalid,
                    "",
                    Mark::START,
                    format!(
                        "the runbook written does not validate: {} at {}:{}: {}",
                        d.code, d.mark.line, d.mark.column, d.message
                    ),
                )
                .with_help("this is a fault of the importer; please report it with the playbook"),
            );
        }
        return None;
    }
    Some((id, text))
}

fn shown(json: &Json) -> String {
    match &json.value {
        Value::String(text) => format!("`\"{text}\"`"),
        _ => json.describe().to_string(),
    }
}

fn required_str(object: &Json, at: &str, key: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match object.get(key) {
        None => {
            problems.push(Problem::error(Code::MissingField, at, object.mark, format!("`{key}` is missing")));
            None
        }
        Some(value) => match value.as_str() {
            Some(text) => Some(text.to_string()),
            None => {
                problems.push(Problem::error(
                    Code::WrongType,
                    &pointer(at, key),
                    value.mark,
                    format!("`{key}` is {}, not a string", value.describe()),
                ));
                None
            }
        },
    }
}

/// An id made of what `text` says: lowercase letters, digits and single `-`, starting with a
/// letter, at most 56 characters (room for a `-N` suffix).
pub fn slug(text: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(56).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out = if out.is_empty() { fallback.to_string() } else { format!("s-{out}") };
    }
    out
}

fn unique(id: String, taken: &mut HashSet<String>) -> String {
    if taken.insert(id.clone()) {
        return id;
    }
    (2..).map(|n| format!("{id}-{n}")).find(|candidate| taken.insert(candidate.clone())).expect("some suffix is free")
}

fn object_members(json: Option<&Json>) -> &[(String, Mark, Json)] {
    match json.map(|j| &j.value) {
        Some(Value::Object(members)) => members,
        _ => &[],
    }
}

impl Cx<'_, '_> {
    fn error(&mut self, code: Code, at: &str, mark: Mark, message: impl Into<String>) -> &mut Problem {
        self.problems.push(Problem::error(code, at, mark, message));
        self.problems.last_mut().expect("just pushed")
    }

    fn warn(&mut self, code: Code, at: &str, mark: Mark, message: impl Into<String>) -> &mut Problem {
        self.problems.push(Problem::warning(code, at, mark, message));
        self.problems.last_mut().expect("just pushed")
    }

    fn phase_ids(&mut self) {
        let mut taken = HashSet::new();
        for &i in &self.graph.reached {
            let step = &self.graph.steps[i];
            if step.kind == "start" || step.kind == "end" {
                continue;
            }
            let name = step.json.get("name").and_then(Json::as_str).unwrap_or("");
            let base = slug(name, &step.kind);
            self.phase_of[i] = Some(unique(base, &mut taken));
        }
    }

    /// Edges into each step, from steps the start reaches.
    fn incoming(&self, to: usize) -> Vec<(usize, Via)> {
        let reached: HashSet<usize> = self.graph.reached.iter().copied().collect();
        self.graph
            .edges
            .iter()
            .filter(|e| e.to == to && reached.contains(&e.from))
            .map(|e| (e.from, e.via.clone()))
            .collect()
    }

    /// The phases (graph indices) each phase needs: its predecessors that are phases, and for the
    /// step after a parallel step, every step of its branches.
    fn needs(&self) -> Vec<Vec<usize>> {
        let count = self.graph.steps.len();
        let mut needs: Vec<Vec<usize>> = vec![Vec::new(); count];
        for &i in &self.graph.reached {
            if self.phase_of[i].is_none() {
                continue;
            }
            let mut mine: Vec<usize> = Vec::new();
            for (from, via) in self.incoming(i) {
                if self.phase_of[from].is_some() && !mine.contains(&from) {
                    mine.push(from);
                }
                if via == Via::Completion && self.graph.steps[from].kind == "parallel" {
                    for branch in self.branches(from, i) {
                        if self.phase_of[branch].is_some() && !mine.contains(&branch) {
                            mine.push(branch);
                        }
                    }
                }
            }
            needs[i] = mine;
        }
        needs
    }

    /// Every step a parallel step's branches reach before `join`.
    fn branches(&self, parallel: usize, join: usize) -> Vec<usize> {
        let mut found = Vec::new();
        let mut todo: Vec<usize> =
            self.graph.edges.iter().filter(|e| e.from == parallel && e.via == Via::Parallel).map(|e| e.to).collect();
        while let Some(at) = todo.pop() {
            if at == join || found.contains(&at) {
                continue;
            }
            found.push(at);
            todo.extend(self.graph.edges.iter().filter(|e| e.from == at).map(|e| e.to));
        }
        found
    }

    fn needs_and_ancestors(&mut self) {
        let needs = self.needs();
        // The graph has no cycles (checked), so the walk ends.
        for &i in &self.graph.reached {
            let mut seen = HashSet::new();
            let mut todo = needs[i].clone();
            while let Some(at) = todo.pop() {
                if seen.insert(at) {
                    todo.extend(needs[at].iter().copied());
                }
            }
            self.ancestors[i] = seen;
        }
    }

    /// Where each action's `out_args` are recorded: the last step of its phase when every command
    /// is manual (the person records them there), else a manual step added for the purpose.
    fn out_args(&mut self) {
        for &i in &self.graph.reached.clone() {
            let step = &self.graph.steps[i];
            let Some(out) = step.json.get("out_args") else { continue };
            let at = pointer(&step.pointer, "out_args");
            let Value::Array(items) = &out.value else {
                let mark = out.mark;
                self.error(Code::WrongType, &at, mark, "`out_args` is a list of variable names");
                continue;
            };
            let holder = self.output_holder(i);
            for (n, item) in items.iter().enumerate() {
                match item.as_str().and_then(|t| super::variable_at(t).filter(|(_, used)| *used == t.len())) {
                    Some((name, _)) => self.setters.entry(name).or_default().push((i, holder.clone())),
                    None => {
                        self.error(
                            Code::Variable,
                            &pointer(&at, &n.to_string()),
                            item.mark,
                            "an `out_args` entry is a variable name `__name__`",
                        );
                    }
                }
            }
        }
    }

    fn output_holder(&self, i: usize) -> String {
        let step = &self.graph.steps[i];
        let commands = match step.json.get("commands").map(|c| &c.value) {
            Some(Value::Array(items)) => items.as_slice(),
            _ => &[],
        };
        let all_manual = !commands.is_empty()
            && step.kind == "action"
            && commands.iter().all(|c| c.get("type").and_then(Json::as_str) == Some("manual"));
        if all_manual {
            self.command_ids(i).pop().unwrap_or_else(|| "record-outputs".into())
        } else {
            "record-outputs".into()
        }
    }

    /// The step ids an action's commands get, in order.
    fn command_ids(&self, i: usize) -> Vec<String> {
        let step = &self.graph.steps[i];
        let mut taken = HashSet::new();
        let mut ids = Vec::new();
        if step.kind == "playbook-action" {
            return vec!["run-playbook".into()];
        }
        if let Some(Value::Array(items)) = step.json.get("commands").map(|c| &c.value) {
            for command in items {
                let kind = command.get("type").and_then(Json::as_str).unwrap_or("command");
                ids.push(unique(slug(kind, "command"), &mut taken));
            }
        }
        ids
    }

    /// The CEL that reads variable `name` in the phase of graph step `i`.
    fn resolve(&self, name: &str, i: usize) -> Result<String, String> {
        if let Some(setters) = self.setters.get(name) {
            let before: Vec<&(usize, String)> = setters.iter().filter(|(s, _)| self.ancestors[i].contains(s)).collect();
            match before.as_slice() {
                [(setter, step)] => {
                    let phase = self.phase_of[*setter].as_deref().unwrap_or("");
                    return Ok(format!("steps[\"{phase}/{step}\"].outputs.{}", output_name(name)));
                }
                [] => {}
                _ => {
                    return Err(format!(
                        "`__{name}__` is set by several steps before this one; phasegate reads one step's outputs, so which one is meant is not known"
                    ));
                }
            }
        }
        match self.variables.get(name) {
            Some(variable) => Ok(format!("inputs.{}", variable.input)),
            None if self.setters.contains_key(name) => Err(format!(
                "`__{name}__` is set by a step (`out_args`) that is not sure to have run before this one, and is no playbook variable"
            )),
            None => Err(format!("`__{name}__` is neither a playbook variable nor set by an earlier step's `out_args`")),
        }
    }

    /// `text` with each variable reference as `${ CEL }` and literal `${` escaped.
    fn interpolate(&mut self, text: &str, i: usize, at: &str, mark: Mark) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find(['_', '$']) {
            out.push_str(&rest[..pos]);
            rest = &rest[pos..];
            if rest.starts_with("${") {
                out.push_str("$${");
                rest = &rest[2..];
                continue;
            }
            match super::variable_at(rest) {
                Some((name, used))
                    if rest[..used].ends_with(":value")
                        || self.variables.contains_key(&name)
                        || self.setters.contains_key(&name) =>
                {
                    match self.resolve(&name, i) {
                        Ok(cel) => out.push_str(&format!("${{{cel}}}")),
                        Err(message) => {
                            self.error(Code::Variable, at, mark, message);
                        }
                    }
                    rest = &rest[used..];
                }
                _ => {
                    let c = rest.chars().next().expect("found a character");
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn step_mark(json: &Json) -> Mark {
    json.mark
}

/// A step output's name for a variable.
fn output_name(variable: &str) -> String {
    variable.to_ascii_lowercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_ids() {
        assert_eq!(slug("Block IP -- at the Firewall!", "x"), "block-ip-at-the-firewall");
        assert_eq!(slug("42 hosts", "x"), "s-42-hosts");
        assert_eq!(slug("!!!", "x"), "x");
        assert!(slug(&"a".repeat(200), "x").len() <= 56);
    }
}
