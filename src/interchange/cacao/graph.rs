//! The workflow as a graph, checked before anything is mapped: every step a reference names
//! exists, the start is a start step, an end is reachable, and no steps loop. A runbook's phases
//! are a graph without cycles and each runs once, so every loop is refused, the ones with no way
//! out under a code of their own.

use std::collections::HashMap;

use super::json::{Json, Value, pointer};
use super::{Code, Problem};
use crate::runbook::Mark;

/// The step types of CACAO 2.0.
pub const STEP_TYPES: &[&str] =
    &["start", "end", "action", "playbook-action", "parallel", "if-condition", "while-condition", "switch-condition"];

/// The most workflow steps a playbook may have: far more than any written by hand, few enough
/// that the mapping's walks over the graph stay quick.
pub const MAX_STEPS: usize = 1000;

/// How one step leads to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Completion,
    Success,
    Failure,
    True,
    False,
    Case(String),
    Default,
    Parallel,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub via: Via,
}

#[derive(Debug)]
pub struct Step<'a> {
    pub id: String,
    pub kind: String,
    pub pointer: String,
    pub json: &'a Json,
    /// Where the step's id is written, where problems with the step as a whole are reported.
    pub mark: Mark,
}

#[derive(Debug)]
pub struct Graph<'a> {
    pub steps: Vec<Step<'a>>,
    pub edges: Vec<Edge>,
    /// Steps the start reaches, in the order a walk from it first meets them.
    pub reached: Vec<usize>,
}

impl Graph<'_> {
    pub fn index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|step| step.id == id)
    }
}

