//! The container image, without a Docker engine: the Dockerfile's final stage is read
//! (ENV, USER, ENTRYPOINT, CMD, HEALTHCHECK) and the binary is run exactly that way,
//! as the image's non-root user when the tests run as root. Only the paths of the
//! volumes and the secret are moved into a temp dir, and the port is a free one.

use crate::helpers::*;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

/// The parts of the Dockerfile's final stage that decide how the binary runs.
#[derive(Debug, Default)]
struct Image {
    env: BTreeMap<String, String>,
    user: Option<(u32, u32)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    instructions: Vec<String>,
}

/// Reads the final stage: continuation lines are joined, comments dropped.
fn read_dockerfile(text: &str) -> Image {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = logical
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let mut image = Image::default();
    for line in &logical[last_from..] {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        image.instructions.push(instruction.to_owned());
        let array = || -> Vec<String> {
            let json = rest.split_once('[').map(|(_, a)| format!("[{a}")).unwrap();
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{line}: {e}"))
        };
        match instruction {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (key, value) = pair.split_once('=').expect("ENV key=value");
                    image.env.insert(key.to_owned(), value.to_owned());
                }
            }
            "USER" => {
                let (uid, gid) = rest.trim().split_once(':').expect("USER uid:gid");
                image.user = Some((uid.parse().unwrap(), gid.parse().unwrap()));
            }
            "ENTRYPOINT" => image.entrypoint = array(),
            "CMD" => image.cmd = array(),
            "HEALTHCHECK" => image.healthcheck = array(),
            _ => {}
        }
    }
    image
}

fn dockerfile() -> Image {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
    read_dockerfile(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn the_image_runs_as_non_root_with_a_health_check_volumes_and_labels() {
    let image = dockerfile();
    let (uid, gid) = image.user.expect("a USER");
    assert!(uid != 0 && gid != 0, "the image must not run as root");
    assert_eq!(
        image.healthcheck,
        ["/usr/local/bin/session-manager", "healthcheck"]
    );
    assert_eq!(image.entrypoint, ["/usr/local/bin/session-manager"]);
    assert_eq!(image.cmd, ["serve"]);
    for instruction in ["VOLUME", "EXPOSE", "LABEL", "HEALTHCHECK", "USER"] {
        assert!(
            image.instructions.iter().any(|i| i == instruction),
            "{instruction}"
        );
    }
    assert_eq!(image.env["SESSION_MANAGER_LISTEN"], "0.0.0.0:8765");
    assert!(image.env.contains_key("SESSION_MANAGER_TOKEN_FILE"));
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    assert!(text.contains("org.opencontainers.image.title"));
    assert!(text.contains("--locked"));
}

/// The image's environment with its volume and secret paths moved under `root`, and
/// the port replaced by `port`.
fn environment(image: &Image, root: &Path, port: u16) -> BTreeMap<String, String> {
    image
        .env
        .iter()
        .map(|(key, value)| {
            let value = match value.strip_prefix('/') {
                Some(path) if key.ends_with("_DIR") || key.ends_with("_FILE") => {
                    root.join(path).display().to_string()
                }
                _ => value.replace(":8765", &format!(":{port}")),
            };
            (key.clone(), value)
        })
        .collect()
}

/// A command for the image's binary with exactly `env`, as the image's user when the
/// tests run as root (so the process really is unprivileged).
fn image_command(image: &Image, env: &BTreeMap<String, String>, args: &[String]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .envs(env)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    if running_as_root() {
        let (uid, gid) = image.user.unwrap();
        command.uid(uid).gid(gid);
    }
    command
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Creates `path` owned by the image's user (when root), as the image's `COPY --chown`.
fn image_owned_dir(image: &Image, path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    if running_as_root() {
        let (uid, gid) = image.user.unwrap();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// Runs the image's HEALTHCHECK command; its exit code. The command bounds its own
/// wait (5 s); this bounds the whole run.
async fn health_check(image: &Image, env: &BTreeMap<String, String>) -> Option<i32> {
    let mut command = image_command(image, env, &image.healthcheck[1..]);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let run = tokio::task::spawn_blocking(move || command.status());
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the health check ends")
        .unwrap()
        .unwrap()
        .code()
}

#[tokio::test]
async fn the_binary_serves_as_the_image_runs_it_and_its_health_check_tells_up_from_down() {
    let image = dockerfile();
    let dirs = Dirs::new();
    let root = dirs.root.path();
    // The image's user must be able to reach its directories and the binary.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Port 0 first, to learn a free port; the health check then uses the real one.
    let env = environment(&image, root, 0);
    image_owned_dir(&image, Path::new(&env["SESSION_MANAGER_SESSIONS_DIR"]));
    image_owned_dir(&image, Path::new(&env["SESSION_MANAGER_PERSONAS_DIR"]));
    let token_file = Path::new(&env["SESSION_MANAGER_TOKEN_FILE"]).to_path_buf();
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        token_file.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(&token_file, "image-secret\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    if !running_as_root() {
        println!("not root: running the image's command as the current user");
    }

    let args: Vec<String> = image.entrypoint[1..]
        .iter()
        .chain(&image.cmd)
        .cloned()
        .collect();
    let mut server = BinaryServer::start(&mut image_command(&image, &env, &args));
    assert!(
        server.addr.ip().is_unspecified(),
        "listens on all interfaces"
    );
    let port = server.addr.port();
    let base = server.url("");
    let client = bounded_client();

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let sessions = client.get(format!("{base}/sessions")).send().await.unwrap();
    assert_eq!(
        sessions.status(),
        StatusCode::UNAUTHORIZED,
        "a token is required"
    );
    let created = client
        .request(Method::POST, format!("{base}/sessions"))
        .bearer_auth("image-secret")
        .json(&json!({ "name": "homelab" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let metadata = Path::new(&env["SESSION_MANAGER_SESSIONS_DIR"]).join("homelab/metadata.json");
    if running_as_root() {
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&metadata).unwrap());
        assert_eq!(owner, image.user.unwrap().0, "written by the image's user");
    }

    // The HEALTHCHECK, with the image's environment (and the port it really got).
    let health_env = environment(&image, root, port);
    assert_eq!(
        health_check(&image, &health_env).await,
        Some(0),
        "healthy while serving"
    );

    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    let status = server.process.wait_exit(Duration::from_secs(25));
    assert_eq!(status.code(), Some(0), "{}", server.process.log());
    assert_eq!(
        health_check(&image, &health_env).await,
        Some(1),
        "unhealthy once it is down"
    );
}
