//! A hostile tree (SPEC §6, STYLE "A hostile tree"): a shell runs in every session
//! directory, so whatever the service did not just write itself may be a symlink, a
//! FIFO or a huge file. Each test plants one, runs the real binary, and checks its
//! answers, that a directory outside the service's two is unchanged byte for byte, and
//! that the secret in there is in no answer. Then the answers a broken storage gets: a
//! second writer, a read-only or vanished directory, an unreadable file.
//!
//! Every request is bounded in time: a hang fails the test instead of stalling it.

use crate::helpers::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// How long a stop may take (in-flight requests have at most SHUTDOWN_GRACE).
const EXIT_TIMEOUT: Duration = Duration::from_secs(25);
const GIB: u64 = 1 << 30;
const CONFLICT: StatusCode = StatusCode::CONFLICT;
const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

// ---- Temp names, planted after start (start-up sweeps them).

/// Session `a`, a symlink at `temp` (under the sessions dir) to an outside file, then
/// the write: answered 200, nothing outside changed, and `check` on what it wrote.
async fn write_past_a_symlinked_temp_name(
    temp: &str,
    (method, path, body): (Method, &str, Value),
    check: impl FnOnce(&Path, &Answer) -> Result<(), String>,
) {
    let dirs = Dirs::new();
    let outside = Outside::new();
    let target = outside.file("target", SECRET);
    let before = outside.snapshot();
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    plant_symlink(&dirs.sessions().join(temp), &target);

    let answer = probe.ask(method, path, Some(body)).await;
    probe.expect_status(&answer, StatusCode::OK);
    probe.expect_ok(outside.unchanged_since(&before));
    probe.expect_ok(check(&dirs.sessions(), &answer));
    probe.finish().await;
}

