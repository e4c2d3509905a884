//! `phasegate plan RUNBOOK`: the phases in dependency order with their gates and steps, as
//! text for a terminal, a Mermaid flowchart, a Graphviz graph or JSON.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::ValueEnum;

use super::{exit, load_runbook, print_diagnostics};
use crate::render::Catalog;
use crate::runbook::model::{Action, Gate, GateKind, Phase, Runbook, Step, TimerAnchor, format_duration};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runbook file.
    #[arg(value_name = "RUNBOOK")]
    path: PathBuf,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Mermaid,
    Dot,
    Json,
}

pub fn run(args: Args, catalog: &Catalog) -> anyhow::Result<u8> {
    let runbook = match load_runbook(&args.path, catalog) {
        Err(error) => anyhow::bail!("cannot read `{}`: {error}", args.path.display()),
        Ok(Err(diagnostics)) => {
            print_diagnostics(&args.path, &diagnostics);
            return Ok(exit::INVALID);
        }
        Ok(Ok(runbook)) => runbook,
    };
    let output = match args.format {
        PlanFormat::Text => text(&runbook),
        PlanFormat::Mermaid => mermaid(&runbook),
        PlanFormat::Dot => dot(&runbook),
        PlanFormat::Json => serde_json::to_string_pretty(&runbook)? + "\n",
    };
    super::print_stdout(&output)?;
    Ok(exit::OK)
}

/// Each phase's stage: phases in the same stage do not depend on each other and may run in
/// parallel. Phases are in dependency order, so one pass suffices.
pub fn stages(runbook: &Runbook) -> Vec<usize> {
    let mut stage_of: Vec<usize> = Vec::with_capacity(runbook.phases().len());
    for phase in runbook.phases() {
        let stage = phase
            .needs
            .iter()
            .filter_map(|need| runbook.phases().iter().position(|p| &p.id == need))
            .map(|index| stage_of[index] + 1)
            .max()
            .unwrap_or(1);
        stage_of.push(stage);
    }
    stage_of
}

pub fn text(runbook: &Runbook) -> String {
    let mut out = String::new();
    let version = runbook.version().map(|v| format!(" (version {v})")).unwrap_or_default();
    let steps: usize = runbook.phases().iter().map(|p| p.steps.len()).sum();
    let _ = writeln!(out, "{}: {}{version}", runbook.id(), runbook.title());
    let _ = writeln!(
        out,
        "{}, {}, {} that may be relaxed, {}\n",
        count(runbook.phases().len(), "phase"),
        count(steps, "step"),
        count(runbook.controls().len(), "control"),
        count(runbook.triggers().len(), "trigger")
    );
    let stages = stages(runbook);
    let last_stage = stages.iter().copied().max().unwrap_or(0);
    for stage in 1..=last_stage {
        let members: Vec<&Phase> =
            runbook.phases().iter().zip(&stages).filter(|(_, s)| **s == stage).map(|(p, _)| p).collect();
        let parallel = if members.len() > 1 { "  (these phases may run in parallel)" } else { "" };
        let _ = writeln!(out, "stage {stage}{parallel}");
        for phase in members {
            phase_text(&mut out, phase);
        }
    }
    rights_text(&mut out, runbook);
    out
}

