//! The archive (`/archive`): deleted sessions listed, read, restored and removed for
//! good, purged by age at start; pages that neither skip nor repeat while sessions are
//! archived; hostile entries under `.archive` listed with their problem, never followed
//! and never quoted; ids that are not archive ids; and all of it across restarts.

use crate::helpers::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

const CONVERSATION: &str = "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20";
const RESTORE_FILE: &str = ".restore-metadata.json";
const CONFLICT: StatusCode = StatusCode::CONFLICT;
const GIB: u64 = 1 << 30;

fn init_message() -> Value {
    json!({"type": "system", "subtype": "init", "session_id": CONVERSATION})
}

/// `GET /archive` with `query`, asserted a JSON 200.
async fn archive(app: &TestApp, query: &str) -> Value {
    assert_json(app.get(&format!("/archive{query}")).await, StatusCode::OK).await
}

/// The `id` of each item of a list of archived sessions, in order.
fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Deletes (archives) session `name`, asserted 204; returns its archive id.
async fn archived(app: &TestApp, name: &str) -> String {
    let before = ids(&archive(app, "").await);
    let response = app.delete(&format!("/sessions/{name}")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "delete {name}");
    let mut new: Vec<String> = ids(&archive(app, "").await)
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "one new archived session: {new:?}");
    new.remove(0)
}

async fn restore(app: &TestApp, id: &str, body: Option<Value>) -> Response {
    let request = app.request(Method::POST, &format!("/archive/{id}/restore"));
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
    .send()
    .await
    .unwrap()
}

fn archive_dir(app: &TestApp) -> PathBuf {
    app.sessions_dir.join(".archive")
}

/// The sizes of the regular files under `dir`, each counted once, symlinks not followed.
fn files_size(dir: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    if meta.is_dir() {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| files_size(&e.unwrap().path()))
            .sum()
    } else if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

