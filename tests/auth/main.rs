//! Who may subscribe and publish: credentials are read only from where they
//! belong and checked exactly, and a stream opened with a JWT ends when the
//! token expires, to be resumed with a new one.

#[path = "../support/mod.rs"]
mod support;

mod credentials;
#[cfg(feature = "jwt")]
mod reauth;
