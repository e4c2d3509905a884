//! `phasegate schema`: the JSON Schema of the runbook format, for editors' YAML language servers.

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints [`crate::runbook::schema`]; `docs/editor-setup.md` says how to use it.
pub fn run(_args: Args) -> anyhow::Result<u8> {
    super::print_stdout(&(serde_json::to_string_pretty(&crate::runbook::schema())? + "\n"))?;
    Ok(super::exit::OK)
}
