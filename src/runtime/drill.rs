//! The drill's loop: the real runtime, store, rendering and audit on a simulated clock, with the
//! actions' outside edge replaced by the scenario's stand-ins (`actions::standin`).
//!
//! At each instant the loop carries out what is due (`Runtime::run_due`), then asks the script
//! what it does now (`drill::script::due`), and applies that; when nothing more happens at this
//! instant, the clock jumps to the next one at which something is due: the incident's own
//! (`engine::due::next_due`: retries, polls, deadlines, timers, expiries, schedules) or the
//! script's. It stops when the incident closes, when nothing is due any more, or at the
//! scenario's `until`. Nothing random enters the log: the incident's id comes from the scenario's
//! name and start time, the signing key from its name, and every time from the simulated clock.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::actions::Actions;
use crate::actions::standin::{Captured, DrillStandIn, Placeholders};
use crate::audit::keys::{PublicKey, Signer};
use crate::drill::expect::{self, Verdict, offset};
use crate::drill::model::{Act, Scenario, Scripted};
use crate::drill::script::{self, Progress};
use crate::drill::webhook::{self, Applied};
use crate::engine::{self, Command, Directory, Event, Incident};
use crate::render::Catalog;
use crate::runbook::Runbook;
use crate::runtime::{self, Logs, Runtime};
use crate::store::{SqliteStore, Store};

/// How often the drill's incident head is signed, in simulated time (and at its close).
const CHECKPOINT_EVERY: chrono::Duration = chrono::Duration::hours(24);

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: DateTime<Utc>,
    /// Since the start: `+1h 20m`.
    pub offset: String,
    pub what: String,
    pub who: String,
}

/// Why the drill stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Closed,
    /// Nothing was due any more and the incident was still open.
    Stuck,
    /// The scenario's `until` came.
    Horizon,
}

/// What a drill left.
pub struct Finished {
    pub incident: String,
    pub ending: Ending,
    pub ended_at: DateTime<Utc>,
    /// The expectations' verdicts, then the script's own: every action happened, and each was
    /// accepted or refused as written.
    pub verdicts: Vec<Verdict>,
    pub captured: Vec<Captured>,
    pub events: Vec<Event>,
    /// The drill's key, made from the scenario's name: it proves the export untouched since the
    /// drill, not anyone's authority.
    pub public_key: PublicKey,
    pub runtime: Runtime<SqliteStore, Arc<Catalog>>,
}

impl Finished {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|verdict| verdict.held)
    }
}

/// The incident id of a drill: its start day and a hash of its name and start time.
pub fn incident_id(scenario: &Scenario) -> String {
    let seed = format!("{}\n{}", scenario.name, scenario.start_at.to_rfc3339());
    let hash = engine::decide::sha256_hex(&seed);
    format!("drill-{}-{}", scenario.start_at.format("%Y%m%d"), &hash[..6])
}

/// The drill's signing key, from its name.
pub fn signer(scenario: &Scenario) -> Signer {
    let hash = engine::decide::sha256_hex(&format!("phasegate drill key\n{}", scenario.name));
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&hash, &mut seed).expect("a SHA-256 is 32 bytes of hex");
    Signer::from_seed(&seed)
}

