//! The stores the service is measured on: N sessions written straight to disk in the
//! on-disk format (SPEC §1), as the original module would have left them, then flushed.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};

use crate::Result;

/// Writes N sessions `s00000..` straight to disk as the original module would have:
/// `metadata.json` (`json.dumps(indent=2)` style, RFC 3339 timestamps with microseconds
/// and `+00:00`, every `last_active` distinct) and `persona.json` (the default persona).
/// `s00000` is the current session (`active`, and named by `.current.json`); every tenth
/// session is `suspended` with a pid, the rest `idle`.
pub fn populate(dir: &Path, n: usize, persona: &[u8]) -> Result<()> {
    fs::create_dir_all(dir)?;
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse()?;
    let current = if n > 0 { "\"s00000\"" } else { "null" };
    fs::write(
        dir.join(".current.json"),
        format!("{{\n  \"name\": {current}\n}}\n"),
    )?;
    let write = |i: usize| -> io::Result<()> {
        let name = format!("s{i:05}");
        let created = base + TimeDelta::seconds(i as i64);
        // Most recently active first is s00000; each one a distinct instant.
        let last_active = base
            + TimeDelta::days(30)
            + TimeDelta::seconds((n - i) as i64)
            + TimeDelta::microseconds((i % 1_000_000) as i64);
        let (status, pid) = match i {
            0 => ("active", "4242".to_owned()),
            i if i % 10 == 1 => ("suspended", (10_000 + i).to_string()),
            _ => ("idle", "null".to_owned()),
        };
        let session = dir.join(&name);
        fs::create_dir(&session)?;
        let metadata = format!(
            "{{\n  \"name\": \"{name}\",\n  \"created\": \"{}\",\n  \"last_active\": \"{}\",\n  \
             \"persona\": null,\n  \"pid\": {pid},\n  \"status\": \"{status}\"\n}}",
            rfc3339(created),
            rfc3339(last_active)
        );
        fs::write(session.join("metadata.json"), metadata)?;
        fs::write(session.join("persona.json"), persona)
    };
    // Two writers (the machine has two cores); each takes every other session.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|k| {
                let write = &write;
                scope.spawn(move || (k..n).step_by(2).try_for_each(write))
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("panicked")))
        })
    })?;
    Ok(())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Flushes what populate wrote, so the writes measured after it do not pay for it.
pub fn sync(dir: &Path) {
    let synced = Command::new("sync").arg("-f").arg(dir).status();
    if !synced.is_ok_and(|s| s.success()) {
        let _ = Command::new("sync").status();
    }
}
