//! Crash consistency under `kill -9` at random moments (SPEC §6).
//!
//! The real binary runs on a temp directory while several clients drive creates,
//! switches, patches, persona replacements, deletes and clears at once; a SIGKILL ends
//! it at a random moment; it is restarted, and after each restart the test checks:
//! every listed session's `metadata.json` parses and names its own directory, its
//! `persona.json` agrees with it, and what is served equals what is on disk; at most one
//! session is `active` and it is the current one; every write acknowledged (2xx) before
//! the kill is there, and an unanswered one is wholly applied or wholly absent; no temp
//! entry is left or served; `/healthz` answers 200 (see `helpers::check_store`). Now and
//! then the restart itself is killed as soon as it has scanned, in the middle of its
//! repairs.
//!
//! Each client owns its sessions (names `c<client>-...`), so what each of them must hold
//! is known exactly; which session is current depends on the order in which the service
//! took concurrent switches, so that check uses a shared clock: an answer read before a
//! request was sent orders the two.
//!
//! Cycles: `CRASH_CYCLES` (or `KILL_CYCLES`), 25 by default, which CI runs. The long run:
//! `CRASH_CYCLES=500 cargo test --locked --all-features --test api crash -- --nocapture`
//! (target: 0 violations). `CRASH_SEED` replays the random choices of a run.

use crate::helpers::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

const DEFAULT_CYCLES: usize = 25;
const CLIENTS: usize = 4;
/// A client with this many sessions mostly deletes, so the directory stays small.
const MAX_OWNED: usize = 5;
/// The longest a cycle runs before its kill.
const MAX_RUN_MS: u64 = 300;

fn cycles() -> usize {
    ["CRASH_CYCLES", "KILL_CYCLES"]
        .iter()
        .find_map(|var| std::env::var(var).ok())
        .map(|v| {
            v.parse()
                .expect("CRASH_CYCLES / KILL_CYCLES must be a number")
        })
        .unwrap_or(DEFAULT_CYCLES)
}

/// splitmix64: enough randomness for choosing operations, and reproducible by seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The parts of a session that only its owner changes: what a write must leave.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    pid: Value,
    /// `metadata.persona`.
    persona: Value,
    /// `persona.json`'s description: each custom persona here has its own.
    description: Value,
}

impl Known {
    fn of(seen: &SessionSeen) -> Self {
        Self {
            pid: seen.metadata["pid"].clone(),
            persona: seen.metadata["persona"].clone(),
            description: seen.persona["description"].clone(),
        }
    }
}

/// An operation that can change which session is current.
#[derive(Debug, Clone)]
enum PointerKind {
    Switch(String),
    Clear,
    Delete(String),
}

#[derive(Debug, Clone)]
struct PointerOp {
    kind: PointerKind,
    sent: u64,
    /// When its 2xx answer was read; `None` when no answer came (it may have happened).
    acked: Option<u64>,
}

/// One client's view at the end of a cycle.
#[derive(Debug, Default)]
struct Client {
    index: usize,
    /// Its sessions and what each must hold.
    owned: BTreeMap<String, Known>,
    /// The request that got no answer: its session, before and after (`None` = absent).
    uncertain: Option<(String, Option<Known>, Option<Known>)>,
    pointer_ops: Vec<PointerOp>,
    acked: usize,
    violations: Vec<String>,
}

/// A custom persona whose description tells it apart.
fn custom_persona_tagged(tag: &str) -> Value {
    json!({
        "name": "Crash",
        "description": tag,
        "system_prompt": "Answer the operator.",
        "settings": { "model": "claude-sonnet-4-20250514", "max_turns": 3 }
    })
}

#[derive(Debug)]
enum Op {
    Create(String, Option<Value>),
    Patch(String, Value),
    Switch(String),
    Clear,
    Persona(String, Value),
    Delete(String),
}

