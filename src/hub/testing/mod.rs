//! Test harnesses of the hub that need its private parts, out of the
//! production files: the `loom` models of the wake-up protocol (built only
//! with `--cfg ssehub_loom`, see [`loom`]).

mod loom;
