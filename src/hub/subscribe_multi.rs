//! Opening a stream of several topics: [`Hub::subscribe_multi`] and its
//! kin, which check the list of topics and the client's id, attach every
//! topic (all or none) and hand them to a [`MultiEventStream`].

use std::time::Duration;

use crate::core::multi_id::{MultiId, MultiIdError};
use crate::core::{IntoTopic, TopicName};
use crate::hub::registry::event_topic;
use crate::hub::stream::multi::Last;
use crate::hub::sync::Arc;
use crate::hub::topic::Topic;
use crate::hub::{Hub, HubError, MultiEventStream, Subscribe, Subscribing};

/// Multi-topic streams.
impl Hub {
    /// Subscribes to several topics on one stream (see
    /// [`MultiEventStream`]), resuming after `options`' last event id if
    /// any: a [`MultiId`] with one part per topic, in the order of
    /// `topics`. `options`' `rewind` counts per topic (up to `n` events of
    /// each), its `limit` all events together.
    ///
    /// # Errors
    ///
    /// [`HubError::NoTopics`] for an empty list, [`HubError::DuplicateTopic`],
    /// [`HubError::InvalidLastEventId`] if the last event id is not the
    /// [`MultiId`] of these topics, and those of [`Hub::subscribe`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// let stream = hub.subscribe_multi(["a", "b"], Subscribe::new())?;
    /// hub.publish("b", Event::new("x")).await?;
    /// // A client that saw nothing resumes from the stream's start:
    /// let id = stream.position().to_string();
    /// let resumed = hub.subscribe_multi(["a", "b"], Subscribe::new().last_event_id(id))?;
    /// assert_eq!(resumed.position(), stream.position(), "b's event comes next");
    /// // An id of another list of topics is refused.
    /// assert!(hub.subscribe_multi(["a"], Subscribe::new().last_event_id("x-1.2")).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe_multi<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        options: Subscribe,
    ) -> Result<MultiEventStream, HubError> {
        let names = checked_topics(topics)?;
        let last = parse_last(&options, &names)?;
        let members = self.attach_all(&names)?;
        Ok(self.stream_of(members, last, &options))
    }

    /// The stream of `members` (attached, in the stream's order), resuming
    /// after `last`.
    fn stream_of(
        &self,
        members: Vec<Arc<Topic>>,
        last: Option<Last>,
        options: &Subscribe,
    ) -> MultiEventStream {
        let params = self.stream_params(options);
        MultiEventStream::new(members, last, options.rewind, params)
    }

    /// Like [`Hub::subscribe_multi`], but with Redis, first waits (at most
    /// `patience` in all) until this node has loaded every topic's history
    /// and caught up with the client's id, as [`Hub::subscribe_ready`].
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe_multi`].
    pub async fn subscribe_multi_ready<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        options: Subscribe,
        patience: Duration,
    ) -> Result<MultiEventStream, HubError> {
        let names = checked_topics(topics)?;
        let last = parse_last(&options, &names)?;
        // Every topic first, all or nothing, so the store loads them all at
        // once; then the waits, within one patience.
        // Detaches the topics if this future is dropped while it waits.
        struct Attached(Vec<Arc<Topic>>);
        impl Drop for Attached {
            fn drop(&mut self) {
                for t in self.0.drain(..) {
                    t.detach();
                }
            }
        }
        let mut members = Attached(self.attach_all(&names)?);
        if self.store().loads_topics() {
            let deadline = tokio::time::Instant::now() + patience;
            for (i, t) in members.0.iter().enumerate() {
                let wanted = match &last {
                    Some(Last::Id(id)) => Some(id.ids()[i]),
                    _ => None,
                };
                // If the storage is down, the stream starts when it is back.
                let _ = tokio::time::timeout_at(deadline, t.caught_up(wanted)).await;
            }
        }
        let members = std::mem::take(&mut members.0);
        let mut stream = self.stream_of(members, last, &options);
        if stream.is_loading() {
            stream.start_if_loaded();
        }
        Ok(stream)
    }

    /// Subscribes to several topics for an HTTP response: at once in
    /// memory, else after [`Hub::subscribe_multi_ready`]'s wait.
    pub(crate) fn subscribe_multi_for_response(
        &self,
        topics: Vec<TopicName>,
        options: Subscribe,
        patience: Duration,
    ) -> Subscribing<MultiEventStream> {
        if !self.store().loads_topics() {
            return Subscribing::Ready(self.subscribe_multi(topics, options));
        }
        let hub = self.clone();
        Subscribing::Waiting(Box::pin(async move {
            hub.subscribe_multi_ready(topics, options, patience).await
        }))
    }

    /// The position of several topics at once, as the id a stream of
    /// these topics would start from (see [`Hub::position`]): a page that
    /// renders a snapshot of several topics reads it with the snapshot,
    /// then opens its stream with `?lastEventId=` set to it. Like
    /// [`Hub::position`], it creates and retires nothing (but with Redis,
    /// which loads the topics this node has not loaded).
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe_multi`] and [`Hub::position`]: a stream of these
    /// topics that would be refused is refused here too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// hub.publish("a", Event::new("1")).await?;
    /// let seen = hub.position_multi(["a", "b"], Duration::from_secs(2)).await?;
    /// assert!(seen.to_string().ends_with(&format!("_{}-1.0", hub.epoch())));
    /// assert!(hub.topic_info("b").is_none(), "b is not created");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn position_multi<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        patience: Duration,
    ) -> Result<MultiId, HubError> {
        let names = checked_topics(topics)?;
        // Nothing is created or retired unless a stream of these topics
        // would be served (and then, only with Redis: see `Hub::position`).
        self.could_hold(&names)?;
        if self.store().loads_topics() {
            // Every topic first, so the store loads them all at once.
            self.attach_all(&names)?.iter().for_each(|t| t.detach());
        }
        let deadline = tokio::time::Instant::now() + patience;
        let mut ids = Vec::with_capacity(names.len());
        for name in &names {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            ids.push(self.position(name, left).await?);
        }
        Ok(MultiId::new(&names, ids))
    }
}

