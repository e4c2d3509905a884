//! The integration tests: one binary, one module per feature.

mod actions;
mod audit;
mod cli;
mod crash;
mod diagnostics;
mod docs;
mod engine;
mod examples;
mod hostile;
mod incident;
mod report;
mod runtime;
mod store;
mod support;
mod tidy;
