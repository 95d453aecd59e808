//! Every valid UTF-8 data survives encoding, as an independent WHATWG parser
//! reads it, except that CRLF and lone CR arrive as LF (the format cannot
//! carry a CR).

use crate::support;

use http_body_util::BodyExt;
use proptest::prelude::*;
use ssehub::{Event, Hub, Subscribe};
use support::{Item, Parser};

/// What a spec-following client must see for `data`.
fn normalized(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Publishes one event and returns what the parser makes of the stream.
fn round_trip(data: &str, event_type: Option<&str>) -> (Vec<Item>, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let hub = Hub::new();
        let mut event = Event::new(data);
        if let Some(t) = event_type {
            event = event.with_type(t).unwrap();
        }
        let id = hub.publish("t", event).await.unwrap();
        let before = format!("{}-0", hub.epoch());
        let stream = hub
            .subscribe("t", Subscribe::new().last_event_id(before).limit(1))
            .unwrap();
        let bytes = stream.collect().await.unwrap().to_bytes();
        (Parser::new().feed(&bytes), id.to_string())
    })
}

fn arb_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => Just('\r'),
            3 => Just('\n'),
            2 => Just(' '),
            2 => Just(':'),
            1 => Just('\0'),
            1 => Just('\u{feff}'),
            8 => any::<char>(),
        ],
        0..48,
    )
    .prop_map(String::from_iter)
}

fn arb_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        prop::collection::vec(
            prop_oneof![
                Just(' '),
                Just(':'),
                any::<char>().prop_filter("no CR/LF", |c| *c != '\r' && *c != '\n')
            ],
            0..12,
        )
        .prop_map(String::from_iter)
        .prop_filter("not reserved, not too long", |t| {
            t != "resync" && t.len() <= 128
        }),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_utf8_data_round_trips(data in arb_text(), event_type in arb_type()) {
        let (items, id) = round_trip(&data, event_type.as_deref());
        let events: Vec<_> = items.iter().filter_map(|i| match i {
            Item::Event(e) => Some(e),
            _ => None,
        }).collect();
        prop_assert_eq!(events.len(), 1, "items: {:?}", items);
        let ev = events[0];
        prop_assert_eq!(&ev.data, &normalized(&data));
        let want_type = match event_type.as_deref() {
            None | Some("") => "message",
            Some(t) => t,
        };
        prop_assert_eq!(&ev.event_type, want_type);
        prop_assert_eq!(&ev.last_event_id, &id);
    }
}

#[test]
fn tricky_cases_round_trip() {
    for data in [
        "",
        " ",
        "  lead",
        "a\n",
        "\n",
        "\r\n",
        "\r",
        "a\r\nb",
        "a\rb",
        "a\n\rb",
        "x\r\n\r\n",
        ": not a comment",
        "data: nested",
        "\u{feff}bom",
        "nul\0inside",
        "é漢字🎉",
    ] {
        let (items, _) = round_trip(data, None);
        let evs = support::events(&items);
        assert_eq!(evs.len(), 1, "{data:?}: {items:?}");
        assert_eq!(evs[0].data, normalized(data), "{data:?}");
    }
}
