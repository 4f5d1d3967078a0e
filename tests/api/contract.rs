//! `openapi.yaml` against the service: the same paths and methods as the router
//! (`routes::table()`, and the `Allow` header of the running app), every operation lists
//! the errors it can answer, every error is a problem document, and a probe of each
//! operation answers only statuses its entry lists.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode, header};
use serde_json::json;
use yaml_rust2::{Yaml, YamlLoader};

use crate::helpers::*;

const SPEC_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
const PROBLEM_JSON: &str = "application/problem+json";
/// The operation keys of an OpenAPI path item.
const OPERATION_KEYS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// The session every probe uses for `{name}`; `{key}` is the shipped `default`.
const SESSION: &str = "contract";
/// The conversation the probes report for it, and one it never had.
const CONVERSATION: &str = "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20";
const OTHER_CONVERSATION: &str = "1c8c5b9f-ad52-4a5f-8b54-4a6e3a9b2d31";

fn spec() -> Yaml {
    let text = std::fs::read_to_string(SPEC_FILE).expect("openapi.yaml is readable");
    let mut docs = YamlLoader::load_from_str(&text).expect("openapi.yaml is valid YAML");
    assert_eq!(docs.len(), 1, "openapi.yaml holds one document");
    docs.remove(0)
}

fn key_str(key: &Yaml) -> String {
    match key {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        other => panic!("unexpected key {other:?}"),
    }
}

fn entries(node: &Yaml) -> Vec<(String, &Yaml)> {
    node.as_hash()
        .map(|h| h.iter().map(|(k, v)| (key_str(k), v)).collect())
        .unwrap_or_default()
}

/// Follows a local `$ref` (`#/a/b~1c`), repeatedly, to the node it names.
fn resolve<'a>(doc: &'a Yaml, node: &'a Yaml) -> &'a Yaml {
    let mut node = node;
    while let Some(reference) = node["$ref"].as_str() {
        let pointer = reference
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("only local references are used: {reference}"));
        node = pointer.split('/').fold(doc, |at, part| {
            &at[part.replace("~1", "/").replace("~0", "~").as_str()]
        });
        assert!(!node.is_badvalue(), "{reference} resolves");
    }
    node
}

/// One operation of the spec.
struct Operation<'a> {
    path: String,
    method: String,
    node: &'a Yaml,
    /// Its responses, by status, with references resolved.
    responses: BTreeMap<String, &'a Yaml>,
}

impl Operation<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }

    fn lists(&self, status: &str) -> bool {
        self.responses.contains_key(status)
    }
}

fn operations(doc: &Yaml) -> Vec<Operation<'_>> {
    let mut out = Vec::new();
    for (path, item) in entries(&doc["paths"]) {
        for (method, node) in entries(item) {
            if !OPERATION_KEYS.contains(&method.as_str()) {
                continue;
            }
            let responses = entries(&node["responses"])
                .into_iter()
                .map(|(status, response)| (status, resolve(doc, response)))
                .collect();
            out.push(Operation {
                path: path.clone(),
                method,
                node,
                responses,
            });
        }
    }
    out
}

/// The spec's methods per path, upper case, `HEAD` included.
fn spec_methods(doc: &Yaml) -> BTreeMap<String, BTreeSet<String>> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for op in operations(doc) {
        map.entry(op.path.clone())
            .or_default()
            .insert(op.method.to_uppercase());
    }
    map
}

fn concrete(path: &str) -> String {
    path.replace("{name}", SESSION)
        .replace("{key}", "default")
        .replace("{id}", "contract.20260101T000000.000000Z")
}