/// Runs `scenario` against `runbook_text` with `store` (a fresh database), telling each line of
/// the timeline to `line` as it happens.
pub async fn run(
    scenario: &Scenario,
    runbook: &Runbook,
    runbook_text: &str,
    catalog: Arc<Catalog>,
    store: SqliteStore,
    campaigns: super::campaign::Settings,
    mut line: impl FnMut(&Line),
) -> anyhow::Result<Finished> {
    let clock = Arc::new(Mutex::new(scenario.start_at));
    let now = {
        let clock = Arc::clone(&clock);
        move || *clock.lock().expect("never poisoned")
    };
    let set = {
        let clock = Arc::clone(&clock);
        move |at: DateTime<Utc>| *clock.lock().expect("never poisoned") = at
    };
    let wait = {
        let clock = Arc::clone(&clock);
        Arc::new(move |delay: std::time::Duration| {
            let mut clock = clock.lock().expect("never poisoned");
            *clock += chrono::Duration::from_std(delay).unwrap_or_default();
        })
    };
    let stand_in = Arc::new(DrillStandIn::new(scenario, wait));
    let actions = Actions::new(Arc::clone(&catalog), Arc::new(Placeholders))?.with_stand_in(stand_in.clone());
    let directory = Directory { people: scenario.people.clone() };
    let id = incident_id(scenario);
    let signer = signer(scenario);
    let public_key = signer.public().clone();
    let runtime = Runtime::new(store, catalog, directory)
        .with_clock(now.clone())
        .with_incident_ids({
            let id = id.clone();
            move |_| id.clone()
        })
        .with_signer(Arc::new(signer), CHECKPOINT_EVERY)
        .with_campaigns(campaigns)
        .owning_the_store();
    let mut timeline = Timeline { start: scenario.start_at, seen: 0, incident: None };
    let mut captured = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    let inputs = scenario.inputs.clone().into_iter().collect();
    runtime.start(runbook_text, &scenario.starter, inputs, scenario.key.clone()).await?;
    let horizon = scenario.start_at + chrono::Duration::from_std(scenario.until).unwrap_or(chrono::Duration::MAX);
    let mut progress = Progress::default();
    let mut logs = Logs::default();
    let ending = loop {
        runtime.run_due_with(&actions, &mut logs).await?;
        timeline.catch_up(&runtime, &id, &mut line).await?;
        for request in stand_in.take_requests().into_iter().filter(|request| request.contains("no stand-in")) {
            line(&timeline.line(now(), format!("stand-in: {request}"), "drill"));
        }
        captured.extend(stand_in.take_captured());
        let incident = timeline.incident.as_ref().expect("started above");
        let due = script::due(scenario, runbook, incident, now(), &mut progress);
        if !due.is_empty() {
            for scripted in due {
                progress.fired(scripted.index);
                act(&runtime, runbook, &id, scripted, &timeline, now(), &mut line, &mut refusals).await?;
                timeline.catch_up(&runtime, &id, &mut line).await?;
            }
            continue;
        }
        if incident.closed.is_some() {
            break Ending::Closed;
        }
        let next = [engine::due::next_due(runbook, incident, now()), script::next_at(scenario, &progress, now())]
            .into_iter()
            .flatten()
            .min();
        match next {
            None => break Ending::Stuck,
            Some(at) if at > horizon => {
                set(horizon);
                runtime.run_due_with(&actions, &mut logs).await?;
                timeline.catch_up(&runtime, &id, &mut line).await?;
                captured.extend(stand_in.take_captured());
                break Ending::Horizon;
            }
            Some(at) => set(at),
        }
    };
    let ended_at = now();
    match ending {
        Ending::Closed => {}
        Ending::Stuck => line(&timeline.line(ended_at, "nothing more is due: the drill stops".into(), "drill")),
        Ending::Horizon => line(&timeline.line(ended_at, "the drill's `until` came: it stops".into(), "drill")),
    }
    runtime.settle().await?;
    let events = runtime.store().events(&id).await?;
    let mut verdicts = expect::judge(&scenario.expect, runbook, &events, scenario.start_at, ended_at);
    let left: Vec<String> = scenario
        .script
        .iter()
        .filter(|scripted| !progress.has_fired(scripted.index))
        .map(|scripted| format!("line {} ({})", scripted.mark.line, scripted.act.name()))
        .collect();
    verdicts.push(Verdict {
        expectation: "every scripted action happened".to_string(),
        held: left.is_empty(),
        found: if left.is_empty() { "all did".to_string() } else { format!("never due: {}", left.join(", ")) },
    });
    verdicts.push(Verdict {
        expectation: "every scripted action was accepted or refused as written".to_string(),
        held: refusals.is_empty(),
        found: if refusals.is_empty() { "all were".to_string() } else { refusals.join("; ") },
    });
    Ok(Finished { incident: id, ending, ended_at, verdicts, captured, events, public_key, runtime })
}

/// The events already told, and the incident as they leave it.
struct Timeline {
    start: DateTime<Utc>,
    seen: u64,
    incident: Option<Incident>,
}

