//! phasegate: an incident-response runbook engine.
//!
//! Runbooks written in YAML are validated into a model ([`runbook`]), whose conditions are CEL
//! expressions ([`expr`]). The [`engine`] runs incidents through a runbook as a fold of events. Templates for status updates and notices live in [`render`]. The
//! [`store`] keeps every incident's events and the side effects they lead to. The
//! [`cli`] is the shell that people and scripts use. See `ARCHITECTURE.md` for the map.

pub mod cli;
pub mod engine;
pub mod expr;
pub mod render;
pub mod runbook;
pub mod store;
