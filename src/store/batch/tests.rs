//! Batches made on purpose: the test holds the writer lock while it queues writes one
//! after the other, so that they form one batch, in that order.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::runtime::Runtime;

use super::lock;
use crate::model::{MetadataPatch, SessionName};
use crate::store::layout::{CURRENT_FILE, METADATA_FILE};
use crate::store::{Change, IfMatch, Store, Subject, Switched, Version};

type Write = Pin<Box<dyn Future<Output = String> + Send>>;

/// Held by each test here: they all switch, and one arms the failpoint switches meet
/// (no other test of this binary switches).
static SWITCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn name(s: &str) -> SessionName {
    SessionName::parse(s).unwrap()
}

/// A switch's answer, shortly: `previous -> active`, or the error.
fn switch(store: &Store, to: &str, if_match: Option<IfMatch>) -> Write {
    let (store, to) = (store.clone(), name(to));
    Box::pin(async move {
        match store.switch(to, if_match).await {
            Ok(Switched {
                previous,
                active,
                changed,
            }) => format!(
                "{} -> {} {}",
                previous.map_or("none".into(), |n| n.to_string()),
                active.map_or("none".into(), |n| n.to_string()),
                if changed { "changed" } else { "unchanged" }
            ),
            Err(e) => format!("error: {e:?}"),
        }
    })
}

fn retitle(store: &Store, session: &str, title: &str) -> Write {
    let (store, session) = (store.clone(), name(session));
    let patch: MetadataPatch = serde_json::from_value(json!({ "title": title })).unwrap();
    Box::pin(async move {
        match store.update(session, patch, None).await {
            Ok(entry) => format!("titled {}", entry.metadata.name),
            Err(e) => format!("error: {e:?}"),
        }
    })
}

/// Starts `writes` while holding the writer lock, each once the one before it waits in
/// the queue, then lets them go; returns their answers, in order.
fn one_batch(store: &Store, runtime: &Runtime, writes: Vec<Write>) -> Vec<String> {
    let writer = lock(&store.shared.writer);
    let mut handles = Vec::new();
    for (i, write) in writes.into_iter().enumerate() {
        handles.push(runtime.spawn(write));
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&store.batches.pending).queue.len() <= i {
            assert!(Instant::now() < deadline, "write {i} was never queued");
            std::thread::yield_now();
        }
    }
    drop(writer);
    handles
        .into_iter()
        .map(|h| runtime.block_on(h).unwrap())
        .collect()
}

fn on_disk(dir: &Path, session: &str) -> Value {
    let path = dir.join(session).join(METADATA_FILE);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn pointer_on_disk(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(CURRENT_FILE)).unwrap()).unwrap()
}

/// Each session's status on disk, and the index agreeing with the disk.
fn statuses(store: &Store, dir: &Path, sessions: &[&str]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| {
            let disk = on_disk(dir, s);
            let served = serde_json::to_value(&store.get(&name(s)).unwrap().metadata).unwrap();
            assert_eq!(served, disk, "{s}: the index and the disk differ");
            format!("{s} {}", disk["status"].as_str().unwrap())
        })
        .collect()
}

/// What a change says, with its version relative to `base`.
fn described(change: &Change, base: Version) -> String {
    let what = match &change.subject {
        Subject::Session(entry) => entry.metadata.name.to_string(),
        Subject::Gone(name) => name.to_string(),
        Subject::Current { previous, active } => format!(
            "{} -> {}",
            previous.as_ref().map_or("none", |n| n.as_str()),
            active.as_ref().map_or("none", |n| n.as_str())
        ),
    };
    format!(
        "+{} {:?} {what}",
        change.version.seq - base.seq,
        change.kind
    )
}

fn prepared(runtime: &Runtime, dir: &Path, sessions: &[&str]) -> Store {
    let store = Store::open(dir).unwrap();
    runtime.block_on(async {
        for s in sessions {
            store.create(name(s), None, json!({})).await.unwrap();
        }
        store.switch(name(sessions[0]), None).await.unwrap();
    });
    store
}

#[test]
fn a_batch_answers_each_member_as_if_alone_and_announces_each_at_its_own_version() {
    let _switching = lock(&SWITCHING);
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let sessions = ["a", "b", "c", "d"];
    let store = prepared(&runtime, dir.path(), &sessions);
    let mut changes = store.subscribe();
    let before = store.current_with_version().1;
    // The batch's first member writes at the next version; the second (a patch of c)
    // at the one after, so `/sessions/active` is still at the first's when the fourth
    // member checks its If-Match.
    let first = Version {
        epoch: before.epoch,
        seq: store.version().seq + 1,
    };

    let answers = one_batch(
        &store,
        &runtime,
        vec![
            switch(&store, "b", None),
            retitle(&store, "c", "third"),
            switch(&store, "c", Some(IfMatch::Versions(vec![before]))),
            switch(&store, "c", Some(IfMatch::Versions(vec![first]))),
            switch(&store, "d", None),
            switch(&store, "d", None),
        ],
    );

    assert_eq!(answers[0], "a -> b changed");
    assert_eq!(answers[1], "titled c");
    assert!(
        answers[2].starts_with("error: PreconditionFailed"),
        "{answers:?}"
    );
    assert_eq!(answers[3], "b -> c changed");
    assert_eq!(answers[4], "c -> d changed");
    assert_eq!(answers[5], "none -> d unchanged");
    let announced: Vec<String> = std::iter::from_fn(|| changes.try_recv().ok())
        .map(|c| described(&c, first))
        .collect();
    assert_eq!(
        announced,
        [
            "+0 CurrentChanged a -> b",
            "+0 Updated a",
            "+0 Updated b",
            "+1 Updated c",
            "+2 CurrentChanged b -> c",
            "+2 Updated b",
            "+2 Updated c",
            "+3 CurrentChanged c -> d",
            "+3 Updated c",
            "+3 Updated d",
        ]
    );
    assert_eq!(store.version().seq, first.seq + 3);
    assert_eq!(
        statuses(&store, dir.path(), &sessions),
        ["a suspended", "b suspended", "c suspended", "d active"]
    );
    assert_eq!(on_disk(dir.path(), "c")["title"], "third");
    // On disk the switch is from the session current before the batch: a crash before
    // the metadata would have suspended `a`, which is what was active then.
    let pointer = pointer_on_disk(dir.path());
    assert_eq!(
        (&pointer["name"], &pointer["previous"]),
        (&json!("d"), &json!("a"))
    );

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.current().unwrap().metadata.name, name("d"));
    assert_eq!(
        statuses(&store, dir.path(), &sessions),
        ["a suspended", "b suspended", "c suspended", "d active"]
    );
}