impl Timeline {
    fn line(&self, at: DateTime<Utc>, what: String, who: &str) -> Line {
        Line { at, offset: offset(self.start, at), what, who: who.to_string() }
    }

    /// Tells the events stored since the last call, and folds them.
    async fn catch_up(
        &mut self,
        runtime: &Runtime<SqliteStore, Arc<Catalog>>,
        id: &str,
        line: &mut impl FnMut(&Line),
    ) -> Result<(), runtime::Error> {
        let events = runtime.events_after(id, self.seen).await?;
        for event in &events {
            line(&self.line(event.at, event.summary(), &event.actor));
            match &mut self.incident {
                Some(incident) => incident.apply(event),
                None => {
                    self.incident = Some(
                        Incident::start(event)
                            .map_err(|error| runtime::Error::Log { incident: id.to_string(), error })?,
                    )
                }
            }
        }
        self.seen += events.len() as u64;
        Ok(())
    }
}

/// Applies one scripted action; a refusal is told and, unless the script expects it, noted.
#[allow(clippy::too_many_arguments)]
async fn act(
    runtime: &Runtime<SqliteStore, Arc<Catalog>>,
    runbook: &Runbook,
    id: &str,
    scripted: &Scripted,
    timeline: &Timeline,
    now: DateTime<Utc>,
    line: &mut impl FnMut(&Line),
    refusals: &mut Vec<String>,
) -> anyhow::Result<()> {
    let by = scripted.by.clone().unwrap_or_default();
    let commands: Vec<(String, Command)> = match &scripted.act {
        Act::Approve { phase, gate, note } => {
            vec![(by.clone(), Command::Approve { phase: phase.clone(), gate: gate.clone(), note: note.clone() })]
        }
        Act::Done { phase, step, evidence, outputs } => vec![(
            by.clone(),
            Command::CompleteStep {
                phase: phase.clone(),
                step: step.clone(),
                evidence: evidence.clone(),
                outputs: outputs.clone(),
            },
        )],
        Act::Signal { phase, gate, note } => {
            vec![(by.clone(), Command::Signal { phase: phase.clone(), gate: gate.clone(), note: note.clone() })]
        }
        Act::Note(text) => vec![(by.clone(), Command::Note { text: text.clone() })],
        Act::Update(audience) => vec![(by.clone(), Command::StatusUpdate { audience: audience.clone() })],
        Act::Close(note) => vec![(by.clone(), Command::Close { note: note.clone() })],
        Act::Abandon(reason) => vec![(by.clone(), Command::Abandon { reason: reason.clone() })],
        Act::Retry { phase, step, reason } => {
            vec![(by.clone(), Command::Retry { phase: phase.clone(), step: step.clone(), reason: reason.clone() })]
        }
        Act::Skip { phase, step, reason } => {
            vec![(by.clone(), Command::Skip { phase: phase.clone(), step: step.clone(), reason: reason.clone() })]
        }
        Act::Webhook { source, headers, payload } => {
            let incident = timeline.incident.as_ref().expect("the incident started");
            let mut commands = Vec::new();
            for applied in webhook::apply(runbook, incident, source, headers, payload) {
                match applied {
                    Applied::Command { actor, command, .. } => commands.push((actor, command)),
                    Applied::Ignored { trigger, why } => line(&timeline.line(
                        now,
                        format!("webhook from `{source}`: trigger `{trigger}` ignored it: {why}"),
                        "drill",
                    )),
                }
            }
            if commands.is_empty() {
                line(&timeline.line(now, format!("webhook from `{source}`: no trigger acted on it"), "drill"));
            }
            commands
        }
    };
    let place = format!("line {} ({})", scripted.mark.line, scripted.act.name());
    let mut refused_any = false;
    for (actor, command) in commands {
        match runtime.submit(id, &actor, command).await {
            Ok(_) => {}
            Err(runtime::Error::Refused(refused)) => {
                refused_any = true;
                line(&timeline.line(now, format!("refused: {} by `{actor}`: {refused}", scripted.act.name()), "drill"));
                if !scripted.refused {
                    refusals.push(format!("{place} refused: {refused}"));
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    if scripted.refused && !refused_any {
        refusals.push(format!("{place} was accepted, but the script expects it refused"));
    }
    Ok(())
}