#[tokio::test]
async fn a_symlink_at_the_metadata_temp_name_is_not_followed() {
    let patch = (Method::PATCH, "/sessions/a", json!({ "pid": 4242 }));
    write_past_a_symlinked_temp_name("a/.tmp-metadata.json", patch, |sessions, _| {
        let metadata = regular_json(&sessions.join("a/metadata.json"))?;
        if metadata["pid"] == 4242 {
            Ok(())
        } else {
            Err(format!("metadata.json after the PATCH: {metadata}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_symlink_at_the_pending_persona_temp_name_is_not_followed() {
    let put = (Method::PUT, "/sessions/a/persona", custom_persona());
    write_past_a_symlinked_temp_name("a/.tmp-.pending-persona.json", put, |sessions, answer| {
        let persona = regular_json(&sessions.join("a/persona.json"))?;
        if persona == answer.body && persona["name"] == custom_persona()["name"] {
            Ok(())
        } else {
            Err(format!("persona.json after the PUT: {persona}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_symlink_at_the_current_pointer_temp_name_is_not_followed() {
    let put = (Method::PUT, "/sessions/active", json!({ "name": "a" }));
    write_past_a_symlinked_temp_name(".tmp-.current.json", put, |sessions, _| {
        regular_json(&sessions.join(".current.json")).map(drop)
    })
    .await;
}

#[tokio::test]
async fn a_fifo_at_a_temp_name_blocks_neither_a_write_nor_the_shutdown() {
    let dirs = Dirs::new();
    let mut server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    plant_fifo(&dirs.sessions().join("a/.tmp-metadata.json"));

    let answer = probe
        .ask(Method::PATCH, "/sessions/a", Some(json!({ "pid": 4242 })))
        .await;
    probe.expect_status(&answer, StatusCode::OK);
    probe.finish().await;
    stop_gracefully(&mut server, EXIT_TIMEOUT);
}

// ---- Symlinks in place of the tree's own entries.

#[tokio::test]
async fn a_session_directory_that_is_a_symlink_is_skipped_and_never_written() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    let evil = outside.session("evil", "evil");
    let before = outside.snapshot();
    std::fs::create_dir_all(dirs.sessions()).unwrap();
    plant_symlink(&dirs.sessions().join("evil"), &evil);
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);

    let list = probe.ask(Method::GET, "/sessions", None).await;
    let listed = lists(&list.body, "name", "evil");
    probe.expect(!listed, format!("GET /sessions lists it: {}", list.body));
    let answer = probe.ask(Method::GET, "/sessions/evil", None).await;
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &["symlink"]);
    probe.expect_skipped("evil", &["symlink"]).await;
    let (patch, switch) = (json!({ "pid": 4242 }), json!({ "name": "evil" }));
    for (method, path, body) in [
        (Method::GET, "/sessions/evil/persona", None),
        (Method::PATCH, "/sessions/evil", Some(patch)),
        (Method::PUT, "/sessions/active", Some(switch)),
        (Method::DELETE, "/sessions/evil", None),
    ] {
        let answer = probe.ask(method, path, body).await;
        probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &[]);
    }
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn a_session_directory_swapped_for_a_symlink_while_serving_is_not_written() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("s1").await;
    let copy = outside.path().join("s1-copy");
    std::fs::rename(dirs.sessions().join("s1"), &copy).unwrap();
    plant_symlink(&dirs.sessions().join("s1"), &copy);
    let before = outside.snapshot();

    let answer = probe
        .ask(Method::PATCH, "/sessions/s1", Some(json!({ "pid": 4242 })))
        .await;
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &[]);
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn a_metadata_file_that_is_a_symlink_is_skipped() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    let evil = outside.session("evil", "evil");
    let before = outside.snapshot();
    write_python_session(&dirs.sessions(), "evil", &json!({}));
    plant_symlink(
        &dirs.sessions().join("evil/metadata.json"),
        &evil.join("metadata.json"),
    );
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);

    let answer = probe.ask(Method::GET, "/sessions/evil", None).await;
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &["symlink"]);
    probe.expect_skipped("evil", &["symlink"]).await;
    probe.ask(Method::GET, "/sessions", None).await;
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn a_session_persona_that_is_a_symlink_is_refused_unread() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    let target = outside.persona("persona.json");
    let before = outside.snapshot();
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    plant_symlink(&dirs.sessions().join("a/persona.json"), &target);

    let answer = probe.ask(Method::GET, "/sessions/a/persona", None).await;
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &["symlink"]);
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn a_library_persona_that_is_a_symlink_is_skipped() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    let target = outside.persona("persona.json");
    let before = outside.snapshot();
    // A library that is not empty, so that nothing is seeded around the planted file.
    std::fs::create_dir_all(dirs.personas()).unwrap();
    std::fs::write(
        dirs.personas().join("default.json"),
        shipped_persona_text("default"),
    )
    .unwrap();
    plant_symlink(&dirs.personas().join("evil.json"), &target);
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);

    let answer = probe.ask(Method::GET, "/personas/evil", None).await;
    probe.expect_problem(&answer, StatusCode::NOT_FOUND, "not-found", &[]);
    let library = probe.ask(Method::GET, "/personas", None).await;
    let listed = lists(&library.body, "key", "evil");
    probe.expect(!listed, format!("GET /personas lists it: {}", library.body));
    probe.expect_skipped("evil.json", &["symlink"]).await;
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn an_archive_that_is_a_symlink_makes_a_delete_unavailable() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    outside.file("archive/kept", SECRET);
    let before = outside.snapshot();
    std::fs::create_dir_all(dirs.sessions()).unwrap();
    plant_symlink(
        &dirs.sessions().join(".archive"),
        &outside.path().join("archive"),
    );
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;

    let answer = probe.ask(Method::DELETE, "/sessions/a", None).await;
    probe.expect_problem(&answer, UNAVAILABLE, "unavailable", &[".archive"]);
    let still = probe.ask(Method::GET, "/sessions/a", None).await;
    probe.expect_status(&still, StatusCode::OK);
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn a_lock_file_that_is_a_symlink_is_replaced_not_followed() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    let target = outside.file("lock", SECRET);
    let before = outside.snapshot();
    std::fs::create_dir_all(dirs.sessions()).unwrap();
    plant_symlink(&dirs.sessions().join(".lock"), &target);
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);

    probe.expect_ok(outside.unchanged_since(&before));
    let lock = dirs.sessions().join(".lock");
    let replaced = std::fs::symlink_metadata(&lock).is_ok_and(|m| m.file_type().is_file());
    probe.expect(replaced, ".lock is not a regular file now");
    probe.finish().await;
}

