//! diagnostics tests.