#[test]
fn spec_is_openapi_3_1_for_this_service() {
    let doc = spec();
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "openapi: {version}");
    assert_eq!(doc["info"]["title"].as_str(), Some("session-manager"));
    assert_eq!(
        doc["info"]["version"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "info.version follows Cargo.toml"
    );
    assert!(doc["info"]["description"].as_str().is_some());
    assert_eq!(
        doc["servers"][0]["url"].as_str(),
        Some("http://127.0.0.1:8765")
    );
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"].as_str(), Some("http"));
    assert_eq!(scheme["scheme"].as_str(), Some("bearer"));
    assert!(
        entries(&doc["security"][0])
            .iter()
            .any(|(name, _)| name == "bearerAuth"),
        "bearerAuth applies globally"
    );
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"].as_vec(),
        Some(&Vec::new()),
        "/healthz is public"
    );

    let problem = &doc["components"]["schemas"]["Problem"];
    let required: BTreeSet<&str> = problem["required"]
        .as_vec()
        .expect("Problem lists its required members")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["type", "title", "status", "detail"])
    );

    let ops = operations(&doc);
    let mut ids = BTreeSet::new();
    for op in &ops {
        let id = op.node["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has an operationId", op.label()));
        assert!(ids.insert(id), "operationId {id} is unique");
        assert!(
            op.node["summary"].as_str().is_some(),
            "{} has a summary",
            op.label()
        );
        assert!(!op.responses.is_empty(), "{} has responses", op.label());
    }

    // Every link names an operation that exists.
    for op in &ops {
        for response in op.responses.values() {
            for (name, link) in entries(&response["links"]) {
                let target = link["operationId"].as_str().expect("links use operationId");
                assert!(
                    ids.contains(target),
                    "link {name} of {} names {target}",
                    op.label()
                );
            }
        }
    }
    let links: BTreeSet<String> =
        entries(&doc["paths"]["/sessions"]["post"]["responses"]["201"]["links"])
            .into_iter()
            .map(|(_, link)| link["operationId"].as_str().unwrap_or_default().to_owned())
            .collect();
    for wanted in [
        "getSession",
        "updateSession",
        "deleteSession",
        "getSessionPersona",
        "replaceSessionPersona",
        "switchSession",
    ] {
        assert!(
            links.contains(wanted),
            "the 201 of POST /sessions links {wanted}"
        );
    }

    // Every path parameter follows the naming rules (an archive id, its own).
    for (path, item) in entries(&doc["paths"]) {
        for param in item["parameters"].as_vec().into_iter().flatten() {
            let param = resolve(&doc, param);
            let schema = resolve(&doc, &param["schema"]);
            assert_eq!(param["in"].as_str(), Some("path"), "{path}");
            let name = param["name"].as_str().unwrap();
            assert!(
                path.contains(&format!("{{{name}}}")),
                "{path} names its parameter"
            );
            let (pattern, min, max) = match name {
                "id" => (ARCHIVE_ID_PATTERN, ARCHIVE_ID_LEN.0, ARCHIVE_ID_LEN.1),
                _ => ("^[a-zA-Z0-9_-]+$", 1, 50),
            };
            assert_eq!(schema["pattern"].as_str(), Some(pattern), "{path}");
            assert_eq!(schema["minLength"].as_i64(), Some(min as i64), "{path}");
            assert_eq!(schema["maxLength"].as_i64(), Some(max as i64), "{path}");
        }
    }
}

