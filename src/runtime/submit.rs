//! The one way a change reaches the log: commands decided in order on an incident's state, their
//! events, effects, the effect result they record and the deliveries they came in stored in one
//! append, decided again when another writer got there first.
//!
//! Every entry point is a submission: a command is a batch of one, a webhook storm on one incident
//! a batch of several, and a start a batch decided on no state. Decisions are made on the cached
//! state first: an append checks the version it was decided on, so a decision made on a state
//! another writer has moved past is refused by the store and made again; a refusal or a decision
//! to do nothing is not checked that way, so it is confirmed on the stored state before it is
//! believed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Error, RETRIES_ON_CONFLICT, Runtime, encoded};
use crate::engine::{self, Command, Decision, Incident, Request};
use crate::runbook::{Runbook, Templates};
use crate::store::{self, Append, Delivery, Fence, Store};

/// One command of a submission: who gives it, and the webhook delivery it came in, if any.
struct Asked<'a> {
    actor: &'a str,
    command: &'a Command,
    delivery: Option<&'a Delivery>,
    /// The fencing token the effect whose result it records was claimed with.
    token: Option<u64>,
    /// The claim it is made under (the incident's lease, the inbox's, a campaign's effect).
    under: Option<&'a Fence>,
}

impl Asked<'_> {
    /// The outbox effect whose result this command records.
    fn completes(&self) -> Option<&str> {
        match self.command {
            Command::Record { effect, .. } => Some(&effect.id),
            _ => None,
        }
    }
}

/// The state a submission is decided on.
enum On {
    /// The incident's, as cached or as stored.
    Stored,
    /// The incident's, whose stored version was `version` a moment ago (its summary said so): a
    /// cached state at that version is believed as if just read, without reading the store.
    Seen { version: u64 },
    /// None: a new incident, whose id was made from `at`, of `runbook`.
    Nothing { at: DateTime<Utc>, runbook: Arc<Runbook> },
}

/// What an attempt came to.
enum Attempt {
    /// Answered, each command in order.
    Answered(Vec<Result<Decision, Error>>),
    /// Decided on a state that turned out stale: decide again on the stored one.
    Again,
}

impl<S: Store, T: Templates + Send + Sync> Runtime<S, T> {
    /// Opens an incident of `runbook_text` with a new id, and returns the id.
    pub async fn start(
        &self,
        runbook_text: &str,
        actor: &str,
        inputs: BTreeMap<String, serde_json::Value>,
        key: Option<String>,
    ) -> Result<(String, Decision), Error> {
        self.start_delivered(runbook_text, actor, inputs, key, None).await
    }

    /// [`Runtime::start`] for a webhook delivery, recorded in the same transaction (a delivery
    /// already taken is [`store::Error::Duplicate`] and starts nothing).
    pub async fn start_delivered(
        &self,
        runbook_text: &str,
        actor: &str,
        inputs: BTreeMap<String, serde_json::Value>,
        key: Option<String>,
        delivery: Option<&Delivery>,
    ) -> Result<(String, Decision), Error> {
        self.start_delivered_under(runbook_text, actor, inputs, key, delivery, None).await
    }

    /// [`Runtime::start_delivered`] under a claim (the inbox's lease): refused with
    /// [`store::Error::FenceLost`], storing nothing, once another process took it over.
    pub(super) async fn start_delivered_under(
        &self,
        runbook_text: &str,
        actor: &str,
        inputs: BTreeMap<String, serde_json::Value>,
        key: Option<String>,
        delivery: Option<&Delivery>,
        under: Option<&Fence>,
    ) -> Result<(String, Decision), Error> {
        let runbook = self.runbook(runbook_text).map_err(Error::InvalidRunbook)?;
        let at = self.now();
        let id = (self.ids)(at);
        let command = Command::Start { incident: id.clone(), runbook_text: runbook_text.to_string(), inputs, key };
        let asked = Asked { actor, command: &command, delivery, token: None, under };
        let decision = self.submit_one(&id, On::Nothing { at, runbook }, asked).await?;
        Ok((id, decision))
    }

    /// Decides a command on the incident's current state and stores the result.
    pub async fn submit(&self, incident: &str, actor: &str, command: Command) -> Result<Decision, Error> {
        self.submit_delivered(incident, actor, command, None).await
    }

    /// [`Runtime::submit`] for a webhook delivery, recorded in the same transaction as the events
    /// it causes (a delivery already taken is [`store::Error::Duplicate`] and changes nothing).
    pub async fn submit_delivered(
        &self,
        incident: &str,
        actor: &str,
        command: Command,
        delivery: Option<&Delivery>,
    ) -> Result<Decision, Error> {
        self.submit_delivered_under(incident, actor, command, delivery, None).await
    }

