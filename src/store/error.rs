//! [`StoreError`]: why a store could not do what was asked, and its
//! [`ErrorKind`].

use std::borrow::Cow;
use std::fmt;

/// Why a store could not do what was asked.
///
/// It keeps the error of the layer below (Redis, the file system) as its
/// [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct StoreError {
    kind: ErrorKind,
    context: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of trouble a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The storage cannot be reached or refused the operation (Redis down,
    /// an I/O error): it may work again later.
    Unavailable,
    /// The storage holds something ssehub did not write, or lost part of
    /// what it wrote.
    Corrupt,
    /// The disk is full: appends fail until there is space again.
    Full,
}

impl StoreError {
    pub(crate) fn new(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        StoreError {
            kind,
            context: context.into(),
            source: None,
        }
    }

    #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
    pub(crate) fn with_source(
        kind: ErrorKind,
        context: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// What kind of trouble this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Unavailable => write!(f, "storage unavailable: {}", self.context),
            ErrorKind::Corrupt => write!(f, "unexpected data in storage: {}", self.context),
            ErrorKind::Full => write!(f, "storage full: {}", self.context),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
