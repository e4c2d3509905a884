//! An incident driven through the pure engine with a manual clock, as the runtime drives it: the
//! engine decides with the state it keeps, and the log keeps each event as the store does, as its
//! canonical JSON, read back. The engine's tests and the report's share it.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use phasegate::audit::chain::Canonical;
use phasegate::engine::event::SYSTEM;
use phasegate::engine::{Command, Decision, Directory, Effect, EffectKind, Error, Event, Incident, Outcome, Request};
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;

/// An incident's log, its outbox and a manual clock.
pub struct Harness {
    pub runbook: Runbook,
    pub directory: Directory,
    /// The log as a reload reads it: every event through the JSON the store keeps and back.
    pub events: Vec<Event>,
    /// The state the engine decides with: the events as decided, applied one by one, never
    /// through their stored form. A property checks that folding `events` gives the same.
    live: Option<Incident>,
    pub outbox: VecDeque<Effect>,
    pub now: DateTime<Utc>,
}

impl Harness {
    /// An incident of `runbook` among the people of `directory`, before it starts, at `now`.
    pub fn new(runbook: &str, directory: Directory, now: DateTime<Utc>) -> Harness {
        Harness {
            runbook: phasegate::runbook::parse(runbook, &Catalog::built_in()).expect("the test runbook is valid"),
            directory,
            events: Vec::new(),
            live: None,
            outbox: VecDeque::new(),
            now,
        }
    }

    /// Asks the engine, as `actor` at the clock's time. A refused command changes nothing.
    pub fn run(&mut self, actor: &str, command: Command) -> Result<Decision, Error> {
        let request = Request { actor: actor.to_string(), at: self.now, command };
        let decision = phasegate::engine::decide(&self.runbook, &self.directory, self.live.as_ref(), &request)?;
        for event in &decision.events {
            match &mut self.live {
                None => self.live = Some(Incident::start(event).expect("the first event starts the incident")),
                Some(live) => live.apply(event),
            }
            self.events.push(stored(event));
        }
        self.outbox.extend(decision.effects.iter().cloned());
        Ok(decision)
    }

    /// The state the engine decided with.
    pub fn state(&self) -> &Incident {
        self.live.as_ref().expect("the incident has started")
    }

    /// The state a reload gives: the stored log, folded.
    pub fn folded(&self) -> Incident {
        Incident::from_events(&self.events).expect("the log is an incident's")
    }

    /// The types of a decision's events, in order.
    pub fn types(decision: &Decision) -> Vec<&'static str> {
        decision.events.iter().map(|event| event.kind.name()).collect()
    }

    /// Takes the oldest effect of the outbox matching `pick`.
    pub fn take(&mut self, pick: impl Fn(&EffectKind) -> bool) -> Effect {
        let index = self.outbox.iter().position(|effect| pick(&effect.kind)).expect("such an effect is queued");
        self.outbox.remove(index).expect("the effect found")
    }

    /// Records what carrying out `effect` gave, as the runtime does.
    pub fn record(&mut self, effect: Effect, outcome: Outcome) -> Result<Decision, Error> {
        self.run(SYSTEM, Command::Record { effect, outcome })
    }

    /// Moves the clock on by `minutes` and lets the incident see the time.
    pub fn later(&mut self, minutes: i64) -> Result<Decision, Error> {
        self.now += Duration::minutes(minutes);
        self.run(SYSTEM, Command::Tick)
    }
}

/// The event as the log gives it back: encoded as the store keeps it, then decoded as a read
/// decodes it.
fn stored(event: &Event) -> Event {
    let json = Canonical::of(event.clone())
        .unwrap_or_else(|problem| panic!("a `{}` event {problem}", event.kind.name()))
        .into_json();
    serde_json::from_str(&json).unwrap_or_else(|error| panic!("a stored event does not read back: {error}: {json}"))
}
