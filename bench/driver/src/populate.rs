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
/// session is `suspended` with a pid, the rest `idle`. The current session's pid carries
/// when it was recorded (`pid_recorded`, its creation), so that whatever process holds
/// that pid on this machine now started later and is not taken for it: its launch spec
/// (the bot's hot path) is then a 200, not a 409 `process-alive`, on every machine.
pub fn populate(dir: &Path, n: usize, persona: &[u8]) -> Result<()> {
    fs::create_dir_all(dir)?;
    let base = created(0)?;
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
            0 => (
                "active",
                format!("4242,\n  \"pid_recorded\": \"{}\"", rfc3339(created)),
            ),
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

/// When session `i` was created: one second after the one before.
fn created(i: usize) -> Result<DateTime<Utc>> {
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse()?;
    Ok(base + TimeDelta::seconds(i as i64))
}

/// The paging cursor `GET /sessions?after=` takes for session `i` of a populated store,
/// as the service makes it (`src/http/listing.rs`): base64url, unpadded, of the JSON
/// `["<created>","<name>"]`. The page after it holds the sessions created before `i`.
pub fn cursor(i: usize) -> Result<String> {
    let json = format!(r#"["{}","s{i:05}"]"#, rfc3339(created(i)?));
    Ok(base64url(json.as_bytes()))
}

/// Base64url without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let bits = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..=group.len() {
            out.push(char::from(ALPHABET[(bits >> (18 - 6 * k) & 63) as usize]));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_the_one_the_service_gives() {
        // The `after` of the `Link` of `GET /sessions?limit=2` on a store of 100.
        assert_eq!(
            cursor(98).unwrap(),
            "WyIyMDI2LTAxLTAxVDAwOjAxOjM4LjAwMDAwMCswMDowMCIsInMwMDA5OCJd"
        );
        assert_eq!(base64url(b"ab"), "YWI");
        assert_eq!(base64url(b"a"), "YQ");
    }
}