// ---- FIFOs and huge files where a small file should be.

/// The binary on `dirs` with its address space capped far above what a healthy one
/// reserves and far below what reading a huge file whole takes: so that a read without
/// a cap fails inside it, not by taking the memory of the machine it shares.
fn start_capped(dirs: &Dirs) -> BinaryServer {
    let cap = 768 << 20;
    BinaryServer::start(&mut binary_command_capped(
        &dirs.sessions(),
        &dirs.personas(),
        cap,
    ))
}

#[tokio::test]
async fn a_fifo_as_metadata_at_start_is_skipped_without_blocking_the_start() {
    let dirs = Dirs::new();
    write_python_session(&dirs.sessions(), "piped", &json!({}));
    plant_fifo(&dirs.sessions().join("piped/metadata.json"));
    let mut server = start_binary(&dirs);
    let mut probe = Probe::new(&server);

    let answer = probe.ask(Method::GET, "/sessions/piped", None).await;
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &[]);
    probe
        .expect_skipped("piped", &["fifo", "not a regular file"])
        .await;
    probe.finish().await;
    stop_gracefully(&mut server, EXIT_TIMEOUT);
}

#[tokio::test]
async fn a_fifo_as_a_session_persona_is_refused_at_once_to_many_readers() {
    let dirs = Dirs::new();
    let mut server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("piped").await;
    plant_fifo(&dirs.sessions().join("piped/persona.json"));

    let answers = probe.get_concurrently("/sessions/piped/persona", 64).await;
    probe.expect_all_problems(&answers, CONFLICT, "corrupt-entry", &[]);
    probe.health().await;
    probe.finish().await;
    stop_gracefully(&mut server, EXIT_TIMEOUT);
}

#[tokio::test]
async fn a_huge_session_persona_is_refused_without_being_read() {
    let dirs = Dirs::new();
    let server = start_capped(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("big").await;
    plant_sparse_file(&dirs.sessions().join("big/persona.json"), GIB);

    let answers = probe.get_concurrently("/sessions/big/persona", 6).await;
    probe.expect_all_problems(&answers, CONFLICT, "corrupt-entry", &["KiB"]);
    let peak = peak_rss_kib(server.process.pid());
    probe.expect(
        peak < 100 * 1024,
        format!("peak RSS {peak} KiB, over 100 MiB"),
    );
    probe.finish().await;
}

#[tokio::test]
async fn a_session_persona_that_is_a_symlink_to_dev_zero_is_refused_at_once() {
    let dirs = Dirs::new();
    let server = start_capped(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("zero").await;
    plant_symlink(
        &dirs.sessions().join("zero/persona.json"),
        Path::new("/dev/zero"),
    );

    let read = probe.ask(Method::GET, "/sessions/zero/persona", None);
    let answer = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no answer within 5 s");
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &[]);
    probe.finish().await;
}

#[tokio::test]
async fn a_huge_metadata_file_at_start_is_skipped_for_its_size() {
    let dirs = Dirs::new();
    write_python_session(&dirs.sessions(), "big", &json!({}));
    plant_sparse_file(&dirs.sessions().join("big/metadata.json"), GIB);
    let server = start_capped(&dirs);
    let mut probe = Probe::new(&server);

    let answer = probe.ask(Method::GET, "/sessions/big", None).await;
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &[]);
    probe.expect_skipped("big", &["KiB"]).await;
    probe.finish().await;
}

// ---- A second writer.

