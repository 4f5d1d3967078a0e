//! What `kill -9` cannot show (SPEC §6, STYLE "Durable files").
//!
//! The page cache survives a killed process, so a missing fsync goes unseen by the crash
//! tests. Here the write order itself is proven: the real binary runs under
//! `strace -f`, and for every rename of a state file the trace must show an fsync of the
//! new file before it, an fsync of its directory after it, and the HTTP reply only
//! after both. (Skipped, with the reason printed, where strace is missing or cannot
//! trace.)
//!
//! And a real full disk: as root, a 2 MiB tmpfs holds the sessions directory; it is
//! filled with sessions and then with a file, and the service must answer 507 problems,
//! leave no temporary entry, keep serving reads, report the condition in `/healthz`,
//! and take writes again once the file is deleted. (Skipped, with the reason printed,
//! when not root or when the mount fails.)

use crate::helpers::*;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---- The write order, under strace.

/// What the trace says happened, in the order strace saw the calls complete.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// `fsync`/`fdatasync` of the file or directory at this path.
    Fsync(String),
    /// A successful rename (any of `rename`, `renameat`, `renameat2`).
    Rename { from: String, to: String },
    /// A write to a regular file at this path (its content changed after any fsync).
    FileWrite(String),
    /// An HTTP response going out on a TCP socket.
    Reply(u16),
    /// A directory created at this path (as the call named it).
    Mkdir(String),
}

/// The quoted strings of a strace argument list, unescaped only as far as `\"`.
fn quoted(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        s.push('\\');
                        s.push(next);
                    }
                }
                '"' => break,
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

/// The paths an `*at` call names: each quoted name joined to the directory of the
/// descriptor before it (`5</s/a>, "metadata.json"` gives `/s/a/metadata.json`), or as it
/// is when absolute.
fn at_paths(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dir = String::from("/");
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match c {
            '<' => dir = chars.by_ref().take_while(|&c| c != '>').collect(),
            '"' => {
                let name: String = chars.by_ref().take_while(|&c| c != '"').collect();
                out.push(if name.starts_with('/') {
                    name
                } else {
                    format!("{}/{name}", dir.trim_end_matches('/'))
                });
            }
            _ => {}
        }
    }
    out
}

/// The path strace's `-y` prints after the first file descriptor: `7</a/b>` gives `/a/b`.
fn first_fd_path(args: &str) -> Option<&str> {
    let start = args.find('<')? + 1;
    let end = start + args[start..].find('>')?;
    Some(&args[start..end])
}

/// Parses `strace -f -yy` output (one line per call, `PID name(args) = result`, with
/// calls that were interrupted by another thread's split in `<unfinished ...>` and
/// `<... name resumed>`) into events.
fn parse_trace(text: &str) -> Vec<Event> {
    let mut unfinished: BTreeMap<&str, String> = BTreeMap::new();
    let mut events = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        let call = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once("resumed>") else {
                continue;
            };
            match unfinished.remove(pid) {
                Some(head) => format!("{head}{tail}"),
                None => continue,
            }
        } else if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            unfinished.insert(pid, head.trim_end().to_owned());
            continue;
        } else {
            rest.to_owned()
        };
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        // strace pads short calls: `fsync(3</a>)         = 0`.
        let Some((args, result)) = args
            .rsplit_once(") ")
            .and_then(|(args, rest)| Some((args, rest.trim_start().strip_prefix("= ")?)))
        else {
            continue;
        };
        let Ok(result) = result
            .split_whitespace()
            .next()
            .unwrap_or("")
            .parse::<i64>()
        else {
            continue;
        };
        match name {
            "fsync" | "fdatasync" if result == 0 => {
                if let Some(path) = first_fd_path(args) {
                    events.push(Event::Fsync(path.to_owned()));
                }
            }
            "rename" | "renameat" | "renameat2" if result == 0 => {
                let paths = if name == "rename" {
                    quoted(args)
                } else {
                    at_paths(args)
                };
                if paths.len() >= 2 {
                    events.push(Event::Rename {
                        from: paths[0].clone(),
                        to: paths[1].clone(),
                    });
                }
            }
            "mkdir" | "mkdirat" if result == 0 => {
                if let Some(path) = quoted(args).into_iter().next() {
                    events.push(Event::Mkdir(path));
                }
            }
            "write" | "writev" | "sendto" | "sendmsg" if result > 0 => {
                let Some(fd) = first_fd_path(args) else {
                    continue;
                };
                if fd.starts_with("TCP:") {
                    let first = quoted(args).into_iter().next().unwrap_or_default();
                    if let Some(status) = first.strip_prefix("HTTP/1.1 ") {
                        let code = status.get(..3).and_then(|c| c.parse().ok());
                        events.push(Event::Reply(code.unwrap_or(0)));
                    }
                } else if fd.starts_with('/') {
                    events.push(Event::FileWrite(fd.to_owned()));
                }
            }
            _ => {}
        }
    }
    events
}

