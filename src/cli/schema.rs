//! `phasegate schema`: the JSON Schema of the runbook format, for editors' YAML language servers.

use crate::runbook::raw;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// The schema as a JSON value; `docs/editor-setup.md` says how to use it.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(raw::Runbook)).expect("a schema always serializes");
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".to_string(), "https://phasegate.dev/schema/runbook-v1.json".into());
        object.insert("title".to_string(), "phasegate runbook (phasegate/v1)".into());
    }
    schema
}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    super::print_stdout(&(serde_json::to_string_pretty(&schema())? + "\n"))?;
    Ok(super::exit::OK)
}
