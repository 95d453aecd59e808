//! Topic names: checked once, where they enter, then carried as a type.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// A valid topic name: 1 to 128 characters from `A-Z a-z 0-9 - _ . :`.
///
/// Cheap to clone (a shared string). Names are checked once, where they
/// enter (a URL path, a publish call), and carried as this type after
/// that: everything that holds one can rely on it.
///
/// # Examples
///
/// ```
/// use ssehub::core::TopicName;
///
/// let t: TopicName = "orders.eu:42".parse()?;
/// assert_eq!(t.as_str(), "orders.eu:42");
/// assert!("a/b".parse::<TopicName>().is_err());
/// assert!(TopicName::new("").is_err());
/// assert!(TopicName::new("x".repeat(129)).is_err());
/// # Ok::<(), ssehub::core::InvalidTopic>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`InvalidTopic`] if it is empty, longer than [`MAX_TOPIC_LEN`] bytes,
    /// or has a character other than ASCII letters, digits, `-_.:`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidTopic> {
        let name = name.as_ref();
        if is_valid(name) {
            Ok(TopicName(name.into()))
        } else {
            Err(InvalidTopic)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `name` is a valid topic name.
pub(crate) fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl FromStr for TopicName {
    type Err = InvalidTopic;

    fn from_str(s: &str) -> Result<Self, InvalidTopic> {
        TopicName::new(s)
    }
}

impl TryFrom<&str> for TopicName {
    type Error = InvalidTopic;

    fn try_from(s: &str) -> Result<Self, InvalidTopic> {
        TopicName::new(s)
    }
}

impl Deref for TopicName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicName({})", &self.0)
    }
}

/// A topic as the hub's methods take it: a name to check (`&str`,
/// `String`), or a [`TopicName`] checked already.
pub trait IntoTopic: sealed::Sealed {
    /// The checked name.
    ///
    /// # Errors
    ///
    /// [`InvalidTopic`] if it is not a valid name.
    fn into_topic(self) -> Result<TopicName, InvalidTopic>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &str {}
    impl Sealed for String {}
    impl Sealed for &String {}
    impl Sealed for super::TopicName {}
    impl Sealed for &super::TopicName {}
}

impl IntoTopic for &str {
    fn into_topic(self) -> Result<TopicName, InvalidTopic> {
        TopicName::new(self)
    }
}

impl IntoTopic for String {
    fn into_topic(self) -> Result<TopicName, InvalidTopic> {
        TopicName::new(self)
    }
}

impl IntoTopic for &String {
    fn into_topic(self) -> Result<TopicName, InvalidTopic> {
        TopicName::new(self)
    }
}

impl IntoTopic for TopicName {
    fn into_topic(self) -> Result<TopicName, InvalidTopic> {
        Ok(self)
    }
}

impl IntoTopic for &TopicName {
    fn into_topic(self) -> Result<TopicName, InvalidTopic> {
        Ok(self.clone())
    }
}

/// Why a string is not a [`TopicName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidTopic;

impl fmt::Display for InvalidTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid topic name (1-128 characters from A-Z a-z 0-9 - _ . :)")
    }
}

impl std::error::Error for InvalidTopic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "orders.eu:42", "A-Z_09", &"x".repeat(128)] {
            assert_eq!(TopicName::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a/b", "a b", "é", "a\n", &"x".repeat(129), "a*"] {
            assert_eq!(TopicName::new(bad), Err(InvalidTopic), "{bad:?}");
        }
    }
}