#[tokio::test]
async fn paths_and_methods_match_the_router() {
    let doc = spec();
    let spec = spec_methods(&doc);

    let spec_paths: BTreeSet<String> = spec.keys().cloned().collect();
    assert_eq!(
        spec_paths,
        route_paths(),
        "openapi.yaml paths vs routes::table()"
    );

    let app = TestApp::fresh().await;
    app.created(SESSION).await;
    for (path, methods) in &spec {
        if methods.contains("HEAD") {
            assert!(methods.contains("GET"), "{path}: HEAD only where GET is");
        }
        // The router's own list of methods: the Allow header of a 405.
        let response = app
            .request(Method::TRACE, &concrete(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "TRACE {path}"
        );
        let allowed: BTreeSet<String> = response.headers()[header::ALLOW]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        let mut expected = methods.clone();
        if expected.contains("GET") {
            expected.insert("HEAD".to_owned());
        }
        assert_eq!(
            allowed, expected,
            "{path}: the router's methods (Allow) vs openapi.yaml's (plus HEAD for GET)"
        );
        assert_problem(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        )
        .await;
    }
    app.stop().await;
}

#[test]
fn every_operation_lists_its_auth_and_body_errors() {
    let doc = spec();
    let global_security = doc["security"].as_vec().is_some_and(|s| !s.is_empty());
    for op in operations(&doc) {
        let label = op.label();
        let secured = match op.node["security"].as_vec() {
            Some(list) => !list.is_empty(),
            None => global_security,
        };
        assert_eq!(
            op.lists("401"),
            secured,
            "{label}: 401 listed exactly when the operation needs the token"
        );
        // What any request can meet on its way in.
        for status in ["403", "408", "421", "500"] {
            assert!(op.lists(status), "{label} lists {status}");
        }
        if !op.node["requestBody"].is_badvalue() {
            for status in ["400", "413", "415", "422"] {
                assert!(op.lists(status), "{label} has a body, so lists {status}");
            }
        } else {
            for status in ["413", "415"] {
                assert!(
                    !op.lists(status),
                    "{label} reads no body, so cannot be {status}"
                );
            }
        }
        if op.path.contains('{') {
            assert!(op.lists("400"), "{label} has a path name, so lists 400");
            assert!(op.lists("404"), "{label} names a resource, so lists 404");
        }
        assert!(!op.lists("405"), "{label}: 405 is not per operation");
        // `x-writes: false` marks an operation that changes nothing on disk (a reload).
        let writes = matches!(op.method.as_str(), "post" | "put" | "patch" | "delete")
            && op.node["x-writes"].as_bool() != Some(false);
        if writes {
            for status in ["503", "507"] {
                assert!(op.lists(status), "{label} writes, so lists {status}");
            }
        } else {
            assert!(!op.lists("507"), "{label} writes nothing, so is never 507");
        }
        // `/` has only its redirect to the page.
        assert!(
            op.responses
                .keys()
                .any(|s| s.starts_with('2') || (op.path == "/" && s == "302")),
            "{label} has a success answer"
        );
    }
}

#[test]
fn every_error_answer_is_a_problem_document() {
    let doc = spec();
    for op in operations(&doc) {
        for (status, response) in &op.responses {
            let label = format!("{} {status}", op.label());
            assert!(
                response["description"].as_str().is_some(),
                "{label} is described"
            );
            let content = entries(&response["content"]);
            // A 304 has no body either (RFC 9110 §15.4.5): only the headers of the 200.
            if op.method == "head" || status == "204" || status == "304" {
                assert!(content.is_empty(), "{label} has no body");
                continue;
            }
            if !(status.starts_with('4') || status.starts_with('5')) {
                assert!(!content.is_empty(), "{label} describes its body");
                continue;
            }
            let types: Vec<&str> = content.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(types, [PROBLEM_JSON], "{label} is a problem document");
            let schema = resolve(&doc, &content[0].1["schema"]);
            // `Problem` itself, or `allOf: [Problem, <narrowing>]`.
            let problem = &doc["components"]["schemas"]["Problem"];
            let is_problem = std::ptr::eq(schema, problem)
                || schema["allOf"]
                    .as_vec()
                    .is_some_and(|all| all.iter().any(|s| std::ptr::eq(resolve(&doc, s), problem)));
            assert!(is_problem, "{label}: the schema is Problem");
            let pinned = &schema["allOf"][1]["properties"]["status"]["const"];
            if let Some(code) = pinned.as_i64() {
                assert_eq!(code.to_string(), *status, "{label}: status const");
            }
        }
    }
}

/// A request to send, and the operation of the spec it exercises.
struct Probe {
    method: Method,
    path: String,
    op_path: &'static str,
    body: Option<(&'static str, Vec<u8>)>,
    header: Option<(header::HeaderName, &'static str)>,
}

fn probe(method: Method, path: &str, op_path: &'static str) -> Probe {
    Probe {
        method,
        path: path.to_owned(),
        op_path,
        body: None,
        header: None,
    }
}

fn with_header(mut p: Probe, name: header::HeaderName, value: &'static str) -> Probe {
    p.header = Some((name, value));
    p
}

fn with_body(mut p: Probe, content_type: &'static str, body: impl Into<Vec<u8>>) -> Probe {
    p.body = Some((content_type, body.into()));
    p
}

fn json_body(p: Probe, value: serde_json::Value) -> Probe {
    with_body(p, "application/json", value.to_string())
}

#[tokio::test]
async fn every_answer_of_a_probe_is_listed_for_its_operation() {
    let doc = spec();
    let ops = operations(&doc);
    let dirs = Dirs::new();
    // An entry that is corrupt on disk: every request naming it is 409.
    let broken = dirs.sessions().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("metadata.json"), "{\"name\": ").unwrap();
    let app = TestApp::spawn(&dirs).await;
    app.created(SESSION).await;

    let json = "application/json";
    let too_large = format!("{{\"name\":\"{}\"}}", "a".repeat(300 * 1024));
    let mut probes = Vec::new();
    for (method, op_path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/metrics"),
        (Method::GET, "/events"),
        (Method::GET, "/personas"),
        (Method::GET, "/sessions"),
        (Method::GET, "/sessions/active"),
        (Method::DELETE, "/sessions/active"),
    ] {
        probes.push(probe(method, op_path, op_path));
    }
    for query in [
        "?status=busy",
        "?status=idle",
        "?tag=x&persona=custom&q=Contract&limit=1",
        "?limit=1",
        "?limit=0",
        "?after=x",
        "?tag=a%20b",
    ] {
        probes.push(probe(
            Method::GET,
            &format!("/sessions{query}"),
            "/sessions",
        ));
    }
    for (key, op_path) in [
        ("default", "/personas/{key}"),
        ("nope", "/personas/{key}"),
        ("a.b", "/personas/{key}"),
    ] {
        probes.push(probe(Method::GET, &format!("/personas/{key}"), op_path));
    }
    for (method, path) in [
        (Method::GET, "/personas/reload"),
        (Method::POST, "/personas/reload"),
        (Method::GET, "/schemas/persona.json"),
    ] {
        probes.push(probe(method, path, path));
    }
    for query in ["", "?tail=3", "?tail=0", "?count=3"] {
        for name in [SESSION, "missing", "broken", "bad.name"] {
            let path = format!("/sessions/{name}/transcript{query}");
            probes.push(probe(Method::GET, &path, "/sessions/{name}/transcript"));
        }
    }
    for name in [SESSION, "missing", "broken", "bad.name", "a%2Fb"] {
        for (method, op_path) in [
            (Method::GET, "/sessions/{name}"),
            (Method::HEAD, "/sessions/{name}"),
            (Method::GET, "/sessions/{name}/persona"),
        ] {
            let path = op_path.replace("{name}", name);
            probes.push(probe(method, &path, op_path));
        }
    }
    // Bodies: good, malformed, without a JSON type, too large, wrong shape.
    let bodies: [(Method, &str, &'static str, serde_json::Value); 7] = [
        (
            Method::POST,
            "/sessions",
            "/sessions",
            json!({"name": "probe-1"}),
        ),
        (
            Method::PATCH,
            "/sessions/{name}",
            "/sessions/{name}",
            json!({"pid": 42}),
        ),
        (
            Method::PUT,
            "/sessions/{name}/persona",
            "/sessions/{name}/persona",
            custom_persona(),
        ),
        (
            Method::PUT,
            "/sessions/active",
            "/sessions/active",
            json!({"name": SESSION}),
        ),
        // After the switch: the session is active, so it is not renamed (409).
        (
            Method::POST,
            "/sessions/{name}/rename",
            "/sessions/{name}/rename",
            json!({"to": "renamed"}),
        ),
        (
            Method::POST,
            "/sessions/{name}/conversations",
            "/sessions/{name}/conversations",
            json!({"type": "system", "subtype": "init", "session_id": CONVERSATION}),
        ),
        (
            Method::POST,
            "/sessions/{name}/usage",
            "/sessions/{name}/usage",
            json!({"type": "result", "uuid": "r-1", "total_cost_usd": 0.01}),
        ),
    ];
    for (method, template, op_path, good) in bodies {
        let names: &[&str] = if template.contains('{') {
            &[SESSION, "missing", "broken", "bad.name"]
        } else {
            &[SESSION]
        };
        for name in names {
            let path = template.replace("{name}", name);
            probes.push(json_body(
                probe(method.clone(), &path, op_path),
                good.clone(),
            ));
            probes.push(with_body(
                probe(method.clone(), &path, op_path),
                json,
                "{\"name\":",
            ));
            probes.push(with_body(
                probe(method.clone(), &path, op_path),
                "text/plain",
                "{}",
            ));
            probes.push(with_body(
                probe(method.clone(), &path, op_path),
                json,
                too_large.clone(),
            ));
            for wrong in [json!({"unknown": 1}), json!([1]), json!({"name": "active"})] {
                probes.push(json_body(probe(method.clone(), &path, op_path), wrong));
            }
        }
    }
    // The launch spec: each mode, a mode it does not know, a fork's parent that is
    // not a conversation of the session, and a fork of a session without one.
    for name in [SESSION, "missing", "broken", "bad.name"] {
        for query in [
            "",
            "?mode=fork&print=true",
            "?mode=sideways",
            "?takeover=true",
        ] {
            let path = format!("/sessions/{name}/launch{query}");
            probes.push(probe(Method::GET, &path, "/sessions/{name}/launch"));
        }
    }
    probes.push(probe(
        Method::GET,
        "/sessions/probe-1/launch?mode=resume",
        "/sessions/{name}/launch",
    ));
    for query in ["?parent=nope", &format!("?parent={OTHER_CONVERSATION}")] {
        let path = format!("/sessions/{SESSION}/conversations{query}");
        probes.push(json_body(
            probe(Method::POST, &path, "/sessions/{name}/conversations"),
            json!({"type": "system", "subtype": "init", "session_id": OTHER_CONVERSATION}),
        ));
    }
    // Conditional requests: a tag that matches (304), one that is stale (412), and
    // headers that are not entity tags (400).
    for (method, op_path) in [
        (Method::GET, "/sessions/{name}"),
        (Method::HEAD, "/sessions/{name}"),
        (Method::GET, "/sessions/{name}/persona"),
        (Method::GET, "/sessions/active"),
    ] {
        let path = op_path.replace("{name}", SESSION);
        for value in ["*", "\"0-0\"", "nope"] {
            let p = probe(method.clone(), &path, op_path);
            probes.push(with_header(p, header::IF_NONE_MATCH, value));
        }
    }
    for value in ["\"0-0\"", "W/nope"] {
        let path = format!("/sessions/{SESSION}");
        let p = json_body(
            probe(Method::PATCH, &path, "/sessions/{name}"),
            json!({"budget_usd": 1}),
        );
        probes.push(with_header(p, header::IF_MATCH, value));
        let p = probe(Method::DELETE, "/sessions/active", "/sessions/active");
        probes.push(with_header(p, header::IF_MATCH, value));
    }
    probes.push(json_body(
        probe(Method::POST, "/sessions", "/sessions"),
        json!({"name": "probe-1"}),
    ));
    // The session is current now (the switch above): it cannot be suspended.
    probes.push(json_body(
        probe(
            Method::PATCH,
            &format!("/sessions/{SESSION}"),
            "/sessions/{name}",
        ),
        json!({"status": "suspended"}),
    ));
    let create = probe(Method::POST, "/sessions", "/sessions");
    probes.push(json_body(create, json!({"name": "broken"})));
    for name in ["broken", "missing"] {
        let switch = probe(Method::PUT, "/sessions/active", "/sessions/active");
        probes.push(json_body(switch, json!({ "name": name })));
    }
    for name in ["broken", "missing", "bad.name", "probe-1"] {
        let path = format!("/sessions/{name}");
        probes.push(probe(Method::DELETE, &path, "/sessions/{name}"));
    }
    // The archive: a list, ids that are and are not archive ids, restore bodies.
    for query in ["", "?limit=1", "?limit=0", "?after=zz"] {
        let path = format!("/archive{query}");
        probes.push(probe(Method::GET, &path, "/archive"));
    }
    for id in ["missing.20260101T000000.000000Z", "a.b", "..%2Fx"] {
        for (method, op_path) in [
            (Method::GET, "/archive/{id}"),
            (Method::DELETE, "/archive/{id}"),
            (Method::POST, "/archive/{id}/restore"),
        ] {
            probes.push(probe(method, &op_path.replace("{id}", id), op_path));
        }
        let restore = format!("/archive/{id}/restore");
        let post = || probe(Method::POST, &restore, "/archive/{id}/restore");
        probes.push(json_body(post(), json!({"as": "x"})));
        probes.push(json_body(post(), json!({"as": "active"})));
        probes.push(with_body(post(), json, "{\"as\":"));
        probes.push(with_body(post(), "text/plain", "{}"));
        probes.push(with_body(post(), json, too_large.clone()));
    }
    probes.push(json_body(
        probe(
            Method::POST,
            "/sessions/idle/rename",
            "/sessions/{name}/rename",
        ),
        json!({"to": SESSION}),
    ));

    let mut seen = BTreeSet::new();
    for p in probes {
        let mut request = app.request(p.method.clone(), &p.path);
        if let Some((content_type, body)) = p.body {
            request = request
                .header(header::CONTENT_TYPE, content_type)
                .body(body);
        }
        if let Some((name, value)) = p.header {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let method = p.method.as_str().to_lowercase();
        let op = ops
            .iter()
            .find(|op| op.path == p.op_path && op.method == method)
            .unwrap_or_else(|| panic!("{} {} is in the spec", p.method, p.op_path));
        let label = format!("{} {} answered {status}", p.method, p.path);
        assert!(
            op.lists(status.as_str()),
            "{label}, which {} does not list",
            op.label()
        );
        seen.insert((op.label(), status.as_u16()));
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                PROBLEM_JSON,
                "{label}"
            );
            if p.method != Method::HEAD {
                assert_problem_with_status(response, status).await;
            }
        }
    }
    // The probes did reach the interesting answers.
    for (op, status) in [
        ("GET /sessions/{name}", 400),
        ("GET /sessions/{name}", 409),
        ("HEAD /sessions/{name}", 409),
        ("DELETE /sessions/{name}", 409),
        ("PUT /sessions/active", 409),
        ("PUT /sessions/{name}/persona", 409),
        ("GET /sessions/{name}/persona", 409),
        ("HEAD /sessions/{name}", 404),
        ("POST /sessions", 201),
        ("POST /sessions", 409),
        ("POST /sessions", 413),
        ("POST /sessions", 415),
        ("PATCH /sessions/{name}", 409),
        ("PUT /sessions/active", 404),
        ("DELETE /sessions/{name}", 204),
        ("GET /sessions", 422),
        ("GET /sessions/{name}/launch", 200),
        ("GET /sessions/{name}/launch", 409),
        ("GET /sessions/{name}/launch", 422),
        ("POST /sessions/{name}/conversations", 201),
        ("POST /sessions/{name}/conversations", 422),
        ("POST /sessions/{name}/usage", 200),
        ("GET /sessions/{name}", 304),
        ("HEAD /sessions/{name}", 304),
        ("GET /sessions/{name}/persona", 304),
        ("GET /sessions/active", 304),
        ("GET /sessions/active", 400),
        ("PATCH /sessions/{name}", 412),
        ("DELETE /sessions/active", 400),
        ("DELETE /sessions/active", 412),
        ("GET /sessions/{name}/transcript", 404),
        ("GET /sessions/{name}/transcript", 409),
        ("GET /sessions/{name}/transcript", 422),
        ("POST /personas/reload", 200),
        ("GET /schemas/persona.json", 200),
        ("GET /archive", 200),
        ("GET /archive", 422),
        ("GET /archive/{id}", 400),
        ("GET /archive/{id}", 404),
        ("DELETE /archive/{id}", 404),
        ("POST /archive/{id}/restore", 404),
        ("POST /archive/{id}/restore", 413),
        ("POST /archive/{id}/restore", 415),
        ("POST /archive/{id}/restore", 422),
        ("POST /sessions/{name}/rename", 400),
        ("POST /sessions/{name}/rename", 404),
        ("POST /sessions/{name}/rename", 409),
        ("POST /sessions/{name}/rename", 413),
        ("POST /sessions/{name}/rename", 415),
        ("POST /sessions/{name}/rename", 422),
    ] {
        assert!(
            seen.contains(&(op.to_owned(), status)),
            "no probe of {op} answered {status}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_token_is_needed_exactly_where_the_spec_says() {
    let doc = spec();
    let app = TestApp::fresh_with(Options {
        token: Some("contract-token".to_owned()),
        ..Options::default()
    })
    .await;
    app.created(SESSION).await;
    for op in operations(&doc) {
        let method = Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
        let mut request = app.client.request(method, app.url(&concrete(&op.path)));
        if !op.node["requestBody"].is_badvalue() {
            request = request.json(&json!({}));
        }
        let response = request.send().await.unwrap();
        let label = format!("{} without the token", op.label());
        if op.lists("401") {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}");
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
            if op.method != "head" {
                assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
            }
        } else {
            assert_ne!(response.status(), StatusCode::UNAUTHORIZED, "{label}");
            assert!(op.lists(response.status().as_str()), "{label}");
        }
    }
    app.stop().await;
}

/// A persona's text fields carry the service's own rule as their `pattern`, so a client
/// (or a fuzzer) that follows the spec never sends one the service refuses.
#[test]
fn persona_text_fields_carry_the_visible_text_rule() {
    let doc = spec();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["VisibleText"]["pattern"].as_str(),
        Some(visible_text_pattern().as_str())
    );
    let persona = &schemas["Persona"]["properties"];
    let settings = &persona["settings"]["properties"];
    for field in [
        &persona["name"],
        &persona["description"],
        &persona["system_prompt"],
        &settings["model"],
    ] {
        let node = field["allOf"][0]
            .as_hash()
            .map_or(field, |_| &field["allOf"][0]);
        assert_eq!(
            node["$ref"].as_str(),
            Some("#/components/schemas/VisibleText"),
            "{field:?}"
        );
    }
}

/// A title's `pattern` is the service's own rule, and the labels refer to their schemas,
/// so a client that follows the spec never sends a title or tags the service refuses.
#[test]
fn titles_and_tags_carry_the_service_rules() {
    let doc = spec();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Title"]["pattern"].as_str(),
        Some(title_pattern().as_str())
    );
    assert_eq!(schemas["Title"]["maxLength"].as_i64(), Some(200));
    assert_eq!(schemas["Tag"]["pattern"].as_str(), Some("^[a-zA-Z0-9_-]+$"));
    assert_eq!(schemas["Tags"]["maxItems"].as_i64(), Some(20));
    assert_eq!(schemas["Tags"]["uniqueItems"].as_bool(), Some(true));
    let refs = |node: &Yaml| -> Vec<String> {
        let all = node["allOf"].as_vec().or(node["oneOf"].as_vec());
        all.into_iter()
            .flatten()
            .filter_map(|n| n["$ref"].as_str().map(str::to_owned))
            .collect()
    };
    for schema in ["Metadata", "PatchSession"] {
        let properties = &schemas[schema]["properties"];
        assert!(refs(&properties["title"]).contains(&"#/components/schemas/Title".into()));
        assert!(refs(&properties["tags"]).contains(&"#/components/schemas/Tags".into()));
    }
}
