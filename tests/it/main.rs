//! The integration tests: one binary, one module per feature.

mod actions;
mod alertmanager;
mod api;
mod audit;
mod campaign_list;
mod cli;
mod crash;
mod diagnostics;
mod docs;
mod drills;
mod engine;
mod examples;
mod hostile;
mod incident;
mod merkle;
mod registry;
mod report;
mod runtime;
mod server;
mod smtp;
mod store;
mod support;
mod tidy;
mod webhook_auth;
mod webhooks;
mod witness;
