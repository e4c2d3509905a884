//! The integration tests: one binary, one module per feature.

mod actions;
mod alertmanager;
mod api;
mod audit;
mod cli;
mod crash;
mod diagnostics;
mod docs;
mod drills;
mod engine;
mod examples;
mod hostile;
mod incident;
mod registry;
mod report;
mod runtime;
mod server;
mod smtp;
mod store;
mod store_campaigns;
mod support;
mod tidy;
mod webhook_auth;
mod webhooks;
mod witness;
