//! A session's persona is kept in memory once read, while its file is unchanged: the
//! CLI's shell may rewrite, replace or swap that file at any moment, and every answer
//! must say what the file says now (or refuse it, as an unkept read would).

use crate::helpers::*;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Waits until the file last changed more than the service's settling time (one
/// second) ago, so that the next read of it is kept: a file that changed just now is
/// never kept, which would leave the cache untested.
fn settle(file: &Path) {
    let changed = |file: &Path| {
        let meta = std::fs::symlink_metadata(file).unwrap();
        Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now > changed(file) + Duration::from_millis(1100) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The persona answered twice (the second from memory once settled), equal to `want`.
async fn answers_twice(probe: &mut Probe<'_>, want: &Value) {
    for _ in 0..2 {
        let answer = probe.ask(Method::GET, "/sessions/a/persona", None).await;
        probe.expect_status(&answer, StatusCode::OK);
        probe.expect(
            answer.body == *want,
            format!("the persona answered is {}, not {want}", answer.body),
        );
    }
}

#[tokio::test]
async fn a_kept_persona_follows_every_change_of_its_file() {
    let dirs = Dirs::new();
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    let file = dirs.sessions().join("a/persona.json");
    let on_disk = |file: &Path| serde_json::from_slice::<Value>(&std::fs::read(file).unwrap());

    settle(&file);
    answers_twice(&mut probe, &on_disk(&file).unwrap()).await;

    // Rewritten in place, the same length: only its change time tells.
    let text = std::fs::read_to_string(&file).unwrap();
    let same_length = text
        .replacen("\"name\": \"", "\"name\": \"X", 1)
        .replacen(' ', "", 1);
    assert_eq!(same_length.len(), text.len());
    std::fs::write(&file, &same_length).unwrap();
    answers_twice(&mut probe, &on_disk(&file).unwrap()).await;

    // Replaced by a rename, as an editor saves.
    settle(&file);
    answers_twice(&mut probe, &on_disk(&file).unwrap()).await;
    let mut other = custom_persona();
    other["name"] = json!("Replaced");
    let temp = dirs.sessions().join("a/.edit");
    std::fs::write(&temp, other.to_string()).unwrap();
    std::fs::rename(&temp, &file).unwrap();
    answers_twice(&mut probe, &other).await;

    // The whole directory moved away and another put in its place.
    settle(&file);
    answers_twice(&mut probe, &other).await;
    let session = dirs.sessions().join("a");
    let moved = tempfile::tempdir().unwrap();
    std::fs::rename(&session, moved.path().join("a")).unwrap();
    std::fs::create_dir(&session).unwrap();
    std::fs::copy(
        moved.path().join("a/metadata.json"),
        session.join("metadata.json"),
    )
    .unwrap();
    let mut third = custom_persona();
    third["name"] = json!("Put in place");
    std::fs::write(&file, third.to_string()).unwrap();
    settle(&file);
    answers_twice(&mut probe, &third).await;

    // Swapped for a symlink, then a FIFO: refused as if never kept.
    let outside = Outside::new();
    plant_symlink(&file, &outside.persona("persona.json"));
    let answer = probe.ask(Method::GET, "/sessions/a/persona", None).await;
    probe.expect_problem(&answer, StatusCode::CONFLICT, "corrupt-entry", &["symlink"]);
    let launch = probe.ask(Method::GET, "/sessions/a/launch", None).await;
    probe.expect_problem(&launch, StatusCode::CONFLICT, "corrupt-entry", &["symlink"]);
    plant_fifo(&file);
    let answer = probe.ask(Method::GET, "/sessions/a/persona", None).await;
    probe.expect_problem(&answer, StatusCode::CONFLICT, "corrupt-entry", &["FIFO"]);
    probe.finish().await;
}