impl Client {
    fn choose(&self, rng: &mut Rng, cycle: usize, serial: &mut u64) -> Op {
        let names: Vec<&String> = self.owned.keys().collect();
        let roll = if names.is_empty() {
            0
        } else if names.len() >= MAX_OWNED {
            60 + rng.below(40)
        } else {
            rng.below(100)
        };
        *serial += 1;
        let tag = format!("c{}-{cycle}-{serial}", self.index);
        match roll {
            0..25 => {
                let persona = match rng.below(4) {
                    0 => None,
                    1 => Some(custom_persona_tagged(&format!("custom {tag}"))),
                    _ => Some(json!(rng.pick(&[
                        "default",
                        "brainstorm",
                        "planner",
                        "research"
                    ]))),
                };
                Op::Create(tag, persona)
            }
            25..50 => {
                // Pids no process has: a live one would make the next PATCH 409.
                let mut body = json!({ "pid": NO_SUCH_PID + 1 + rng.below(1_000_000) as i64 });
                if rng.below(4) == 0 {
                    body["status"] = json!("idle");
                }
                Op::Patch(rng.pick(&names).to_string(), body)
            }
            50..70 => Op::Switch(rng.pick(&names).to_string()),
            70..75 => Op::Clear,
            75..85 => Op::Persona(
                rng.pick(&names).to_string(),
                custom_persona_tagged(&format!("replaced {tag}")),
            ),
            _ => Op::Delete(rng.pick(&names).to_string()),
        }
    }

    /// Drives operations until the service is gone.
    async fn drive(
        mut self,
        base: String,
        mut rng: Rng,
        cycle: usize,
        clock: Arc<AtomicU64>,
        library: Arc<BTreeMap<String, Value>>,
    ) -> Self {
        let http = bounded_client();
        let mut serial = 0;
        loop {
            let op = self.choose(&mut rng, cycle, &mut serial);
            let (method, path, body, expected) = match &op {
                Op::Create(name, persona) => {
                    let mut body = json!({ "name": name });
                    if let Some(p) = persona {
                        body["persona"] = p.clone();
                    }
                    (Method::POST, "/sessions".to_owned(), Some(body), 201)
                }
                Op::Patch(name, body) => (
                    Method::PATCH,
                    format!("/sessions/{name}"),
                    Some(body.clone()),
                    200,
                ),
                Op::Switch(name) => (
                    Method::PUT,
                    "/sessions/active".to_owned(),
                    Some(json!({ "name": name })),
                    200,
                ),
                Op::Clear => (Method::DELETE, "/sessions/active".to_owned(), None, 200),
                Op::Persona(name, persona) => (
                    Method::PUT,
                    format!("/sessions/{name}/persona"),
                    Some(persona.clone()),
                    200,
                ),
                Op::Delete(name) => (Method::DELETE, format!("/sessions/{name}"), None, 204),
            };
            let (before, after) = self.effect(&op, &library);
            let sent = clock.fetch_add(1, Ordering::SeqCst);
            let mut request = http.request(method.clone(), format!("{base}{path}"));
            if let Some(body) = &body {
                request = request.json(body);
            }
            let answer = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            let pointer_kind = match &op {
                Op::Switch(name) => Some(PointerKind::Switch(name.clone())),
                Op::Clear => Some(PointerKind::Clear),
                Op::Delete(name) => Some(PointerKind::Delete(name.clone())),
                _ => None,
            };
            let target = match &op {
                Op::Create(n, _) | Op::Patch(n, _) | Op::Persona(n, _) | Op::Delete(n) => {
                    Some(n.clone())
                }
                Op::Switch(_) | Op::Clear => None,
            };
            match answer {
                Ok((status, _)) if status.as_u16() == expected => {
                    let acked = clock.fetch_add(1, Ordering::SeqCst);
                    self.acked += 1;
                    if let Some(kind) = pointer_kind {
                        self.pointer_ops.push(PointerOp {
                            kind,
                            sent,
                            acked: Some(acked),
                        });
                    }
                    if let Some(name) = target {
                        match after {
                            Some(known) => self.owned.insert(name, known),
                            None => self.owned.remove(&name),
                        };
                    }
                }
                Ok((status, bytes)) => {
                    self.violations.push(format!(
                        "{method} {path} answered {status}, not {expected}: {}",
                        String::from_utf8_lossy(&bytes)
                    ));
                }
                // Refused before it was sent: it did not happen; the service is gone.
                Err(e) if e.is_connect() => break,
                Err(_) => {
                    if let Some(kind) = pointer_kind {
                        self.pointer_ops.push(PointerOp {
                            kind,
                            sent,
                            acked: None,
                        });
                    }
                    if let Some(name) = target {
                        self.owned.remove(&name);
                        self.uncertain = Some((name, before, after));
                    }
                    break;
                }
            }
        }
        self
    }