    /// [`Runtime::submit_delivered`] under a claim (the incident's lease, the inbox's, a
    /// campaign's effect): refused with [`store::Error::FenceLost`], storing nothing, once another
    /// process took it over.
    pub(super) async fn submit_delivered_under(
        &self,
        incident: &str,
        actor: &str,
        command: Command,
        delivery: Option<&Delivery>,
        under: Option<&Fence>,
    ) -> Result<Decision, Error> {
        let asked = Asked { actor, command: &command, delivery, token: None, under };
        self.submit_one(incident, On::Stored, asked).await
    }

    /// Ticks the incident (its timers, its checks, its retries) under its lease `under`, its
    /// stored version being `seen` as the pass began: when this runtime's state of it is at that
    /// version, nothing is read from the store unless the tick decides something (and its append
    /// then checks the version), so a pass over the incidents this process holds reads only the
    /// logs of those that changed.
    pub(super) async fn tick(&self, incident: &str, seen: u64, under: Option<&Fence>) -> Result<Decision, Error> {
        let asked = Asked { actor: engine::event::SYSTEM, command: &Command::Tick, delivery: None, token: None, under };
        self.submit_one(incident, On::Seen { version: seen }, asked).await
    }

    /// Records the outcome of `effect`, claimed with `token` (if it was claimed): refused with
    /// [`store::Error::LeaseLost`], storing nothing, when another process has claimed the effect
    /// since.
    pub(super) async fn record(
        &self,
        incident: &str,
        effect: &engine::Effect,
        outcome: engine::Outcome,
        token: Option<u64>,
    ) -> Result<Decision, Error> {
        let command = Command::Record { effect: effect.clone(), outcome };
        let asked = Asked { actor: engine::event::SYSTEM, command: &command, delivery: None, token, under: None };
        self.submit_one(incident, On::Stored, asked).await
    }

    /// Several webhook deliveries' commands to one incident, decided in order (each on the state
    /// the ones before it leave) and stored in one append with the deliveries: what a storm of
    /// alerts on one incident costs is then one commit, not one each. Each command is answered as
    /// [`Runtime::submit_delivered`] would answer it: a refusal leaves the state as it was for
    /// the next. If one of the deliveries was taken before, they are submitted one by one, so the
    /// others are still taken. `Err` when nothing could be stored.
    pub async fn submit_all_delivered(
        &self,
        incident: &str,
        commands: &[(String, Command, Delivery)],
    ) -> Result<Vec<Result<Decision, Error>>, Error> {
        self.submit_all_delivered_under(incident, commands, None).await
    }

    /// [`Runtime::submit_all_delivered`] under a claim (the inbox's lease).
    pub(super) async fn submit_all_delivered_under(
        &self,
        incident: &str,
        commands: &[(String, Command, Delivery)],
        under: Option<&Fence>,
    ) -> Result<Vec<Result<Decision, Error>>, Error> {
        let asked: Vec<Asked> = commands
            .iter()
            .map(|(actor, command, delivery)| Asked { actor, command, delivery: Some(delivery), token: None, under })
            .collect();
        self.submit_all(incident, On::Stored, &asked).await
    }

    /// A submission of one command: its answer.
    async fn submit_one(&self, incident: &str, on: On, asked: Asked<'_>) -> Result<Decision, Error> {
        let mut answers = self.submit_all(incident, on, std::slice::from_ref(&asked)).await?;
        answers.pop().expect("one answer for one command")
    }

