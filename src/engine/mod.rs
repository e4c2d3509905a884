//! The incident engine: events, the state they fold into, and the state machine that turns a
//! command and the current state into new events and side effects described as data.
//!
//! No I/O here: time comes in with each command, ids come in from the caller, and effects are
//! carried out by the runtime after the events that caused them are stored.

mod advance;
pub mod blocking;
mod campaign;
pub mod command;
pub mod decide;
pub mod directory;
pub mod due;
pub mod effect;
pub mod event;
mod rights;
pub mod scope;
pub mod state;
pub mod trigger;

pub use command::{Command, Request};
pub use decide::{Decision, Error, decide};
pub use directory::Directory;
pub use effect::{Effect, EffectKind, Outcome};
pub use event::{Event, EventKind};
pub use state::Incident;