/// Builds and checks the graph of `workflow` (at `/workflow`), given the playbook's
/// `workflow_start`. `None` when the graph has problems, all reported.
pub fn build<'a>(playbook: &'a Json, workflow: &'a Json, problems: &mut Vec<Problem>) -> Option<Graph<'a>> {
    let before = problems.len();
    let Value::Object(members) = &workflow.value else {
        if matches!(workflow.value, Value::Array(_)) {
            problems.push(
                Problem::error(Code::WorkflowList, "/workflow", workflow.mark, "the workflow is a list, as in CACAO 1.x")
                    .with_help("CACAO 2.0 keys workflow steps by their id: `\"workflow\": { \"start--...\": { \"type\": \"start\", ... } }`"),
            );
        } else {
            problems.push(Problem::error(
                Code::WrongType,
                "/workflow",
                workflow.mark,
                format!("the workflow is {}, not an object of steps by id", workflow.describe()),
            ));
        }
        return None;
    };
    if members.len() > MAX_STEPS {
        problems.push(Problem::error(
            Code::TooComplex,
            "/workflow",
            workflow.mark,
            format!("the workflow has {} steps; phasegate imports at most {MAX_STEPS}", members.len()),
        ));
        return None;
    }
    let mut steps = Vec::new();
    for (id, mark, json) in members {
        let at = pointer("/workflow", id);
        let kind = match json.get("type").map(|t| (t, t.as_str())) {
            _ if !matches!(json.value, Value::Object(_)) => {
                problems.push(Problem::error(
                    Code::WrongType,
                    &at,
                    json.mark,
                    format!("a workflow step is an object, this is {}", json.describe()),
                ));
                continue;
            }
            None => {
                problems.push(
                    Problem::error(Code::MissingField, &at, json.mark, "the step has no `type`")
                        .with_help(format!("one of: {}", STEP_TYPES.join(", "))),
                );
                String::new()
            }
            Some((t, None)) => {
                problems.push(Problem::error(
                    Code::WrongType,
                    &pointer(&at, "type"),
                    t.mark,
                    format!("`type` is {}, not a string", t.describe()),
                ));
                String::new()
            }
            Some((t, Some(kind))) => {
                if !STEP_TYPES.contains(&kind) {
                    let mut problem = Problem::error(
                        Code::UnknownStepType,
                        &pointer(&at, "type"),
                        t.mark,
                        format!("`{kind}` is not a CACAO 2.0 workflow step type"),
                    );
                    problem = match crate::spelling::did_you_mean(kind, STEP_TYPES.iter().copied()) {
                        Some(near) => problem.with_help(format!("did you mean `{near}`?")),
                        None => problem.with_help(format!("one of: {}", STEP_TYPES.join(", "))),
                    };
                    problems.push(problem);
                }
                kind.to_string()
            }
        };
        steps.push(Step { id: id.clone(), kind, pointer: at, json, mark: *mark });
    }
    let acting = steps.iter().filter(|s| s.kind != "start" && s.kind != "end").count();
    if acting > crate::runbook::validate::MAX_PHASES {
        problems.push(Problem::error(
            Code::TooComplex,
            "/workflow",
            workflow.mark,
            format!(
                "the workflow has {acting} steps besides start and end; each becomes a phase, and a runbook has at most {}",
                crate::runbook::validate::MAX_PHASES
            ),
        ));
        return None;
    }
    let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut edges = Vec::new();
    let mut reference = |from: usize, field_pointer: String, target: &Json, via: Via, problems: &mut Vec<Problem>| {
        let Some(id) = target.as_str() else {
            let mut problem = Problem::error(
                Code::WrongType,
                &field_pointer,
                target.mark,
                format!("a step reference is a step's id, this is {}", target.describe()),
            );
            if matches!(via, Via::Case(_) | Via::Default) && matches!(target.value, Value::Array(_)) {
                problem = problem.with_help(
                    "CACAO 2.0 gives each case one step id (a list of steps per case was CACAO 1.x); make the case's branch start at one step",
                );
            }
            problems.push(problem);
            return;
        };
        match index.get(id) {
            Some(&to) => edges.push(Edge { from, to, via }),
            None => {
                let mut problem = Problem::error(
                    Code::UnknownStep,
                    &field_pointer,
                    target.mark,
                    format!("no workflow step has the id `{id}`"),
                );
                if let Some(near) = crate::spelling::did_you_mean(id, index.keys().copied()) {
                    problem = problem.with_help(format!("did you mean `{near}`?"));
                }
                problems.push(problem);
            }
        }
    };
    for (i, step) in steps.iter().enumerate() {
        for (field, via) in [
            ("on_completion", Via::Completion),
            ("on_success", Via::Success),
            ("on_failure", Via::Failure),
            ("on_true", Via::True),
            ("on_false", Via::False),
        ] {
            if let Some(target) = step.json.get(field) {
                reference(i, pointer(&step.pointer, field), target, via, problems);
            }
        }
        if let Some(next) = step.json.get("next_steps") {
            let at = pointer(&step.pointer, "next_steps");
            match &next.value {
                Value::Array(items) => {
                    for (n, item) in items.iter().enumerate() {
                        reference(i, pointer(&at, &n.to_string()), item, Via::Parallel, problems);
                    }
                }
                _ => problems.push(Problem::error(
                    Code::WrongType,
                    &at,
                    next.mark,
                    format!("`next_steps` is a list of step ids, this is {}", next.describe()),
                )),
            }
        }
        if let Some(cases) = step.json.get("cases") {
            let at = pointer(&step.pointer, "cases");
            match &cases.value {
                Value::Object(members) => {
                    for (value, _, target) in members {
                        let via = if value == "default" { Via::Default } else { Via::Case(value.clone()) };
                        reference(i, pointer(&at, value), target, via, problems);
                    }
                }
                _ => problems.push(Problem::error(
                    Code::WrongType,
                    &at,
                    cases.mark,
                    format!("`cases` is an object of values to step ids, this is {}", cases.describe()),
                )),
            }
        }
    }
    let start = match playbook.get("workflow_start") {
        None => {
            problems.push(
                Problem::error(Code::MissingField, "", playbook.mark, "the playbook has no `workflow_start`")
                    .with_help("name the workflow's start step"),
            );
            None
        }
        Some(target) => match target.as_str().map(|id| (id, index.get(id))) {
            None => {
                problems.push(Problem::error(
                    Code::WrongType,
                    "/workflow_start",
                    target.mark,
                    format!("`workflow_start` is {}, not a step id", target.describe()),
                ));
                None
            }
            Some((id, None)) => {
                let mut problem = Problem::error(
                    Code::UnknownStep,
                    "/workflow_start",
                    target.mark,
                    format!("no workflow step has the id `{id}`"),
                );
                if let Some(near) = crate::spelling::did_you_mean(id, index.keys().copied()) {
                    problem = problem.with_help(format!("did you mean `{near}`?"));
                }
                problems.push(problem);
                None
            }
            Some((id, Some(&i))) if steps[i].kind != "start" => {
                problems.push(Problem::error(
                    Code::BadStart,
                    "/workflow_start",
                    target.mark,
                    format!("`{id}` is of type `{}`, not a `start` step", steps[i].kind),
                ));
                None
            }
            Some((_, Some(&i))) => Some(i),
        },
    };
    if !steps.iter().any(|s| s.kind == "end") {
        problems.push(
            Problem::error(Code::NoEnd, "/workflow", workflow.mark, "the workflow has no `end` step")
                .with_help("every path of a CACAO workflow finishes at an `end` step; add one"),
        );
    }
    for step in &steps {
        if step.kind == "while-condition" {
            problems.push(
                Problem::error(
                    Code::Loop,
                    &step.pointer,
                    step.mark,
                    "a while-condition repeats steps; phasegate runs each phase once",
                )
                .with_help(
                    "unroll the loop into the steps it takes, or keep the repetition in one manual step's instructions",
                ),
            );
        }
    }
    let start = start?;
    // A walk from the start, in the order steps are first met.
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for edge in &edges {
        next[edge.from].push(edge.to);
    }
    let mut reached = vec![start];
    let mut seen = vec![false; steps.len()];
    seen[start] = true;
    let mut at = 0;
    while at < reached.len() {
        for &to in &next[reached[at]] {
            if !seen[to] {
                seen[to] = true;
                reached.push(to);
            }
        }
        at += 1;
    }
    if steps.iter().any(|s| s.kind == "end") && !reached.iter().any(|&i| steps[i].kind == "end") {
        let mark = playbook.get("workflow_start").map_or(playbook.mark, |s| s.mark);
        problems.push(Problem::error(
            Code::NoEnd,
            "/workflow_start",
            mark,
            "no `end` step can be reached from the start",
        ));
    }
    for (i, step) in steps.iter().enumerate() {
        if !seen[i] {
            problems.push(
                Problem::warning(
                    Code::Unreachable,
                    &step.pointer,
                    step.mark,
                    format!("the start never reaches `{}`; it is left out", step.id),
                )
                .with_help("link it from another step's `on_completion` (or remove it)"),
            );
        }
    }
    for component in cycles(steps.len(), &edges) {
        if !component.iter().all(|&i| seen[i]) || component.iter().any(|&i| steps[i].kind == "while-condition") {
            continue;
        }
        let first = *component.iter().min().expect("a cycle has steps");
        let leaves = edges.iter().any(|e| component.contains(&e.from) && !component.contains(&e.to));
        let names: Vec<&str> = component.iter().map(|&i| steps[i].id.as_str()).collect();
        let step = &steps[first];
        problems.push(if leaves {
            Problem::error(
                Code::Loop,
                &step.pointer,
                step.mark,
                format!("these steps lead back to each other: {}", names.join(", ")),
            )
            .with_help("phasegate runs each phase once: unroll the loop")
        } else {
            Problem::error(
                Code::EndlessLoop,
                &step.pointer,
                step.mark,
                format!("these steps loop with no way out: {}", names.join(", ")),
            )
            .with_help("no step of the loop leads anywhere else, so the workflow never ends")
        });
    }
    if problems[before..].iter().any(|p| p.severity == super::Severity::Error) {
        return None;
    }
    Some(Graph { steps, edges, reached })
}

/// The strongly connected components that are cycles (more than one step, or a step leading to
/// itself), by Tarjan's algorithm without recursion.
fn cycles(count: usize, edges: &[Edge]) -> Vec<Vec<usize>> {
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); count];
    for edge in edges {
        next[edge.from].push(edge.to);
    }
    let mut index = vec![usize::MAX; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut found = Vec::new();
    let mut counter = 0;
    for root in 0..count {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut child)) = work.last_mut() {
            if let Some(&to) = next[node].get(*child) {
                *child += 1;
                if index[to] == usize::MAX {
                    index[to] = counter;
                    low[to] = counter;
                    counter += 1;
                    stack.push(to);
                    on_stack[to] = true;
                    work.push((to, 0));
                } else if on_stack[to] {
                    low[node] = low[node].min(index[to]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[node]);
                }
                if low[node] == index[node] {
                    let mut component = Vec::new();
                    while let Some(top) = stack.pop() {
                        on_stack[top] = false;
                        component.push(top);
                        if top == node {
                            break;
                        }
                    }
                    if component.len() > 1 || next[node].contains(&node) {
                        component.sort_unstable();
                        found.push(component);
                    }
                }
            }
        }
    }
    found
}
