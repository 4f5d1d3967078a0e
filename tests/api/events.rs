//! The change feed, `GET /events`: every kind of change with its data, ids, replay after
//! a reconnect, resync, slow and stuck clients, the subscriber cap, shutdown, restart.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// The sequence number of a store version (`<epoch hex>-<seq>`).
fn seq(version: &Value) -> u64 {
    let text = version
        .as_str()
        .unwrap_or_else(|| panic!("{version} is a string"));
    let (epoch, seq) = text.split_once('-').unwrap();
    assert!(u64::from_str_radix(epoch, 16).is_ok(), "{text}");
    seq.parse().unwrap()
}

/// Asserts an event's type and, for a change that gave a session a new state, that its
/// data carries the session exactly as `GET /sessions/{name}` answers it now.
async fn assert_session_event(app: &TestApp, event: &SseEvent, kind: &str, name: &str) {
    assert_eq!(event.event, kind, "{event:?}");
    assert_eq!(event.data["name"], name, "{event:?}");
    assert_eq!(
        without_live_fields(event.data["session"].clone()),
        app.session(name).await,
        "{event:?}"
    );
}

/// A pid no process has, the `n`-th: a made-up pid that a real process has could make
/// the next PATCH a 409 `process-alive`.
fn fake(n: u64) -> u64 {
    NO_SUCH_PID as u64 + n
}

