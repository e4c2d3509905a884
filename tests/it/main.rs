//! The integration tests: one binary, one module per feature.

mod cli;
mod diagnostics;
mod docs;
mod examples;
mod hostile;
mod support;
mod tidy;
