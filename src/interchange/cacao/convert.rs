//! The mapping itself: a checked CACAO playbook onto a runbook. One phase per workflow step that
//! does something (start and end steps are the graph's ends); `needs` from the steps that lead to
//! it; `when` from how they lead to it (a branch's condition, a predecessor's success or failure,
//! and that the predecessor was not itself skipped); steps from an action's commands.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;

use super::graph::{self, Graph, Via};
use super::json::{Json, Value, pointer};
use super::yaml::{self, Yaml};
use super::{Code, Problem, condition};
use crate::runbook::{self, Mark, TemplateInfo, Templates};

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

/// What CEL reserves, which input names may not be.
const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "namespace",
    "null",
    "package",
    "return",
    "true",
    "var",
    "void",
    "while",
];

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
pub fn convert(playbook: &Json, problems: &mut Vec<Problem>) -> Option<(String, String)> {
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
    if cx.problems.iter().any(|p| p.severity == super::Severity::Error) {
        return None;
    }
    if let Err(diagnostics) = runbook::parse(&text, &NoTemplates) {
        for d in diagnostics {
            cx.problems.push(
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

/// The imported runbook names no templates.
struct NoTemplates;

impl Templates for NoTemplates {
    fn lookup(&self, _name: &str) -> TemplateInfo {
        TemplateInfo::Missing
    }
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

    /// `playbook_variables` (and steps' `step_variables`) as inputs.
    fn variables(&mut self, at: &str, json: Option<&Json>) {
        let Some(json) = json else { return };
        if !matches!(json.value, Value::Object(_)) {
            self.error(
                Code::WrongType,
                at,
                json.mark,
                format!("variables are an object keyed by `__name__`, this is {}", json.describe()),
            );
            return;
        }
        for (key, mark, variable) in object_members(Some(json)) {
            let here = pointer(at, key);
            let Some((name, used)) = super::variable_at(key).filter(|(_, used)| *used == key.len()) else {
                self.error(
                    Code::Variable,
                    &here,
                    *mark,
                    format!("`{key}` is not a variable name of the form `__name__`"),
                );
                continue;
            };
            let _ = used;
            let input = name.to_ascii_lowercase().replace('-', "_");
            let good = input.starts_with(|c: char| c.is_ascii_lowercase()) && !RESERVED.contains(&input.as_str());
            if !good {
                self.error(Code::Variable, &here, *mark, format!("`{key}` cannot be an input name (`{input}`): input names start with a letter and are not words CEL reserves"))
                    .help = Some("rename the variable, for example `__the_name__`".into());
                continue;
            }
            let Some(kind) = variable.get("type").and_then(Json::as_str) else {
                self.error(Code::MissingField, &here, variable.mark, "the variable has no `type`");
                continue;
            };
            let input_type = match kind {
                "string" | "uuid" | "hexstring" | "hash" | "md5-hash" | "sha256-hash" | "ipv4-addr" | "ipv6-addr"
                | "mac-addr" | "uri" => "string",
                "integer" | "long" => "integer",
                "float" => "number",
                "bool" => "boolean",
                "dictionary" => {
                    self.error(Code::Variable, &pointer(&here, "type"), variable.get("type").map_or(*mark, |t| t.mark), "a `dictionary` variable has no phasegate input type (inputs are strings, numbers and booleans)")
                        .help = Some("split it into one variable per key".into());
                    continue;
                }
                other => {
                    self.error(
                        Code::Variable,
                        &pointer(&here, "type"),
                        variable.get("type").map_or(*mark, |t| t.mark),
                        format!("`{other}` is not a CACAO 2.0 variable type"),
                    );
                    continue;
                }
            };
            if let Some(existing) = self.variables.get(&name) {
                if existing.kind != input_type {
                    self.error(Code::Variable, &here, *mark, format!("`{key}` is declared twice with different types"));
                }
                continue;
            }
            let mut definition = vec![("type".to_string(), Yaml::str(input_type))];
            let mut description = variable.get("description").and_then(Json::as_str).unwrap_or("").to_string();
            if variable.get("external").is_some_and(|e| e.value == Value::Bool(true)) {
                description =
                    format!("{description} (external in CACAO: given from outside the playbook)").trim().to_string();
            }
            description = format!("{description} [CACAO `{key}`, {kind}]").trim().to_string();
            definition.push(("description".into(), Yaml::str(description)));
            if let Some(value) = variable.get("value") {
                match typed(value, input_type) {
                    Some(Some(default)) => {
                        if variable.get("constant").is_some_and(|c| c.value == Value::Bool(true)) {
                            definition.push(("default".into(), default.clone()));
                            definition.push(("allowed".into(), Yaml::List(vec![default])));
                        } else {
                            definition.push(("default".into(), default));
                        }
                    }
                    Some(None) => {}
                    None => {
                        self.error(
                            Code::Variable,
                            &pointer(&here, "value"),
                            value.mark,
                            format!("the value {} is not of the type `{kind}`", shown(value)),
                        );
                    }
                }
            }
            self.variables.insert(name, Variable { input: input.clone(), kind: input_type.to_string() });
            if self.inputs.iter().any(|(existing, _)| *existing == input) {
                self.error(
                    Code::Variable,
                    &here,
                    *mark,
                    format!("`{key}` becomes the input `{input}`, which another variable already is"),
                );
                continue;
            }
            self.inputs.push((input, Yaml::Map(definition)));
        }
    }

    /// Agents that are people become roles.
    fn agents(&mut self) {
        for (id, _, agent) in object_members(self.playbook.get("agent_definitions")) {
            let kind = agent.get("type").and_then(Json::as_str).unwrap_or("");
            if !PEOPLE.contains(&kind) {
                continue;
            }
            let role = self.role_of(id, agent);
            let title = agent.get("name").and_then(Json::as_str).unwrap_or(id);
            let mut definition = vec![("title".to_string(), Yaml::str(title))];
            definition.push(("description".into(), Yaml::str(format!("CACAO agent `{id}` ({kind})"))));
            if !self.roles.iter().any(|(r, _)| *r == role) {
                self.roles.push((role, Yaml::Map(definition)));
            }
        }
    }

    fn role_of(&self, id: &str, agent: &Json) -> String {
        let name = agent.get("name").and_then(Json::as_str).unwrap_or("");
        slug(name, &slug(id.split("--").next().unwrap_or(id), "agent"))
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

    /// The CEL of how `from` leads on through `via`, or `None` for always.
    fn edge_condition(&mut self, from: usize, via: &Via) -> Option<String> {
        let step = &self.graph.steps[from];
        let phase = self.phase_of[from].clone().unwrap_or_default();
        let at = step.pointer.clone();
        let steps_state = |cx: &Self, state: &str, join: &str| -> Option<String> {
            let ids = cx.phase_step_ids(from);
            if ids.is_empty() {
                return None;
            }
            Some(
                ids.iter()
                    .map(|s| format!("steps[\"{phase}/{s}\"].state == \"{state}\""))
                    .collect::<Vec<_>>()
                    .join(join),
            )
        };
        match via {
            Via::Completion | Via::Parallel => None,
            Via::Success => steps_state(self, "done", " && "),
            Via::Failure => Some(steps_state(self, "failed", " || ").unwrap_or_else(|| "false".into())),
            Via::True | Via::False => {
                let json = step.json;
                let Some(text) = json.get("condition").and_then(Json::as_str) else {
                    let mark = json.get("condition").map_or(step.mark, |c| c.mark);
                    self.error(
                        Code::MissingField,
                        &pointer(&at, "condition"),
                        mark,
                        "the if-condition has no `condition` string",
                    );
                    return Some("false".into());
                };
                let mark = json.get("condition").map_or(step.mark, |c| c.mark);
                let cel = condition::to_cel(text, &mut |name| self.resolve(name, from));
                match cel {
                    Ok(cel) if *via == Via::True => Some(format!("({cel})")),
                    Ok(cel) => Some(format!("!({cel})")),
                    Err(message) => {
                        self.error(Code::Condition, &pointer(&at, "condition"), mark, format!("the condition is not translated: {message}"))
                            .help = Some("phasegate translates comparisons of variables (`__name__:value = 'x'`, `IN`, `MATCHES`, with AND, OR, NOT); rewrite it so, or split the decision into a manual step".into());
                        Some("false".into())
                    }
                }
            }
            Via::Case(_) | Via::Default => {
                let json = step.json;
                let switch_mark = json.get("switch").map_or(step.mark, |s| s.mark);
                let variable = json
                    .get("switch")
                    .and_then(Json::as_str)
                    .and_then(|s| super::variable_at(s.trim()).filter(|(_, u)| *u == s.trim().len()));
                let Some((name, _)) = variable else {
                    self.error(
                        Code::Condition,
                        &pointer(&at, "switch"),
                        switch_mark,
                        "`switch` must name one variable, `__name__:value`",
                    )
                    .help = Some("phasegate compares one variable with each case's value".into());
                    return Some("false".into());
                };
                let cel = match self.resolve(&name, from) {
                    Ok(cel) => cel,
                    Err(message) => {
                        self.error(Code::Variable, &pointer(&at, "switch"), switch_mark, message);
                        return Some("false".into());
                    }
                };
                let kind = self.variables.get(&name).map_or("string".to_string(), |v| v.kind.clone());
                let literal = |value: &str| match kind.as_str() {
                    "integer" | "number" if value.parse::<f64>().is_ok() => value.to_string(),
                    "boolean" if value == "true" || value == "false" => value.to_string(),
                    _ => serde_json::to_string(value).expect("a string always serializes"),
                };
                match via {
                    Via::Case(value) => Some(format!("{cel} == {}", literal(value))),
                    _ => {
                        let values: Vec<String> = object_members(json.get("cases"))
                            .iter()
                            .filter(|(k, _, _)| k != "default")
                            .map(|(k, _, _)| literal(k))
                            .collect();
                        Some(format!("!({cel} in [{}])", values.join(", ")))
                    }
                }
            }
        }
    }

    fn phase_step_ids(&self, i: usize) -> Vec<String> {
        let mut ids = self.command_ids(i);
        if self.setters.values().flatten().any(|(s, holder)| *s == i && holder == "record-outputs")
            && !ids.contains(&"record-outputs".to_string())
        {
            ids.push("record-outputs".into());
        }
        ids
    }

    /// The `when` of the phase of graph step `i`: some way into it was taken.
    fn guard(&mut self, i: usize) -> Option<String> {
        let mut terms = Vec::new();
        for (from, via) in self.incoming(i) {
            let reached = self.phase_of[from]
                .as_ref()
                .filter(|_| !self.always[from])
                .map(|p| format!("phases[\"{p}\"] != \"skipped\""));
            let condition = self.edge_condition(from, &via);
            let term = match (reached, condition) {
                (None, None) => return None,
                (Some(r), None) => r,
                (None, Some(c)) => c,
                (Some(r), Some(c)) => format!("{r} && {c}"),
            };
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        match terms.len() {
            0 => None,
            1 => terms.pop(),
            _ => Some(terms.iter().map(|t| format!("({t})")).collect::<Vec<_>>().join(" || ")),
        }
    }

    /// Every phase's `when`, each step after all the steps that lead to it (the graph has no
    /// cycles), so that a phase reached only from phases that always run needs no condition of
    /// theirs.
    fn guards(&mut self) {
        let count = self.graph.steps.len();
        self.guards = vec![None; count];
        self.always = vec![false; count];
        let reached: HashSet<usize> = self.graph.reached.iter().copied().collect();
        let mut waiting: Vec<usize> = vec![0; count];
        for edge in self.graph.edges.iter().filter(|e| reached.contains(&e.from)) {
            waiting[edge.to] += 1;
        }
        let mut ready: Vec<usize> = self.graph.reached.iter().copied().filter(|&i| waiting[i] == 0).collect();
        while let Some(i) = ready.pop() {
            if self.graph.steps[i].kind == "start" {
                self.always[i] = true;
            } else if self.phase_of[i].is_some() {
                self.guards[i] = self.guard(i);
                self.always[i] = self.guards[i].is_none();
            }
            let next: Vec<usize> = self.graph.edges.iter().filter(|e| e.from == i).map(|e| e.to).collect();
            for to in next {
                waiting[to] -= 1;
                if waiting[to] == 0 {
                    ready.push(to);
                }
            }
        }
    }

    fn phase(&mut self, i: usize, needs: &[usize]) -> Yaml {
        let step = &self.graph.steps[i];
        let (json, at, kind, cacao_id) = (step.json, step.pointer.clone(), step.kind.clone(), step.id.clone());
        let id = self.phase_of[i].clone().unwrap_or_default();
        let mut phase = vec![("id".to_string(), Yaml::str(id.clone()))];
        if let Some(name) = json.get("name").and_then(Json::as_str).filter(|n| !n.trim().is_empty()) {
            phase.push(("title".into(), Yaml::str(name)));
        }
        let mut description = json.get("description").and_then(Json::as_str).unwrap_or("").trim().to_string();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!("CACAO step `{cacao_id}` ({kind})."));
        if let Some(owner) = json.get("owner").and_then(Json::as_str) {
            description.push_str(&format!(" Owner: `{owner}`."));
        }
        match kind.as_str() {
            "if-condition" => {
                if let Some(c) = json.get("condition").and_then(Json::as_str) {
                    description.push_str(&format!(" Condition: `{c}`; its branches' phases say `when` it held."));
                }
            }
            "switch-condition" => description.push_str(" The cases' phases say `when` each was taken."),
            "parallel" => description
                .push_str(" The branches' phases need this one and not each other, so they may run in parallel."),
            _ => {}
        }
        references(json, &mut description);
        self.step_extensions(json, &at, &mut description);
        phase.push(("description".into(), Yaml::str(description)));
        if !needs.is_empty() {
            let names = needs.iter().filter_map(|n| self.phase_of[*n].clone()).map(Yaml::Str).collect();
            phase.push(("needs".into(), Yaml::List(names)));
        }
        if let Some(when) = self.guards[i].clone() {
            phase.push(("when".into(), Yaml::str(when)));
        }
        self.variables(&pointer(&at, "step_variables"), json.get("step_variables"));
        let mut entry = Vec::new();
        if let Some(delay) = json.get("delay") {
            if let Some(duration) = self.millis(delay, &pointer(&at, "delay")) {
                entry.push(Yaml::map([
                    ("id", Yaml::str("delay")),
                    ("timer", Yaml::map([("not_before", Yaml::str(duration))])),
                ]));
            }
        }
        let failure_edges = self.graph.edges.iter().any(|e| e.from == i && e.via == Via::Failure);
        if json.get("on_completion").is_some() && (json.get("on_success").is_some() || json.get("on_failure").is_some())
        {
            let mark = json.get("on_completion").map_or(step_mark(json), |c| c.mark);
            self.error(
                Code::Unsupported,
                &pointer(&at, "on_completion"),
                mark,
                "`on_completion` together with `on_success` or `on_failure`: which is taken is not defined",
            )
            .help = Some("CACAO 2.0 says to give either `on_completion` or `on_success`/`on_failure`".into());
        }
        let mut steps = match kind.as_str() {
            "action" => self.commands(i),
            "playbook-action" => self.sub_playbook(i),
            _ => Vec::new(),
        };
        let timeout = json.get("timeout").and_then(|t| self.millis(t, &pointer(&at, "timeout")));
        let mut exit = Vec::new();
        if let Some(timeout) = &timeout {
            for step in &mut steps {
                if let Yaml::Map(pairs) = step {
                    if !pairs.iter().any(|(k, _)| k == "manual") {
                        pairs.insert(2.min(pairs.len()), ("timeout".into(), Yaml::str(timeout.clone())));
                    }
                }
            }
            if steps.iter().any(|s| matches!(s, Yaml::Map(p) if p.iter().any(|(k, _)| k == "manual"))) {
                exit.push(Yaml::map([
                    ("id", Yaml::str("timeout")),
                    ("timer", Yaml::map([("not_later_than", Yaml::str(timeout.clone()))])),
                ]));
            }
        }
        let outputs: Vec<String> = self
            .setters
            .iter()
            .filter(|(_, list)| list.iter().any(|(s, _)| *s == i))
            .map(|(name, _)| output_name(name))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !outputs.is_empty() {
            let holder = self.output_holder(i);
            let list = Yaml::List(outputs.iter().cloned().map(Yaml::Str).collect());
            let mut placed = false;
            for step in &mut steps {
                if let Yaml::Map(pairs) = step {
                    if pairs.first().is_some_and(|(_, v)| *v == Yaml::Str(holder.clone())) {
                        if let Some((_, Yaml::Map(manual))) = pairs.iter_mut().find(|(k, _)| k == "manual") {
                            manual.push(("outputs".into(), list.clone()));
                            placed = true;
                        }
                    }
                }
            }
            if !placed {
                let names: Vec<String> = outputs.iter().map(|o| format!("`{o}`")).collect();
                let instructions = format!(
                    "Record what the step before set for the playbook's variables ({}): CACAO's `out_args`, which phasegate's automated steps do not return.",
                    names.join(", ")
                );
                steps.push(Yaml::map([
                    ("id", Yaml::str("record-outputs")),
                    ("manual", Yaml::map([("instructions", Yaml::str(instructions)), ("outputs", list)])),
                ]));
            }
        }
        if failure_edges && !steps.is_empty() {
            // Failure leads on, so a failed step must not fail the phase: each is optional, and the
            // phase waits for all of them to finish, done or failed.
            let mut ids = Vec::new();
            for step in &mut steps {
                if let Yaml::Map(pairs) = step {
                    if let Some((_, Yaml::Str(id))) = pairs.first() {
                        ids.push(Yaml::Str(id.clone()));
                    }
                    pairs.insert(1, ("optional".into(), Yaml::Bool(true)));
                }
            }
            exit.push(Yaml::map([("steps_done", Yaml::List(ids))]));
        }
        if !entry.is_empty() {
            phase.push(("entry".into(), Yaml::List(entry)));
        }
        if !steps.is_empty() {
            phase.push(("steps".into(), Yaml::List(steps)));
        }
        if !exit.is_empty() {
            phase.push(("exit".into(), Yaml::List(exit)));
        }
        Yaml::Map(phase)
    }

    fn step_extensions(&mut self, json: &Json, at: &str, description: &mut String) {
        for key in ["step_extensions"] {
            let members = object_members(json.get(key));
            if members.is_empty() {
                continue;
            }
            let names: Vec<&str> = members.iter().map(|(k, _, _)| k.as_str()).collect();
            description.push_str(&format!(" Extensions not acted on: {}.", names.join(", ")));
            let mark = json.get(key).map_or(step_mark(json), |e| e.mark);
            self.warn(
                Code::Extension,
                &pointer(at, key),
                mark,
                format!(
                    "the step's extensions ({}) are not acted on; they are named in the phase's description",
                    names.join(", ")
                ),
            );
        }
    }

    /// A duration in milliseconds as a phasegate duration (at least a second, at most a year).
    fn millis(&mut self, json: &Json, at: &str) -> Option<String> {
        let ms = match &json.value {
            Value::Number(n) => n.parse::<u64>().ok(),
            _ => None,
        };
        let Some(ms) = ms else {
            self.error(
                Code::WrongType,
                at,
                json.mark,
                format!("a CACAO duration is a whole number of milliseconds, this is {}", json.describe()),
            );
            return None;
        };
        if ms == 0 {
            return None;
        }
        if ms < 1000 {
            self.warn(
                Code::Timing,
                at,
                json.mark,
                format!("{ms} ms is shorter than phasegate's shortest duration; it is taken as 1s"),
            );
            return Some("1s".into());
        }
        if ms > 366 * 24 * 3600 * 1000 {
            self.warn(
                Code::Timing,
                at,
                json.mark,
                format!("{ms} ms is longer than a year, phasegate's longest duration; it is left out"),
            );
            return None;
        }
        Some(if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") })
    }

    fn commands(&mut self, i: usize) -> Vec<Yaml> {
        let step = &self.graph.steps[i];
        let (json, at) = (step.json, step.pointer.clone());
        let Some(commands) = json.get("commands") else {
            self.error(Code::MissingField, &at, step_mark(json), "the action step has no `commands`").help =
                Some("an action step lists at least one command".into());
            return Vec::new();
        };
        let Value::Array(items) = &commands.value else {
            self.error(
                Code::WrongType,
                &pointer(&at, "commands"),
                commands.mark,
                format!("`commands` is a list, this is {}", commands.describe()),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.error(
                Code::MissingField,
                &pointer(&at, "commands"),
                commands.mark,
                "`commands` is empty: an action step lists at least one command",
            );
        }
        let ids = self.command_ids(i);
        let agent = self.agent(json, &at);
        let targets = self.targets(json, &at);
        items
            .iter()
            .enumerate()
            .map(|(n, command)| {
                self.command(
                    i,
                    command,
                    &pointer(&pointer(&at, "commands"), &n.to_string()),
                    &ids[n],
                    agent.as_deref(),
                    &targets,
                )
            })
            .collect()
    }

    /// The role of the step's agent, when the agent is people.
    fn agent(&mut self, json: &Json, at: &str) -> Option<String> {
        let reference = json.get("agent")?;
        let Some(id) = reference.as_str() else {
            self.error(Code::WrongType, &pointer(at, "agent"), reference.mark, "`agent` is an agent's id");
            return None;
        };
        let found = object_members(self.playbook.get("agent_definitions")).iter().find(|(k, _, _)| k == id);
        match found {
            None => {
                self.error(
                    Code::UnknownReference,
                    &pointer(at, "agent"),
                    reference.mark,
                    format!("no agent in `agent_definitions` has the id `{id}`"),
                );
                None
            }
            Some((_, _, agent)) => {
                let kind = agent.get("type").and_then(Json::as_str).unwrap_or("");
                PEOPLE.contains(&kind).then(|| self.role_of(id, agent))
            }
        }
    }

    /// The step's targets (and its agent, which for http-api commands is often the API).
    fn targets(&mut self, json: &Json, at: &str) -> Vec<(String, &'static str, Json)> {
        let mut found = Vec::new();
        if let Some(list) = json.get("targets") {
            let Value::Array(items) = &list.value else {
                self.error(Code::WrongType, &pointer(at, "targets"), list.mark, "`targets` is a list of target ids");
                return found;
            };
            for (n, item) in items.iter().enumerate() {
                let Some(id) = item.as_str() else { continue };
                match self.definition(id) {
                    Some(target) => found.push((id.to_string(), "target", target.clone())),
                    None => {
                        self.error(
                            Code::UnknownReference,
                            &pointer(&pointer(at, "targets"), &n.to_string()),
                            item.mark,
                            format!("no target in `target_definitions` (or agent) has the id `{id}`"),
                        );
                    }
                }
            }
        }
        if let Some(id) = json.get("agent").and_then(Json::as_str) {
            if let Some(agent) = self.definition(id) {
                found.push((id.to_string(), "agent", agent.clone()));
            }
        }
        found
    }

    fn definition(&self, id: &str) -> Option<&Json> {
        ["target_definitions", "agent_definitions"]
            .iter()
            .find_map(|key| object_members(self.playbook.get(key)).iter().find(|(k, _, _)| k == id).map(|(_, _, v)| v))
    }

    fn command(
        &mut self,
        i: usize,
        command: &Json,
        at: &str,
        id: &str,
        agent: Option<&str>,
        targets: &[(String, &'static str, Json)],
    ) -> Yaml {
        let kind = command.get("type").and_then(Json::as_str).unwrap_or("");
        if kind.is_empty() {
            self.error(Code::MissingField, at, command.mark, "the command has no `type`");
        }
        let description = command.get("description").and_then(Json::as_str).unwrap_or("").trim().to_string();
        let text = self.command_text(command, at);
        let mut step = vec![("id".to_string(), Yaml::str(id))];
        if !description.is_empty() {
            step.push(("title".into(), Yaml::str(description.lines().next().unwrap_or("").to_string())));
        }
        let target_names: Vec<String> = targets
            .iter()
            .filter(|(_, role, _)| *role == "target")
            .map(|(id, _, t)| {
                let name = t.get("name").and_then(Json::as_str).unwrap_or(id);
                match address(t) {
                    Some(address) => format!("{name} ({address})"),
                    None => name.to_string(),
                }
            })
            .collect();
        let content = command.get("content").and_then(Json::as_str).map(str::to_string);
        let manual = |cx: &mut Self, why: Option<String>| -> Yaml {
            let mut instructions = String::new();
            if !description.is_empty() {
                instructions.push_str(&description);
                instructions.push_str("\n\n");
            }
            if let Some(why) = &why {
                instructions.push_str(why);
                instructions.push_str("\n\n");
            }
            if !target_names.is_empty() {
                instructions.push_str(&format!("Targets: {}.\n\n", target_names.join(", ")));
            }
            if let Some(text) = &text {
                instructions.push_str(text);
            }
            if let Some(content) = &content {
                instructions.push_str(&format!("\n\nContent:\n{content}"));
            }
            let instructions = instructions.trim().to_string();
            let instructions = if instructions.is_empty() {
                "Carry out this step (the CACAO command gave no text).".to_string()
            } else {
                instructions
            };
            let mut body = vec![("instructions".to_string(), Yaml::str(instructions))];
            if let Some(role) = agent {
                body.push(("assignee".into(), Yaml::str(role)));
            }
            let _ = cx;
            Yaml::Map(vec![("manual".to_string(), Yaml::Map(body))])
        };
        let action = match kind {
            "manual" => manual(self, None),
            "http-api" => match self.http(i, command, at, text.as_deref(), targets) {
                Some(http) => http,
                None => manual(self, None),
            },
            "bash" | "powershell" if !targets.iter().any(|(_, role, _)| *role == "target") => {
                let Some(text) = text.clone() else {
                    self.error(Code::Command, at, command.mark, format!("the {kind} command has no `command` text"));
                    return Yaml::Map(step);
                };
                let line = self.interpolate(
                    &text,
                    i,
                    &pointer(at, "command"),
                    command.get("command").map_or(command.mark, |c| c.mark),
                );
                let argv = if kind == "bash" {
                    vec![Yaml::str("bash"), Yaml::str("-c"), Yaml::str(line)]
                } else {
                    vec![Yaml::str("pwsh"), Yaml::str("-NoProfile"), Yaml::str("-Command"), Yaml::str(line)]
                };
                Yaml::map([("command", Yaml::map([("argv", Yaml::List(argv))]))])
            }
            "bash" | "powershell" | "ssh" | "caldera-cmd" | "elastic" | "jupyter" | "kestrel" | "openc2-http"
            | "sigma" | "yara" => {
                let why = match kind {
                    "bash" | "powershell" => format!(
                        "Run this {kind} command on the targets below; phasegate runs commands only on its own host."
                    ),
                    "ssh" => {
                        "Run this command over SSH on the targets below; phasegate opens no SSH sessions.".to_string()
                    }
                    other => {
                        format!("Run this {other} command with the tool it is written for; phasegate cannot run it.")
                    }
                };
                self.warn(
                    Code::KeptManual,
                    at,
                    command.mark,
                    format!(
                        "the {kind} command is kept as a manual step: {}",
                        why.split(';').nth(1).unwrap_or(&why).trim()
                    ),
                );
                manual(self, Some(why))
            }
            "" => manual(self, None),
            other => {
                let mut problem = Problem::warning(
                    Code::UnknownCommandType,
                    &pointer(at, "type"),
                    command.get("type").map_or(command.mark, |t| t.mark),
                    format!("`{other}` is not a CACAO 2.0 command type; it is kept as a manual step with its text"),
                );
                if let Some(near) = crate::spelling::did_you_mean(other, COMMAND_TYPES.iter().copied()) {
                    problem = problem.with_help(format!("did you mean `{near}`?"));
                }
                self.problems.push(problem);
                manual(
                    self,
                    Some(format!("The CACAO command type `{other}` is not one phasegate knows; carry it out by hand.")),
                )
            }
        };
        if let Yaml::Map(pairs) = action {
            step.extend(pairs);
        }
        Yaml::Map(step)
    }

    /// The command's text: `command`, or `command_b64` decoded.
    fn command_text(&mut self, command: &Json, at: &str) -> Option<String> {
        if let Some(text) = command.get("command").and_then(Json::as_str) {
            return Some(text.to_string());
        }
        let encoded = command.get("command_b64")?;
        let decoded = encoded
            .as_str()
            .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if decoded.is_none() {
            self.error(
                Code::Command,
                &pointer(at, "command_b64"),
                encoded.mark,
                "`command_b64` is not base64 of UTF-8 text",
            );
        }
        decoded
    }

    fn http(
        &mut self,
        i: usize,
        command: &Json,
        at: &str,
        text: Option<&str>,
        targets: &[(String, &'static str, Json)],
    ) -> Option<Yaml> {
        let mark = command.get("command").map_or(command.mark, |c| c.mark);
        let Some(text) = text else {
            self.error(
                Code::Command,
                at,
                command.mark,
                "the http-api command has no `command` (`METHOD /path HTTP/1.1`)",
            );
            return None;
        };
        let mut words = text.split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            self.error(
                Code::Command,
                &pointer(at, "command"),
                mark,
                format!("`{text}` is not `METHOD /path HTTP/1.1`"),
            );
            return None;
        };
        let method = method.to_ascii_uppercase();
        if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            self.error(
                Code::Command,
                &pointer(at, "command"),
                mark,
                format!("phasegate's http steps send GET, HEAD, POST, PUT, PATCH or DELETE, not `{method}`"),
            );
            return None;
        }
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            let base = targets.iter().find_map(|(_, _, t)| base_url(t));
            let Some(base) = base else {
                self.error(Code::Command, &pointer(at, "command"), mark, format!("`{path}` has no host: no target of the step gives an address (`url`, `dname`, `ipv4` or `ipv6`)"))
                    .help = Some("give the step a target with an address, or write the command with a whole URL".into());
                return None;
            };
            format!("{base}{}{path}", if path.starts_with('/') { "" } else { "/" })
        };
        let url = self.interpolate(&url, i, &pointer(at, "command"), mark);
        let mut http = vec![("method".to_string(), Yaml::str(method)), ("url".to_string(), Yaml::str(url))];
        let mut headers: Vec<(String, Yaml)> = Vec::new();
        for (name, header_mark, values) in object_members(command.get("headers")) {
            let here = pointer(&pointer(at, "headers"), name);
            let joined = match &values.value {
                Value::Array(items) => items.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(", "),
                Value::String(text) => text.clone(),
                _ => {
                    self.error(Code::WrongType, &here, values.mark, "a header's values are a list of strings");
                    continue;
                }
            };
            if ["authorization", "proxy-authorization", "cookie", "x-api-key"]
                .contains(&name.to_ascii_lowercase().as_str())
            {
                let secret = format!("{}_{}", slug(self.phase_of[i].as_deref().unwrap_or("cacao"), "cacao"), name)
                    .to_ascii_uppercase()
                    .replace('-', "_");
                self.warn(Code::Credential, &here, *header_mark, format!("the `{name}` header's value is a credential; it was not copied: configuration gives it as the secret `{secret}`"));
                headers.push((name.clone(), Yaml::map([("secret", Yaml::str(secret))])));
                continue;
            }
            let value = self.interpolate(&joined, i, &here, values.mark);
            headers.push((name.clone(), Yaml::str(value)));
        }
        for (target_id, _, target) in targets {
            if let Some(secret) = self.authentication(target_id, target) {
                if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("authorization")) {
                    headers.push(("Authorization".into(), secret));
                }
                break;
            }
        }
        if !headers.is_empty() {
            http.push(("headers".into(), Yaml::Map(headers)));
        }
        let content = match (command.get("content"), command.get("content_b64")) {
            (Some(content), _) => content.as_str().map(|c| (c.to_string(), content.mark, "content")),
            (None, Some(encoded)) => {
                let decoded = encoded
                    .as_str()
                    .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e.trim()).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                if decoded.is_none() {
                    self.error(
                        Code::Command,
                        &pointer(at, "content_b64"),
                        encoded.mark,
                        "`content_b64` is not base64 of UTF-8 text",
                    );
                }
                decoded.map(|d| (d, encoded.mark, "content_b64"))
            }
            (None, None) => None,
        };
        if let Some((content, content_mark, field)) = content {
            if !content.trim().is_empty() {
                match serde_json::from_str::<serde_json::Value>(&content) {
                    Ok(body) => {
                        let body = self.interpolate_json(&body, i, &pointer(at, field), content_mark);
                        http.push(("body".into(), body));
                    }
                    Err(_) => {
                        self.error(
                            Code::Command,
                            &pointer(at, field),
                            content_mark,
                            "the command's content is not JSON; phasegate's http steps send JSON bodies",
                        )
                        .help = Some("write the body as JSON, or keep this call as a manual step".into());
                        return None;
                    }
                }
            }
        }
        Some(Yaml::map([("http", Yaml::Map(http))]))
    }

    fn interpolate_json(&mut self, value: &serde_json::Value, i: usize, at: &str, mark: Mark) -> Yaml {
        match value {
            serde_json::Value::String(text) => Yaml::Str(self.interpolate(text, i, at, mark)),
            serde_json::Value::Array(items) => {
                Yaml::List(items.iter().map(|v| self.interpolate_json(v, i, at, mark)).collect())
            }
            serde_json::Value::Object(members) => {
                Yaml::Map(members.iter().map(|(k, v)| (k.clone(), self.interpolate_json(v, i, at, mark))).collect())
            }
            other => Yaml::from_serde(other),
        }
    }

    /// The `Authorization` header of a target's authentication information, as a named secret.
    fn authentication(&mut self, target_id: &str, target: &Json) -> Option<Yaml> {
        let reference = target.get("authentication_info").and_then(Json::as_str)?;
        let definitions = self.playbook.get("authentication_info_definitions");
        let Some((_, mark, definition)) = object_members(definitions).iter().find(|(k, _, _)| k == reference) else {
            let at = format!("{}/authentication_info", self.definition_pointer(target_id));
            self.error(
                Code::UnknownReference,
                &at,
                target.get("authentication_info").map_or(target.mark, |a| a.mark),
                format!("no entry of `authentication_info_definitions` has the id `{reference}`"),
            );
            return None;
        };
        let at = pointer("/authentication_info_definitions", reference);
        let kind = definition.get("type").and_then(Json::as_str).unwrap_or("");
        let name = definition.get("name").and_then(Json::as_str).unwrap_or("");
        let secret =
            slug(if name.is_empty() { reference } else { name }, "cacao-auth").to_ascii_uppercase().replace('-', "_");
        for field in ["password", "token", "private_key", "oauth_header"] {
            if let Some(value) = definition.get(field).filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
                self.warn(Code::Credential, &pointer(&at, field), value.mark, format!("`{field}` holds a credential; it was not copied: configuration gives it as the secret `{secret}`"))
                    .help = Some("remove credentials from playbooks you share".into());
            }
        }
        let prefix = match kind {
            "http-basic" => "Basic ",
            "oauth2" => "Bearer ",
            other => {
                self.warn(
                    Code::Credential,
                    &at,
                    *mark,
                    format!("`{other}` authentication is not for HTTP; the request goes without it"),
                );
                return None;
            }
        };
        self.notes.push(format!(
            "Secret `{secret}`: the `Authorization` value after `{}` for CACAO authentication `{reference}` ({kind}{}).",
            prefix.trim(),
            if kind == "http-basic" { ": base64 of `user:password`" } else { "" }
        ));
        Some(Yaml::map([("secret", Yaml::str(secret)), ("prefix", Yaml::str(prefix))]))
    }

    fn definition_pointer(&self, id: &str) -> String {
        let key = if object_members(self.playbook.get("target_definitions")).iter().any(|(k, _, _)| k == id) {
            "target_definitions"
        } else {
            "agent_definitions"
        };
        pointer(&format!("/{key}"), id)
    }

    fn sub_playbook(&mut self, i: usize) -> Vec<Yaml> {
        let step = &self.graph.steps[i];
        let (json, at) = (step.json, step.pointer.clone());
        let Some(id) = json.get("playbook_id").and_then(Json::as_str) else {
            self.error(Code::MissingField, &at, step_mark(json), "the playbook-action has no `playbook_id`");
            return Vec::new();
        };
        let version =
            json.get("playbook_version").and_then(Json::as_str).map(|v| format!(" (version {v})")).unwrap_or_default();
        self.warn(
            Code::SubPlaybook,
            &at,
            step_mark(json),
            format!("the playbook-action runs `{id}`, which is not in this file; it is kept as a manual step"),
        )
        .help = Some("import that playbook too, and start an incident from it when this step comes".into());
        let agent = self.agent(json, &at);
        let mut manual = vec![(
            "instructions".to_string(),
            Yaml::str(format!(
                "Run the CACAO playbook `{id}`{version} (imported separately as its own runbook), and mark this step done when it has finished."
            )),
        )];
        if let Some(role) = agent {
            manual.push(("assignee".into(), Yaml::str(role)));
        }
        vec![Yaml::Map(vec![("id".into(), Yaml::str("run-playbook")), ("manual".into(), Yaml::Map(manual))])]
    }

    fn exception(&mut self) {
        let Some(reference) = self.playbook.get("workflow_exception") else { return };
        let Some(id) = reference.as_str() else {
            self.error(Code::WrongType, "/workflow_exception", reference.mark, "`workflow_exception` is a step id");
            return;
        };
        match self.graph.index(id) {
            None => {
                self.error(Code::UnknownStep, "/workflow_exception", reference.mark, format!("no workflow step has the id `{id}`"));
            }
            Some(i) if self.graph.steps[i].kind == "end" => self.notes.push(
                "CACAO `workflow_exception` ends the workflow; in phasegate a step that fails for good stops its phase until a person retries, skips or completes it.".into(),
            ),
            Some(_) => {
                self.error(Code::Unsupported, "/workflow_exception", reference.mark, "`workflow_exception` leads to steps that run when anything fails; phasegate stops at a failed step until a person recovers it")
                    .help = Some("point `workflow_exception` at an end step, or give the steps that may fail `on_failure`".into());
            }
        }
    }

    /// The runbook's description: the playbook's own, then where it came from.
    fn description(&mut self) -> String {
        let p = self.playbook;
        let mut lines = Vec::new();
        if let Some(d) = p.get("description").and_then(Json::as_str) {
            lines.push(d.trim().to_string());
            lines.push(String::new());
        }
        let id = p.get("id").and_then(Json::as_str).unwrap_or("(no id)");
        lines.push(format!("Imported from CACAO 2.0 playbook `{id}`."));
        for (key, label) in [
            ("created_by", "Created by"),
            ("created", "Created"),
            ("modified", "Modified"),
            ("valid_from", "Valid from"),
            ("valid_until", "Valid until"),
            ("revoked", "Revoked"),
            ("priority", "Priority"),
            ("severity", "Severity"),
            ("impact", "Impact"),
        ] {
            if let Some(value) = p.get(key) {
                let text = match &value.value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.clone(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                lines.push(format!("{label}: {text}."));
            }
        }
        for (key, label) in [
            ("playbook_types", "Playbook types"),
            ("playbook_activities", "Activities"),
            ("labels", "Labels"),
            ("industry_sectors", "Industry sectors"),
            ("derived_from", "Derived from"),
        ] {
            if let Some(Value::Array(items)) = p.get(key).map(|v| &v.value) {
                let texts: Vec<&str> = items.iter().filter_map(Json::as_str).collect();
                if !texts.is_empty() {
                    lines.push(format!("{label}: {}.", texts.join(", ")));
                }
            }
        }
        if let Some(markings) = p.get("markings") {
            let Value::Array(items) = &markings.value else { return lines.join("\n") };
            let mut shown = Vec::new();
            for (n, item) in items.iter().enumerate() {
                let Some(id) = item.as_str() else { continue };
                match object_members(p.get("data_marking_definitions")).iter().find(|(k, _, _)| k == id) {
                    Some((_, _, marking)) => shown.push(marking_text(id, marking)),
                    None => {
                        self.error(
                            Code::UnknownReference,
                            &format!("/markings/{n}"),
                            item.mark,
                            format!("no entry of `data_marking_definitions` has the id `{id}`"),
                        );
                    }
                }
            }
            if !shown.is_empty() {
                lines.push(format!("Markings: {}.", shown.join("; ")));
            }
        }
        if let Some(Value::Array(signatures)) = p.get("signatures").map(|s| &s.value) {
            lines.push(format!(
                "The CACAO file carried {} signature(s); they sign the JSON, not this runbook, and were not checked.",
                signatures.len()
            ));
        }
        if let Some(Value::Array(references)) = p.get("external_references").map(|r| &r.value) {
            for reference in references {
                let name = reference.get("name").and_then(Json::as_str).unwrap_or("reference");
                let url = reference.get("url").and_then(Json::as_str).unwrap_or("");
                lines.push(format!("Reference: {name} {url}").trim_end().to_string());
            }
        }
        let extensions = object_members(p.get("playbook_extensions"));
        if !extensions.is_empty() {
            let names: Vec<&str> = extensions.iter().map(|(k, _, _)| k.as_str()).collect();
            let mark = p.get("playbook_extensions").map_or(p.mark, |e| e.mark);
            self.warn(
                Code::Extension,
                "/playbook_extensions",
                mark,
                format!(
                    "the playbook's extensions ({}) are not acted on; they are named in the description",
                    names.join(", ")
                ),
            );
            lines.push(format!("Extensions not acted on: {}.", names.join(", ")));
        }
        lines.append(&mut self.notes);
        lines.join("\n")
    }
}

fn step_mark(json: &Json) -> Mark {
    json.mark
}

/// External references of a step, into its description.
fn references(json: &Json, description: &mut String) {
    if let Some(Value::Array(references)) = json.get("external_references").map(|r| &r.value) {
        for reference in references {
            let name = reference.get("name").and_then(Json::as_str).unwrap_or("reference");
            let url = reference.get("url").and_then(Json::as_str).unwrap_or("");
            description.push_str(&format!("\nReference: {name} {url}"));
        }
    }
}

fn marking_text(id: &str, marking: &Json) -> String {
    let kind = marking.get("type").and_then(Json::as_str).unwrap_or("marking");
    let detail = ["tlpv2_level", "tlp", "statement", "name"].iter().find_map(|k| marking.get(k).and_then(Json::as_str));
    match detail {
        Some(detail) => format!("{detail} ({kind} `{id}`)"),
        None => format!("{kind} `{id}`"),
    }
}

/// A step output's name for a variable.
fn output_name(variable: &str) -> String {
    variable.to_ascii_lowercase().replace('-', "_")
}

/// A target's address, for people to read.
fn address(target: &Json) -> Option<String> {
    let address = target.get("address")?;
    let mut parts = Vec::new();
    for (kind, _, values) in object_members(Some(address)) {
        if let Value::Array(items) = &values.value {
            for item in items.iter().filter_map(Json::as_str) {
                parts.push(format!("{kind} {item}"));
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The scheme, host and port to send a target's HTTP requests to.
fn base_url(target: &Json) -> Option<String> {
    let address = target.get("address")?;
    let first = |kind: &str| match address.get(kind).map(|v| &v.value) {
        Some(Value::Array(items)) => items.first().and_then(Json::as_str).map(str::to_string),
        _ => None,
    };
    if let Some(url) = first("url") {
        let scheme_end = url.find("://")? + 3;
        let host_end = url[scheme_end..].find('/').map_or(url.len(), |n| scheme_end + n);
        return Some(url[..host_end].to_string());
    }
    let host = first("dname").or_else(|| first("ipv4")).or_else(|| first("ipv6").map(|a| format!("[{a}]")))?;
    let port = target.get("port").and_then(|p| match &p.value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.clone()),
        _ => None,
    });
    Some(match port.as_deref() {
        None | Some("443") => format!("https://{host}"),
        Some("80") => format!("http://{host}"),
        Some(port) => format!("https://{host}:{port}"),
    })
}

/// A variable's value as an input default of `input_type`: `Some(None)` for an empty value
/// (no default), `None` for a value that does not fit.
fn typed(value: &Json, input_type: &str) -> Option<Option<Yaml>> {
    let text = match &value.value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => return Some(None),
        _ => return None,
    };
    if text.is_empty() && input_type != "string" {
        return Some(None);
    }
    Some(Some(match input_type {
        "integer" => Yaml::Int(text.parse().ok()?),
        "number" => {
            text.parse::<f64>().ok()?;
            Yaml::Num(text)
        }
        "boolean" => Yaml::Bool(match text.as_str() {
            "true" => true,
            "false" => false,
            _ => return None,
        }),
        _ => Yaml::Str(text),
    }))
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
