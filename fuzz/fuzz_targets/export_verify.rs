//! Feeds arbitrary bytes to the offline verifier, as `phasegate audit verify --file` reads an
//! export. Any input may be refused or reported as not verifying; none may panic, and none that
//! is not an untouched export may verify with checkpoints it does not have.

#![no_main]

use libfuzzer_sys::fuzz_target;
use phasegate::audit::export;

fuzz_target!(|data: &[u8]| {
    if let Ok(outcome) = export::verify(data, None) {
        // Without a public key no checkpoint can verify, so a verdict of "verified" means the
        // input had none, and nothing was signed.
        assert!(!outcome.verified() || (outcome.checkpoints == 0 && outcome.signed_through == 0));
        assert!(outcome.signed_through <= outcome.events);
    }
});
