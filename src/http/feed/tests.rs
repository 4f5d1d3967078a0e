//! The feed's own rules, where the HTTP tests cannot reach them deterministically: a
//! client that lags, a pump that lags, the slots and the close.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use futures_util::StreamExt;
use serde_json::Value;

use super::*;
use crate::store::{ChangeKind, Version};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// The subscription's bytes, as the server would send them, and what was read of them
/// but not yet taken as events.
struct Frames {
    body: BodyDataStream,
    read: String,
}

fn body(subscription: Subscription) -> Frames {
    Frames {
        body: Body::from_stream(subscription.into_stream()).into_data_stream(),
        read: String::new(),
    }
}

/// One SSE event's fields, from its frame; `None` when the stream has ended.
async fn next(frames: &mut Frames) -> Option<(Option<String>, String, Value)> {
    while !frames.read.contains("\n\n") {
        let write = tokio::time::timeout(Duration::from_secs(5), frames.body.next())
            .await
            .expect("an event within 5 s")?
            .unwrap();
        frames.read.push_str(std::str::from_utf8(&write).unwrap());
    }
    let end = frames.read.find("\n\n").unwrap() + 2;
    let text: String = frames.read.drain(..end).collect();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .map(str::to_owned)
    };
    let data = serde_json::from_str(&field("data").unwrap()).unwrap();
    Some((field("id"), field("event").unwrap(), data))
}

fn gone(name: &str, seq: u64) -> Change {
    Change {
        version: Version { epoch: 1, seq },
        kind: ChangeKind::Archived,
        subject: Subject::Gone(SessionName::parse(name).unwrap()),
    }
}

#[tokio::test]
async fn a_client_that_lags_resyncs_then_follows_from_the_newest_event() {
    let (_dir, store) = store();
    let feed = Feed::with_caps(&store, 16, 4, 8);
    let mut body = body(feed.subscribe(None).unwrap());
    for _ in 0..10 {
        feed.publish("session.updated", "{}");
    }
    let (id, kind, data) = next(&mut body).await.unwrap();
    assert_eq!((id, kind.as_str()), (None, RESYNC));
    assert_eq!(data["reason"], "lagged");
    feed.publish("session.updated", "{\"n\":11}");
    let (id, _, data) = next(&mut body).await.unwrap();
    assert_eq!(id, Some(format_id(feed.epoch, 11)));
    assert_eq!(data["n"], 11, "the events it fell behind on are skipped");
}

#[tokio::test]
async fn a_feed_that_misses_store_changes_keeps_a_resync_in_its_history() {
    let (_dir, store) = store();
    let feed = Arc::new(Feed::new(&store));
    let (changes, source) = broadcast::channel(2);
    *lock(&feed.source) = Some(source);
    feed.publish("session.created", "{}");
    let before = format_id(feed.epoch, 1);
    let mut live = body(feed.subscribe(None).unwrap());
    for seq in 1..=5 {
        changes.send(gone(&format!("s{seq}"), seq)).unwrap();
    }
    let pump = tokio::spawn(feed.clone().run());
    // Live, and replayed to a client that saw only what came before the gap.
    let mut replayed = body(feed.subscribe(Some(&before)).unwrap());
    for stream in [&mut live, &mut replayed] {
        let (id, kind, data) = next(stream).await.unwrap();
        assert_eq!(id, Some(format_id(feed.epoch, 2)));
        assert_eq!(
            (kind.as_str(), &data["reason"]),
            (RESYNC, &Value::from("missed"))
        );
        for (n, name) in [(3, "s4"), (4, "s5")] {
            let (id, kind, data) = next(stream).await.unwrap();
            assert_eq!(id, Some(format_id(feed.epoch, n)));
            assert_eq!(kind, "session.archived");
            assert_eq!(data["name"], name);
        }
    }
    feed.close();
    pump.await.unwrap();
}

#[tokio::test]
async fn closing_ends_every_subscription_and_refuses_new_ones() {
    let (_dir, store) = store();
    let feed = Feed::new(&store);
    let mut body = body(feed.subscribe(None).unwrap());
    feed.close();
    assert!(next(&mut body).await.is_none(), "the stream ends");
    assert!(matches!(feed.subscribe(None), Err(Refused::Closing)));
}

#[tokio::test]
async fn a_slot_is_held_by_a_subscription_until_it_is_dropped() {
    let (_dir, store) = store();
    let feed = Feed::with_caps(&store, 16, 16, 2);
    let first = feed.subscribe(None).unwrap();
    let _second = feed.subscribe(None).unwrap();
    assert!(matches!(feed.subscribe(None), Err(Refused::Full(2))));
    drop(first);
    assert!(feed.subscribe(None).is_ok());
}

#[tokio::test]
async fn a_switch_names_the_previous_and_the_new_current_session() {
    let (_dir, store) = store();
    let change = Change {
        version: Version { epoch: 10, seq: 3 },
        kind: ChangeKind::CurrentChanged,
        subject: Subject::Current {
            previous: Some(SessionName::parse("a").unwrap()),
            active: None,
        },
    };
    let data: Value = serde_json::from_str(&render(&change, store.dir(), store.probe())).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"name": null, "version": "a-3", "previous": "a", "active": null})
    );
    let data: Value =
        serde_json::from_str(&render(&gone("b", 4), store.dir(), store.probe())).unwrap();
    assert_eq!(data, serde_json::json!({"name": "b", "version": "1-4"}));
}

/// An event after a quiet spell is written at once, alone; those that come within the
/// gap after a write go together in the next one, in order.
#[tokio::test(start_paused = true)]
async fn events_that_come_fast_are_written_together() {
    let (_dir, store) = store();
    let feed = Feed::with_caps(&store, 16, 16, 8);
    let mut writes =
        Body::from_stream(feed.subscribe(None).unwrap().into_stream()).into_data_stream();
    let mut next_write = async || {
        let write = writes.next().await.unwrap().unwrap();
        let text = String::from_utf8(write.to_vec()).unwrap();
        text.lines()
            .filter_map(|line| line.strip_prefix("id: "))
            .map(|id| parse_id(id).unwrap().1)
            .collect::<Vec<_>>()
    };
    feed.publish("session.updated", "{}");
    assert_eq!(next_write().await, [1]);
    for _ in 0..3 {
        feed.publish("session.updated", "{}");
    }
    assert_eq!(next_write().await, [2, 3, 4]);
    tokio::time::sleep(crate::limits::FEED_GAP * 2).await;
    feed.publish("session.updated", "{}");
    let started = tokio::time::Instant::now();
    assert_eq!(next_write().await, [5]);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "after a quiet spell, at once"
    );
}