/// The names these methods had before one word ("multi") named several
/// topics throughout the hub's API.
impl Hub {
    /// Renamed [`Hub::subscribe_multi`].
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe_multi`].
    #[deprecated(note = "renamed `Hub::subscribe_multi`")]
    pub fn subscribe_many<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        options: Subscribe,
    ) -> Result<MultiEventStream, HubError> {
        self.subscribe_multi(topics, options)
    }

    /// Renamed [`Hub::subscribe_multi_ready`].
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe_multi_ready`].
    #[deprecated(note = "renamed `Hub::subscribe_multi_ready`")]
    pub async fn subscribe_many_ready<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        options: Subscribe,
        patience: Duration,
    ) -> Result<MultiEventStream, HubError> {
        self.subscribe_multi_ready(topics, options, patience).await
    }

    /// Renamed [`Hub::position_multi`].
    ///
    /// # Errors
    ///
    /// As [`Hub::position_multi`].
    #[deprecated(note = "renamed `Hub::position_multi`")]
    pub async fn position_many<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        patience: Duration,
    ) -> Result<MultiId, HubError> {
        self.position_multi(topics, patience).await
    }
}

/// The last event id of `options`, the id of a stream of `names`.
fn parse_last(options: &Subscribe, names: &[TopicName]) -> Result<Option<Last>, HubError> {
    let Some(id) = &options.last_event_id else {
        return Ok(None);
    };
    match MultiId::parse(id, names) {
        Ok(id) => Ok(Some(Last::Id(id))),
        Err(MultiIdError::TooLong | MultiIdError::NoCheck) => Ok(Some(Last::Unusable(id.clone()))),
        Err(e) => Err(HubError::InvalidLastEventId(e)),
    }
}