#[tokio::test]
async fn a_second_instance_is_refused_even_when_the_lock_file_was_deleted() {
    let dirs = Dirs::new();
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    std::fs::remove_file(dirs.sessions().join(".lock")).unwrap();

    let mut second = BinaryProcess::spawn(&mut binary_command(&dirs.sessions(), &dirs.personas()));
    match second.wait_for_line("listening on", BINARY_START_TIMEOUT) {
        Ok(_) => probe.expect(false, "a second instance serves the same directory"),
        Err(_) => {
            let status = second.wait_exit(Duration::from_secs(1));
            let stderr = second.log();
            let refused = !status.success() && stderr.contains("locked");
            probe.expect(refused, format!("the second instance: {status}: {stderr}"));
        }
    }
    drop(second);
    let answer = probe
        .ask(Method::PATCH, "/sessions/a", Some(json!({ "pid": 4242 })))
        .await;
    probe.expect_status(&answer, StatusCode::OK);
    probe.finish().await;
}

#[tokio::test]
async fn an_instance_whose_directory_was_replaced_stops_writing_to_that_path() {
    let dirs = Dirs::new();
    let first = start_binary(&dirs);
    let mut old = Probe::new(&first);
    old.created("a").await;
    old.created("a2").await;
    old.switched("a").await;
    std::fs::rename(dirs.sessions(), dirs.root.path().join("moved-away")).unwrap();
    std::fs::create_dir(dirs.sessions()).unwrap();
    let second = start_binary(&dirs);
    let mut new = Probe::new(&second);
    new.created("b").await;
    new.switched("b").await;

    // Switching to the current session changes nothing, so `a2`: a write that must
    // reach the disk.
    let switch = json!({ "name": "a2" });
    let answer = old.ask(Method::PUT, "/sessions/active", Some(switch)).await;
    old.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    let create = json!({ "name": "c" });
    let answer = old.ask(Method::POST, "/sessions", Some(create)).await;
    old.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    let health = old.ask(Method::GET, "/healthz", None).await;
    old.expect_status(&health, UNAVAILABLE);

    let on_disk = session_dirs(&dirs.sessions());
    old.expect(
        on_disk == ["b"],
        format!("sessions in the new directory: {on_disk:?}"),
    );
    let b = read_json(&dirs.sessions().join("b/metadata.json"));
    old.expect(b["status"] == "active", format!("b on disk: {b}"));
    let current = read_json(&dirs.sessions().join(".current.json"));
    old.expect(current["name"] == "b", format!(".current.json: {current}"));
    let active = new.ask(Method::GET, "/sessions/active", None).await;
    old.expect(active.body["active"] == "b", format!("{}", active.body));
    new.finish().await;
    old.finish().await;
}

// ---- Storage that fails: 503, not 500.

#[tokio::test]
async fn writes_to_a_read_only_sessions_directory_are_unavailable() {
    if !is_root() {
        println!("SKIPPED: mounting a disk image needs root");
        return;
    }
    let dirs = Dirs::new();
    // Declared before the server, so it is dropped (unmounted) after the server is gone.
    let disk = match Ext4Mount::new(dirs.root.path(), 16 << 20) {
        Ok(disk) => disk,
        Err(reason) => return println!("SKIPPED: cannot mount an ext4 image: {reason}"),
    };
    let sessions = disk.path.join("sessions");
    let server = BinaryServer::start(&mut binary_command(&sessions, &dirs.personas()));
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    probe.created("b").await;
    if let Err(reason) = disk.fail_read_only() {
        return println!("SKIPPED: cannot make the ext4 image read-only: {reason}");
    }

    let create = json!({ "name": "c" });
    let answer = probe.ask(Method::POST, "/sessions", Some(create)).await;
    probe.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    let switch = json!({ "name": "a" });
    let answer = probe
        .ask(Method::PUT, "/sessions/active", Some(switch))
        .await;
    probe.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    let answer = probe.ask(Method::DELETE, "/sessions/b", None).await;
    probe.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    probe.finish().await;
}