fn parent(path: &str) -> &str {
    Path::new(path)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("/")
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|p| p.to_str())
        .unwrap_or("")
}

/// What a rename into the sessions directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RenameKind {
    /// `.current.json`.
    Pointer,
    /// A file into a session's directory (`metadata.json`, `persona.json`, ...).
    SessionFile,
    /// A session built under a temp name, published under its name.
    NewSession,
    /// A deleted session moved to `.archive`.
    Archived,
}

fn classify(sessions: &str, to: &str) -> Option<RenameKind> {
    let dir = parent(to);
    let name = file_name(to);
    if dir == sessions && name == ".current.json" {
        Some(RenameKind::Pointer)
    } else if dir == sessions && !name.starts_with('.') {
        Some(RenameKind::NewSession)
    } else if parent(dir) == sessions && file_name(dir) == ".archive" {
        Some(RenameKind::Archived)
    } else if parent(dir) == sessions && !file_name(dir).starts_with('.') {
        Some(RenameKind::SessionFile)
    } else {
        None
    }
}

/// Checks the write order in `events` for every rename into `sessions`: the new file
/// (or, for a new session, its directory and both files) fsynced since it was last
/// written and before the rename; the directory it lands in (and, for a move, the one
/// it left) fsynced after the rename; and no reply between the rename and those fsyncs.
/// Returns the violations and the renames checked, by kind.
fn check_write_order(
    events: &[Event],
    sessions: &str,
) -> (Vec<String>, BTreeMap<RenameKind, usize>) {
    let mut violations = Vec::new();
    let mut checked = BTreeMap::new();
    let mut synced: HashSet<String> = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        match event {
            Event::Fsync(path) => {
                synced.insert(path.clone());
            }
            Event::FileWrite(path) => {
                synced.remove(path);
            }
            Event::Reply(_) | Event::Mkdir(_) => {}
            Event::Rename { from, to } => {
                let kind = classify(sessions, to);
                // The durable state moves with the name.
                let moved: Vec<String> = synced
                    .iter()
                    .filter(|p| *p == from || p.starts_with(&format!("{from}/")))
                    .cloned()
                    .collect();
                let before = synced.clone();
                for path in moved {
                    synced.remove(&path);
                    synced.insert(format!("{to}{}", &path[from.len()..]));
                }
                let Some(kind) = kind else { continue };
                *checked.entry(kind).or_insert(0) += 1;
                let must_be_synced: Vec<String> = match kind {
                    RenameKind::Pointer | RenameKind::SessionFile => vec![from.clone()],
                    RenameKind::NewSession => vec![
                        from.clone(),
                        format!("{from}/metadata.json"),
                        format!("{from}/persona.json"),
                    ],
                    // Moved whole, already durable: only the directories matter.
                    RenameKind::Archived => vec![],
                };
                for path in must_be_synced.iter().filter(|p| !before.contains(*p)) {
                    violations.push(format!(
                        "{from} -> {to}: {path} was not fsynced (since its last write) before the rename"
                    ));
                }
                let reply = events[i + 1..]
                    .iter()
                    .position(|e| matches!(e, Event::Reply(_)))
                    .map_or(events.len(), |p| i + 1 + p);
                let mut dirs = vec![parent(to)];
                if parent(from) != parent(to) {
                    dirs.push(parent(from));
                }
                for dir in dirs {
                    let synced_after = events[i + 1..reply]
                        .iter()
                        .any(|e| matches!(e, Event::Fsync(p) if p == dir));
                    if !synced_after {
                        let after_reply = events[reply.min(events.len())..]
                            .iter()
                            .any(|e| matches!(e, Event::Fsync(p) if p == dir));
                        violations.push(format!(
                            "{from} -> {to}: no fsync of {dir} after the rename{}",
                            if after_reply {
                                " before the reply (it came after it)"
                            } else {
                                ""
                            }
                        ));
                    }
                }
            }
        }
    }
    (violations, checked)
}

