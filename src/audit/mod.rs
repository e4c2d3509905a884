//! The audit trail: the hash chain over every incident's events, signed checkpoints of its head,
//! verification (of a database or of an export), exports, the witness that keeps copies of the
//! checkpoints outside the database, the Merkle trees that prove a campaign's deliveries, and the
//! post-incident report.
//!
//! Part of the core: no I/O, no clock, no randomness. The runtime (`runtime::audit`) applies
//! these rules to a store: it signs heads, verifies and exports stored logs. `docs/audit.md`
//! states the encoding for anyone who wants to check a log without phasegate.

pub mod chain;
pub mod export;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod report;
pub mod verify;
pub mod witness;