    /// The session an operation writes, as it is before and as it must be after.
    fn effect(&self, op: &Op, library: &BTreeMap<String, Value>) -> (Option<Known>, Option<Known>) {
        let current = |name: &String| self.owned.get(name).cloned();
        match op {
            Op::Create(_, persona) => {
                let (recorded, description) = match persona {
                    None => (Value::Null, library["default"]["description"].clone()),
                    Some(Value::String(key)) => {
                        (json!(key), library[key.as_str()]["description"].clone())
                    }
                    Some(custom) => (json!("custom"), custom["description"].clone()),
                };
                let known = Known {
                    pid: Value::Null,
                    persona: recorded,
                    description,
                };
                (None, Some(known))
            }
            Op::Patch(name, body) => {
                let before = current(name);
                let after = before.clone().map(|mut k| {
                    k.pid = body["pid"].clone();
                    k
                });
                (before, after)
            }
            Op::Persona(name, persona) => {
                let before = current(name);
                let after = before.clone().map(|mut k| {
                    k.persona = json!("custom");
                    k.description = persona["description"].clone();
                    k
                });
                (before, after)
            }
            Op::Delete(name) => (current(name), None),
            Op::Switch(_) | Op::Clear => (None, None),
        }
    }
}

/// Whether `current` is a state the service may be in after `ops`, starting from
/// `baseline`. A candidate is the value an operation that happened (or may have) left;
/// it is ruled out by an acknowledged operation that surely came after it (sent after
/// its answer was read) and left something else.
fn current_allowed(baseline: &Option<String>, ops: &[PointerOp], current: &Option<String>) -> bool {
    let possibly_current = |name: &String| {
        baseline.as_ref() == Some(name)
            || ops
                .iter()
                .any(|op| matches!(&op.kind, PointerKind::Switch(t) if t == name))
    };
    let mut candidates: Vec<(Option<String>, Option<u64>)> = vec![(baseline.clone(), Some(0))];
    for op in ops {
        match &op.kind {
            PointerKind::Switch(target) => candidates.push((Some(target.clone()), op.acked)),
            PointerKind::Clear => candidates.push((None, op.acked)),
            PointerKind::Delete(name) if possibly_current(name) => {
                candidates.push((None, op.acked))
            }
            PointerKind::Delete(_) => {}
        }
    }
    candidates.iter().any(|(value, acked)| {
        if value != current {
            return false;
        }
        let Some(acked) = acked else {
            return true;
        };
        !ops.iter().any(|later| {
            later.acked.is_some()
                && later.sent > *acked
                && match (&later.kind, value) {
                    (PointerKind::Switch(t), Some(v)) => t != v,
                    (PointerKind::Switch(_), None) => true,
                    (PointerKind::Clear, Some(_)) => true,
                    (PointerKind::Delete(d), Some(v)) => d == v,
                    (PointerKind::Clear | PointerKind::Delete(_), None) => false,
                }
        })
    })
}

