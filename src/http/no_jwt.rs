//! JWTs compiled out (the `jwt` feature is off): the built-in policy keeps
//! the publish token and the loopback rule, and there is no key to give it.
//!
//! `JwtKey` has no values here, so `TokenPolicy`'s `Option<JwtKey>` is
//! always `None` and its JWT branches fold away; the policy reads the same
//! with the feature on or off.

use crate::http::auth::Decision;

/// No key can exist without the `jwt` feature.
#[derive(Debug, Clone)]
pub(crate) enum JwtKey {}

impl JwtKey {
    pub(crate) fn subscribe_decision(&self, _: &str, _: &str) -> Decision {
        match *self {}
    }

    pub(crate) fn publish_decision(&self, _: &str, _: &str) -> Decision {
        match *self {}
    }
}
