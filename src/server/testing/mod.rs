//! Test harnesses of the server, built for tests and `cargo fuzz` only
//! (`--cfg fuzzing`), never in a release: `differential.rs` runs the same
//! bytes through the HTTP/1.1 fast path and through hyper alone and
//! compares what comes back; `fuzzing.rs` holds the fuzz targets' entry
//! points (not part of the API).

#[cfg(any(test, fuzzing))]
pub(crate) mod differential;
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
