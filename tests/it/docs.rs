//! The documentation agrees with the code: every diagnostic documented, every example valid.
