//! phasegate: an incident-response runbook engine.
//!
//! Runbooks written in YAML are validated into a model ([`runbook`]), whose conditions are CEL
//! expressions ([`expr`]); both suggest near names for unknown ones the same way ([`spelling`]).
//! The [`engine`] runs incidents through a runbook as a fold of events,
//! deciding side effects as data; a [`drill`] rehearses a runbook on a simulated clock. Adapters carry them out: the [`store`] keeps every incident's
//! events and the effects still to do, [`render`] fills templates, [`actions`] calls out (HTTP,
//! commands, notify channels). The shell is [`config`] and the [`cli`] that people and scripts
//! use. See `ARCHITECTURE.md` for the map.

pub mod actions;
pub mod audit;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod drill;
pub mod engine;
pub mod expr;
pub mod interchange;
pub mod render;
pub mod runbook;
pub mod runtime;
pub mod server;
pub mod spelling;
pub mod store;
