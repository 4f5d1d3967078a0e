//! What the runs cost (the CLI's `result` messages, each counted once) and the budget.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_usage_posts_add_up_exactly_and_each_counts_once() {
    const POSTS: u64 = 100;
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("bot").await;
    let url = app.url("/sessions/bot/usage");
    let mut posts = tokio::task::JoinSet::new();
    for i in 1..=POSTS {
        let (client, url) = (app.client.clone(), url.clone());
        // Computed as a bot would, in floating point: 0.0123 * 3 is 0.036899999999999995.
        let body = result(&format!("result-{i}"), 0.0123 * i as f64);
        posts.spawn(async move { client.post(url).json(&body).send().await.unwrap() });
    }
    while let Some(response) = posts.join_next().await {
        let answer = assert_json(response.unwrap(), StatusCode::OK).await;
        assert_eq!(answer["counted"], true, "{answer}");
        assert_eq!(answer["budget_exhausted"], false, "{answer}");
    }

    // The exact sum, 0.0123 * (1 + 2 + ... + 100), in ten-thousandths of a dollar.
    let sum: u64 = (1..=POSTS).map(|i| 123 * i).sum();
    let exact: Value =
        serde_json::from_str(&format!("{}.{:04}", sum / 10_000, sum % 10_000)).unwrap();
    assert_eq!(exact, json!(62.115));
    let body = app.get("/sessions/bot").await.text().await.unwrap();
    assert!(body.contains(r#""cost_usd":62.115,"#), "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    let usage = &session["usage"];
    assert_timestamp(&usage["updated"]);
    assert_eq!(
        *usage,
        json!({
            "cost_usd": exact, "turns": 2 * POSTS, "input_tokens": 10 * POSTS,
            "output_tokens": 20 * POSTS, "cache_read_tokens": 30 * POSTS,
            "cache_creation_tokens": 40 * POSTS, "results": POSTS, "updated": usage["updated"],
        })
    );
    let on_disk = app.metadata_on_disk("bot")["usage"].clone();
    assert_eq!(on_disk["cost_usd"], exact);
    assert_eq!(on_disk["results"], POSTS);

    // The same message twice, at once: counted once.
    let duplicate = result("twice", 0.5);
    let (first, second) = tokio::join!(
        post_usage(&app, "bot", &duplicate),
        post_usage(&app, "bot", &duplicate)
    );
    let first = assert_json(first, StatusCode::OK).await;
    let second = assert_json(second, StatusCode::OK).await;
    let mut counted = [&first["counted"], &second["counted"]];
    counted.sort_by_key(|c| c.as_bool());
    assert_eq!(counted, [&json!(false), &json!(true)]);
    let after = app.session("bot").await;
    assert_eq!(after["usage"]["cost_usd"], json!(62.615));
    assert_eq!(after["usage"]["results"], POSTS + 1);

    // And once more after a restart: still counted once.
    app.stop().await;
    let app = TestApp::spawn(&dirs).await;
    let again = assert_json(post_usage(&app, "bot", &duplicate).await, StatusCode::OK).await;
    assert_eq!(again["counted"], false);
    assert_eq!(without_live_fields(again["session"].clone()), after);
    app.stop().await;
}

#[tokio::test]
async fn usage_messages_that_are_not_results_are_refused() {
    let app = TestApp::fresh().await;
    app.created("bot").await;
    let mut not_result = result("r", 0.1);
    not_result["type"] = json!("assistant");
    let mut no_uuid = result("r", 0.1);
    no_uuid.as_object_mut().unwrap().remove("uuid");
    let mut text_cost = result("r", 0.1);
    text_cost["total_cost_usd"] = json!("0.1");
    for body in [
        not_result,
        no_uuid,
        text_cost,
        result("r", -0.1),
        result("", 0.1),
        result(&"x".repeat(65), 0.1),
        result("with space", 0.1),
    ] {
        let response = post_usage(&app, "bot", &body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
    }
    assert_eq!(app.metadata_on_disk("bot").get("usage"), None);
}

/// The most a total holds is the most an amount may be (`Dollars` in the contract), so
/// a total that saturates is written as an amount the service reads back: the session
/// is still served after a restart.
#[tokio::test]
async fn a_cost_total_that_saturates_is_still_an_amount_and_still_read_back() {
    const MOST: f64 = 18_446_744_073.709_55;
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("bot").await;
    for uuid in ["r-1", "r-2"] {
        let answer = assert_json(
            post_usage(&app, "bot", &result(uuid, MOST)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            answer["session"]["usage"]["cost_usd"],
            json!(MOST),
            "{uuid}"
        );
    }
    // More than the most is refused, as before.
    let response = post_usage(&app, "bot", &result("r-3", 18_446_744_073.709_553)).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;
    let session = app.session("bot").await;
    assert_eq!(session["usage"]["cost_usd"], json!(MOST));
    assert_eq!(session["usage"]["results"], json!(2));
    app.stop().await;
}

/// A count is an integer as JSON Schema (and the contract) has it: `10.0` is 10, as a
/// `pid` or a persona's `max_turns` written so is; `10.5` is no count.
#[tokio::test]
async fn counts_written_with_a_zero_fraction_are_counted_as_whole_numbers() {
    let app = TestApp::fresh().await;
    app.created("bot").await;
    let mut message = result("r-1", 0.25);
    message["num_turns"] = json!(2.0);
    for (field, n) in [
        ("input_tokens", 10.0),
        ("output_tokens", 20.0),
        ("cache_read_input_tokens", 30.0),
        ("cache_creation_input_tokens", 28_613_127_906.0),
    ] {
        message["usage"][field] = json!(n);
    }
    let answer = assert_json(post_usage(&app, "bot", &message).await, StatusCode::OK).await;
    assert_eq!(answer["counted"], true);
    let usage = &answer["session"]["usage"];
    assert_eq!(
        [
            &usage["turns"],
            &usage["input_tokens"],
            &usage["output_tokens"],
            &usage["cache_read_tokens"],
            &usage["cache_creation_tokens"],
        ],
        [
            &json!(2),
            &json!(10),
            &json!(20),
            &json!(30),
            &json!(28_613_127_906_u64)
        ]
    );
    for (at, bad) in [
        ("num_turns", json!(2.5)),
        ("input_tokens", json!(-1.0)),
        ("output_tokens", json!(1e20)),
        ("cache_read_input_tokens", json!(null)),
    ] {
        let mut message = result("r-2", 0.25);
        if at == "num_turns" {
            message[at] = bad.clone();
        } else {
            message["usage"][at] = bad.clone();
        }
        let response = post_usage(&app, "bot", &message).await;
        assert_problem_mentioning(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            &format!("{at}: must be a whole number, 0 or more"),
            format!("{at} {bad}"),
        )
        .await;
    }
    assert_eq!(app.metadata_on_disk("bot")["usage"]["results"], json!(1));
}

#[tokio::test]
async fn the_results_of_one_run_count_what_it_spent_since_the_last_one() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("bot").await;
    let spec = launched(&app, "bot", "?print=true").await;
    let path = spec["report"]["usage"].as_str().unwrap().to_owned();
    let run = path.strip_prefix("/sessions/bot/usage?run=").unwrap();
    new_conversation(&json!({ "conversation": run }));
    // One process, three prompts: each result restates what the process has spent.
    for (uuid, total, counted) in [
        ("r-1", 0.25, 0.25),
        ("r-2", 0.375, 0.375),
        ("r-2", 0.375, 0.375),
    ] {
        let body = result(uuid, total);
        let answer = assert_json(
            app.send_json(Method::POST, &path, &body).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            answer["session"]["usage"]["cost_usd"],
            json!(counted),
            "{uuid}"
        );
    }
    // What was counted of the run survives a restart.
    app.stop().await;
    let app = TestApp::spawn(&dirs).await;
    let body = result("r-3", 0.5);
    let answer = assert_json(
        app.send_json(Method::POST, &path, &body).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["session"]["usage"]["cost_usd"], json!(0.5));
    assert_eq!(answer["session"]["usage"]["results"], 3);
    // The next launch's run starts from nothing; a result without a run counts whole.
    let next = launched(&app, "bot", "?print=true").await;
    let next = next["report"]["usage"].as_str().unwrap();
    assert_ne!(next, path);
    let answer = assert_json(
        app.send_json(Method::POST, next, &result("r-4", 0.25))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["session"]["usage"]["cost_usd"], json!(0.75));
    let answer = assert_json(
        post_usage(&app, "bot", &result("r-5", 0.125)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["session"]["usage"]["cost_usd"], json!(0.875));
    // The ids kept to count each run once are the service's own: not in an answer.
    assert_eq!(answer["session"]["usage"].get("runs"), None);
    assert_eq!(
        app.metadata_on_disk("bot")["usage"]["runs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    for bad in ["?run=r-1", "?run=../x", "?run=", "?runs=1"] {
        let path = format!("/sessions/bot/usage{bad}");
        let response = app
            .send_json(Method::POST, &path, &result("r-6", 1.0))
            .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;
    }
    assert_eq!(app.session("bot").await["usage"]["cost_usd"], json!(0.875));
    app.stop().await;
}

#[tokio::test]
async fn usage_reaching_the_budget_stops_launches_until_it_is_raised() {
    let app = TestApp::fresh().await;
    app.created("bot").await;
    let patched = app.patched("bot", &json!({ "budget_usd": 0.05 })).await;
    assert_eq!(patched["budget_usd"], json!(0.05));
    assert_eq!(app.metadata_on_disk("bot")["budget_usd"], json!(0.05));

    let answer = assert_json(
        post_usage(&app, "bot", &result("r-1", 0.03)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&answer["counted"], &answer["budget_exhausted"]),
        (&json!(true), &json!(false))
    );
    launched(&app, "bot", "").await;
    let answer = assert_json(
        post_usage(&app, "bot", &result("r-2", 0.02)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&answer["counted"], &answer["budget_exhausted"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(answer["session"]["usage"]["cost_usd"], json!(0.05));
    assert_problem_mentioning(
        launch(&app, "bot", "").await,
        StatusCode::CONFLICT,
        "budget-exhausted",
        "has spent its budget",
        "launch",
    )
    .await;
    // Still counted, still spent.
    let answer = assert_json(
        post_usage(&app, "bot", &result("r-3", 0.01)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&answer["counted"], &answer["budget_exhausted"]),
        (&json!(true), &json!(true))
    );

    let raised = app.patched("bot", &json!({ "budget_usd": 1 })).await;
    assert_eq!(raised["budget_usd"], json!(1.0));
    launched(&app, "bot", "").await;
    // A budget of nothing: no run may start, before any usage as after.
    app.patched("bot", &json!({ "budget_usd": 0 })).await;
    let response = launch(&app, "bot", "").await;
    assert_problem(response, StatusCode::CONFLICT, "budget-exhausted").await;
    app.created("frozen").await;
    app.patched("frozen", &json!({ "budget_usd": 0 })).await;
    let response = launch(&app, "frozen", "").await;
    assert_problem(response, StatusCode::CONFLICT, "budget-exhausted").await;
    let answer = assert_json(
        post_usage(&app, "frozen", &result("r-1", 0.0)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["budget_exhausted"], true);

    let cleared = app.patched("bot", &json!({ "budget_usd": null })).await;
    assert_eq!(cleared.get("budget_usd"), None);
    assert_eq!(app.metadata_on_disk("bot").get("budget_usd"), None);
    launched(&app, "bot", "").await;

    for bad in [json!(-1), json!("5"), json!(true)] {
        let response = app.patch("bot", &json!({ "budget_usd": bad })).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
    }
}

#[tokio::test]
async fn a_personas_budget_is_the_sessions_budget_from_its_creation() {
    let app = TestApp::fresh().await;
    let mut persona = custom_persona();
    persona["settings"]["budget_usd"] = json!(0.25);
    let created = assert_json(
        app.create_session("capped", Some(persona)).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["budget_usd"], json!(0.25));
    assert_eq!(app.metadata_on_disk("capped")["budget_usd"], json!(0.25));
    let answer = assert_json(
        post_usage(&app, "capped", &result("r-1", 0.25)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["budget_exhausted"], true);
    let response = launch(&app, "capped", "").await;
    assert_problem(response, StatusCode::CONFLICT, "budget-exhausted").await;

    // A persona put in its place with a budget brings that budget; one without keeps it.
    let mut raised = custom_persona();
    raised["settings"]["budget_usd"] = json!(1);
    let response = app
        .send_json(Method::PUT, "/sessions/capped/persona", &raised)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.session("capped").await["budget_usd"], json!(1.0));
    launched(&app, "capped", "").await;
    let response = app
        .send_json(Method::PUT, "/sessions/capped/persona", &custom_persona())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.metadata_on_disk("capped")["budget_usd"], json!(1.0));
}
