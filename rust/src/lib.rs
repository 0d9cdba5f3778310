//! EventBunker's native core: the ingest hot path (parse, validate, enrich,
//! encode for COPY) and the spool's record framing in pure Rust, plus the PyO3 module `eventbunker._native`
//! behind the `python` feature (so `cargo test` needs no Python).

pub mod compat;
pub mod enrich;
pub mod ingest;
pub mod rollup;
pub mod spool;
pub mod syncer;

#[cfg(feature = "python")]
mod python;