    /// The submission every entry point makes, in the incident's turn: `asked` decided in order
    /// on `on` and stored in one append. When one of the deliveries was taken before, or the
    /// commands record the results of more than one effect (an append records one), they are
    /// submitted one by one instead, so that the others are still taken.
    async fn submit_all(
        &self,
        incident: &str,
        on: On,
        asked: &[Asked<'_>],
    ) -> Result<Vec<Result<Decision, Error>>, Error> {
        let turn = self.turn(incident);
        let _turn = turn.lock().await;
        let several_results = asked.iter().filter(|one| one.completes().is_some()).count() > 1;
        if !several_results {
            match self.decide_and_append(incident, &on, asked).await {
                Err(Error::Store(store::Error::Duplicate { .. })) if asked.len() > 1 => {}
                Err(duplicate @ Error::Store(store::Error::Duplicate { .. })) => return Ok(vec![Err(duplicate)]),
                answered => return answered,
            }
        }
        let mut answers = Vec::with_capacity(asked.len());
        for one in asked {
            let answer = self.decide_and_append(incident, &on, std::slice::from_ref(one)).await;
            answers.push(answer.and_then(|mut answer| answer.pop().expect("one answer for one command")));
        }
        Ok(answers)
    }

    /// The loop: decides `asked` on the state (cached first, then as stored), appends with the
    /// version decided on, and decides again when another writer won. `Err` when nothing could
    /// be stored.
    async fn decide_and_append(
        &self,
        incident: &str,
        on: &On,
        asked: &[Asked<'_>],
    ) -> Result<Vec<Result<Decision, Error>>, Error> {
        // A state cached at another version than the one seen is caught up at once.
        let mut refresh = match on {
            On::Seen { version } => self.cached_version(incident).is_some_and(|cached| cached != *version),
            _ => false,
        };
        for _ in 0..RETRIES_ON_CONFLICT {
            let (state, runbook, fresh) = match on {
                On::Stored | On::Seen { .. } => {
                    let (state, runbook, fresh) = self.current(incident, refresh).await?;
                    let seen = matches!(on, On::Seen { version } if *version == state.version);
                    (Some(state), runbook, fresh || seen)
                }
                On::Nothing { runbook, .. } => (None, Arc::clone(runbook), true),
            };
            refresh = true;
            match self.attempt(incident, on, state, runbook, fresh, asked).await? {
                Attempt::Answered(answers) => return Ok(answers),
                Attempt::Again => continue,
            }
        }
        Err(Error::Contended { incident: incident.to_string() })
    }

    /// One attempt of [`Runtime::decide_and_append`], on `state` (`fresh` when read from the
    /// store just now, or believed as if it were).
    async fn attempt(
        &self,
        incident: &str,
        on: &On,
        state: Option<Incident>,
        runbook: Arc<Runbook>,
        fresh: bool,
        asked: &[Asked<'_>],
    ) -> Result<Attempt, Error> {
        let version = state.as_ref().map_or(0, |state| state.version);
        let mut next = state;
        let mut decided = Decision::default();
        let (mut canonical, mut deliveries, mut completes, mut token) = (Vec::new(), Vec::new(), None, None);
        let mut under = None;
        let mut answers = Vec::with_capacity(asked.len());
        for one in asked {
            let at = match on {
                On::Stored | On::Seen { .. } => self.now(),
                On::Nothing { at, .. } => *at,
            };
            let request = Request { actor: one.actor.to_string(), at, command: one.command.clone() };
            let (decision, encoded) = match engine::decide(&runbook, &self.directory, next.as_ref(), &request) {
                Ok(decision) => encoded(incident, decision)?,
                Err(_) if !fresh => return Ok(Attempt::Again),
                // The result of an effect the incident no longer waits for (it was recorded before
                // a crash, say) only takes the effect out of the outbox.
                Err(engine::Error::StaleEffect(_)) if one.completes().is_some() => (Decision::default(), Vec::new()),
                Err(refused) => {
                    answers.push(Err(refused.into()));
                    continue;
                }
            };
            let idle = decision.events.is_empty() && decision.effects.is_empty();
            if idle && one.completes().is_none() {
                if !fresh {
                    return Ok(Attempt::Again);
                }
                answers.push(Ok(decision));
                continue;
            }
            next = Some(match next {
                Some(mut next) => {
                    decision.events.iter().for_each(|event| next.apply(event));
                    next
                }
                None => Incident::from_events(&decision.events)
                    .map_err(|error| Error::Log { incident: incident.to_string(), error })?,
            });
            decided.events.extend(decision.events.iter().cloned());
            decided.effects.extend(decision.effects.iter().cloned());
            canonical.extend(encoded);
            deliveries.extend(one.delivery.cloned());
            completes = completes.or(one.completes());
            token = token.or(one.token);
            under = under.or(one.under);
            answers.push(Ok(decision));
        }
        let Some(next) = next.filter(|_| !canonical.is_empty() || !decided.effects.is_empty() || completes.is_some())
        else {
            return Ok(Attempt::Answered(answers));
        };
        let append = Append::canonical(incident, version, canonical)
            .effects(&decided.effects)
            .completes(completes)
            .fenced(token)
            .under(under.cloned())
            .delivered(&deliveries);
        match self.store_append(append, &decided, completes).await {
            Ok(_) => {
                self.appended(incident, &decided.events, next, runbook).await;
                Ok(Attempt::Answered(answers))
            }
            // Another writer got there first: decided again on what it stored. A new incident's
            // id taken is not decided again (it names another incident).
            Err(store::Error::Conflict { .. }) if !matches!(on, On::Nothing { .. }) => Ok(Attempt::Again),
            Err(other) => {
                // The append may or may not have happened: read the log again next time.
                self.states.lock().expect("the cache is never poisoned").remove(incident);
                Err(other.into())
            }
        }
    }

    /// After an append of `events`: signs the incident's head if that is due, and keeps the state
    /// they led to.
    async fn appended(&self, incident: &str, events: &[engine::Event], next: Incident, runbook: Arc<Runbook>) {
        self.signed_after(incident, events).await;
        let mut states = self.states.lock().expect("the cache is never poisoned");
        match states.get_mut(incident) {
            Some(kept) => *kept = (next, runbook),
            None => {
                states.insert(incident.to_string(), (next, runbook));
            }
        }
        // Nobody listening is no error.
        let _ = self.changes.send(Arc::from(incident));
    }
}
