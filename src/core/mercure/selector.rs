//! Mercure topic selectors: `*`, an exact string, or an RFC 6570 URI
//! template that topics are matched against (the spec's "Topic
//! Selectors" section).
//!
//! A selector is compiled once: a template becomes one anchored regular
//! expression. The match rules, in the spec's order: `*` matches every
//! topic; a selector equal to the topic matches (a template matches
//! itself); a selector that is a valid URI template matches the topics
//! its expansions can produce; nothing else matches.
//!
//! Matching is permissive where RFC 6570 is: a variable may expand to
//! nothing (so `{?q}` matches an empty string as well as `?q=1`), and an
//! expression's values may hold the characters its operator allows
//! (unreserved and percent-encoded, plus reserved ones for `+` and `#`).

use regex::Regex;

/// The longest selector (and topic) accepted, in bytes.
pub(crate) const MAX_SELECTOR_LEN: usize = 2048;

/// A compiled topic selector; clones share the compiled form.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    text: std::sync::Arc<str>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Any,
    Exact,
    Template(Regex),
}

/// Unreserved characters and percent-encoded bytes.
const UNRESERVED: &str = r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})";
/// Unreserved and reserved characters, and percent-encoded bytes.
const RESERVED: &str = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})";

impl Selector {
    /// Compiles `text`; `None` if it is empty or longer than
    /// [`MAX_SELECTOR_LEN`].
    pub(crate) fn new(text: &str) -> Option<Selector> {
        if text.is_empty() || text.len() > MAX_SELECTOR_LEN {
            return None;
        }
        let kind = if text == "*" {
            Kind::Any
        } else {
            template(text).map_or(Kind::Exact, Kind::Template)
        };
        Some(Selector {
            text: text.into(),
            kind,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether matching needs more than comparing strings.
    pub(crate) fn is_pattern(&self) -> bool {
        !matches!(self.kind, Kind::Exact)
    }

    /// Whether `topic` matches this selector.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Exact => *self.text == *topic,
            Kind::Template(re) => *self.text == *topic || re.is_match(topic),
        }
    }
}

/// The regular expression of a URI template with at least one expression;
/// `None` for a string that is not one (it is then matched exactly).
fn template(text: &str) -> Option<Regex> {
    let mut re = String::from("^");
    let mut rest = text;
    let mut expressions = 0;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return None;
        }
        re.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..].find('}')? + open;
        re.push_str(&expression(&rest[open + 1..close])?);
        expressions += 1;
        rest = &rest[close + 1..];
    }
    if expressions == 0 {
        return None;
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    Regex::new(&re).ok()
}

/// The pattern of one expression (`op var,var:3,var*`).
fn expression(expr: &str) -> Option<String> {
    let (op, vars) = match expr.chars().next()? {
        c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&') => (Some(c), &expr[1..]),
        '=' | ',' | '!' | '@' | '|' => return None,
        _ => (None, expr),
    };
    let names: Vec<&str> = vars
        .split(',')
        .map(|v| {
            v.strip_suffix('*')
                .unwrap_or_else(|| v.split(':').next().unwrap_or(v))
        })
        .collect();
    let valid = |n: &&str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'%')
    };
    if !names.iter().all(valid) {
        return None;
    }
    let value = |chars: &str| format!("{chars}*");
    let list = |chars: &str| format!("{v}(?:,{v})*", v = value(chars));
    Some(match op {
        None => format!("(?:{})", list(UNRESERVED)),
        Some('+') => format!("(?:{})", list(RESERVED)),
        Some('#') => format!("(?:#{})?", list(RESERVED)),
        Some('.') => format!(r"(?:\.{})*", value(UNRESERVED)),
        Some('/') => format!("(?:/{})*", value(UNRESERVED)),
        Some(';') => format!(r"(?:;[A-Za-z0-9_.%]+(?:={})?)*", value(UNRESERVED)),
        Some('?') => format!(
            r"(?:\?[A-Za-z0-9_.%]+={v}(?:&[A-Za-z0-9_.%]+={v})*)?",
            v = value(UNRESERVED)
        ),
        Some(_) => format!(r"(?:&[A-Za-z0-9_.%]+={})*", value(UNRESERVED)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(selector: &str, topic: &str) -> bool {
        Selector::new(selector).unwrap().matches(topic)
    }

    #[test]
    fn the_spec_s_rules() {
        assert!(m("*", "anything at all"));
        assert!(m("foo", "foo"));
        assert!(!m("foo", "foobar"));
        assert!(m(
            "https://example.com/books/{id}",
            "https://example.com/books/1"
        ));
        assert!(!m(
            "https://example.com/books/{id}",
            "https://example.com/books/1/2"
        ));
        assert!(!m(
            "https://example.com/books/{id}",
            "https://example.com/users/1"
        ));
        // A template matches itself (selectors in claims match selectors).
        assert!(m(
            "https://example.com/books/{id}",
            "https://example.com/books/{id}"
        ));
        // The spec's private-update example.
        assert!(m(
            "https://example.com/users/foo/{?topic}",
            "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"
        ));
        assert!(m(
            "https://example.com/users/foo/{?topic}",
            "https://example.com/users/foo/"
        ));
    }

    #[test]
    fn operators() {
        assert!(m("/a{+path}", "/a/b/c?d"));
        assert!(!m("/a{path}", "/a/b"));
        assert!(m("/a{/x,y}", "/a/b/c"));
        assert!(m("file{.ext}", "file.tar.gz"));
        assert!(m("x{#frag}", "x#a/b"));
        assert!(m("x{;p}", "x;p=1"));
        assert!(m("x{?a,b}{&c}", "x?a=1&b=2&c=3"));
        assert!(m("{a}-{b}", "1-2"));
        assert!(!m("{a}-{b}", "1+2"));
        assert!(m("{x:3}", "abc"));
        assert!(m("{list*}", "a,b,c"));
    }

    #[test]
    fn strings_that_are_not_templates_match_exactly() {
        for s in ["a{b", "a}b", "{}", "a{=b}", "a{b c}", "{a{b}}"] {
            let sel = Selector::new(s).unwrap();
            assert!(!sel.is_pattern(), "{s}");
            assert!(sel.matches(s), "{s}");
            assert!(!sel.matches("ab"), "{s}");
        }
        // Regex characters in literals are literals.
        assert!(!m("a.c{x}", "abc1"));
        assert!(m("a.c{x}", "a.c1"));
        assert!(Selector::new("").is_none());
        assert!(Selector::new(&"a".repeat(MAX_SELECTOR_LEN + 1)).is_none());
    }
}