/// The `n`-th conversation id, which the tests' writes set one after the other: a write
/// that involves no process, so no `session.process_gone` comes between the events.
fn id_of(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A PATCH body that makes the `n`-th write.
fn mark(n: u64) -> Value {
    json!({ "conversation": id_of(n) })
}

/// Which write an event's session shows.
fn marked(event: &SseEvent) -> u64 {
    let id = event.data["session"]["conversation"]
        .as_str()
        .unwrap_or_else(|| panic!("no conversation in {event:?}"));
    id.rsplit('-').next().unwrap().parse().unwrap()
}

/// Asserts that the events are numbered one after the other, from `first`.
fn assert_consecutive(events: &[SseEvent], first: u64) {
    let numbers: Vec<u64> = events.iter().map(SseEvent::n).collect();
    let expected: Vec<u64> = (first..first + events.len() as u64).collect();
    assert_eq!(numbers, expected, "event numbers");
}

#[tokio::test]
async fn every_change_arrives_with_its_data_after_the_write_is_answered() {
    let app = TestApp::fresh().await;
    let mut feed = app.follow(None).await;

    app.created("alpha").await;
    let created = feed.next().await;
    assert_session_event(&app, &created, "session.created", "alpha").await;

    let patched = app.patch("alpha", &json!({"pid": fake(4242)})).await;
    assert_eq!(patched.status(), StatusCode::OK);
    let updated = feed.next().await;
    assert_session_event(&app, &updated, "session.updated", "alpha").await;
    assert_eq!(updated.data["session"]["pid"], fake(4242));
    // Its answer found the process gone (no process has that pid): announced once.
    let gone = feed.next().await;
    assert_eq!(gone.event, "session.process_gone", "{gone:?}");
    assert_eq!(gone.data["session"]["process"], "gone", "{gone:?}");

    let path = "/sessions/alpha/persona";
    let replaced = app.send_json(Method::PUT, path, &custom_persona()).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let persona = feed.next().await;
    assert_session_event(&app, &persona, "persona.updated", "alpha").await;
    assert_eq!(persona.data["session"]["persona"], "custom");

    app.created("beta").await;
    feed.next().await;
    app.switched("alpha").await;
    let switched = feed.next().await;
    assert_eq!(switched.event, "session.switched");
    assert_eq!(
        switched.data,
        json!({"name": "alpha", "version": switched.data["version"], "previous": null, "active": "alpha"})
    );
    assert_session_event(&app, &feed.next().await, "session.updated", "alpha").await;

    // A switch is one write: its events share its version.
    app.switched("beta").await;
    let switched = feed.next().await;
    assert_eq!(
        (&switched.data["previous"], &switched.data["active"]),
        (&json!("alpha"), &json!("beta"))
    );
    let statuses = feed.take(2).await;
    assert_session_event(&app, &statuses[0], "session.updated", "alpha").await;
    assert_eq!(statuses[0].data["session"]["status"], "suspended");
    assert_session_event(&app, &statuses[1], "session.updated", "beta").await;
    assert_eq!(statuses[1].data["session"]["status"], "active");
    for event in &statuses {
        assert_eq!(event.data["version"], switched.data["version"]);
    }

    // Deleting the current session archives it, then none is current.
    assert_eq!(
        app.delete("/sessions/beta").await.status(),
        StatusCode::NO_CONTENT
    );
    let archived = feed.next().await;
    assert_eq!(archived.event, "session.archived");
    assert_eq!(
        archived.data,
        json!({"name": "beta", "version": archived.data["version"]})
    );
    let cleared = feed.next().await;
    assert_eq!(cleared.event, "session.switched");
    assert_eq!(
        (
            &cleared.data["name"],
            &cleared.data["previous"],
            &cleared.data["active"]
        ),
        (&Value::Null, &json!("beta"), &Value::Null)
    );

    // A write that changes nothing announces nothing: the next event is the next change.
    // (The same pid again is a write: it records when, for a pid reused by the bot's
    // next process.)
    app.delete("/sessions/active").await;
    let status = app.session("alpha").await["status"].clone();
    app.patch("alpha", &json!({ "status": status })).await;
    app.patch("alpha", &json!({"pid": fake(7)})).await;
    let next = feed.next().await;
    assert_eq!(next.data["session"]["pid"], fake(7), "{next:?}");

    // The delete and the clearing of the current session are one write too.
    assert_eq!(archived.data["version"], cleared.data["version"]);
    let events = [created, updated, persona, switched, archived, next];
    let versions: Vec<u64> = events.iter().map(|e| seq(&e.data["version"])).collect();
    assert!(versions.is_sorted_by(|a, b| a < b), "versions {versions:?}");
    let numbers: Vec<u64> = events.iter().map(SseEvent::n).collect();
    assert!(numbers.is_sorted_by(|a, b| a < b), "ids {numbers:?}");
    assert!(events.iter().all(|e| e.epoch() == events[0].epoch()));
    app.stop().await;
}

#[tokio::test]
async fn a_session_that_vanishes_on_disk_is_announced_as_removed() {
    let app = TestApp::fresh().await;
    app.created("ghost").await;
    let mut feed = app.follow(None).await;
    std::fs::remove_dir_all(app.session_dir("ghost")).unwrap();
    let patched = app.patch("ghost", &json!({"pid": fake(1)})).await;
    assert_eq!(patched.status(), StatusCode::NOT_FOUND);
    let removed = feed.next().await;
    assert_eq!(removed.event, "session.removed");
    assert_eq!(removed.data["name"], "ghost");
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_reconnects_gets_exactly_what_it_missed_then_live_events() {
    let app = TestApp::fresh().await;
    let mut feed = app.follow(None).await;
    app.created("resume").await;
    let seen = feed.next().await;
    drop(feed);

    for pid in 1..=5 {
        app.patch("resume", &mark(pid)).await;
    }
    let mut feed = app.follow(seen.id.as_deref()).await;
    let missed = feed.take(5).await;
    assert_consecutive(&missed, seen.n() + 1);
    let writes: Vec<u64> = missed.iter().map(marked).collect();
    assert_eq!(writes, [1, 2, 3, 4, 5]);

    // Nothing more is replayed: the next event is the next write.
    app.patch("resume", &mark(6)).await;
    let live = feed.next().await;
    assert_eq!(
        (live.n(), &live.data["session"]["conversation"]),
        (seen.n() + 6, &json!(id_of(6)))
    );
    drop(feed);

    // Coming back from the latest event replays nothing.
    let mut feed = app.follow(live.id.as_deref()).await;
    app.patch("resume", &mark(7)).await;
    let next = feed.next().await;
    assert_eq!(
        (next.n(), &next.data["session"]["conversation"]),
        (live.n() + 1, &json!(id_of(7)))
    );
    app.stop().await;
}

/// Replaying the ring and joining the live events race with the writer: a client that
/// keeps reconnecting while writes go on must still see every event once.
#[tokio::test]
async fn reconnecting_while_writes_go_on_loses_and_repeats_nothing() {
    const WRITES: u64 = 300;
    let app = std::sync::Arc::new(TestApp::fresh().await);
    app.created("busy").await;
    let mut feed = app.follow(None).await;
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            for pid in 1..=WRITES {
                let response = app.patch("busy", &mark(pid)).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
        })
    };
    let mut seen: Vec<SseEvent> = Vec::new();
    let mut reconnects = 0;
    while seen.len() < WRITES as usize {
        // Read a few events, leave, come back from the last one.
        for _ in 0..(reconnects % 7 + 1) {
            seen.push(feed.next().await);
            if seen.len() == WRITES as usize {
                break;
            }
        }
        drop(feed);
        feed = app.follow(seen.last().unwrap().id.as_deref()).await;
        reconnects += 1;
    }
    writer.await.unwrap();
    assert_consecutive(&seen, seen[0].n());
    let pids: Vec<u64> = seen.iter().map(marked).collect();
    assert_eq!(pids, (1..=WRITES).collect::<Vec<_>>());
    drop(feed);
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn an_id_the_feed_cannot_resume_from_starts_with_a_resync() {
    let app = TestApp::fresh().await;
    app.created("a").await;
    app.created("b").await;
    let mut feed = app.follow(None).await;
    app.switched("a").await;
    let first = feed.next().await;
    let epoch = first.epoch().to_owned();
    // Enough switches (three events each) to push the first event out of the ring.
    let switches = FEED_HISTORY / 3 + 1;
    for i in 0..switches {
        app.switched(if i % 2 == 0 { "b" } else { "a" }).await;
    }
    let latest = feed.take(1 + 3 * switches).await.pop().unwrap();
    drop(feed);

    let other_epoch = format!("{:x}", u64::from_str_radix(&epoch, 16).unwrap() - 1);
    let cases: [(Vec<u8>, &str); 7] = [
        (first.id.clone().unwrap().into_bytes(), "too-old"),
        (
            format!("{other_epoch}-{}", latest.n()).into_bytes(),
            "other-run",
        ),
        (
            format!("{epoch}-{}", latest.n() + 1_000).into_bytes(),
            "unknown-id",
        ),
        (format!("{epoch}-0").into_bytes(), "unknown-id"),
        (b"not-an-id".to_vec(), "unknown-id"),
        (Vec::new(), "unknown-id"),
        (b"\xff\xfe".to_vec(), "unknown-id"),
    ];
    for (pid, (id, reason)) in (1..).zip(cases) {
        let sent = String::from_utf8_lossy(&id).into_owned();
        let mut feed = EventStream::new(app.follow_raw(Some(&id)).await);
        let resync = feed.next().await;
        assert_eq!(resync.event, "resync", "Last-Event-ID {sent:?}");
        assert_eq!(
            resync.data,
            json!({ "reason": reason }),
            "Last-Event-ID {sent:?}"
        );
        assert_eq!(resync.id, None, "a resync for one client has no id");
        // Then live events, from the next one.
        app.patch("a", &mark(pid)).await;
        let live = feed.next().await;
        assert_eq!(live.event, "session.updated", "after {sent:?}");
        assert_eq!(marked(&live), pid, "after {sent:?}");
    }
    app.stop().await;
}

/// Opens `GET /events` on a raw connection with a small receive buffer, reads the
/// answer's head (so the subscription is taken), and then never reads again.
async fn stuck_subscriber(app: &TestApp) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(app.addr).await.unwrap();
    let request = format!("GET /events HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        let read = tokio::time::timeout(EVENT_BOUND, stream.read(&mut byte)).await;
        assert_eq!(
            read.expect("the answer's head").unwrap(),
            1,
            "head: {head:?}"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// `count` writes of the session's pid, one after the other; how long they took.
async fn timed_writes(app: &TestApp, name: &str, pids: std::ops::Range<u64>) -> Duration {
    let start = Instant::now();
    for pid in pids {
        let response = app.patch(name, &mark(pid)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    start.elapsed()
}

#[tokio::test]
async fn a_stuck_subscriber_delays_neither_the_writes_nor_the_other_subscribers() {
    const WRITES: u64 = 500;
    // 16 KiB of someone else's field in the metadata makes every event as large: the
    // stuck client's socket and the server's buffers fill within about a hundred,
    // and from then on its connection cannot take a byte more.
    let dirs = Dirs::new();
    let mut metadata =
        python_metadata("load", "2026-11-24T21:22:16", "2026-11-24T21:22:16", "idle");
    metadata["notes"] = json!("n".repeat(16 * 1024));
    write_python_session(&dirs.sessions(), "load", &metadata);
    let app = TestApp::spawn(&dirs).await;
    let alone = timed_writes(&app, "load", 1..WRITES + 1).await;

    let stuck = stuck_subscriber(&app).await;
    let mut reader = app.follow(None).await;
    let reading = tokio::spawn(async move { reader.take(WRITES as usize).await });
    let watched = timed_writes(&app, "load", WRITES + 1..2 * WRITES + 1).await;
    let events = reading.await.unwrap();
    assert_consecutive(&events, events[0].n());
    let writes: Vec<u64> = events.iter().map(marked).collect();
    assert_eq!(writes, (WRITES + 1..2 * WRITES + 1).collect::<Vec<_>>());
    eprintln!(
        "{WRITES} writes: {alone:?} without a subscriber, {watched:?} with a stuck one and a reader"
    );
    assert!(
        watched < alone * 3 + Duration::from_secs(1),
        "{WRITES} writes took {watched:?} with a stuck subscriber and a reader, {alone:?} without"
    );
    // Its end cannot be sent to a client that reads nothing: the server closes its
    // connection rather than wait out the whole grace period for it.
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("the server stops within 5 s with a stuck subscriber");
    eprintln!("stopped in {:?} with a stuck subscriber", start.elapsed());
    drop(stuck);
}

#[tokio::test]
async fn the_subscriber_past_the_cap_is_refused_until_one_leaves() {
    let app = TestApp::fresh().await;
    let mut feeds = Vec::new();
    for _ in 0..FEED_SUBSCRIBERS {
        feeds.push(app.follow(None).await);
    }
    let refused = app.follow_raw(None).await;
    let problem = assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "too-many-subscribers",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&FEED_SUBSCRIBERS.to_string()), "{detail}");

    // The server frees the slot when it sees the client gone, which it learns from
    // the connection, on its own time: ask again until then.
    drop(feeds.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        let response = app.follow_raw(None).await;
        if response.status() == StatusCode::OK {
            break EventStream::new(response);
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            Instant::now() < deadline,
            "the slot was not freed within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    app.created("counted").await;
    assert_eq!(again.next().await.event, "session.created");
    assert_eq!(feeds[0].next().await.event, "session.created");
    drop((feeds, again));
    app.stop().await;
}

#[tokio::test]
async fn stopping_with_open_feeds_ends_them_and_returns_promptly() {
    let app = TestApp::fresh().await;
    let mut feeds = Vec::new();
    for _ in 0..3 {
        feeds.push(app.follow(None).await);
    }
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), app.stop())
        .await
        .expect("the server stops within 3 s with feeds open");
    eprintln!(
        "stopped in {:?} with {} feeds open",
        start.elapsed(),
        feeds.len()
    );
    for feed in &mut feeds {
        assert!(
            feed.next_within(EVENT_BOUND).await.is_none(),
            "the feed ended"
        );
    }
}

#[tokio::test]
async fn an_id_from_before_a_restart_gives_a_resync() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    let mut feed = app.follow(None).await;
    app.created("kept").await;
    let before = feed.next().await;
    app.stop().await;
    assert!(
        feed.next_within(EVENT_BOUND).await.is_none(),
        "the feed ended with the server"
    );

    let app = TestApp::spawn(&dirs).await;
    let mut feed = app.follow(before.id.as_deref()).await;
    let resync = feed.next().await;
    assert_eq!(
        (resync.event.as_str(), &resync.data),
        ("resync", &json!({"reason": "other-run"}))
    );
    app.patch("kept", &mark(9)).await;
    let after = feed.next().await;
    assert_eq!(marked(&after), 9);
    assert_ne!(after.epoch(), before.epoch(), "each run has its own epoch");
    assert_ne!(after.id, before.id);
    app.stop().await;
}
