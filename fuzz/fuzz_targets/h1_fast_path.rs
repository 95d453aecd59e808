//! Raw client bytes on one HTTP/1.1 connection, through the server's fast
//! path and through hyper alone (`ssehub::fuzzing::h1_fast_path`): nothing
//! may panic or hang, the output must be well-formed HTTP/1.1, and both
//! must answer the same. The first two bytes pick how the bytes arrive
//! (see that function).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The entry point exists only in a `cargo fuzz` build (`--cfg fuzzing`);
    // a plain `cargo check` of this crate still compiles the target.
    #[cfg(fuzzing)]
    ssehub::fuzzing::h1_fast_path(data);
    #[cfg(not(fuzzing))]
    let _ = data;
});
