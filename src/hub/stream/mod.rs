//! The streams: response bodies that read topics' rings.
//!
//! One [`driver`] holds what every stream does (the order of its frames,
//! its greeting, its limit, `reauth`, keep-alive, its end, the
//! `http_body::Body` impl) and drives a strategy: [`single`] reads one
//! topic ([`EventStream`]), [`multi`] several on one body
//! ([`MultiEventStream`], the topics taking [`turns`]). Both keep each
//! topic's position in a [`cursor`], which holds the rules of `resync` and
//! of counting; [`keep_alive`] holds the stream's clocks.

pub(crate) mod cursor;
pub(crate) mod driver;
pub(crate) mod keep_alive;
pub(crate) mod multi;
pub(crate) mod single;
pub(crate) mod turns;

#[cfg(test)]
mod tests;

pub(crate) use self::driver::StreamParams;
pub use self::multi::MultiEventStream;
pub use self::single::EventStream;
