//! The command-line client, run as the real binary against a live instance (and an
//! unreachable one): its output, its `--json`, and its exit codes.

use crate::helpers::*;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// Runs `session-manager --listen ADDR ARGS…` (no colour), bounded; exit code, stdout
/// and stderr.
fn client(addr: SocketAddr, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(BINARY);
    binary_env(&mut command);
    if let Some(token) = token {
        command.env("SESSION_MANAGER_TOKEN", token);
    }
    command.arg("--listen").arg(addr.to_string()).args(args);
    let (status, stdout, stderr) = binary_run(&mut command, Duration::from_secs(30));
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// A running instance with a token.
fn serve(dirs: &Dirs) -> BinaryServer {
    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command.env("SESSION_MANAGER_TOKEN", "s3cret");
    BinaryServer::start(&mut command)
}

#[tokio::test]
async fn the_client_drives_a_live_instance_and_says_what_failed_by_its_exit_code() {
    let dirs = Dirs::new();
    let server = serve(&dirs);
    let addr = server.addr;
    let ok = |args: &[&str]| {
        let (code, out, err) = client(addr, Some("s3cret"), args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    assert_eq!(
        ok(&["new", "homelab"]).trim(),
        "created homelab (idle, process none)"
    );
    ok(&["new", "ideas", "--persona", "brainstorm"]);
    assert_eq!(
        ok(&["switch", "homelab"]).trim(),
        "homelab is the current session"
    );
    let table = ok(&["ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("   NAME "), "{table}");
    assert!(lines[1].starts_with("*  homelab  "), "{table}");
    assert!(
        lines[1].contains(" active ") && lines[1].ends_with("just now"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("   ideas  ") && lines[2].contains(" brainstorm "),
        "{table}"
    );
    assert!(!table.contains('\x1b'), "no colour off a terminal");
    // --json prints the API's own answer.
    let listed: Value = serde_json::from_str(&ok(&["ls", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let shown: Value = serde_json::from_str(&ok(&["show", "ideas", "--json"])).unwrap();
    assert_eq!(shown["persona"], "brainstorm");
    let personas = ok(&["personas"]);
    assert!(
        personas.lines().any(|l| l.starts_with("planner ")),
        "{personas}"
    );

    // Each kind of failure: its detail on stderr, and its own exit code.
    for (args, code, needle) in [
        (&["show", "nope"][..], 3, "session 'nope' does not exist"),
        (&["new", "homelab"][..], 4, "already exists"),
        (&["new", "bad name"][..], 5, "name"),
        (
            &["new", "x", "--persona", "nope"][..],
            5,
            "not in the library",
        ),
    ] {
        let (got, out, err) = client(addr, Some("s3cret"), args);
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (code, _, err) = client(addr, Some("wrong"), &["ls"]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("the bearer token is wrong"), "{err}");

    assert_eq!(ok(&["rm", "ideas"]).trim(), "ideas moved to the archive");
    let (code, _, _) = client(addr, Some("s3cret"), &["show", "ideas"]);
    assert_eq!(code, 3);
}

#[test]
fn an_unreachable_service_is_named_with_its_own_exit_code() {
    // A port nothing listens on: bound, then released.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, err) = client(addr, None, &["ls"]);
    assert_eq!(code, 6, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("cannot reach session-manager at {addr}")),
        "{err}"
    );
}

#[test]
fn help_lists_the_exit_codes_and_completions_are_generated() {
    let (code, out, _) = client("127.0.0.1:9".parse().unwrap(), None, &["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("6  service unreachable"), "{out}");
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = client(
            "127.0.0.1:9".parse().unwrap(),
            None,
            &["completions", shell],
        );
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("switch") && out.contains("archive"), "{shell}");
    }
}