/// Compares what a restart serves with what the clients of the last cycle know.
fn verify(clients: &[Client], baseline_current: &Option<String>, seen: &StoreSeen) -> Vec<String> {
    let mut violations = Vec::new();
    let mut allowed: BTreeMap<&String, Vec<Option<Known>>> = BTreeMap::new();
    for client in clients {
        violations.extend(client.violations.iter().cloned());
        for (name, known) in &client.owned {
            allowed.insert(name, vec![Some(known.clone())]);
        }
        if let Some((name, before, after)) = &client.uncertain {
            allowed.insert(name, vec![before.clone(), after.clone()]);
        }
    }
    for (name, options) in &allowed {
        let actual = seen.sessions.get(*name).map(Known::of);
        if !options.contains(&actual) {
            violations.push(format!(
                "session {name} is {actual:?}; acknowledged writes allow only {options:?}"
            ));
        }
    }
    for name in seen.sessions.keys() {
        if !allowed.contains_key(name) {
            violations.push(format!(
                "session {name} exists, but no write that created it was left standing"
            ));
        }
    }
    let ops: Vec<PointerOp> = clients
        .iter()
        .flat_map(|c| c.pointer_ops.iter().cloned())
        .collect();
    if !current_allowed(baseline_current, &ops, &seen.current) {
        violations.push(format!(
            "the current session is {:?}; from {baseline_current:?}, the switches, clears and \
             deletes of the cycle do not allow it: {ops:?}",
            seen.current
        ));
    }
    violations
}

/// Which repair a start-up warning reports (the store's messages, SPEC §6's cases).
fn repair_kind(line: &str) -> &'static str {
    const KINDS: [&str; 8] = [
        "finishing an interrupted switch",
        "finishing an interrupted persona replacement",
        "dropping a persona replacement",
        "removed a temporary",
        "marking it suspended",
        "the current session is gone",
        "no record of the current session",
        "skipping an entry",
    ];
    KINDS
        .into_iter()
        .find(|kind| line.contains(kind))
        .unwrap_or("other")
}

/// A restart: the binary on the same directories, checked, and compared with what the
/// last cycle's clients know.
struct Restart {
    server: BinaryServer,
    seen: StoreSeen,
    violations: Vec<String>,
}