/// Why strace cannot be used here, if it cannot.
fn strace_unusable() -> Option<String> {
    match Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .output()
    {
        Err(e) => Some(format!("strace is not installed ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "strace cannot trace here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn every_state_rename_is_preceded_by_an_fsync_of_the_file_and_followed_by_one_of_its_directory_before_the_reply()
 {
    if let Some(reason) = strace_unusable() {
        println!("SKIPPED: the write-order test needs strace: {reason}");
        return;
    }
    let dirs = Dirs::new();
    let trace = dirs.root.path().join("trace");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-yy", "-s", "48", "-o"])
        .arg(&trace)
        .arg("-e")
        .arg("trace=/^(fsync|fdatasync|rename|renameat|renameat2|write|writev|sendto|sendmsg)$")
        .arg("--")
        .arg(BINARY)
        .args(binary_serve_args(&dirs.sessions(), &dirs.personas()));
    binary_env(&mut command);
    let mut server = BinaryServer::start(&mut command);
    let sessions = std::fs::canonicalize(dirs.sessions()).unwrap();

    let requests: [(Method, &str, Option<Value>, StatusCode); 8] = [
        (
            Method::POST,
            "/sessions",
            Some(json!({ "name": "alpha" })),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/sessions",
            Some(json!({ "name": "beta", "persona": "planner" })),
            StatusCode::CREATED,
        ),
        (
            Method::PATCH,
            "/sessions/alpha",
            Some(json!({ "pid": 31 })),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/sessions/active",
            Some(json!({ "name": "alpha" })),
            StatusCode::OK,
        ),
        // The previous session is active: a switch writes three files.
        (
            Method::PUT,
            "/sessions/active",
            Some(json!({ "name": "beta" })),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/sessions/beta/persona",
            Some(custom_persona()),
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/sessions/beta",
            None,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            "/sessions",
            Some(json!({ "name": "gamma", "persona": custom_persona() })),
            StatusCode::CREATED,
        ),
    ];
    for (method, path, body, status) in &requests {
        let (got, answer) = server.must(method.clone(), path, body.as_ref()).await;
        assert_eq!(got, *status, "{method} {path}: {answer}");
    }

    // A clean stop, so strace writes the whole trace: the binary's pid is in its lock.
    let lock = std::fs::read_to_string(sessions.join(".lock")).unwrap();
    let pid: u32 = lock.trim().trim_start_matches("pid ").parse().unwrap();
    BinaryProcess::signal_pid(pid, "TERM");
    let status = server.process.wait_exit(std::time::Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {}", server.process.log());

    let text = std::fs::read_to_string(&trace).unwrap();
    let events = parse_trace(&text);
    let replies: Vec<u16> = events
        .iter()
        .filter_map(|e| match e {
            Event::Reply(code) => Some(*code),
            _ => None,
        })
        .collect();
    let expected: Vec<u16> = requests.iter().map(|r| r.3.as_u16()).collect();
    assert_eq!(replies, expected, "the replies the trace shows");
    let (violations, checked) = check_write_order(&events, sessions.to_str().unwrap());
    println!("durability: renames checked under strace, by kind: {checked:?}");
    assert!(
        violations.is_empty(),
        "the write order is broken:\n{}",
        violations.join("\n")
    );
    // Every kind of state rename was seen: the switches' pointer, each create's
    // publication, the files in sessions (patch, switches, persona replacement), and
    // the delete's move to the archive.
    assert!(
        checked.get(&RenameKind::Pointer).copied().unwrap_or(0) >= 2,
        "{checked:?}"
    );
    assert_eq!(
        checked.get(&RenameKind::NewSession),
        Some(&3),
        "{checked:?}"
    );
    assert!(
        checked.get(&RenameKind::SessionFile).copied().unwrap_or(0) >= 6,
        "{checked:?}"
    );
    assert_eq!(checked.get(&RenameKind::Archived), Some(&1), "{checked:?}");
}

/// A first start on directories whose parents do not exist yet creates every missing
/// level, and each new level's entry must be fsynced in its parent before the service
/// says it listens: otherwise a crash can lose the directories the sessions were in.
#[test]
fn every_directory_level_a_first_start_creates_is_fsynced_in_its_parent() {
    if let Some(reason) = strace_unusable() {
        println!("SKIPPED: the directory-creation test needs strace: {reason}");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(root.path()).unwrap();
    let sessions = root.join("data/a/b/sessions");
    let personas = root.join("library/personas");
    let trace = root.join("trace");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-yy", "-s", "200", "-o"])
        .arg(&trace)
        .arg("-e")
        .arg("trace=/^(fsync|fdatasync|mkdir|mkdirat)$")
        .arg("--")
        .arg(BINARY)
        .args(binary_serve_args(&sessions, &personas));
    binary_env(&mut command);
    let mut process = BinaryProcess::spawn(&mut command);
    process.expect_line("listening on", BINARY_START_TIMEOUT);
    let lock = std::fs::read_to_string(sessions.join(".lock")).unwrap();
    let pid: u32 = lock.trim().trim_start_matches("pid ").parse().unwrap();
    BinaryProcess::signal_pid(pid, "TERM");
    let status = process.wait_exit(std::time::Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {}", process.log());

    let text = std::fs::read_to_string(&trace).unwrap();
    let events = parse_trace(&text);
    let created: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Mkdir(path) => Some(path.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = ["data", "data/a", "data/a/b", "data/a/b/sessions"]
        .iter()
        .chain(&["library", "library/personas"])
        .map(|p| root.join(p).display().to_string())
        .collect();
    for path in &expected {
        assert!(created.contains(path), "{path} was created: {created:?}");
    }
    let unsynced: Vec<&String> = created
        .iter()
        .filter(|path| expected.contains(path))
        .filter(|path| {
            let made = events
                .iter()
                .position(|e| matches!(e, Event::Mkdir(p) if p == *path))
                .unwrap();
            !events[made..]
                .iter()
                .any(|e| matches!(e, Event::Fsync(p) if p == parent(path)))
        })
        .collect();
    assert!(
        unsynced.is_empty(),
        "directories whose parent was not fsynced after they were created: {unsynced:?}\n{text}"
    );
}

#[test]
fn the_write_order_check_catches_a_missing_fsync_and_a_reply_before_the_directory_fsync() {
    let s = "/s";
    let good = "\
10 write(7</s/a/.tmp-metadata.json>, \"{}\", 2) = 2
10 fsync(7</s/a/.tmp-metadata.json>) = 0
10 rename(\"/s/a/.tmp-metadata.json\", \"/s/a/metadata.json\") = 0
10 fsync(7</s/a> <unfinished ...>
11 futex(0x1, FUTEX_WAKE) = 1
10 <... fsync resumed>) = 0
12 writev(9<TCP:[127.0.0.1:1->127.0.0.1:2]>, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\", iov_len=17}], 1) = 17
";
    let (violations, checked) = check_write_order(&parse_trace(good), s);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(checked.get(&RenameKind::SessionFile), Some(&1));

    // Written again after its fsync: the rename publishes unsynced data.
    let rewritten = good.replacen(
        "10 rename",
        "10 write(7</s/a/.tmp-metadata.json>, \"{}\", 2) = 2\n10 rename",
        1,
    );
    let (violations, _) = check_write_order(&parse_trace(&rewritten), s);
    assert_eq!(violations.len(), 1, "{violations:?}");

    // The reply goes out before the directory is fsynced.
    let early_reply = "\
10 fsync(7</s/.tmp-current.json>) = 0
10 rename(\"/s/.tmp-current.json\", \"/s/.current.json\") = 0
12 write(9<TCP:[127.0.0.1:1->127.0.0.1:2]>, \"HTTP/1.1 200 OK\\r\\n\", 17) = 17
10 fsync(7</s>) = 0
";
    let (violations, _) = check_write_order(&parse_trace(early_reply), s);
    assert!(
        violations.len() == 1 && violations[0].contains("before the reply"),
        "{violations:?}"
    );

    // A session published before its files were fsynced, and never its parent.
    let unsynced_create = "\
10 fsync(7</s/.tmp-x/persona.json>) = 0
10 fsync(7</s/.tmp-x>) = 0
10 renameat2(AT_FDCWD</>, \"/s/.tmp-x\", AT_FDCWD</>, \"/s/a\", RENAME_NOREPLACE) = 0
";
    let (violations, _) = check_write_order(&parse_trace(unsynced_create), s);
    assert_eq!(violations.len(), 2, "{violations:?}");

    // The same calls relative to directory descriptors, as the service makes them.
    let relative = "\
10 write(8</s/a/.tmp-metadata.json.1f>, \"{}\", 2) = 2
10 fsync(8</s/a/.tmp-metadata.json.1f>) = 0
10 renameat(7</s/a>, \".tmp-metadata.json.1f\", 7</s/a>, \"metadata.json\") = 0
10 fsync(7</s/a>) = 0
";
    let (violations, checked) = check_write_order(&parse_trace(relative), s);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(checked.get(&RenameKind::SessionFile), Some(&1));
    let unsynced = relative.replace("10 fsync(8</s/a/.tmp-metadata.json.1f>) = 0\n", "");
    let (violations, _) = check_write_order(&parse_trace(&unsynced), s);
    assert_eq!(violations.len(), 1, "{violations:?}");
}

// ---- A real full disk.

/// A small tmpfs, unmounted when dropped — also when the test panics.
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    fn new(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds it: detach it now, the kernel frees it when released.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Appends to `path` until the filesystem is full or `limit` bytes are written;
/// returns the bytes written.
fn fill(path: &Path, limit: u64) -> u64 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = [0x5a_u8; 4096];
    let mut written = 0;
    while written < limit {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.sync_all();
    written
}

async fn assert_no_space(server: &BinaryServer, method: Method, path: &str, body: Option<Value>) {
    let mut request = server.request(method.clone(), path);
    if let Some(body) = &body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let problem = assert_problem(
        response,
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient-storage",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("no space") && detail.contains("retry"),
        "{method} {path}: the detail says what to do: {detail:?}"
    );
}

#[tokio::test]
async fn a_full_disk_answers_507_leaves_nothing_behind_and_takes_writes_again_once_space_is_back() {
    if !is_root() {
        println!("SKIPPED: the full-disk test mounts a tmpfs, which needs root");
        return;
    }
    let dirs = Dirs::new();
    let mount_point = dirs.root.path().join("small-disk");
    // Declared before the server, so it is dropped (unmounted) after the server is gone.
    let mount = match TmpfsMount::new(&mount_point, "2m") {
        Ok(mount) => mount,
        Err(reason) => {
            println!("SKIPPED: cannot mount a 2 MiB tmpfs: {reason}");
            return;
        }
    };
    let sessions = mount.path.join("sessions");
    let personas = dirs.personas();
    // The filler holds a quarter of the disk from the start, so deleting it gives
    // space back however the sessions happen to fill the rest.
    let filler = mount.path.join("filler");
    let reserved = fill(&filler, 512 * 1024);
    let mut server = BinaryServer::start(&mut binary_command(&sessions, &personas));

    // Sessions until the disk is full.
    let mut created = 0;
    loop {
        let body = json!({ "name": format!("full-{created}") });
        let (status, answer) = server.must(Method::POST, "/sessions", Some(&body)).await;
        if status == StatusCode::CREATED {
            created += 1;
            assert!(created < 5_000, "a 2 MiB disk took 5000 sessions");
            continue;
        }
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
        break;
    }
    assert!(created > 10, "only {created} sessions fitted on 2 MiB");
    // Then whatever is left, with the file.
    let filled = reserved + fill(&filler, u64::MAX);
    println!(
        "durability: {created} sessions filled the 2 MiB tmpfs beside {filled} bytes of filler"
    );

    // Every kind of write is refused with a 507 problem.
    assert_no_space(
        &server,
        Method::POST,
        "/sessions",
        Some(json!({ "name": "one-more" })),
    )
    .await;
    assert_no_space(
        &server,
        Method::PATCH,
        "/sessions/full-0",
        Some(json!({ "pid": 5 })),
    )
    .await;
    assert_no_space(
        &server,
        Method::PUT,
        "/sessions/active",
        Some(json!({ "name": "full-1" })),
    )
    .await;
    assert_no_space(
        &server,
        Method::PUT,
        "/sessions/full-2/persona",
        Some(custom_persona()),
    )
    .await;
    // Nothing half-written stays.
    let temps = temp_entries(&sessions);
    assert!(
        temps.is_empty(),
        "temporary entries left on the full disk: {temps:?}"
    );
    assert!(
        !sessions.join("one-more").exists(),
        "a refused create left its directory"
    );
    // Reads keep working, and say what was there.
    let list = server.get_ok("/sessions").await;
    assert_eq!(list.as_array().unwrap().len(), created);
    let full_0 = server.get_ok("/sessions/full-0").await;
    assert!(full_0["pid"].is_null(), "{full_0}");
    server.get_ok("/sessions/full-2/persona").await;
    assert!(server.get_ok("/sessions/active").await["active"].is_null());
    // `/healthz` reports the condition: storage that cannot take writes is not ready.
    let (status, health) = server.must(Method::GET, "/healthz", None).await;
    let reported = match status {
        StatusCode::SERVICE_UNAVAILABLE => health["detail"].to_string(),
        StatusCode::OK => {
            assert_eq!(health["status"], "degraded", "{health}");
            health["problems"].to_string()
        }
        other => panic!("/healthz answered {other}: {health}"),
    };
    assert!(
        reported.contains("no space"),
        "/healthz on a full disk: {status} {health}"
    );
    println!("durability: /healthz on the full disk: {status} {reported}");

    // Space is back: writes are taken again, and the condition clears.
    std::fs::remove_file(&filler).unwrap();
    let (status, answer) = server
        .must(Method::POST, "/sessions", Some(&json!({ "name": "after" })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = server
        .must(
            Method::PATCH,
            "/sessions/full-0",
            Some(&json!({ "pid": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = server
        .must(
            Method::PUT,
            "/sessions/active",
            Some(&json!({ "name": "after" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let health = server.get_ok("/healthz").await;
    assert!(
        !health["problems"]
            .to_string()
            .contains("the last write failed"),
        "{health}"
    );
    let (seen, violations) = check_store(&server, &sessions, &personas).await;
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(seen.sessions.len(), created + 1);

    // And all of it is durable.
    server.process.kill();
    let server = BinaryServer::start(&mut binary_command(&sessions, &personas));
    let (after, violations) = check_store(&server, &sessions, &personas).await;
    assert!(violations.is_empty(), "after a restart: {violations:#?}");
    assert_eq!(after.sessions, seen.sessions);
    assert_eq!(after.current.as_deref(), Some("after"));
    drop(server);
    drop(mount);
    assert!(
        !Command::new("mountpoint")
            .arg("-q")
            .arg(&mount_point)
            .status()
            .is_ok_and(|s| s.success()),
        "the tmpfs is still mounted"
    );
}
