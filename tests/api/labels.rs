//! Titles, tags and renames, the list's filters by tag, persona and text, and its pages:
//! what is answered, what is on disk, and what survives a restart.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::*;

const CONVERSATION: &str = "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20";

async fn rename(app: &TestApp, name: &str, to: &str) -> Response {
    app.send_json(
        Method::POST,
        &format!("/sessions/{name}/rename"),
        &json!({ "to": to }),
    )
    .await
}

/// The detail of a refused rename: the reasons, then the advice.
fn not_renamable(name: &str, reasons: &str) -> String {
    format!(
        "session '{name}' cannot be renamed: {reasons}. Renaming moves the session's \
         directory; to call it something else, give it a title instead: PATCH \
         /sessions/{name} {{\"title\": \"...\"}}"
    )
}

// ---- Titles and tags

#[tokio::test]
async fn title_and_tags_are_set_stored_shown_and_cleared() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;
    app.created("other").await;

    let answer = app
        .patched(
            "work",
            &json!({"title": "DNS — the long way", "tags": ["dns", "homelab"]}),
        )
        .await;
    let mut expected = created.clone();
    expected["title"] = json!("DNS — the long way");
    expected["tags"] = json!(["dns", "homelab"]);
    assert_eq!(answer, expected);
    assert_eq!(app.session("work").await, expected);
    let on_disk = app.metadata_on_disk("work");
    assert_eq!(on_disk["title"], "DNS — the long way");
    assert_eq!(on_disk["tags"], json!(["dns", "homelab"]));
    assert!(app.metadata_on_disk("other").get("title").is_none());

    // Each is cleared on its own; a cleared one leaves the file and the answers.
    let answer = app.patched("work", &json!({"title": null})).await;
    assert!(answer.get("title").is_none(), "{answer}");
    assert_eq!(answer["tags"], json!(["dns", "homelab"]));
    let answer = app.patched("work", &json!({"tags": ["homelab"]})).await;
    assert_eq!(answer["tags"], json!(["homelab"]));
    let answer = app.patched("work", &json!({"tags": null})).await;
    assert_eq!(answer, created);
    let on_disk = app.metadata_on_disk("work");
    assert!(on_disk.get("title").is_none() && on_disk.get("tags").is_none());
    // An empty list is no tags, as null is.
    app.patched("work", &json!({"tags": ["x"]})).await;
    assert_eq!(app.patched("work", &json!({"tags": []})).await, created);
    assert!(app.metadata_on_disk("work").get("tags").is_none());
    app.stop().await;
}

#[tokio::test]
async fn title_and_tags_survive_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("work").await;
    let answer = app
        .patched("work", &json!({"title": "Notes", "tags": ["a", "b"]}))
        .await;
    app.stop().await;
    let app = TestApp::spawn(&dirs).await;
    assert_eq!(app.session("work").await, answer);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_title_or_tag_list_is_422_naming_the_rule_and_changes_nothing() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    let before = app.metadata_on_disk("work");
    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let exact = [
        (
            json!({"title": ""}),
            "title: must be 1 to 200 characters long (got 0)",
        ),
        (
            json!({"title": "é".repeat(201)}),
            "title: must be 1 to 200 characters long (got 201)",
        ),
        (
            json!({"title": "one\ntwo"}),
            "title: must be one line without control characters (found U+000A at position 3)",
        ),
        (
            json!({"title": "\u{200b} \u{3000}"}),
            "title: must contain visible text",
        ),
        (
            json!({"tags": ["a", "b", "a"]}),
            "tags: item 3: the tag 'a' is given twice; give each tag once",
        ),
        (
            json!({"tags": ["ok", "no way"]}),
            "tags: item 2: tag may only contain letters, digits, '-' and '_' (found ' ' at \
             position 2)",
        ),
        (json!({"tags": [""]}), "tags: item 1: tag must not be empty"),
        (
            json!({"tags": ["a".repeat(51)]}),
            "tags: item 1: tag must be at most 50 characters long (got 51)",
        ),
        (json!({ "tags": many }), "tags: at most 20 tags (got 21)"),
    ];
    for (body, detail) in exact {
        let problem = assert_problem(
            app.patch("work", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        )
        .await;
        assert_eq!(problem["detail"], detail, "{body}");
    }
    for (body, field) in [
        (json!({"title": 5}), "title"),
        (json!({"tags": "dns"}), "tags"),
        (json!({"tags": [1]}), "tags"),
    ] {
        let problem = assert_problem(
            app.patch("work", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        )
        .await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with(field), "{body}: {detail}");
    }
    // Twenty tags of fifty characters, and two hundred characters of title, are fine.
    let twenty: Vec<String> = (0..20).map(|i| format!("{i:0>50}")).collect();
    let answer = app
        .patched("work", &json!({"title": "t".repeat(200), "tags": twenty}))
        .await;
    assert_eq!(answer["tags"].as_array().unwrap().len(), 20);
    let mut after = app.metadata_on_disk("work");
    for field in ["title", "tags"] {
        after.as_object_mut().unwrap().remove(field);
    }
    assert_eq!(after, before, "only the accepted patch changed the file");
    app.stop().await;
}