/// The instant an archive id names, as the service writes timestamps.
fn archived_at(id: &str) -> String {
    let (_, compact) = id.split_once('.').unwrap();
    let at = chrono::NaiveDateTime::parse_from_str(compact, "%Y%m%dT%H%M%S%.fZ").unwrap();
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The item `GET /archive` gives for the fit archived session `id`, whose metadata on
/// disk is `metadata`.
fn fit_item(app: &TestApp, id: &str, metadata: &Value, process: &str) -> Value {
    let dir = archive_dir(app).join(id);
    json!({
        "id": id,
        "name": metadata["name"],
        "archived": archived_at(id),
        "dir": dir.to_str().unwrap(),
        "size_bytes": files_size(&dir),
        "size_complete": true,
        "conversation": metadata.get("conversation").cloned().unwrap_or(Value::Null),
        "persona": metadata["persona"],
        "pid": metadata["pid"],
        "process": process,
        "problem": null,
    })
}

/// Kills the child process when dropped, so that a failed test leaves none behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_deleted_session_is_listed_read_and_restored_whole() {
    let app = TestApp::fresh().await;
    app.created("keep").await;
    let created = app.create_session("work", Some(json!("brainstorm"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    app.switched("work").await;
    app.patched("work", &json!({ "pid": NO_SUCH_PID })).await;
    let claude = app.session_dir("work").join(".claude/projects");
    std::fs::create_dir_all(&claude).unwrap();
    std::fs::write(claude.join("history.jsonl"), vec![b'x'; 1000]).unwrap();
    let before = app.metadata_on_disk("work");
    let files = ["metadata.json", "persona.json"].map(|f| {
        std::fs::metadata(app.session_dir("work").join(f))
            .unwrap()
            .len()
    });

    let id = archived(&app, "work").await;
    assert!(ArchiveIdForm::matches(&id), "{id}");
    let item = fit_item(&app, &id, &before, "gone");
    assert_eq!(item["size_bytes"], files[0] + files[1] + 1000);
    assert_eq!(item["pid"], NO_SUCH_PID);
    assert_eq!(item["persona"], "brainstorm");
    assert_eq!(archive(&app, "").await, json!([item]));
    let one = assert_json(app.get(&format!("/archive/{id}")).await, StatusCode::OK).await;
    assert_eq!(one, item);
    assert_eq!(
        app.head(&format!("/archive/{id}")).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.current().await["active"], Value::Null);

    let deleted = chrono::Utc::now();
    let response = restore(&app, &id, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::LOCATION], "/sessions/work");
    assert!(response.headers().contains_key(header::ETAG));
    let restored = without_live_fields(response.json().await.unwrap());
    let mut want = before.clone();
    let fields = want.as_object_mut().unwrap();
    fields.remove("pid_recorded");
    fields.insert("status".into(), json!("idle"));
    fields.insert("pid".into(), Value::Null);
    fields.insert("last_active".into(), restored["last_active"].clone());
    assert_eq!(restored, with_dir(&want, &app.session_dir("work")));
    let last_active = assert_timestamp(&restored["last_active"]);
    assert!(last_active >= deleted, "last_active is the restore's time");
    assert_eq!(app.metadata_on_disk("work"), want);
    assert_eq!(
        std::fs::read(claude.join("history.jsonl")).unwrap(),
        vec![b'x'; 1000]
    );
    assert!(!app.session_dir("work").join(RESTORE_FILE).exists());
    assert_eq!(app.session("work").await, restored);
    assert_eq!(archive(&app, "").await, json!([]));
    assert!(dir_names(&archive_dir(&app)).is_empty());

    for response in [
        app.get(&format!("/archive/{id}")).await,
        restore(&app, &id, None).await,
        app.delete(&format!("/archive/{id}")).await,
    ] {
        assert_problem_mentioning(
            response,
            StatusCode::NOT_FOUND,
            "not-found",
            "GET /archive",
            &id,
        )
        .await;
    }
    app.stop().await;
}

/// The form of an archive id, as the service writes it.
struct ArchiveIdForm;

impl ArchiveIdForm {
    fn matches(id: &str) -> bool {
        let Some((name, at)) = id.split_once('.') else {
            return false;
        };
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && at.len() == 23
            && chrono::NaiveDateTime::parse_from_str(at, "%Y%m%dT%H%M%S%.fZ").is_ok()
    }
}

#[tokio::test]
async fn a_restore_onto_a_taken_name_is_refused_and_as_gives_it_another() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    let id = archived(&app, "work").await;
    let newer = app.created("work").await;

    let refused = restore(&app, &id, None).await;
    let problem = assert_problem(refused, CONFLICT, "exists").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("{\"as\":"), "{detail}");
    assert_eq!(app.session("work").await, newer);
    assert_eq!(ids(&archive(&app, "").await), [id.as_str()]);
    assert!(!archive_dir(&app).join(&id).join(RESTORE_FILE).exists());

    for body in [
        json!({"as": "active"}),
        json!({"as": "a/b"}),
        json!({"as": ""}),
        json!({"as": 7}),
        json!({"name": "other"}),
        json!([1]),
    ] {
        let response = restore(&app, &id, Some(body.clone())).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
    }
    let malformed = app
        .request(Method::POST, &format!("/archive/{id}/restore"))
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"as\":")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST, "malformed-json").await;
    let text = app
        .request(Method::POST, &format!("/archive/{id}/restore"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(
        text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    // An explicit null is no other name: the name is still taken.
    let null = restore(&app, &id, Some(json!({"as": null}))).await;
    assert_problem(null, CONFLICT, "exists").await;

    let response = restore(&app, &id, Some(json!({"as": "work-old"}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::LOCATION], "/sessions/work-old");
    let restored = without_live_fields(response.json().await.unwrap());
    assert_eq!(restored["name"], "work-old");
    assert_eq!(
        restored["dir"],
        app.session_dir("work-old").to_str().unwrap()
    );
    assert_eq!(app.metadata_on_disk("work-old")["name"], "work-old");
    assert_eq!(app.session("work-old").await, restored);
    assert_eq!(app.sessions_on_disk(), ["work", "work-old"]);
    assert_eq!(archive(&app, "").await, json!([]));
    assert_eq!(app.health().await["skipped"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_session_with_a_conversation_comes_back_only_under_its_own_name() {
    let app = TestApp::fresh().await;
    app.created("talk").await;
    let reported = app
        .send_json(
            Method::POST,
            "/sessions/talk/conversations",
            &init_message(),
        )
        .await;
    assert_eq!(reported.status(), StatusCode::CREATED);
    let id = archived(&app, "talk").await;
    let item = assert_json(app.get(&format!("/archive/{id}")).await, StatusCode::OK).await;
    assert_eq!(item["conversation"], CONVERSATION);

    let refused = restore(&app, &id, Some(json!({"as": "talk-2"}))).await;
    let problem = assert_problem(refused, CONFLICT, "conversation-bound").await;
    let detail = problem["detail"].as_str().unwrap();
    for needle in [CONVERSATION, "resumed", "own name", "'talk'"] {
        assert!(detail.contains(needle), "{needle}: {detail}");
    }
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    assert_eq!(ids(&archive(&app, "").await), [id.as_str()]);
    assert!(!archive_dir(&app).join(&id).join(RESTORE_FILE).exists());

    // Its own name, asked for or not, is fine.
    let response = restore(&app, &id, Some(json!({"as": "talk"}))).await;
    let restored = assert_json(response, StatusCode::CREATED).await;
    assert_eq!(restored["conversation"], CONVERSATION);
    assert_eq!(restored["conversations"][0]["id"], CONVERSATION);
    app.stop().await;
}

#[tokio::test]
async fn the_same_name_archived_several_times_is_listed_newest_first() {
    let app = TestApp::fresh().await;
    let mut archived_ids = Vec::new();
    for persona in ["default", "brainstorm", "planner"] {
        let response = app.create_session("work", Some(json!(persona))).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        archived_ids.push(archived(&app, "work").await);
    }
    let list = archive(&app, "").await;
    let newest_first: Vec<String> = archived_ids.iter().rev().cloned().collect();
    assert_eq!(ids(&list), newest_first);
    let items = list.as_array().unwrap();
    assert!(items.iter().all(|item| item["name"] == "work"));
    let personas: Vec<&Value> = items.iter().map(|item| &item["persona"]).collect();
    assert_eq!(
        personas,
        [&json!("planner"), &json!("brainstorm"), &json!("default")]
    );
    let times: Vec<&str> = items
        .iter()
        .map(|i| i["archived"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");

    let middle = &archived_ids[1];
    let restored = assert_json(restore(&app, middle, None).await, StatusCode::CREATED).await;
    assert_eq!(restored["persona"], "brainstorm");
    let rest = [archived_ids[2].clone(), archived_ids[0].clone()];
    assert_eq!(ids(&archive(&app, "").await), rest);
    let taken = restore(&app, &archived_ids[0], None).await;
    assert_problem(taken, CONFLICT, "exists").await;
    app.stop().await;
}

/// `levels` directories nested under `top`, the deepest holding a file.
fn nest(top: &Path, levels: usize) {
    let mut path = top.to_path_buf();
    for _ in 1..levels {
        path.push("d");
    }
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("f"), b"deep").unwrap();
}

#[tokio::test]
async fn a_hard_delete_removes_the_whole_tree_but_never_while_its_process_lives() {
    let app = TestApp::fresh().await;
    let outside = Outside::new();
    outside.file("kept", SECRET);
    let before = outside.snapshot();
    app.created("s").await;
    let child = Child(
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    app.patched("s", &json!({ "pid": pid })).await;
    nest(&app.session_dir("s").join(".claude/deep"), 100);
    plant_symlink(
        &app.session_dir("s").join(".claude/outside"),
        outside.path(),
    );
    let id = archived(&app, "s").await;

    let item = assert_json(app.get(&format!("/archive/{id}")).await, StatusCode::OK).await;
    assert_eq!(
        (&item["process"], &item["pid"]),
        (&json!("alive"), &json!(pid))
    );
    assert_eq!(
        item["size_complete"], false,
        "deeper than {ARCHIVE_SIZE_DEPTH}"
    );
    for response in [
        app.delete(&format!("/archive/{id}")).await,
        restore(&app, &id, None).await,
    ] {
        let problem = assert_problem(response, CONFLICT, "process-alive").await;
        assert_eq!(problem["pid"], pid);
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&pid.to_string()) && detail.contains("stop it"),
            "{detail}"
        );
    }
    assert_eq!(ids(&archive(&app, "").await), [id.as_str()]);

    drop(child);
    let item = assert_json(app.get(&format!("/archive/{id}")).await, StatusCode::OK).await;
    assert_eq!(item["process"], "gone");
    let response = app.delete(&format!("/archive/{id}")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        dir_names(&archive_dir(&app)).is_empty(),
        "nothing left, no temp"
    );
    outside.unchanged_since(&before).unwrap();
    let gone = app.delete(&format!("/archive/{id}")).await;
    assert_problem(gone, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(app.health().await["skipped"], json!([]));
    app.stop().await;
}

/// Moves the archived session `id` to an id of the same name archived at `compact`.
fn backdate(app: &TestApp, id: &str, compact: &str) -> String {
    let (name, _) = id.split_once('.').unwrap();
    let old = format!("{name}.{compact}");
    std::fs::rename(archive_dir(app).join(id), archive_dir(app).join(&old)).unwrap();
    old
}

#[tokio::test]
async fn the_purge_removes_what_is_older_than_the_days_kept_at_start() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    for name in ["old", "alive", "recent"] {
        app.created(name).await;
    }
    let own = std::process::id();
    app.patched("alive", &json!({ "pid": own })).await;
    let old = archived(&app, "old").await;
    let old = backdate(&app, &old, "20200101T000000.000000Z");
    let alive = archived(&app, "alive").await;
    let alive = backdate(&app, &alive, "20200101T000000.000001Z");
    let recent = archived(&app, "recent").await;
    std::fs::write(archive_dir(&app).join("notes.txt"), "kept").unwrap();
    assert_eq!(
        ids(&archive(&app, "").await),
        [recent.clone(), alive.clone(), old.clone()]
    );
    app.stop().await;

    let options = Options {
        archive_keep_days: Some(30),
        ..Options::default()
    };
    let app = TestApp::spawn_with(&dirs, options).await;
    // The purge runs in the background from the start: it leaves the list at once,
    // and the disk once its tree is removed, outside the write.
    let mut on_disk = vec![alive.clone(), "notes.txt".to_owned(), recent.clone()];
    on_disk.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids(&archive(&app, "").await).contains(&old) || dir_names(&archive_dir(&app)) != on_disk {
        assert!(Instant::now() < deadline, "{old} was not purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ids(&archive(&app, "").await),
        [recent.clone(), alive.clone()]
    );
    let health = app.health().await;
    let reason = skipped_reason(&health, "notes.txt").unwrap_or_default();
    assert!(reason.contains("not an archived session"), "{health}");
    app.stop().await;
}

/// The target of a `Link: <…>; rel="next"` header, if the answer has one.
fn next_link(response: &Response) -> Option<String> {
    let link = response.headers().get(header::LINK)?.to_str().unwrap();
    assert!(link.ends_with(">; rel=\"next\""), "{link}");
    let target = link.strip_prefix('<')?.split_once('>')?.0;
    Some(target.to_owned())
}

#[tokio::test]
async fn pages_follow_the_link_and_neither_skip_nor_repeat_while_sessions_are_archived() {
    let app = TestApp::fresh().await;
    for i in 0..12 {
        app.created(&format!("s{i}")).await;
        let response = app.delete(&format!("/sessions/s{i}")).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let originals = ids(&archive(&app, "").await);
    assert_eq!(originals.len(), 12);
    assert!(next_link(&app.get("/archive").await).is_none());
    assert!(next_link(&app.get("/archive?limit=12").await).is_none());

    let archiving = async {
        for i in 0..8 {
            app.created(&format!("n{i}")).await;
            let response = app.delete(&format!("/sessions/n{i}")).await;
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
    };
    let paging = async {
        let mut seen = Vec::new();
        let mut next = Some("/archive?limit=5".to_owned());
        while let Some(path) = next.take() {
            assert!(path.starts_with("/archive?limit=5&after=") || seen.is_empty());
            let response = app.get(&path).await;
            assert_eq!(response.status(), StatusCode::OK);
            next = next_link(&response);
            let page = ids(&response.json().await.unwrap());
            assert!(
                page.len() <= 5 && (next.is_none() || page.len() == 5),
                "{page:?}"
            );
            seen.extend(page);
            tokio::task::yield_now().await;
        }
        seen
    };
    let ((), seen) = tokio::join!(archiving, paging);

    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "an entry was repeated: {seen:?}");
    for id in &originals {
        assert!(seen.contains(id), "{id} was skipped: {seen:?}");
    }
    let keys: Vec<(String, &String)> = seen.iter().map(|id| (archived_at(id), id)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    assert_eq!(ids(&archive(&app, "").await).len(), 20);

    let cursor_of_dots: String = "../../etc".bytes().map(|b| format!("{b:02x}")).collect();
    for query in [
        "?limit=0".to_owned(),
        format!("?limit={}", ARCHIVE_PAGE_MAX + 1),
        "?limit=-1".to_owned(),
        "?limit=five".to_owned(),
        "?after=zz".to_owned(),
        format!("?after={cursor_of_dots}"),
        "?after=".to_owned(),
        "?order=asc".to_owned(),
    ] {
        let response = app.get(&format!("/archive{query}")).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;
    }
    let all = archive(&app, &format!("?limit={ARCHIVE_PAGE_MAX}")).await;
    assert_eq!(ids(&all).len(), 20);
    app.stop().await;
}

#[tokio::test]
async fn an_id_that_is_not_an_archive_id_is_400_and_reaches_nothing() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    let id = archived(&app, "work").await;
    let before = snapshot(&app.sessions_dir);
    let long = format!("{}.20261124T212216.123456Z", "a".repeat(51));
    let odd = [
        "..",
        "%2E%2E",
        "..%2F..%2Fetc",
        ".",
        "work",
        "work.",
        ".lock",
        ".archive",
        ".current.json",
        "%00",
        "a%00b.20261124T212216.123456Z",
        "work.20261124T212216.123456Z%2F..",
        "work%2F20261124T212216.123456Z",
        "a.b.c",
        "work.20261124T212216.123456",
        "work.20261124T212216.123456Z.json",
        "active.20261124T212216.123456Z",
        "%FF",
        "%D0%B0.20261124T212216.123456Z",
        ".tmp-removing.0123456789abcdef",
        &long,
    ];
    let host = app.addr.to_string();
    for raw in odd {
        for (method, path) in [
            ("GET", format!("/archive/{raw}")),
            ("DELETE", format!("/archive/{raw}")),
            ("POST", format!("/archive/{raw}/restore")),
        ] {
            let request = raw_http(method, &path, &host, None);
            let response = raw_request(app.addr, &request).await;
            let context = format!("{method} {path}");
            assert_raw_problem(&response, 400, "invalid-archive-id", &context);
        }
    }
    // The form of an id with a date no calendar has: no archived session has it (404),
    // as for an id that is merely unknown; nothing is touched.
    for raw in [
        "work.20260001T000000.000000Z",
        "work.20261124T256161.000000Z",
    ] {
        for (method, path) in [
            ("GET", format!("/archive/{raw}")),
            ("DELETE", format!("/archive/{raw}")),
            ("POST", format!("/archive/{raw}/restore")),
        ] {
            let request = raw_http(method, &path, &host, None);
            let response = raw_request(app.addr, &request).await;
            let context = format!("{method} {path}");
            assert_raw_problem(&response, 404, "not-found", &context);
        }
    }
    assert_eq!(snapshot(&app.sessions_dir), before);
    assert_eq!(ids(&archive(&app, "").await), [id]);
    app.stop().await;
}

#[tokio::test]
async fn the_archive_and_a_restore_survive_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    let created = app.create_session("a", Some(json!("planner"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = archived(&app, "a").await;
    let list = archive(&app, "").await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;
    assert_eq!(archive(&app, "").await, list);
    let restored = assert_json(restore(&app, &id, None).await, StatusCode::CREATED).await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;
    assert_eq!(app.session("a").await, without_live_fields(restored));
    assert_eq!(archive(&app, "").await, json!([]));
    assert_eq!(app.health().await["skipped"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn an_interrupted_restore_is_finished_at_the_next_start() {
    let dirs = Dirs::new();
    let at = "2026-01-02T03:04:05.000006+00:00";
    // Moved back as `b`, its new metadata still beside the old (named `a`).
    let old = python_metadata("a", at, at, "suspended");
    write_python_session(&dirs.sessions(), "b", &old);
    let mut new = python_metadata("b", at, at, "idle");
    new["kept"] = json!("yes");
    write_python_json(&dirs.sessions().join("b").join(RESTORE_FILE), &new);
    // A stray one that names another session is dropped.
    let c = python_metadata("c", at, at, "idle");
    write_python_session(&dirs.sessions(), "c", &c);
    write_python_json(&dirs.sessions().join("c").join(RESTORE_FILE), &new);

    let app = TestApp::spawn(&dirs).await;
    assert_eq!(
        app.session("b").await,
        with_dir(&new, &app.session_dir("b"))
    );
    assert_eq!(app.session("c").await, with_dir(&c, &app.session_dir("c")));
    for name in ["b", "c"] {
        assert!(!app.session_dir(name).join(RESTORE_FILE).exists(), "{name}");
    }
    assert_eq!(app.health().await["skipped"], json!([]));
    app.stop().await;
}

// ---- Hostile entries, through the real binary.

const EVIL: &str = "evil.20260101T000000.000000Z";
const FIFO: &str = "fifo.20260101T000000.000001Z";
const BIG: &str = "big.20260101T000000.000002Z";
const LINKED: &str = "linked.20260101T000000.000003Z";

/// The item of `list` with `id`.
fn item<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|item| item["id"] == id)
}

#[tokio::test]
async fn hostile_entries_in_the_archive_are_listed_with_their_problem_and_never_followed() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    outside.session("evil-dir", "evil");
    outside.file("big", vec![b'x'; 100_000]);
    let archive = dirs.sessions().join(".archive");
    std::fs::create_dir_all(&archive).unwrap();
    plant_symlink(&archive.join(EVIL), &outside.path().join("evil-dir"));
    std::fs::create_dir(archive.join(FIFO)).unwrap();
    plant_fifo(&archive.join(FIFO).join("metadata.json"));
    std::fs::create_dir(archive.join(BIG)).unwrap();
    plant_sparse_file(&archive.join(BIG).join("metadata.json"), GIB);
    std::fs::create_dir(archive.join(LINKED)).unwrap();
    let evil_metadata = outside.path().join("evil-dir/metadata.json");
    plant_symlink(&archive.join(LINKED).join("metadata.json"), &evil_metadata);
    std::fs::write(archive.join("notes.txt"), SECRET).unwrap();
    let before = outside.snapshot();

    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    probe.created("a").await;
    let session = dirs.sessions().join("a");
    plant_symlink(&session.join(".claude-outside"), outside.path());
    let deleted = probe.ask(Method::DELETE, "/sessions/a", None).await;
    probe.expect_status(&deleted, StatusCode::NO_CONTENT);

    let list = probe.ask(Method::GET, "/archive", None).await;
    probe.expect_status(&list, StatusCode::OK);
    let a = ids(&list.body).into_iter().find(|id| id.starts_with("a."));
    let a = a.unwrap_or_else(|| panic!("a is not listed: {}", list.body));
    let own_size = files_size(&archive.join(&a));
    let a_item = item(&list.body, &a);
    probe.expect(
        a_item.is_some_and(|i| i["problem"].is_null() && i["size_bytes"] == own_size),
        format!("a, {own_size} bytes of its own, and fit: {a_item:?}"),
    );
    for (id, needle) in [
        (EVIL, "is a symlink, which is never followed"),
        (FIFO, "metadata.json is a FIFO, not a regular file"),
        (BIG, "metadata.json is over the 256 KiB cap"),
        (
            LINKED,
            "metadata.json is a symlink, which is never followed",
        ),
    ] {
        let listed = item(&list.body, id);
        probe.expect(
            listed.is_some_and(|i| {
                i["problem"].as_str().is_some_and(|p| p.contains(needle))
                    && i["process"] == "unknown"
                    && i["persona"].is_null()
            }),
            format!("{id} listed with the problem {needle:?}: {listed:?}"),
        );
        let one = probe
            .ask(Method::GET, &format!("/archive/{id}"), None)
            .await;
        probe.expect(
            one.status == StatusCode::OK && Some(&one.body) == listed,
            format!("GET /archive/{id} as listed: {}", one.body),
        );
        let restore = format!("/archive/{id}/restore");
        let refused = probe.ask(Method::POST, &restore, None).await;
        probe.expect_problem(&refused, CONFLICT, "corrupt-entry", &[needle]);
    }
    probe.expect(
        item(&list.body, EVIL).is_some_and(|i| i["size_bytes"] == 0),
        "a symlinked entry has nothing of its own",
    );
    probe
        .expect_skipped("notes.txt", &["not an archived session"])
        .await;

    for id in [EVIL, FIFO, BIG, LINKED, a.as_str()] {
        let removed = probe
            .ask(Method::DELETE, &format!("/archive/{id}"), None)
            .await;
        probe.expect_status(&removed, StatusCode::NO_CONTENT);
    }
    probe.expect(
        dir_names(&archive) == ["notes.txt"],
        format!("only the foreign file is left: {:?}", dir_names(&archive)),
    );
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn the_purge_removes_old_hostile_entries_without_following_them() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    outside.session("evil-dir", "evil");
    let archive = dirs.sessions().join(".archive");
    let evil = "evil.20200101T000000.000000Z";
    let old = "old.20200101T000000.000001Z";
    std::fs::create_dir_all(&archive).unwrap();
    plant_symlink(&archive.join(evil), &outside.path().join("evil-dir"));
    let at = "2020-01-01T00:00:00.000001+00:00";
    write_python_session(&archive, old, &python_metadata("old", at, at, "idle"));
    nest(&archive.join(old).join(".claude"), 80);
    plant_symlink(&archive.join(old).join(".claude/outside"), outside.path());
    plant_fifo(&archive.join(old).join(".claude/fifo"));
    std::fs::create_dir(archive.join("old-notes")).unwrap();
    std::fs::write(archive.join("old-notes/kept"), SECRET).unwrap();
    let before = outside.snapshot();

    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command.args(["--archive-keep-days", "7"]);
    let mut server = BinaryServer::start(&mut command);
    server
        .process
        .expect_line("archive purged", Duration::from_secs(10));
    let log = server.process.log_lines();
    for id in [evil, old] {
        let logged = log
            .iter()
            .any(|l| l.contains(" INFO ") && l.contains("purging") && l.contains(id));
        assert!(
            logged,
            "the purge of {id} is logged at info:\n{}",
            log.join("\n")
        );
    }
    let mut probe = Probe::new(&server);
    let list = probe.ask(Method::GET, "/archive", None).await;
    probe.expect(
        list.body == json!([]),
        format!("nothing left: {}", list.body),
    );
    probe.expect(
        dir_names(&archive) == ["old-notes"],
        format!("only the foreign entry is left: {:?}", dir_names(&archive)),
    );
    probe
        .expect_skipped("old-notes", &["not an archived session"])
        .await;
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}

#[tokio::test]
async fn an_archive_that_is_a_symlink_is_neither_listed_nor_followed() {
    let dirs = Dirs::new();
    let outside = Outside::new();
    outside.session(EVIL, "evil");
    let before = outside.snapshot();
    std::fs::create_dir_all(dirs.sessions()).unwrap();
    plant_symlink(&dirs.sessions().join(".archive"), outside.path());
    let server = start_binary(&dirs);
    let mut probe = Probe::new(&server);
    let list = probe.ask(Method::GET, "/archive", None).await;
    probe.expect_problem(
        &list,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &[".archive"],
    );
    for (method, path) in [
        (Method::GET, format!("/archive/{EVIL}")),
        (Method::POST, format!("/archive/{EVIL}/restore")),
        (Method::DELETE, format!("/archive/{EVIL}")),
    ] {
        let answer = probe.ask(method, &path, None).await;
        probe.expect_problem(
            &answer,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &[".archive"],
        );
    }
    probe.expect_skipped(".archive", &["symlink"]).await;
    probe.expect_ok(outside.unchanged_since(&before));
    probe.finish().await;
}