#[tokio::test]
async fn writes_after_the_sessions_directory_vanished_are_unavailable() {
    let dirs = Dirs::new();
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    probe.created("b").await;
    std::fs::rename(dirs.sessions(), dirs.root.path().join("moved-away")).unwrap();

    let create = json!({ "name": "c" });
    let answer = probe.ask(Method::POST, "/sessions", Some(create)).await;
    probe.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    let switch = json!({ "name": "a" });
    let answer = probe
        .ask(Method::PUT, "/sessions/active", Some(switch))
        .await;
    probe.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    let answer = probe.ask(Method::DELETE, "/sessions/b", None).await;
    probe.expect_problem(&answer, UNAVAILABLE, "unavailable", &[]);
    probe.finish().await;
}

#[tokio::test]
async fn an_unreadable_session_persona_is_a_corrupt_entry() {
    if !is_root() {
        println!("SKIPPED: running the binary as another user needs root");
        return;
    }
    let dirs = Dirs::new();
    for dir in [dirs.sessions(), dirs.personas()] {
        std::fs::create_dir_all(&dir).unwrap();
        give_to_nobody(&dir);
    }
    std::fs::set_permissions(dirs.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = binary_command_as_nobody(&dirs.sessions(), &dirs.personas());
    let server = BinaryServer::start(&mut command);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    let persona = dirs.sessions().join("a/persona.json");
    std::fs::set_permissions(&persona, std::fs::Permissions::from_mode(0o000)).unwrap();

    let answer = probe.ask(Method::GET, "/sessions/a/persona", None).await;
    probe.expect_problem(&answer, CONFLICT, "corrupt-entry", &[]);
    probe.finish().await;
}

#[tokio::test]
async fn a_switch_away_from_a_session_removed_out_of_band_is_applied() {
    let dirs = Dirs::new();
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    probe.created("b").await;
    probe.switched("a").await;
    std::fs::remove_dir_all(dirs.sessions().join("a")).unwrap();

    let switch = json!({ "name": "b" });
    let answer = probe
        .ask(Method::PUT, "/sessions/active", Some(switch))
        .await;
    probe.expect_status(&answer, StatusCode::OK);
    let expected = json!({ "previous": "a", "active": "b", "changed": true });
    probe.expect(
        answer.body == expected,
        format!("the switch: {}", answer.body),
    );
    let current = probe.ask(Method::GET, "/sessions/active", None).await;
    let applied = current.body["active"] == "b";
    probe.expect(applied, format!("GET /sessions/active: {}", current.body));
    let gone = probe.ask(Method::GET, "/sessions/a", None).await;
    probe.expect_problem(&gone, StatusCode::NOT_FOUND, "not-found", &[]);
    probe.finish().await;
}

// ---- Where the sessions directory is.

#[tokio::test]
async fn a_sessions_dir_that_is_a_regular_file_is_refused_by_name() {
    let dirs = Dirs::new();
    let file = dirs.root.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let mut command = binary_command(&file, &dirs.personas());
    let (status, _, stderr) = binary_run(&mut command, Duration::from_secs(10));
    assert!(!status.success(), "{status}: {stderr}");
    let named = stderr.contains(&file.display().to_string());
    assert!(named, "stderr does not name {}: {stderr}", file.display());
}

#[tokio::test]
async fn a_relative_sessions_dir_that_does_not_exist_is_created_in_the_cwd() {
    let dirs = Dirs::new();
    let cwd = dirs.root.path();
    let mut command = binary_command_in_home(cwd);
    command.args(["--listen", "127.0.0.1:0", "--sessions-dir", "x/y/z"]);
    command.args(["--personas-dir", "p"]);
    let server = BinaryServer::start(&mut command);
    let mut probe = Probe::new(&server);
    probe.created("one").await;
    probe.expect(cwd.join("x/y/z/one").is_dir(), "no x/y/z/one in the cwd");
    probe.finish().await;
}