async fn restart(sessions: &Path, personas: &Path) -> Restart {
    let server = BinaryServer::start(&mut binary_command(sessions, personas));
    let (seen, violations) = check_store(&server, sessions, personas).await;
    Restart {
        server,
        seen,
        violations,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kill_9_never_loses_an_acknowledged_write_or_leaves_half_a_session() {
    let cycles = cycles();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("CRASH_SEED must be a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = Rng(seed);
    let dirs = Dirs::new();
    let (sessions, personas) = (dirs.sessions(), dirs.personas());
    let started = Instant::now();

    let mut violations: Vec<String> = Vec::new();
    let mut acked_checked = 0;
    let mut restarts_with_repairs = 0;
    let mut killed_in_startup = 0;
    let mut repairs: BTreeMap<&str, usize> = BTreeMap::new();
    let mut clients: Vec<Client> = Vec::new();
    let mut baseline_current = None;

    for cycle in 0..=cycles {
        // Now and then, kill the restart itself once it has scanned: in its repairs.
        if cycle > 0 && rng.below(5) == 0 {
            let mut process = BinaryProcess::spawn(&mut binary_command(&sessions, &personas));
            let scanned = process.wait_for_line("sessions directory scanned", BINARY_START_TIMEOUT);
            process.kill();
            scanned.unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            killed_in_startup += 1;
        }
        let Restart {
            mut server,
            seen,
            violations: found,
        } = restart(&sessions, &personas).await;
        if cycle > 0 && server.startup_repaired() {
            restarts_with_repairs += 1;
            for line in server.startup_log.iter().filter(|l| l.contains(" WARN ")) {
                *repairs.entry(repair_kind(line)).or_default() += 1;
            }
        }
        let mut found = found;
        found.extend(verify(&clients, &baseline_current, &seen));
        acked_checked += clients.iter().map(|c| c.acked).sum::<usize>();
        for v in &found {
            eprintln!("crash: cycle {cycle} (seed {seed}): VIOLATION {v}");
        }
        if !found.is_empty() {
            eprintln!(
                "crash: start-up log of cycle {cycle}:\n{}",
                server.startup_log.join("\n")
            );
        }
        violations.extend(found.into_iter().map(|v| format!("cycle {cycle}: {v}")));
        if cycle == cycles {
            server.process.kill();
            break;
        }

        // What each client owns now is what this restart serves.
        baseline_current = seen.current.clone();
        let library = Arc::new(library_on_disk(&personas));
        let clock = Arc::new(AtomicU64::new(1));
        let base = format!("http://{}", server.addr);
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|index| {
                let prefix = format!("c{index}-");
                let owned = seen
                    .sessions
                    .iter()
                    .filter(|(name, _)| name.starts_with(&prefix))
                    .map(|(name, s)| (name.clone(), Known::of(s)))
                    .collect();
                let client = Client {
                    index,
                    owned,
                    ..Client::default()
                };
                tokio::spawn(client.drive(
                    base.clone(),
                    Rng(rng.next()),
                    cycle,
                    clock.clone(),
                    library.clone(),
                ))
            })
            .collect();
        // The kill lands anywhere: before the first request, or deep in the traffic.
        let run = if rng.below(8) == 0 {
            rng.below(3)
        } else {
            rng.below(MAX_RUN_MS)
        };
        tokio::time::sleep(Duration::from_millis(run)).await;
        let status = server.process.kill();
        assert!(
            status.code().is_none(),
            "cycle {cycle}: it exited by itself: {status:?}"
        );
        clients.clear();
        for task in tasks {
            let client = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a client did not stop within 30 s of the kill")
                .expect("a client panicked");
            clients.push(client);
        }
    }

    println!(
        "crash: {cycles} cycles, {} violations, {acked_checked} acknowledged writes checked, \
         {restarts_with_repairs} restarts logged a repair, {killed_in_startup} restarts killed \
         during start-up, seed {seed}, {:.1} s",
        violations.len(),
        started.elapsed().as_secs_f64()
    );
    println!("crash: repairs logged at start-up, by kind: {repairs:?}");
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert!(
        cycles == 0 || acked_checked > 0,
        "no write was acknowledged in {cycles} cycles: the test checked nothing"
    );
}

#[test]
fn the_current_session_check_orders_operations_by_the_shared_clock() {
    let switch = |t: &str, sent, acked| PointerOp {
        kind: PointerKind::Switch(t.to_owned()),
        sent,
        acked,
    };
    let some = |s: &str| Some(s.to_owned());
    // b's switch was answered before c's was sent: c wins, a and b are lost writes.
    let ops = [switch("b", 1, Some(2)), switch("c", 3, Some(4))];
    assert!(current_allowed(&some("a"), &ops, &some("c")));
    assert!(!current_allowed(&some("a"), &ops, &some("b")));
    assert!(!current_allowed(&some("a"), &ops, &some("a")));
    assert!(!current_allowed(&some("a"), &ops, &None));
    // Concurrent switches: either order.
    let ops = [switch("b", 1, Some(4)), switch("c", 2, Some(3))];
    assert!(current_allowed(&None, &ops, &some("b")));
    assert!(current_allowed(&None, &ops, &some("c")));
    // An unanswered switch may or may not have happened.
    let ops = [switch("b", 1, Some(2)), switch("c", 3, None)];
    assert!(current_allowed(&None, &ops, &some("b")));
    assert!(current_allowed(&None, &ops, &some("c")));
    // Deleting the current session leaves none current.
    let ops = [
        switch("b", 1, Some(2)),
        PointerOp {
            kind: PointerKind::Delete("b".into()),
            sent: 3,
            acked: Some(4),
        },
    ];
    assert!(current_allowed(&some("a"), &ops, &None));
    assert!(!current_allowed(&some("a"), &ops, &some("b")));
}
