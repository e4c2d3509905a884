//! Raw scenario to model, collecting every problem with its place ([`parse`]); then the scenario
//! checked against the runbook it drills ([`check`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::model::{
    Act, Answer, CommandStandIn, Expectation, Expected, HttpStandIn, Scenario, Scripted, Waiting, When,
};
use super::{Code, Diagnostic, raw};
use crate::runbook::model::{Action, GateKind};
use crate::runbook::spanned::Spanned;
use crate::runbook::{Mark, Runbook};
use crate::spelling::did_you_mean;

/// How long a drill runs when the scenario does not say.
pub const DEFAULT_UNTIL: Duration = Duration::from_secs(30 * 86_400);

/// The longest a drill may run in simulated time.
const MAX_UNTIL: Duration = Duration::from_secs(366 * 86_400);

struct Checker {
    problems: Vec<Diagnostic>,
}

impl Checker {
    fn report(&mut self, code: Code, mark: Mark, message: impl Into<String>) -> &mut Diagnostic {
        self.problems.push(Diagnostic::new(code, mark, message));
        self.problems.last_mut().expect("just pushed")
    }

    /// A duration such as `15m` or `1h 30m`; zero is allowed (`after: 0s`).
    fn duration(&mut self, text: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(text.value.trim()) {
            Ok(duration) if duration <= MAX_UNTIL => Some(duration),
            Ok(_) => {
                self.report(Code::BadTime, text.mark, format!("`{key}` is `{}`, longer than a year", text.value));
                None
            }
            Err(_) => {
                self.report(
                    Code::BadTime,
                    text.mark,
                    format!("`{key}` is `{}`, which is not a duration", text.value),
                )
                .help = Some("write durations like `30s`, `15m`, `72h`, `2d` or `1h 30m`".to_string());
                None
            }
        }
    }