/// The batch's pointer is durable, then its metadata cannot be written: no member is
/// acknowledged, what the index serves is what the disk holds (the committed switch,
/// finished), and so is what the next start serves.
#[cfg(feature = "failpoints")]
#[test]
fn a_batch_whose_files_cannot_be_written_acknowledges_none_of_its_members() {
    let _switching = lock(&SWITCHING);
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let sessions = ["a", "b", "c"];
    let store = prepared(&runtime, dir.path(), &sessions);
    let mut changes = store.subscribe();
    // The hit is this batch's: see `SWITCHING`.
    crate::store::failpoint::arm("switch-halfway=eio@1");

    let answers = one_batch(
        &store,
        &runtime,
        vec![switch(&store, "b", None), switch(&store, "c", None)],
    );

    for answer in &answers {
        assert!(answer.starts_with("error: Unavailable"), "{answers:?}");
    }
    // The pointer names the batch's last target and the session current before it:
    // the resync finished that switch; b, passed through, was never written.
    assert_eq!(store.current().unwrap().metadata.name, name("c"));
    assert_eq!(
        statuses(&store, dir.path(), &sessions),
        ["a suspended", "b idle", "c active"]
    );
    let announced: Vec<String> = std::iter::from_fn(|| changes.try_recv().ok())
        .map(|c| described(&c, c.version))
        .collect();
    assert_eq!(
        announced,
        ["+0 CurrentChanged a -> c", "+0 Updated a", "+0 Updated c"],
        "only what reached the disk is announced"
    );
    assert!(store.health().write_problem.is_some());
    assert_eq!(
        runtime.block_on(switch(&store, "b", None)),
        "c -> b changed"
    );
    assert!(store.health().write_problem.is_none());

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.current().unwrap().metadata.name, name("b"));
    assert_eq!(
        statuses(&store, dir.path(), &sessions),
        ["a suspended", "b active", "c suspended"]
    );
}

/// A write whose caller gave up (503) while it waited in the queue never starts, even
/// though a batch runs it in company later.
#[test]
fn a_queued_write_whose_caller_gave_up_never_starts() {
    let _switching = lock(&SWITCHING);
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let store = prepared(&runtime, dir.path(), &["a", "b"]);
    drop(store);
    let options = crate::store::Options {
        write_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut changes = store.subscribe();

    let writer = lock(&store.shared.writer);
    let answer = runtime.block_on(switch(&store, "b", None));
    assert!(
        answer.starts_with("error: Stalled { started: false"),
        "{answer}"
    );
    // The next write leads a batch with the abandoned one still queued.
    assert_eq!(lock(&store.batches.pending).queue.len(), 1);
    drop(writer);
    assert_eq!(
        runtime.block_on(retitle(&store, "a", "still current")),
        "titled a"
    );

    assert_eq!(store.current().unwrap().metadata.name, name("a"));
    assert_eq!(
        statuses(&store, dir.path(), &["a", "b"]),
        ["a active", "b idle"]
    );
    let announced: Vec<String> = std::iter::from_fn(|| changes.try_recv().ok())
        .map(|c| described(&c, c.version))
        .collect();
    assert_eq!(announced, ["+0 Updated a"]);
}

#[test]
fn the_workers_answer_each_job_in_order_and_a_job_that_panics_fails_alone() {
    let workers = super::Workers::start();
    for _ in 0..3 {
        let jobs: Vec<super::Job<usize>> = (0..7)
            .map(|i| -> super::Job<usize> {
                Box::new(move || match i {
                    4 => panic!("job {i} panics"),
                    5 => Err(std::io::Error::other("job 5 fails")),
                    _ => Ok(i * 10),
                })
            })
            .collect();
        let results: Vec<String> = workers
            .run(jobs)
            .into_iter()
            .map(|r| match r {
                Ok(n) => n.to_string(),
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(
            results,
            [
                "0",
                "10",
                "20",
                "30",
                "a store write panicked",
                "job 5 fails",
                "60"
            ]
        );
    }
    assert!(workers.run(Vec::<super::Job<()>>::new()).is_empty());
}
