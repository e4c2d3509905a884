//! examples tests.
