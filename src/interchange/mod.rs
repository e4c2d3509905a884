//! Interchange with other playbook formats. Pure conversions: text in, runbook text (or every
//! problem, located) out; the shell reads and writes the files.

pub mod cacao;