/// Who may close, abandon and recover, and send which audience an update by hand.
fn rights_text(out: &mut String, runbook: &Runbook) {
    let _ = writeln!(out, "rights");
    let right = |right: &crate::runbook::model::Right, key: &str| {
        let roles = if right.roles.is_empty() { "nobody".to_string() } else { right.roles.join(" or ") };
        match (right.declared, right.roles.is_empty()) {
            (true, _) => roles,
            (false, false) => format!("{roles} (the default)"),
            (false, true) => format!("nobody (the default: declare `rights.{key}`)"),
        }
    };
    let rights = runbook.rights();
    let _ = writeln!(out, "  close    {}", right(&rights.close, "close"));
    let _ = writeln!(out, "  abandon  {}", right(&rights.abandon, "abandon"));
    let _ = writeln!(out, "  recover  {}", right(&rights.recover, "recover"));
    if !runbook.audiences().is_empty() {
        let _ = writeln!(out, "  updates by hand");
    }
    for audience in runbook.audiences() {
        let senders = match &audience.senders {
            None => "anyone configured".to_string(),
            Some(senders) if senders.roles.is_empty() && !senders.declared => {
                "nobody (outside the company: declare its `senders`)".to_string()
            }
            Some(senders) if senders.roles.is_empty() => "nobody".to_string(),
            Some(senders) => senders.roles.join(" or "),
        };
        let _ = writeln!(out, "    {:<12} {senders}", audience.id);
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn phase_text(out: &mut String, phase: &Phase) {
    let title = phase.title.as_deref().map(|t| format!(": {t}")).unwrap_or_default();
    let _ = writeln!(out, "  {}{title}", phase.id);
    if !phase.needs.is_empty() {
        let _ = writeln!(out, "    needs   {}", phase.needs.join(", "));
    }
    if let Some(when) = &phase.when {
        let _ = writeln!(out, "    when    {}  (skipped when false)", when.source());
    }
    for gate in &phase.entry {
        let _ = writeln!(out, "    entry   {}", gate_text(gate));
    }
    for step in &phase.steps {
        let _ = writeln!(out, "    step    {}", step_text(step));
    }
    for gate in &phase.exit {
        let _ = writeln!(out, "    exit    {}", gate_text(gate));
    }
}

pub fn gate_text(gate: &Gate) -> String {
    let (kind, what) = match &gate.kind {
        GateKind::Approval { roles, count, four_eyes } => {
            let people = if *count == 1 { "1 person".to_string() } else { format!("{count} different people") };
            let four =
                if *four_eyes { " (four-eyes: not whoever started the incident or requested the phase)" } else { "" };
            ("approval", format!("{people} holding {} must approve{four}", roles.join(" or ")))
        }
        GateKind::Condition(condition) => ("condition", format!("holds when {}", condition.source())),
        GateKind::Check(check) => (
            "check",
            format!(
                "{} {} until {} (every {}, for at most {})",
                check.request.method,
                check.request.url,
                check.expect.source(),
                format_duration(check.interval),
                format_duration(check.deadline)
            ),
        ),
        GateKind::Timer { not_before, not_later_than, from } => {
            let from = match from {
                TimerAnchor::Ready => "the phase is ready",
                TimerAnchor::IncidentStarted => "the incident started",
            };
            let mut parts = Vec::new();
            if let Some(duration) = not_before {
                parts.push(format!("not before {}", format_duration(*duration)));
            }
            if let Some(duration) = not_later_than {
                parts.push(format!("not later than {}", format_duration(*duration)));
            }
            ("timer", format!("{} after {from}", parts.join(" and ")))
        }
        GateKind::StepsDone { steps } if steps.is_empty() => {
            ("steps done", "all steps done (optional steps excepted)".to_string())
        }
        GateKind::StepsDone { steps } => ("steps done", format!("steps {} done", steps.join(", "))),
        GateKind::Signal { role: Some(role) } => ("signal", format!("given by a trigger, or by hand by {role}")),
        GateKind::Signal { role: None } => ("signal", "given by a trigger".to_string()),
    };
    // The id is how `phasegate approve` and triggers name the gate; a derived one already says
    // the kind (`approval-2`), a chosen one may not.
    if gate.named { format!("[{}] {kind}: {what}", gate.id) } else { format!("[{}] {what}", gate.id) }
}

pub fn step_text(step: &Step) -> String {
    let what = match &step.action {
        Action::Manual { assignee, .. } => {
            format!("manual{}", assignee.as_deref().map(|a| format!(", by {a}")).unwrap_or_default())
        }
        Action::Http { request, .. } => format!("http {} {}", request.method, request.url),
        Action::Command { argv, .. } => format!("command {}", argv.first().map(String::as_str).unwrap_or("")),
        Action::Notify { audience, .. } => format!("notify {audience}"),
        Action::Relax { control, expires_in, .. } => {
            format!("relax {control} for at most {}", format_duration(*expires_in))
        }
        Action::Reinstate { control, .. } => format!("reinstate {control}"),
        Action::Campaign { template, channel, .. } => format!("campaign {template} via {channel}"),
    };
    let mut flags = Vec::new();
    if step.optional {
        flags.push("optional".to_string());
    }
    if let Some(when) = &step.when {
        flags.push(format!("when {}", when.source()));
    }
    let flags = if flags.is_empty() { String::new() } else { format!("  [{}]", flags.join("; ")) };
    let title = step.title.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
    format!("{}{title}: {what}{flags}", step.id)
}

fn mermaid_id(id: &str) -> String {
    format!("p_{}", id.replace('-', "_"))
}

fn mermaid_label(text: &str) -> String {
    text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

pub fn mermaid(runbook: &Runbook) -> String {
    let mut out = String::from("flowchart TD\n");
    for phase in runbook.phases() {
        let mut label = mermaid_label(&phase.id);
        if let Some(title) = &phase.title {
            let _ = write!(label, "<br/>{}", mermaid_label(title));
        }
        if let Some(when) = &phase.when {
            let _ = write!(label, "<br/>when: {}", mermaid_label(when.source()));
        }
        for gate in phase.entry.iter() {
            let _ = write!(label, "<br/>entry: {}", mermaid_label(&gate_text(gate)));
        }
        let _ = writeln!(out, "    {}[\"{label}\"]", mermaid_id(&phase.id));
        if phase.when.is_some() {
            let _ = writeln!(out, "    class {} conditional", mermaid_id(&phase.id));
        }
    }
    for phase in runbook.phases() {
        for need in &phase.needs {
            let _ = writeln!(out, "    {} --> {}", mermaid_id(need), mermaid_id(&phase.id));
        }
    }
    out.push_str("    classDef conditional stroke-dasharray: 5 5\n");
    out
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn dot(runbook: &Runbook) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box, fontname=\"sans-serif\"];\n",
        dot_escape(runbook.id())
    );
    for phase in runbook.phases() {
        let mut label = phase.id.clone();
        if let Some(title) = &phase.title {
            label = format!("{label}\n{title}");
        }
        if let Some(when) = &phase.when {
            label = format!("{label}\nwhen: {}", when.source());
        }
        for gate in phase.entry.iter() {
            label = format!("{label}\nentry: {}", gate_text(gate));
        }
        let style = if phase.when.is_some() { ", style=dashed" } else { "" };
        let _ = writeln!(out, "    \"{}\" [label=\"{}\"{style}];", dot_escape(&phase.id), dot_escape(&label));
    }
    for phase in runbook.phases() {
        for need in &phase.needs {
            let _ = writeln!(out, "    \"{}\" -> \"{}\";", dot_escape(need), dot_escape(&phase.id));
        }
    }
    out.push_str("}\n");
    out
}
