//! Feeds arbitrary bytes to `runbook::load`, the way `phasegate validate` reads a file.
//!
//! Any input may be refused with diagnostics; none may panic, overflow the stack, or hang.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use phasegate::render::Catalog;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::built_in)
}

fuzz_target!(|bytes: &[u8]| {
    if let Err(diagnostics) = phasegate::runbook::load(bytes, catalog()) {
        // Every refusal says why: an empty list would leave the user with nothing to fix.
        assert!(!diagnostics.is_empty(), "a refused runbook has at least one diagnostic");
    }
});