/// A `tags` or `title` that another tool stored in another shape is that tool's: kept
/// where it is, shown as it is, not filtered on; the operator's own replaces it.
#[tokio::test]
async fn another_tools_title_and_tags_are_kept_until_the_operator_sets_them() {
    let dirs = Dirs::new();
    let mut metadata = python_metadata(
        "old",
        "2025-03-01T08:00:00.000000+00:00",
        "2025-03-01T08:00:00.000000+00:00",
        "idle",
    );
    metadata["tags"] = json!(["homelab", {"pinned": null}]);
    metadata["title"] = json!(42);
    metadata["note"] = json!("kept");
    write_python_session(&dirs.sessions(), "old", &metadata);
    let app = TestApp::spawn(&dirs).await;
    let mut answer = metadata.clone();
    answer["dir"] = json!(app.session_dir("old").to_str().unwrap());
    assert_eq!(app.session("old").await, answer);
    assert!(app.health().await["skipped"].as_array().unwrap().is_empty());
    assert_eq!(
        names(&app.list_sessions("?tag=homelab").await),
        [] as [&str; 0]
    );

    app.patched("old", &json!({"pid": 7})).await;
    let on_disk = app.metadata_on_disk("old");
    assert_eq!(on_disk["tags"], metadata["tags"]);
    assert_eq!(on_disk["title"], 42);

    let answer = app.patched("old", &json!({"tags": ["homelab"]})).await;
    assert_eq!(answer["tags"], json!(["homelab"]));
    assert_eq!(answer["title"], 42, "only the label set is replaced");
    let answer = app.patched("old", &json!({"title": null})).await;
    assert!(answer.get("title").is_none(), "{answer}");
    let on_disk = app.metadata_on_disk("old");
    assert_eq!(on_disk["tags"], json!(["homelab"]));
    assert!(on_disk.get("title").is_none());
    assert_eq!(on_disk["note"], "kept");
    assert_eq!(names(&app.list_sessions("?tag=homelab").await), ["old"]);
    app.stop().await;
}

// ---- Filters

/// alpha (no persona asked for; tags dns, homelab; a title), beta (planner; homelab;
/// current), dns-cache (custom), delta (default, asked for; dns): in list order beta,
/// delta, dns-cache, alpha.
async fn labelled_sessions() -> TestApp {
    let app = TestApp::fresh().await;
    app.created("alpha").await;
    assert_eq!(
        app.create_session("beta", Some(json!("planner")))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.create_session("dns-cache", Some(custom_persona()))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.create_session("delta", Some(json!("default")))
            .await
            .status(),
        StatusCode::CREATED
    );
    app.patched(
        "alpha",
        &json!({"title": "Fix the DNS resolver", "tags": ["dns", "homelab"]}),
    )
    .await;
    app.patched(
        "beta",
        &json!({"title": "Plan the NAS", "tags": ["homelab"]}),
    )
    .await;
    app.patched("delta", &json!({"tags": ["dns"]})).await;
    app.switched("beta").await;
    app
}