    fn answer(
        &mut self,
        status: &Option<Spanned<u16>>,
        body: &Option<Spanned<Value>>,
        headers: &Option<Spanned<serde_json::Map<String, Value>>>,
        delay: &Option<Spanned<String>>,
    ) -> Answer {
        let headers = headers
            .as_ref()
            .map(|headers| {
                headers
                    .value
                    .iter()
                    .map(|(name, value)| {
                        let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                        (name.to_ascii_lowercase(), text)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Answer {
            status: status.as_ref().map_or(200, |status| status.value),
            headers,
            body: body.as_ref().map_or(Value::Null, |body| body.value.clone()),
            delay: delay.as_ref().and_then(|delay| self.duration(delay, "delay")).unwrap_or_default(),
        }
    }
}

/// The validated scenario, or every problem found.
pub fn validate(raw: &raw::Scenario) -> Result<Scenario, Vec<Diagnostic>> {
    let mut checker = Checker { problems: Vec::new() };
    if raw.api_version.value != "phasegate/v1" {
        checker
            .report(Code::BadKind, raw.api_version.mark, format!("`apiVersion` is `{}`", raw.api_version.value))
            .help = Some("write `apiVersion: phasegate/v1`".to_string());
    }
    if raw.kind.value != "Drill" {
        checker.report(Code::BadKind, raw.kind.mark, format!("`kind` is `{}`, not `Drill`", raw.kind.value)).help =
            Some("a drill scenario says `kind: Drill`; a runbook is checked with `phasegate validate`".to_string());
    }
    let start_at = match DateTime::parse_from_rfc3339(raw.start.value.at.value.trim()) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => {
            checker
                .report(
                    Code::BadTime,
                    raw.start.value.at.mark,
                    format!("`start.at` is `{}`, which is not an RFC 3339 time", raw.start.value.at.value),
                )
                .help = Some("write the time like `2026-11-24T02:14:00Z`".to_string());
            DateTime::<Utc>::UNIX_EPOCH
        }
    };
    let until = raw.until.as_ref().and_then(|until| checker.duration(until, "until")).unwrap_or(DEFAULT_UNTIL);
    let mut people = BTreeMap::new();
    for (name, roles) in &raw.people.value.0 {
        people.insert(name.value.clone(), roles.iter().map(|role| role.value.clone()).collect::<BTreeSet<_>>());
    }
    let starter = raw.start.value.by.value.clone();
    if !people.contains_key(&starter) {
        unknown_person(&mut checker, &raw.start.value.by, &people);
    }
    let (http, http_default, commands) = stand_ins(&mut checker, raw.stand_ins.as_ref());
    let mut script = Vec::new();
    for (index, action) in raw.script.iter().enumerate() {
        if let Some(scripted) = scripted(&mut checker, index, action, &people) {
            script.push(scripted);
        }
    }
    let mut expect = Vec::new();
    for expectation in &raw.expect {
        if let Some(expected) = expectation_of(&mut checker, expectation) {
            expect.push(Expectation { mark: expectation.mark, what: expected });
        }
    }
    if !checker.problems.is_empty() {
        return Err(checker.problems);
    }
    Ok(Scenario {
        name: raw.name.value.clone(),
        description: raw.description.clone(),
        runbook: raw.runbook.value.clone(),
        runbook_mark: raw.runbook.mark,
        start_at,
        starter,
        inputs: raw
            .start
            .value
            .inputs
            .as_ref()
            .map(|inputs| inputs.value.clone().into_iter().collect())
            .unwrap_or_default(),
        key: raw.start.value.key.as_ref().map(|key| key.value.clone()),
        until,
        people,
        http,
        http_default,
        commands,
        script,
        expect,
    })
}

fn unknown_person(checker: &mut Checker, name: &Spanned<String>, people: &BTreeMap<String, BTreeSet<String>>) {
    let hint = did_you_mean(&name.value, people.keys().map(String::as_str));
    let diagnostic =
        checker.report(Code::UnknownPerson, name.mark, format!("`{}` is not one of the drill's `people`", name.value));
    diagnostic.help = Some(match hint {
        Some(near) => format!("did you mean `{near}`?"),
        None => "add them under `people` with the roles they hold".to_string(),
    });
}

type StandIns = (Vec<HttpStandIn>, Answer, Vec<CommandStandIn>);

fn stand_ins(checker: &mut Checker, raw: Option<&Spanned<raw::StandIns>>) -> StandIns {
    let Some(raw) = raw else { return (Vec::new(), Answer::default(), Vec::new()) };
    let mut http = Vec::new();
    for entry in &raw.value.http {
        let stand_in = &entry.value;
        let single = stand_in.status.is_some() || stand_in.body.is_some() || stand_in.delay.is_some();
        let answers = match &stand_in.answers {
            Some(answers) if single => {
                checker.report(
                    Code::ActionShape,
                    entry.mark,
                    "an HTTP stand-in gives either one answer (`status`, `body`, ...) or `answers`, not both",
                );
                continue;
            }
            Some(answers) => {
                let mut timed = Vec::new();
                for (place, answer) in answers.iter().enumerate() {
                    let until = answer.value.until.as_ref().and_then(|until| checker.duration(until, "until"));
                    if until.is_none() && place + 1 < answers.len() {
                        checker.report(
                            Code::ActionShape,
                            answer.mark,
                            "only the last of `answers` may leave out `until`",
                        );
                    }
                    let given = &answer.value;
                    timed.push((until, checker.answer(&given.status, &given.body, &given.headers, &given.delay)));
                }
                timed
            }
            None => vec![(None, checker.answer(&stand_in.status, &stand_in.body, &stand_in.headers, &stand_in.delay))],
        };
        let url = stand_in.url.value.trim();
        let (url, prefix) = match url.strip_suffix('*') {
            Some(prefix) => (prefix.to_string(), true),
            None => (url.to_string(), false),
        };
        let method = stand_in.method.as_ref().map(|method| method.value.trim().to_ascii_uppercase());
        http.push(HttpStandIn { method, url, prefix, answers });
    }
    let default = raw
        .value
        .http_default
        .as_ref()
        .map(|answer| {
            let given = &answer.value;
            checker.answer(&given.status, &given.body, &given.headers, &given.delay)
        })
        .unwrap_or_default();
    let commands = raw
        .value
        .commands
        .iter()
        .map(|entry| CommandStandIn {
            program: entry.value.program.value.clone(),
            exit_code: entry.value.exit_code.as_ref().map_or(0, |code| code.value),
            stdout: entry.value.stdout.clone().unwrap_or_default(),
            stderr: entry.value.stderr.clone().unwrap_or_default(),
        })
        .collect();
    (http, default, commands)
}

/// `PHASE/NAME` split in two.
fn pair(text: &Spanned<String>, what: &str, checker: &mut Checker) -> Option<(String, String)> {
    match text.value.trim().split_once('/') {
        Some((phase, name)) if !phase.is_empty() && !name.is_empty() => Some((phase.to_string(), name.to_string())),
        _ => {
            checker.report(Code::ActionShape, text.mark, format!("`{}` is not `PHASE/{what}`", text.value));
            None
        }
    }
}

/// `approval of PHASE[/GATE]`, `step PHASE/STEP`, `signal PHASE/GATE`, `failed PHASE/STEP` or
/// `closable`; `waiting for` in front and `of` after the kind may be written or not.
pub fn parse_waiting(text: &str) -> Result<Waiting, String> {
    let text = text.trim();
    let text = text.strip_prefix("waiting for ").unwrap_or(text).trim();
    let (kind, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let rest = rest.strip_prefix("of ").unwrap_or(rest).trim();
    let split = |what: &str| match rest.split_once('/') {
        Some((phase, name)) if !phase.is_empty() && !name.is_empty() && !name.contains(char::is_whitespace) => {
            Ok((phase.to_string(), name.to_string()))
        }
        _ => Err(format!("`{kind}` needs `PHASE/{what}`, not `{rest}`")),
    };
    match kind {
        "approval" if !rest.is_empty() && !rest.contains(char::is_whitespace) => match rest.split_once('/') {
            Some((phase, gate)) => Ok(Waiting::Approval { phase: phase.to_string(), gate: Some(gate.to_string()) }),
            None => Ok(Waiting::Approval { phase: rest.to_string(), gate: None }),
        },
        "approval" => Err(format!("`approval` needs `PHASE` or `PHASE/GATE`, not `{rest}`")),
        "step" => split("STEP").map(|(phase, step)| Waiting::Step { phase, step }),
        "signal" => split("GATE").map(|(phase, gate)| Waiting::Signal { phase, gate }),
        "failed" => split("STEP").map(|(phase, step)| Waiting::Failed { phase, step }),
        "closable" if rest.is_empty() => Ok(Waiting::Closable),
        _ => Err(format!(
            "`{text}` is not something an incident waits for: write `approval of PHASE[/GATE]`, `step PHASE/STEP`, \
             `signal PHASE/GATE`, `failed PHASE/STEP` or `closable`"
        )),
    }
}

fn scripted(
    checker: &mut Checker,
    index: usize,
    action: &Spanned<raw::Action>,
    people: &BTreeMap<String, BTreeSet<String>>,
) -> Option<Scripted> {
    let mark = action.mark;
    let raw = &action.value;
    let when = match (&raw.at, &raw.when) {
        (Some(at), None) => {
            if raw.after.is_some() {
                checker.report(Code::ActionShape, mark, "`after` goes with `when`, not with `at`");
            }
            When::At(checker.duration(at, "at")?)
        }
        (None, Some(when)) => {
            let wait = match parse_waiting(&when.value) {
                Ok(wait) => wait,
                Err(problem) => {
                    checker.report(Code::BadWhen, when.mark, problem);
                    return None;
                }
            };
            let after = match &raw.after {
                Some(after) => checker.duration(after, "after")?,
                None => Duration::ZERO,
            };
            When::Waiting { wait, after }
        }
        (Some(_), Some(_)) => {
            checker.report(Code::ActionShape, mark, "an action has `at` or `when`, not both");
            return None;
        }
        (None, None) => {
            checker.report(Code::ActionShape, mark, "an action says when it happens: `at: 15m` or `when: ...`").help =
                Some("`when` takes `approval of PHASE[/GATE]`, `step PHASE/STEP`, `signal PHASE/GATE`, `failed PHASE/STEP` or `closable`".to_string());
            return None;
        }
    };
    let note = raw.note.as_ref().map(|note| note.value.clone());
    let mut acts: Vec<Option<Act>> = Vec::new();
    if let Some(approve) = &raw.approve {
        acts.push(Some(match approve.value.trim().split_once('/') {
            Some((phase, gate)) => Act::Approve { phase: phase.into(), gate: Some(gate.into()), note: note.clone() },
            None => Act::Approve { phase: approve.value.trim().to_string(), gate: None, note: note.clone() },
        }));
    }
    if let Some(done) = &raw.done {
        acts.push(pair(done, "STEP", checker).map(|(phase, step)| Act::Done {
            phase,
            step,
            evidence: raw.evidence.clone(),
            outputs: raw.outputs.as_ref().map(|o| o.value.clone().into_iter().collect()).unwrap_or_default(),
        }));
    }
    if let Some(signal) = &raw.signal {
        acts.push(pair(signal, "GATE", checker).map(|(phase, gate)| Act::Signal { phase, gate, note: note.clone() }));
    }
    if let Some(update) = &raw.update {
        acts.push(Some(Act::Update(update.value.clone())));
    }
    if let Some(close) = &raw.close {
        let note = match &close.value {
            Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
            _ => None,
        };
        acts.push(Some(Act::Close(note)));
    }
    let reason = raw.reason.as_ref().map(|reason| reason.value.clone());
    if let Some(retry) = &raw.retry {
        acts.push(pair(retry, "STEP", checker).map(|(phase, step)| Act::Retry { phase, step, reason: reason.clone() }));
    }
    if let Some(skip) = &raw.skip {
        let Some(reason) = reason.clone() else {
            checker.report(
                Code::ActionShape,
                skip.mark,
                "`skip` needs `reason`: why the step is skipped goes on record",
            );
            return None;
        };
        acts.push(pair(skip, "STEP", checker).map(|(phase, step)| Act::Skip { phase, step, reason }));
    }
    if let Some(abandon) = &raw.abandon {
        acts.push(Some(Act::Abandon(abandon.value.clone())));
    }
    if let Some(webhook) = &raw.webhook {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in webhook.value.headers.iter().flatten() {
            // As a server combines a header sent twice; HTTP names have no case.
            headers
                .entry(name.to_ascii_lowercase())
                .and_modify(|joined| *joined = format!("{joined}, {value}"))
                .or_insert_with(|| value.clone());
        }
        acts.push(Some(Act::Webhook {
            source: webhook.value.source.value.clone(),
            headers,
            payload: webhook.value.payload.value.clone(),
        }));
    }
    // A note alone is the action; with another it is that action's note.
    if acts.is_empty()
        && let Some(text) = note
    {
        acts.push(Some(Act::Note(text)));
    }
    let act = match acts.len() {
        1 => acts.pop().flatten()?,
        0 => {
            checker.report(
                Code::ActionShape,
                mark,
                "the action does nothing: give one of `approve`, `done`, `signal`, `note`, `update`, `close`, `abandon`, `retry`, `skip`, `webhook`",
            );
            return None;
        }
        _ => {
            checker.report(
                Code::ActionShape,
                mark,
                "an action does one thing (`approve`, `done`, `signal`, `note`, `update`, `close`, `abandon`, `retry`, `skip` or `webhook`); write one action per thing",
            );
            return None;
        }
    };
    let by = match (&raw.by, &act) {
        (Some(_), Act::Webhook { .. }) => {
            checker.report(Code::ActionShape, mark, "a webhook delivery is made by its source, not `as` a person");
            return None;
        }
        (None, Act::Webhook { .. }) => None,
        (Some(by), _) => {
            if !people.contains_key(&by.value) {
                unknown_person(checker, by, people);
            }
            Some(by.value.clone())
        }
        (None, _) => {
            checker.report(Code::ActionShape, mark, format!("a `{}` action needs `as: PERSON`", act.name()));
            return None;
        }
    };
    let refused = raw.refused.as_ref().is_some_and(|refused| refused.value);
    Some(Scripted { index, mark, when, by, act, refused })
}

fn expectation_of(checker: &mut Checker, expectation: &Spanned<raw::Expectation>) -> Option<Expected> {
    let raw = &expectation.value;
    let mark = expectation.mark;
    let mut found = Vec::new();
    let by = raw.by.as_ref().and_then(|by| checker.duration(by, "by"));
    let at_most = raw.at_most.as_ref().and_then(|at_most| checker.duration(at_most, "at_most"));
    let needs = |checker: &mut Checker, value: Option<Duration>, key: &str, what: &str| {
        if value.is_none() {
            checker.report(Code::ActionShape, mark, format!("`{what}` needs `{key}`"));
        }
        value
    };
    if let Some(phase) = &raw.phase_done {
        found.push(Some(Expected::PhaseDone { phase: phase.value.clone(), by }));
    }
    if let Some(control) = &raw.exposure {
        let at_most = needs(checker, at_most, "at_most", "exposure");
        found.push(at_most.map(|at_most| Expected::Exposure { control: control.value.clone(), at_most }));
    }
    if let Some(audience) = &raw.updates {
        let at_least = raw.at_least.as_ref().map_or(1, |n| n.value);
        found.push(Some(Expected::Updates { audience: audience.value.clone(), at_least }));
    }
    if raw.no_step_failed.as_ref().is_some_and(|yes| yes.value) {
        found.push(Some(Expected::NoStepFailed));
    }
    if raw.closed.as_ref().is_some_and(|yes| yes.value) {
        found.push(Some(Expected::Closed { by }));
    }
    if let Some(gate) = &raw.gate_wait {
        let at_most = needs(checker, at_most, "at_most", "gate_wait");
        let target = if gate.value.trim() == "any" { Some(None) } else { pair(gate, "GATE", checker).map(Some) };
        found.push(at_most.zip(target).map(|(at_most, gate)| Expected::GateWait { gate, at_most }));
    }
    match found.len() {
        1 => found.pop().flatten(),
        0 => {
            checker.report(
                Code::ActionShape,
                mark,
                "the expectation names nothing: give one of `phase_done`, `exposure`, `updates`, `no_step_failed: true`, `closed: true`, `gate_wait`",
            );
            None
        }
        _ => {
            checker.report(Code::ActionShape, mark, "an expectation checks one thing; write one entry per thing");
            None
        }
    }
}

/// Every reference of the scenario checked against the runbook it drills.
pub fn check(scenario: &Scenario, runbook: &Runbook) -> Vec<Diagnostic> {
    let mut refs = References { runbook, problems: Vec::new() };
    let roles: Vec<&str> = runbook.roles().iter().map(|role| role.id.as_str()).collect();
    for (person, held) in &scenario.people {
        for role in held {
            if !roles.contains(&role.as_str()) {
                refs.unknown(scenario.runbook_mark, format!("role `{role}` (held by `{person}`)"), &roles, role);
            }
        }
    }
    let inputs: Vec<&str> = runbook.inputs().iter().map(|input| input.name.as_str()).collect();
    for name in scenario.inputs.keys() {
        if runbook.input(name).is_none() {
            refs.unknown(scenario.runbook_mark, format!("input `{name}`"), &inputs, name);
        }
    }
    let audiences: Vec<&str> = runbook.audiences().iter().map(|audience| audience.id.as_str()).collect();
    let sources: Vec<&str> = runbook.triggers().iter().map(|trigger| trigger.source.as_str()).collect();
    let controls: Vec<&str> = runbook.controls().iter().map(|control| control.id.as_str()).collect();
    for scripted in &scenario.script {
        let mark = scripted.mark;
        if let When::Waiting { wait, .. } = &scripted.when {
            match wait {
                Waiting::Approval { phase, gate } => refs.reference(mark, phase, gate.as_deref(), Kind::Approval),
                Waiting::Step { phase, step } => refs.reference(mark, phase, Some(step), Kind::Manual),
                Waiting::Signal { phase, gate } => refs.reference(mark, phase, Some(gate), Kind::Signal),
                Waiting::Failed { phase, step } => refs.reference(mark, phase, Some(step), Kind::Step),
                Waiting::Closable => {}
            }
        }
        match &scripted.act {
            Act::Approve { phase, gate, .. } => refs.reference(mark, phase, gate.as_deref(), Kind::Approval),
            // A manual step done, or any step that failed for good overridden.
            Act::Done { phase, step, .. } | Act::Retry { phase, step, .. } | Act::Skip { phase, step, .. } => {
                refs.reference(mark, phase, Some(step), Kind::Step)
            }
            Act::Signal { phase, gate, .. } => refs.reference(mark, phase, Some(gate), Kind::Signal),
            Act::Update(audience) if !audiences.contains(&audience.as_str()) => {
                refs.unknown(mark, format!("audience `{audience}`"), &audiences, audience);
            }
            Act::Webhook { source, .. } if !sources.contains(&source.as_str()) => {
                refs.unknown(mark, format!("a trigger with source `{source}`"), &sources, source);
            }
            _ => {}
        }
    }
    for expectation in &scenario.expect {
        let mark = expectation.mark;
        match &expectation.what {
            Expected::PhaseDone { phase, .. } => refs.reference(mark, phase, None, Kind::Step),
            Expected::GateWait { gate: Some((phase, _)), .. } => refs.reference(mark, phase, None, Kind::Step),
            Expected::Exposure { control, .. } if runbook.control(control).is_none() => {
                refs.unknown(mark, format!("control `{control}`"), &controls, control);
            }
            Expected::Updates { audience, .. } if !audiences.contains(&audience.as_str()) => {
                refs.unknown(mark, format!("audience `{audience}`"), &audiences, audience);
            }
            _ => {}
        }
    }
    refs.problems
}

/// What a `PHASE/NAME` reference must name.
#[derive(Clone, Copy)]
enum Kind {
    Step,
    Manual,
    Approval,
    Signal,
}

struct References<'r> {
    runbook: &'r Runbook,
    problems: Vec<Diagnostic>,
}

impl References<'_> {
    fn unknown(&mut self, mark: Mark, what: String, candidates: &[&str], word: &str) {
        let mut diagnostic =
            Diagnostic::new(Code::UnknownReference, mark, format!("{what} is not in runbook `{}`", self.runbook.id()));
        if let Some(near) = did_you_mean(word, candidates.iter().copied()) {
            diagnostic.help = Some(format!("did you mean `{near}`?"));
        }
        self.problems.push(diagnostic);
    }

    fn reference(&mut self, mark: Mark, phase: &str, name: Option<&str>, kind: Kind) {
        let Some(model) = self.runbook.phase(phase) else {
            let phases: Vec<&str> = self.runbook.phases().iter().map(|phase| phase.id.as_str()).collect();
            self.unknown(mark, format!("phase `{phase}`"), &phases, phase);
            return;
        };
        let Some(name) = name else { return };
        let (what, candidates): (&str, Vec<&str>) = match kind {
            Kind::Step => ("step", model.steps.iter().map(|step| step.id.as_str()).collect()),
            Kind::Manual => (
                "manual step",
                model
                    .steps
                    .iter()
                    .filter(|step| matches!(step.action, Action::Manual { .. } | Action::Campaign { .. }))
                    .map(|step| step.id.as_str())
                    .collect(),
            ),
            Kind::Approval => (
                "approval gate",
                model
                    .gates()
                    .filter(|gate| matches!(gate.kind, GateKind::Approval { .. }))
                    .map(|gate| gate.id.as_str())
                    .collect(),
            ),
            Kind::Signal => (
                "signal gate",
                model
                    .gates()
                    .filter(|gate| matches!(gate.kind, GateKind::Signal { .. }))
                    .map(|gate| gate.id.as_str())
                    .collect(),
            ),
        };
        if !candidates.contains(&name) {
            self.unknown(mark, format!("{what} `{phase}/{name}`"), &candidates, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_people_write_them() {
        let approval = |phase: &str, gate: Option<&str>| {
            Ok(Waiting::Approval { phase: phase.into(), gate: gate.map(str::to_string) })
        };
        let table: &[(&str, Result<Waiting, String>)] = &[
            ("approval of relax", approval("relax", None)),
            ("waiting for approval of relax/ciso", approval("relax", Some("ciso"))),
            ("approval relax/ciso", approval("relax", Some("ciso"))),
            ("step triage/look", Ok(Waiting::Step { phase: "triage".into(), step: "look".into() })),
            ("signal contain/sweep", Ok(Waiting::Signal { phase: "contain".into(), gate: "sweep".into() })),
            ("failed contain/isolate", Ok(Waiting::Failed { phase: "contain".into(), step: "isolate".into() })),
            ("closable", Ok(Waiting::Closable)),
            ("step triage", Err("`step` needs `PHASE/STEP`, not `triage`".into())),
            ("approval of two words", Err("`approval` needs `PHASE` or `PHASE/GATE`, not `two words`".into())),
        ];
        for (text, expected) in table {
            assert_eq!(&parse_waiting(text), expected, "{text}");
        }
        assert!(parse_waiting("lunch").unwrap_err().contains("is not something an incident waits for"));
    }
}
