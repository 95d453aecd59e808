//! An event-stream parser written from the WHATWG algorithm ("parsing an
//! event stream", "interpreting an event stream"), independent of ssehub's
//! encoder: it is how tests see what a browser would see.

/// One thing the stream told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(SseEvent),
    /// A comment line (without the leading `:`).
    Comment(String),
    /// A valid `retry:` field, in milliseconds.
    Retry(u64),
    /// A dispatch with empty data: fires nothing, but sets the last event id.
    IdOnly(String),
}

/// A dispatched event, as `EventSource` would deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type (`message` by default).
    pub event_type: String,
    /// The data, without the final LF.
    pub data: String,
    /// The last event id string at dispatch.
    pub last_event_id: String,
}

/// An incremental parser: feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended with CR: a LF that follows belongs to it.
    after_cr: bool,
    started: bool,
    data: String,
    event_type: String,
    last_id_buffer: String,
    /// The id the client would send as `Last-Event-ID`.
    pub last_event_id: String,
    /// The reconnection time, if the stream set one.
    pub retry: Option<u64>,
}

impl Parser {
    pub fn new() -> Self {
        Parser::default()
    }

    /// A parser for a new connection of the same `EventSource`: the last
    /// event id and the reconnection time carry over, nothing else does.
    pub fn resuming(last_event_id: String, retry: Option<u64>) -> Self {
        Parser {
            last_id_buffer: last_event_id.clone(),
            last_event_id,
            retry,
            ..Parser::default()
        }
    }

    /// Feeds bytes; returns what they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        if !self.started && !bytes.is_empty() {
            self.started = true;
            if let Some(rest) = bytes.strip_prefix("\u{feff}".as_bytes()) {
                bytes = rest;
            }
        }
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                b'\n' => self.end_line(&mut out),
                _ => self.line.push(b),
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<Item>) {
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(comment.to_owned()));
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                    out.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        self.last_event_id = self.last_id_buffer.clone();
        if self.data.is_empty() {
            self.event_type.clear();
            out.push(Item::IdOnly(self.last_event_id.clone()));
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event_type = match std::mem::take(&mut self.event_type) {
            t if t.is_empty() => "message".to_owned(),
            t => t,
        };
        out.push(Item::Event(SseEvent {
            event_type,
            data,
            last_event_id: self.last_event_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[u8]) -> Vec<Item> {
        Parser::new().feed(input)
    }

    #[test]
    fn whatwg_examples() {
        // From the standard: three lines of data, one event.
        let items = events(b"data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(
            items,
            vec![Item::Event(SseEvent {
                event_type: "message".into(),
                data: "YHOO\n+2\n10".into(),
                last_event_id: String::new()
            })]
        );
        // "data" and "data:" both add an empty line; only one space is removed.
        let items = events(b"data\n\ndata\ndata\n\ndata:\r\ndata:  x\r\rid: 3\n: c\n\n");
        let datas: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(e.data.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(datas, vec!["", "\n", "\n x"]);
        assert_eq!(items.last(), Some(&Item::IdOnly("3".into())));
    }

    #[test]
    fn split_crlf_across_chunks() {
        let mut p = Parser::new();
        let mut items = p.feed(b"data: a\r");
        items.extend(p.feed(b"\n\r\n"));
        assert_eq!(items.len(), 1);
    }
}
