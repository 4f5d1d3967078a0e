//! `/personas`: the library served read-only, its first-start seeding, and the files
//! in it that are not valid personas.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const SHIPPED: [(&str, u64); 4] = [
    ("brainstorm", 50),
    ("default", 25),
    ("planner", 30),
    ("research", 30),
];

/// Seeds the library with a first start, then adds `files` to it.
async fn library_with(dirs: &Dirs, files: &[(&str, &str)]) {
    TestApp::spawn(dirs).await.stop().await;
    for (file, text) in files {
        std::fs::write(dirs.personas().join(file), text).unwrap();
    }
}

#[tokio::test]
async fn list_is_sorted_by_key_with_the_key_added() {
    let app = TestApp::fresh().await;

    let listed = app.get_ok("/personas").await;

    let expected: Vec<Value> = SHIPPED
        .iter()
        .map(|(key, _)| {
            let mut item = read_json(&app.personas_dir.join(format!("{key}.json")));
            item["key"] = json!(key);
            item
        })
        .collect();
    assert_eq!(listed, Value::Array(expected));
    app.stop().await;
}

#[tokio::test]
async fn the_shipped_personas_follow_the_spec() {
    let app = TestApp::fresh().await;
    let mut prompts = Vec::new();

    for (key, max_turns) in SHIPPED {
        let persona = app.get_ok(&format!("/personas/{key}")).await;
        assert_eq!(
            persona["settings"],
            json!({ "model": "claude-sonnet-4-20250514", "max_turns": max_turns }),
            "{key}"
        );
        for field in ["name", "description", "system_prompt"] {
            let text = persona[field].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{key}.{field}");
        }
        let prompt = persona["system_prompt"].as_str().unwrap().to_owned();
        assert!(prompt.contains("the operator"), "{key}: {prompt}");
        prompts.push(prompt);
    }
    prompts.sort();
    prompts.dedup();
    assert_eq!(
        prompts.len(),
        SHIPPED.len(),
        "each persona is a distinct mode"
    );
    app.stop().await;
}

#[tokio::test]
async fn get_a_persona_answers_the_file_as_stored() {
    let app = TestApp::fresh().await;

    for (key, _) in SHIPPED {
        let persona = app.get_ok(&format!("/personas/{key}")).await;
        assert_eq!(
            persona,
            read_json(&app.personas_dir.join(format!("{key}.json"))),
            "{key}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn get_an_unknown_persona_is_404() {
    let app = TestApp::fresh().await;

    let problem = assert_problem(
        app.get("/personas/nope").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;

    assert!(problem["detail"].as_str().unwrap().contains("'nope'"));
    app.stop().await;
}

#[tokio::test]
async fn get_a_persona_with_a_bad_key_is_400() {
    let app = TestApp::fresh().await;
    let too_long = format!("/personas/{}", "a".repeat(51));

    for path in [
        "/personas/..%2F",
        "/personas/..%2Fpersonas%2Fdefault",
        "/personas/default.json",
        "/personas/de%20fault",
        "/personas/caf%C3%A9",
        "/personas/a%00",
        "/personas/%FF",
        too_long.as_str(),
    ] {
        let problem =
            assert_problem(app.get(path).await, StatusCode::BAD_REQUEST, "invalid-name").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("persona key") || path.contains("%FF"),
            "{path}: {problem}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_first_start_seeds_the_shipped_library() {
    let dirs = Dirs::new();
    assert!(!dirs.personas().exists());

    let app = TestApp::spawn(&dirs).await;

    assert_eq!(
        dir_names(&dirs.personas()),
        [
            "brainstorm.json",
            "default.json",
            "planner.json",
            "research.json"
        ]
    );
    for (key, _) in SHIPPED {
        let seeded = std::fs::read_to_string(dirs.personas().join(format!("{key}.json"))).unwrap();
        assert_eq!(seeded, shipped_persona_text(key), "{key}");
    }
    let health = app.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["personas"], 4);
    app.stop().await;
}

#[tokio::test]
async fn a_directory_without_persona_files_is_seeded_and_its_other_files_kept() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.personas()).unwrap();
    std::fs::write(dirs.personas().join("README.txt"), "my notes\n").unwrap();

    let app = TestApp::spawn(&dirs).await;

    assert_eq!(
        dir_names(&dirs.personas()),
        [
            "README.txt",
            "brainstorm.json",
            "default.json",
            "planner.json",
            "research.json"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dirs.personas().join("README.txt")).unwrap(),
        "my notes\n"
    );
    let listed = app.get_ok("/personas").await;
    assert_eq!(listed.as_array().unwrap().len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn an_existing_persona_file_is_never_overwritten() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.personas()).unwrap();
    let mine = "{\n  \"name\": \"Mine\",\n  \"description\": \"the operator's own default\",\n  \
                \"system_prompt\": \"Be brief with the operator.\",\n  \
                \"settings\": {\"model\": \"claude-opus-4\", \"max_turns\": 3, \"verbose\": true},\n  \
                \"owner\": \"me\"\n}\n";
    std::fs::write(dirs.personas().join("default.json"), mine).unwrap();

    let app = TestApp::spawn(&dirs).await;
    app.stop().await;
    let app = TestApp::spawn(&dirs).await;

    assert_eq!(
        std::fs::read_to_string(dirs.personas().join("default.json")).unwrap(),
        mine
    );
    let served = app.get_ok("/personas/default").await;
    assert_eq!(served, serde_json::from_str::<Value>(mine).unwrap());
    let created = assert_json(app.create_session("work", None).await, StatusCode::CREATED).await;
    assert_eq!(created["persona"], Value::Null);
    assert_eq!(
        read_json(&app.session_dir("work").join("persona.json")),
        served
    );
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_persona_file_is_skipped_and_reported() {
    let dirs = Dirs::new();
    let broken = "{\"name\": \"Broken\", \"description\": \"no prompt\"}";
    let garbage = "{ not json";
    let zero = "{\"name\": \"Z\", \"description\": \"d\", \"system_prompt\": \"p\", \
                \"settings\": {\"model\": \"m\", \"max_turns\": 0}}";
    library_with(
        &dirs,
        &[
            ("broken.json", broken),
            ("garbage.json", garbage),
            ("zero.json", zero),
        ],
    )
    .await;

    let app = TestApp::spawn(&dirs).await;

    let listed = app.get_ok("/personas").await;
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["brainstorm", "default", "planner", "research"]);
    for key in ["broken", "garbage", "zero"] {
        assert_problem(
            app.get(&format!("/personas/{key}")).await,
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        assert_problem(
            app.create_session("work", Some(json!(key))).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        )
        .await;
    }

    let health = app.health().await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["personas"], 4);
    let skipped = health["skipped"].as_array().unwrap();
    let mut reported: Vec<String> = skipped
        .iter()
        .map(|s| {
            assert!(s["reason"].as_str().is_some_and(|r| !r.is_empty()), "{s}");
            let path = std::path::Path::new(s["path"].as_str().unwrap());
            std::fs::canonicalize(path)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    reported.sort();
    let personas = std::fs::canonicalize(dirs.personas()).unwrap();
    let expected: Vec<String> = ["broken.json", "garbage.json", "zero.json"]
        .iter()
        .map(|f| personas.join(f).to_string_lossy().into_owned())
        .collect();
    assert_eq!(reported, expected);

    for (file, text) in [
        ("broken.json", broken),
        ("garbage.json", garbage),
        ("zero.json", zero),
    ] {
        assert_eq!(
            std::fs::read_to_string(dirs.personas().join(file)).unwrap(),
            text
        );
    }
    app.stop().await;
}