/// Checks a list of topics: at least one, each valid, none twice.
fn checked_topics<T: IntoTopic>(
    topics: impl IntoIterator<Item = T>,
) -> Result<Vec<TopicName>, HubError> {
    let names: Vec<TopicName> = topics
        .into_iter()
        .map(event_topic)
        .collect::<Result<_, _>>()?;
    if names.is_empty() {
        return Err(HubError::NoTopics);
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for name in &names {
        if !seen.insert(name.as_str()) {
            return Err(HubError::DuplicateTopic(name.clone()));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body::Body;
    use http_body_util::BodyExt;

    use super::*;
    use crate::core::event::Event;
    use crate::core::multi_id::check_prefix;
    use crate::core::ring::Read;
    use crate::hub::stream::multi::{COPY_UP_TO, TURN_EVENTS};

    fn hub(buffer: usize) -> Hub {
        Hub::builder()
            .buffer(buffer)
            .retry(Some(Duration::from_millis(1000)))
            .retry_jitter(0.0)
            .build()
    }

    /// The next frame (not a keep-alive); fails if none is ready (the
    /// clock is paused: the timeout elapses as soon as nothing can run).
    async fn next(stream: &mut MultiEventStream) -> Bytes {
        tokio::time::timeout(Duration::from_secs(1), stream.frame())
            .await
            .expect("a frame is ready")
            .expect("the stream goes on")
            .unwrap()
            .into_data()
            .unwrap()
    }

    async fn next_text(stream: &mut MultiEventStream) -> String {
        String::from_utf8(next(stream).await.to_vec()).unwrap()
    }

    /// Everything ready now, as text.
    async fn ready_text(stream: &mut MultiEventStream) -> String {
        let mut text = String::new();
        while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(1), stream.frame()).await
        {
            text.push_str(std::str::from_utf8(&f.unwrap().into_data().unwrap()).unwrap());
        }
        text
    }

    /// (event type, data, id) of each event in `text`.
    fn events(text: &str) -> Vec<(String, String, String)> {
        text.split("\n\n")
            .filter_map(|ev| {
                let (mut ty, mut data, mut id) = (None, Vec::new(), None);
                for line in ev.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ty = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    }
                }
                (!data.is_empty()).then(|| {
                    (
                        ty.unwrap_or_default(),
                        data.join("\n"),
                        id.unwrap_or_default(),
                    )
                })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_typed_with_their_topic_and_carry_every_position() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let mut s = hub.subscribe_multi(["a", "b"], Subscribe::new()).unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("retry: 1000\nid: {c}{e}-0.0\n\n")
        );
        hub.publish("a", Event::new("x").with_type("t").unwrap())
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("event: a/t\ndata: x\nid: {c}{e}-1.0\n\n")
        );
        hub.publish("b", Event::new("y\nz")).await.unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("event: b\ndata: y\ndata: z\nid: {c}{e}-1.1\n\n")
        );
        assert_eq!(s.position().to_string(), format!("{c}{e}-1.1"));
        assert_eq!(s.topics().collect::<Vec<_>>(), ["a", "b"]);
        let stats = hub.stats();
        assert_eq!((stats.subscribers, stats.delivered), (1, 2));
        assert_eq!(hub.topic_info("a").unwrap().subscribers, 1);
        drop(s);
        assert_eq!(hub.stats().subscribers, 0);
        assert_eq!(hub.topic_info("b").unwrap().subscribers, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_id_resumes_every_topic_exactly() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b", "c"]);
        for i in 1..=3 {
            hub.publish("a", Event::new(format!("a{i}"))).await.unwrap();
        }
        for i in 1..=2 {
            hub.publish("b", Event::new(format!("b{i}"))).await.unwrap();
        }
        let opts = Subscribe::new().last_event_id(format!("{c}{e}-1.1.0"));
        let mut s = hub.subscribe_multi(["a", "b", "c"], opts).unwrap();
        assert_eq!(next_text(&mut s).await, "retry: 1000\n");
        let got = events(&ready_text(&mut s).await);
        let want = [
            ("a", "a2", format!("{c}{e}-2.1.0")),
            ("a", "a3", format!("{c}{e}-3.1.0")),
            ("b", "b2", format!("{c}{e}-3.2.0")),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((ty, data, id), (wt, wd, wi)) in got.iter().zip(&want) {
            assert_eq!((ty.as_str(), data.as_str(), id), (*wt, *wd, wi));
        }
        assert_eq!(hub.stats().replayed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_is_per_topic_and_names_it() {
        let hub = hub(2);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b", "c"]);
        for i in 1..=5 {
            hub.publish("a", Event::new(format!("a{i}"))).await.unwrap();
        }
        hub.publish("b", Event::new("b1")).await.unwrap();
        // a is evicted up to 3; b resumes exactly; c is of another epoch.
        let opts = Subscribe::new().last_event_id(format!("{c}{e}-1.0.zz-4"));
        let mut s = hub.subscribe_multi(["a", "b", "c"], opts).unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!(
                "retry: 1000\nevent: resync\ndata: {{\"topic\":\"a\",\"reason\":\"evicted\",\
                 \"requested\":\"{e}-1\",\"oldest\":\"{e}-4\",\"latest\":\"{e}-5\",\"missed\":2}}\n\
                 id: {c}{e}-3.0.0\n\n"
            )
        );
        assert_eq!(
            next_text(&mut s).await,
            format!(
                "event: resync\ndata: {{\"topic\":\"c\",\"reason\":\"epoch\",\
                 \"requested\":\"zz-4\",\"oldest\":null,\"latest\":\"{e}-0\"}}\nid: {c}{e}-3.0.0\n\n"
            )
        );
        let got = events(&ready_text(&mut s).await);
        let ids: Vec<_> = got.iter().map(|g| (g.1.as_str(), g.2.clone())).collect();
        assert_eq!(
            ids,
            [
                ("a4", format!("{c}{e}-4.0.0")),
                ("a5", format!("{c}{e}-5.0.0")),
                ("b1", format!("{c}{e}-5.1.0"))
            ]
        );
        assert_eq!(hub.stats().resyncs, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_topic_gets_its_own_resync_and_the_others_go_on() {
        let hub = hub(4);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let mut s = hub.subscribe_multi(["a", "b"], Subscribe::new()).unwrap();
        next(&mut s).await;
        for i in 1..=10 {
            hub.publish("a", Event::new(format!("a{i}"))).await.unwrap();
        }
        hub.publish("b", Event::new("b1")).await.unwrap();
        let text = ready_text(&mut s).await;
        assert!(
            text.starts_with(&format!(
                "event: resync\ndata: {{\"topic\":\"a\",\"reason\":\"lagged\",\"requested\":\"{e}-0\",\
                 \"oldest\":\"{e}-7\",\"latest\":\"{e}-10\",\"missed\":6}}\nid: {c}{e}-6.0\n\n"
            )),
            "{text}"
        );
        let got: Vec<_> = events(&text)
            .into_iter()
            .filter(|g| g.0 != "resync")
            .map(|g| g.1)
            .collect();
        // After its resync, a waits for its next turn: b's comes first.
        assert_eq!(got, ["b1", "a7", "a8", "a9", "a10"]);
    }

    /// A flood on one topic does not hold up another: each topic sends at
    /// most a turn's worth before the next one's turn.
    #[tokio::test(start_paused = true)]
    async fn a_busy_topic_does_not_starve_the_others() {
        let hub = hub(10_000);
        let mut s = hub
            .subscribe_multi(["busy", "quiet", "other"], Subscribe::new())
            .unwrap();
        next(&mut s).await;
        for i in 1..=5000 {
            hub.publish("busy", Event::new(format!("{i:>40}")))
                .await
                .unwrap();
        }
        hub.publish("quiet", Event::new("q")).await.unwrap();
        hub.publish("other", Event::new("o")).await.unwrap();
        let first = events(&next_text(&mut s).await);
        let pos = |d: &str| first.iter().position(|g| g.1 == d);
        assert_eq!(pos("q"), Some(TURN_EVENTS), "{first:?}");
        assert_eq!(pos("o"), Some(TURN_EVENTS + 1));
        // Then busy's events, in order, in frames of at most the hub's size.
        let mut n = first.iter().filter(|g| g.0 == "busy").count();
        while n < 5000 {
            let frame = next(&mut s).await;
            assert!(frame.len() <= hub.config().max_frame_bytes);
            for (ty, data, _) in events(std::str::from_utf8(&frame).unwrap()) {
                assert_eq!(ty, "busy");
                n += 1;
                assert_eq!(data.trim(), n.to_string());
            }
        }
    }

    /// Large data lines go out as a slice of the frame every subscriber
    /// shares, between this stream's own lines; small ones are copied.
    #[tokio::test(start_paused = true)]
    async fn large_data_is_shared_not_copied() {
        let hub = hub(10);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let mut s = hub.subscribe_multi(["a", "b"], Subscribe::new()).unwrap();
        next(&mut s).await;
        let big = "x".repeat(COPY_UP_TO + 1);
        hub.publish("b", Event::new(big.clone())).await.unwrap();
        let head = next(&mut s).await;
        let data = next(&mut s).await;
        let tail = next(&mut s).await;
        assert_eq!(head, "event: b\n");
        assert_eq!(data, format!("data: {big}\n"));
        assert_eq!(tail, format!("id: {c}{e}-0.1\n\n"));
        let topic = hub.read_topics().get("b").cloned().unwrap();
        let Read::Ready { frame, .. } = topic.read(e, 1, 1, usize::MAX) else {
            panic!("the event is in the ring")
        };
        let shared = frame.as_ptr_range();
        assert!(
            shared.contains(&data.as_ptr()),
            "a slice of the ring's frame"
        );
        // A small one is one frame.
        hub.publish("a", Event::new("small")).await.unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("event: a\ndata: small\nid: {c}{e}-1.1\n\n")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_counts_every_topic_and_rewind_each() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        for t in ["a", "b"] {
            for i in 1..=5 {
                hub.publish(t, Event::new(format!("{t}{i}"))).await.unwrap();
            }
        }
        let mut s = hub
            .subscribe_multi(["a", "b"], Subscribe::new().rewind(2).limit(3))
            .unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("retry: 1000\nid: {c}{e}-3.3\n\n")
        );
        let mut text = String::new();
        while let Some(f) = s.frame().await {
            text.push_str(std::str::from_utf8(&f.unwrap().into_data().unwrap()).unwrap());
        }
        let got: Vec<_> = events(&text).into_iter().map(|g| g.1).collect();
        assert_eq!(got, ["a4", "a5", "b4"]);
        assert!(s.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn reauth_carries_the_stream_position() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let at = std::time::SystemTime::now() + Duration::from_secs(30);
        let mut s = hub
            .subscribe_multi(["a", "b"], Subscribe::new().expires_at(at))
            .unwrap();
        next(&mut s).await;
        hub.publish("b", Event::new("1")).await.unwrap();
        next(&mut s).await;
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(
            next_text(&mut s).await,
            format!(
                "event: reauth\ndata: {{\"reason\":\"expired\",\"lastEventId\":\"{c}{e}-0.1\"}}\n\
                 id: {c}{e}-0.1\n\n"
            )
        );
        assert!(s.frame().await.is_none());
    }

    #[tokio::test]
    async fn what_is_not_a_stream_of_several_topics_is_refused() {
        let hub = Hub::new();
        let none: [&str; 0] = [];
        assert!(matches!(
            hub.subscribe_multi(none, Subscribe::new()),
            Err(HubError::NoTopics)
        ));
        assert!(matches!(
            hub.subscribe_multi(["a", "b", "a"], Subscribe::new()),
            Err(HubError::DuplicateTopic(t)) if t.as_str() == "a"
        ));
        assert!(matches!(
            hub.subscribe_multi(["a", "b/c"], Subscribe::new()),
            Err(HubError::InvalidTopic)
        ));
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        assert!(matches!(
            hub.subscribe_multi(
                ["a", "b"],
                Subscribe::new().last_event_id(format!("{c}{e}-1"))
            ),
            Err(HubError::InvalidLastEventId(
                crate::core::MultiIdError::Count {
                    expected: 2,
                    found: 1
                }
            ))
        ));
        // Nothing stays subscribed after a refusal.
        assert_eq!(hub.stats().subscribers, 0);
        assert_eq!(hub.topic_info("a").map_or(0, |t| t.subscribers), 0);
    }

    #[tokio::test]
    async fn closing_the_hub_ends_the_stream() {
        let hub = Hub::builder().retry(None).build();
        let mut s = hub.subscribe_multi(["a", "b"], Subscribe::new()).unwrap();
        s.frame().await.unwrap().unwrap();
        let closer = {
            let hub = hub.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                hub.close();
            })
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(5), s.frame())
                .await
                .unwrap()
                .is_none()
        );
        closer.await.unwrap();
    }

    /// The old names still work, as the new ones.
    #[tokio::test]
    #[allow(deprecated)]
    async fn the_old_names_of_the_multi_topic_methods_still_work() {
        let hub = hub(100);
        hub.publish("a", Event::new("1")).await.unwrap();
        let old = hub.position_many(["a", "b"], Duration::from_secs(1)).await;
        let new = hub.position_multi(["a", "b"], Duration::from_secs(1)).await;
        assert_eq!(old.unwrap(), new.unwrap());
        let s = hub.subscribe_many(["a", "b"], Subscribe::new()).unwrap();
        assert_eq!(s.topics().collect::<Vec<_>>(), ["a", "b"]);
        let s = hub
            .subscribe_many_ready(["b", "a"], Subscribe::new(), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(s.topics().collect::<Vec<_>>(), ["b", "a"]);
    }
}