#[tokio::test]
async fn the_list_filters_by_tag_persona_and_text_and_with_the_other_filters() {
    let app = labelled_sessions().await;
    let cases: [(&str, &[&str]); 17] = [
        ("", &["beta", "delta", "dns-cache", "alpha"]),
        ("?tag=dns", &["delta", "alpha"]),
        ("?tag=homelab", &["beta", "alpha"]),
        ("?tag=nas", &[]),
        ("?tag=DNS", &[]),
        // `default` takes the sessions that asked for none: they got the default.
        ("?persona=default", &["delta", "alpha"]),
        ("?persona=planner", &["beta"]),
        ("?persona=custom", &["dns-cache"]),
        ("?persona=research", &[]),
        // Names and titles, case-insensitively.
        ("?q=DNS", &["dns-cache", "alpha"]),
        ("?q=nas", &["beta"]),
        ("?q=n%20THE%20n", &["beta"]),
        ("?q=dns&tag=dns", &["alpha"]),
        ("?tag=homelab&status=active", &["beta"]),
        ("?tag=homelab&status=idle&persona=default", &["alpha"]),
        ("?tag=dns&process=none&q=e", &["delta", "alpha"]),
        ("?tag=dns&idle_for=60m", &[]),
    ];
    for (query, expected) in cases {
        let list = app.list_sessions(query).await;
        assert_eq!(names(&list), expected, "GET /sessions{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_bad_filter_is_422_invalid_filter_saying_what_is_wrong() {
    let app = TestApp::fresh().await;
    let cases = [
        (
            "?tag=a%20b",
            "tag may only contain letters, digits, '-' and '_' (found ' ' at position 1)",
        ),
        ("?tag=", "tag must not be empty"),
        (
            "?persona=..%2Fx",
            "persona: persona key may only contain letters, digits, '-' and '_' (found '.' at \
             position 0); 'custom' selects custom personas",
        ),
        (
            "?q=",
            "q must be 1 to 200 characters of text to look for in names and titles",
        ),
        ("?limit=0", "limit must be a whole number from 1 to 1000"),
        ("?limit=1001", "limit must be a whole number from 1 to 1000"),
        ("?limit=-1", "limit must be a whole number from 1 to 1000"),
        ("?limit=2.5", "limit must be a whole number from 1 to 1000"),
        (
            "?after=bm90LWEtY3Vyc29y",
            "after is not a cursor this service gave; take it from the Link header of the \
             previous page, or leave it out to start at the first page",
        ),
    ];
    for (query, detail) in cases {
        let response = app.get(&format!("/sessions{query}")).await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;
        assert_eq!(problem["detail"], detail, "{query}");
    }
    let long = "x".repeat(201);
    for query in [
        "?tag=a&tag=b".to_owned(),
        "?limit=2&limit=3".to_owned(),
        "?label=x".to_owned(),
        format!("?q={long}"),
    ] {
        let response = app.get(&format!("/sessions{query}")).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;
    }
    app.stop().await;
}

// ---- Pages

/// `GET path`: the names it lists and the `Link` it sends.
async fn page(app: &TestApp, path: &str) -> (Vec<String>, Option<String>) {
    let response = app.get(path).await;
    let link = response
        .headers()
        .get(header::LINK)
        .map(|v| v.to_str().unwrap().to_owned());
    let list = assert_json(response, StatusCode::OK).await;
    let names = names(&list).into_iter().map(str::to_owned).collect();
    (names, link)
}

/// The path a `Link: <path>; rel="next"` names, checked to be that shape.
fn next_path(link: &str, prefix: &str) -> String {
    let path = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("not a next link: {link}"));
    let cursor = path
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{path} does not start with {prefix}"));
    assert!(
        !cursor.is_empty()
            && cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "the cursor is base64url: {cursor}"
    );
    path.to_owned()
}

#[tokio::test]
async fn pages_go_newest_created_first_and_link_to_the_next_with_the_same_filters() {
    let app = TestApp::fresh().await;
    for name in ["p1", "p2", "p3", "p4", "p5"] {
        app.created(name).await;
    }
    // Switching p1 moves it to the head of the list, not of the pages.
    app.switched("p1").await;
    assert_eq!(
        names(&app.list_sessions("").await),
        ["p1", "p5", "p4", "p3", "p2"]
    );
    let (first, link) = page(&app, "/sessions?limit=2").await;
    assert_eq!(first, ["p5", "p4"]);
    let second_path = next_path(&link.unwrap(), "/sessions?limit=2&after=");
    let (second, link) = page(&app, &second_path).await;
    assert_eq!(second, ["p3", "p2"]);
    let third_path = next_path(&link.unwrap(), "/sessions?limit=2&after=");
    let (third, link) = page(&app, &third_path).await;
    assert_eq!((third, link), (vec!["p1".to_owned()], None));
    // A page that ends exactly at the last session has no next page.
    let (all, link) = page(&app, "/sessions?limit=5").await;
    assert_eq!((all.len(), link), (5, None));
    // `after` alone: the rest of the pages, whole.
    let cursor = second_path.rsplit_once("after=").unwrap().1;
    let (rest, link) = page(&app, &format!("/sessions?after={cursor}")).await;
    assert_eq!(
        (rest, link),
        (vec!["p3".into(), "p2".into(), "p1".into()], None)
    );

    // The filters go on in the link, encoded.
    for name in ["p2", "p3", "p5"] {
        app.patched(name, &json!({"tags": ["odd"], "title": "odd one"}))
            .await;
    }
    let (first, link) = page(&app, "/sessions?tag=odd&q=odd%20ONE&limit=1").await;
    assert_eq!(first, ["p5"]);
    let path = next_path(
        &link.unwrap(),
        "/sessions?limit=1&tag=odd&q=odd%20ONE&after=",
    );
    let (second, link) = page(&app, &path).await;
    assert_eq!(second, ["p3"]);
    let (third, link) = page(
        &app,
        &next_path(
            &link.unwrap(),
            "/sessions?limit=1&tag=odd&q=odd%20ONE&after=",
        ),
    )
    .await;
    assert_eq!((third, link), (vec!["p2".to_owned()], None));
    // A cursor stays valid when its session is gone.
    assert_eq!(
        app.delete("/sessions/p4").await.status(),
        StatusCode::NO_CONTENT
    );
    let (second, _) = page(&app, &second_path).await;
    assert_eq!(second, ["p3", "p2"]);
    // Without limit or after, the whole list, as before.
    assert_eq!(page(&app, "/sessions").await.1, None);
    app.stop().await;
}

/// 100 sessions, then 100 creates and 100 switches running while a client walks the
/// pages: every session that was there from the start is seen exactly once, nothing is
/// seen twice, and each page goes on in the order of the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_walk_through_the_pages_sees_each_session_once_while_others_are_created_and_switched() {
    let app = TestApp::fresh().await;
    let initial: Vec<String> = (0..100).map(|i| format!("s{i:03}")).collect();
    let client = app.client.clone();
    let base = app.base.clone();
    let create = |name: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let response = client
                .post(format!("{base}/sessions"))
                .json(&json!({ "name": name }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED, "create {name}");
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for name in &initial {
        tasks.spawn(create(name.clone()));
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    // 200 writes at once; the walk waits for a share of them between its pages.
    let (progress, mut seen_progress) = tokio::sync::watch::channel(0usize);
    let progress = std::sync::Arc::new(progress);
    for i in 0..200 {
        let (client, base, progress) = (client.clone(), base.clone(), progress.clone());
        let create = create(format!("new{i:03}"));
        // Switch to sessions all through the order, the walk's far end included.
        let target = initial[(i * 37) % 100].clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                create.await;
            } else {
                let response = client
                    .put(format!("{base}/sessions/active"))
                    .json(&json!({ "name": target }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "switch to {target}");
            }
            progress.send_modify(|n| *n += 1);
        });
    }
    let mut walked: Vec<Value> = Vec::new();
    let mut path = "/sessions?limit=7".to_owned();
    let mut pages = 0;
    loop {
        let response = app.get(&path).await;
        let link = response
            .headers()
            .get(header::LINK)
            .map(|v| v.to_str().unwrap().to_owned());
        let list = assert_json(response, StatusCode::OK).await;
        walked.extend(list.as_array().unwrap().iter().cloned());
        pages += 1;
        let Some(link) = link else { break };
        path = next_path(&link, "/sessions?limit=7&after=");
        let share = (pages * 200 / 15).min(200);
        seen_progress.wait_for(|n| *n >= share).await.unwrap();
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert!(pages >= 15, "{pages} pages");

    let walked = Value::Array(walked);
    let walked_names: Vec<&str> = names(&walked);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &walked_names {
        *counts.entry(name).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "seen twice: {repeated:?}");
    let missing: Vec<&String> = initial
        .iter()
        .filter(|n| !counts.contains_key(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "skipped: {missing:?}");
    let unknown: Vec<&&str> = counts
        .keys()
        .filter(|n| !n.starts_with('s') && !n.starts_with("new"))
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    // Newest created first, ties by name, across pages.
    let keys: Vec<(String, String)> = walked
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["created"].as_str().unwrap().to_owned(),
                s["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for pair in keys.windows(2) {
        let ((c0, n0), (c1, n1)) = (&pair[0], &pair[1]);
        assert!(c0 > c1 || (c0 == c1 && n0 < n1), "{pair:?}");
    }
    // The switches did move sessions: the list's own order is not the walk's.
    let list = app.list_sessions("").await;
    assert_eq!(list.as_array().unwrap().len(), 200);
    app.stop().await;
}

// ---- Renames

#[tokio::test]
async fn a_rename_moves_the_directory_records_the_old_name_and_survives_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("other").await;
    assert_eq!(
        app.create_session("old-name", Some(json!("research")))
            .await
            .status(),
        StatusCode::CREATED
    );
    let labelled = app
        .patched(
            "old-name",
            &json!({"title": "Research notes", "tags": ["r"]}),
        )
        .await;
    // What the CLI keeps in the directory moves with it.
    let claude = app.session_dir("old-name").join(".claude");
    std::fs::create_dir(&claude).unwrap();
    std::fs::write(claude.join("settings.json"), "{}").unwrap();
    let persona = std::fs::read(app.session_dir("old-name").join("persona.json")).unwrap();

    let response = rename(&app, "old-name", "new-name").await;
    assert!(response.headers().contains_key(header::ETAG));
    let answer = without_live_fields(assert_json(response, StatusCode::OK).await);
    let mut expected = labelled.clone();
    expected["name"] = json!("new-name");
    expected["previous_names"] = json!(["old-name"]);
    expected["dir"] = json!(app.session_dir("new-name").to_str().unwrap());
    assert_eq!(answer, expected);

    assert_eq!(app.sessions_on_disk(), ["new-name", "other"]);
    let mut metadata = expected.clone();
    metadata.as_object_mut().unwrap().remove("dir");
    assert_eq!(app.metadata_on_disk("new-name"), metadata);
    let moved = app.session_dir("new-name");
    assert_eq!(std::fs::read(moved.join("persona.json")).unwrap(), persona);
    assert_eq!(
        std::fs::read_to_string(moved.join(".claude/settings.json")).unwrap(),
        "{}"
    );
    assert!(!app.sessions_dir.join(".rename.json").exists());
    assert_problem(
        app.get("/sessions/old-name").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_eq!(app.session("new-name").await, expected);
    assert_eq!(
        names(&app.list_sessions("?tag=r").await),
        ["new-name"],
        "the list knows it by its new name"
    );

    // Again: the names add up, oldest first; the old name is free for a new session.
    let answer = without_live_fields(
        assert_json(rename(&app, "new-name", "third").await, StatusCode::OK).await,
    );
    assert_eq!(answer["previous_names"], json!(["old-name", "new-name"]));
    app.created("old-name").await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;
    assert_eq!(
        app.session("third").await["previous_names"],
        json!(["old-name", "new-name"])
    );
    assert_problem(
        app.get("/sessions/new-name").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_eq!(app.session("old-name").await["previous_names"], Value::Null);
    assert!(app.health().await["skipped"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_current_session_renamed_stays_current_under_its_new_name() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("here").await;
    app.switched("here").await;
    // Current, but its process ended: idle.
    app.patched("here", &json!({"status": "idle"})).await;
    assert_json(rename(&app, "here", "there").await, StatusCode::OK).await;
    let current = app.current().await;
    assert_eq!(current["active"], "there");
    assert_eq!(current["session"]["name"], "there");
    let pointer = read_json(&app.sessions_dir.join(".current.json"));
    assert_eq!(pointer["name"], "there");
    app.stop().await;
    let app = TestApp::spawn(&dirs).await;
    assert_eq!(app.current().await["active"], "there");
    app.stop().await;
}

#[tokio::test]
async fn a_rename_to_a_taken_name_of_an_unknown_session_or_with_a_bad_body_is_refused() {
    let app = TestApp::fresh().await;
    app.created("x").await;
    app.created("y").await;
    for to in ["y", "x"] {
        let problem =
            assert_problem(rename(&app, "x", to).await, StatusCode::CONFLICT, "exists").await;
        assert_eq!(
            problem["detail"],
            format!(
                "session '{to}' already exists; delete it first (DELETE /sessions/{{name}}) or \
                 choose another name"
            )
        );
    }
    let problem = assert_problem(
        rename(&app, "nope", "z").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_eq!(problem["detail"], "session 'nope' does not exist");
    assert_problem(
        rename(&app, "a.b", "z").await,
        StatusCode::BAD_REQUEST,
        "invalid-name",
    )
    .await;
    for body in [
        json!({}),
        json!({"to": "active"}),
        json!({"to": "a b"}),
        json!({"to": "z", "from": "x"}),
        json!({"to": 5}),
    ] {
        let response = app
            .send_json(Method::POST, "/sessions/x/rename", &body)
            .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
    }
    assert_eq!(app.sessions_on_disk(), ["x", "y"]);
    app.stop().await;
}

/// A refused rename changes nothing on disk.
async fn assert_refused(app: &TestApp, name: &str, reasons: &str) {
    let before = app.metadata_on_disk(name);
    let problem = assert_problem(
        rename(app, name, "renamed").await,
        StatusCode::CONFLICT,
        "not-renamable",
    )
    .await;
    assert_eq!(problem["detail"], not_renamable(name, reasons));
    assert_eq!(app.metadata_on_disk(name), before);
    assert!(!app.session_dir("renamed").exists());
    assert!(!app.sessions_dir.join(".rename.json").exists());
}

#[tokio::test]
async fn a_session_with_a_conversation_a_live_process_or_active_is_not_renamed() {
    let app = TestApp::fresh().await;
    let conversation = "it has a Claude Code conversation, which the CLI finds by the session \
                        directory's path, so it could not be resumed after a rename";

    app.created("talk").await;
    let init = json!({"type": "system", "subtype": "init", "session_id": CONVERSATION});
    let response = app
        .send_json(Method::POST, "/sessions/talk/conversations", &init)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_refused(&app, "talk", conversation).await;
    // Clearing the conversation does not forget it: the history keeps it.
    app.patched("talk", &json!({"conversation": null})).await;
    assert_refused(&app, "talk", conversation).await;

    app.created("busy").await;
    let mut sleep = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = sleep.id();
    app.patched("busy", &json!({ "pid": pid })).await;
    assert_refused(&app, "busy", &format!("its process, pid {pid}, is running")).await;
    sleep.kill().unwrap();
    sleep.wait().unwrap();
    // Once the process is gone, the session may be renamed.
    assert_json(rename(&app, "busy", "was-busy").await, StatusCode::OK).await;

    app.created("live").await;
    app.switched("live").await;
    assert_refused(
        &app,
        "live",
        "its status is 'active' (only an idle session can be renamed)",
    )
    .await;
    let response = app
        .send_json(Method::POST, "/sessions/live/conversations", &init)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_refused(
        &app,
        "live",
        &format!("its status is 'active' (only an idle session can be renamed); {conversation}"),
    )
    .await;
    let expected: BTreeSet<&str> = ["live", "talk", "was-busy"].into();
    let on_disk = app.sessions_on_disk();
    assert_eq!(
        on_disk.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );
    app.stop().await;
}

#[cfg(feature = "failpoints")]
mod crashes {
    //! A rename of the current session crashed around its commit point (the move of the
    //! directory), through the binary built with failpoints.

    use super::*;

    /// Prepares `here` (current, idle), crashes its rename to `there` at `failpoint`,
    /// restarts; returns what the restart serves.
    async fn crash_rename(failpoint: &str) -> (StoreSeen, Vec<String>) {
        let dirs = Dirs::new();
        let mut server =
            BinaryServer::start(&mut binary_command(&dirs.sessions(), &dirs.personas()));
        let steps: [(Method, &str, Value); 3] = [
            (Method::POST, "/sessions", json!({"name": "here"})),
            (Method::PUT, "/sessions/active", json!({"name": "here"})),
            (Method::PATCH, "/sessions/here", json!({"status": "idle"})),
        ];
        for (method, path, body) in steps {
            let (status, answer) = server.must(method, path, Some(&body)).await;
            assert!(status.is_success(), "{path}: {answer}");
        }
        server.process.kill();
        let mut command = binary_command(&dirs.sessions(), &dirs.personas());
        command.env("SESSION_MANAGER_FAILPOINTS", failpoint);
        let mut server = BinaryServer::start(&mut command);
        let body = json!({"to": "there"});
        let answer = server
            .call(Method::POST, "/sessions/here/rename", Some(&body))
            .await;
        assert!(answer.is_err(), "{failpoint}: answered {answer:?}");
        server.process.wait_exit(BINARY_REQUEST_TIMEOUT);
        let sessions = std::fs::canonicalize(dirs.sessions()).unwrap();
        let restarted = BinaryServer::start(&mut binary_command(&sessions, &dirs.personas()));
        let (seen, violations) = check_store(&restarted, &sessions, &dirs.personas()).await;
        assert!(
            violations.is_empty(),
            "{failpoint}: {violations:#?}\n{}",
            restarted.startup_log.join("\n")
        );
        assert!(!sessions.join(".rename.json").exists(), "{failpoint}");
        (seen, restarted.startup_log)
    }

    #[tokio::test]
    async fn crashed_after_the_move_it_is_finished_and_the_current_session_follows() {
        // renamed@1 is the intent, @2 the metadata, @3 the directory.
        for failpoint in ["renamed=crash@3", "dir-synced=crash@3"] {
            let (seen, log) = crash_rename(failpoint).await;
            assert_eq!(seen.current.as_deref(), Some("there"), "{failpoint}");
            let names: Vec<&String> = seen.sessions.keys().collect();
            assert_eq!(names, ["there"], "{failpoint}");
            assert_eq!(
                seen.sessions["there"].metadata["previous_names"],
                json!(["here"])
            );
            assert!(
                log.iter()
                    .any(|l| l.contains("finishing an interrupted rename")),
                "{failpoint}: {log:?}"
            );
        }
    }

    #[tokio::test]
    async fn crashed_before_the_move_it_is_undone() {
        for failpoint in ["renamed=crash@2", "dir-synced=crash@2"] {
            let (seen, log) = crash_rename(failpoint).await;
            assert_eq!(seen.current.as_deref(), Some("here"), "{failpoint}");
            let metadata = &seen.sessions["here"].metadata;
            assert_eq!(metadata["name"], "here");
            assert_eq!(metadata.get("previous_names"), None, "{failpoint}");
            assert!(
                log.iter().any(|l| l.contains("undoing a rename")),
                "{failpoint}: {log:?}"
            );
        }
    }
}
