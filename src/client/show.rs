//! How the client prints answers for a person: aligned tables, times as "5 min ago",
//! costs in dollars, and colour only on a terminal, never with `NO_COLOR` set.

use std::io::IsTerminal;
use std::time::SystemTime;

use serde_json::Value;

/// Whether to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Colour,
}

impl Style {
    /// Colour on a terminal, unless `NO_COLOR` is set (to anything but empty).
    pub fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if !no_color && std::io::stdout().is_terminal() {
            Style::Colour
        } else {
            Style::Plain
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        match self {
            Style::Plain => text.to_owned(),
            Style::Colour => format!("\x1b[{code}m{text}\x1b[0m"),
        }
    }
}

/// The strings of a JSON list, joined by ", " (empty for anything else).
fn joined(list: &Value) -> String {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or("")
}

/// `at` (an RFC 3339 timestamp) relative to `now`: "just now", "5 min ago", "3 h ago",
/// "2 days ago".
pub fn ago(at: &str, now: SystemTime) -> String {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(at) else {
        return String::new();
    };
    let now: chrono::DateTime<chrono::Utc> = now.into();
    let seconds = now.signed_duration_since(at).num_seconds().max(0);
    match seconds {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => match seconds / 86_400 {
            1 => "1 day ago".to_owned(),
            days => format!("{days} days ago"),
        },
    }
}

/// A session's cost, as dollars with cents (or more digits below a cent).
fn cost(session: &Value) -> String {
    match session["usage"]["cost_usd"].as_f64() {
        None => "-".to_owned(),
        Some(c) if c > 0.0 && c < 0.01 => format!("${c:.4}"),
        Some(c) => format!("${c:.2}"),
    }
}

/// Columns padded to their widest cell (by characters).
fn table(rows: &[Vec<String>], widths_of: &[Vec<usize>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| widths_of.iter().map(|r| r[c]).max().unwrap_or(0))
        .collect();
    rows.iter()
        .zip(widths_of)
        .map(|(row, cell_widths)| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < columns {
                    line.push_str(&" ".repeat(widths[c] - cell_widths[c] + 2));
                }
            }
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table of uncoloured cells, whose widths are their lengths.
fn plain_table(rows: &[Vec<String>]) -> String {
    let widths: Vec<Vec<usize>> = rows
        .iter()
        .map(|r| r.iter().map(|c| c.chars().count()).collect())
        .collect();
    table(rows, &widths)
}

/// The `ls` table.
pub fn sessions(list: &Value, current: Option<&str>, style: Style) -> String {
    sessions_at(list, current, style, SystemTime::now())
}

pub fn sessions_at(list: &Value, current: Option<&str>, style: Style, now: SystemTime) -> String {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return "no sessions".to_owned();
    }
    let header = [
        "",
        "NAME",
        "TITLE",
        "STATUS",
        "PROCESS",
        "PERSONA",
        "COST",
        "LAST ACTIVE",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    let mut widths = vec![header.map(|h| h.chars().count()).to_vec()];
    for s in items {
        let name = text(s, "name");
        let mark = if current == Some(name) { "*" } else { "" };
        let cells = [
            mark.to_owned(),
            name.to_owned(),
            text(s, "title").to_owned(),
            text(s, "status").to_owned(),
            text(s, "process").to_owned(),
            s["persona"].as_str().unwrap_or("default").to_owned(),
            cost(s),
            ago(text(s, "last_active"), now),
        ];
        widths.push(cells.iter().map(|c| c.chars().count()).collect());
        let mut painted = cells.to_vec();
        if current == Some(name) {
            painted[1] = style.paint("1", &cells[1]);
        }
        painted[3] = match cells[3].as_str() {
            "active" => style.paint("32", &cells[3]),
            "suspended" => style.paint("33", &cells[3]),
            _ => cells[3].clone(),
        };
        if cells[4] == "gone" {
            painted[4] = style.paint("31", &cells[4]);
        }
        rows.push(painted);
    }
    table(&rows, &widths)
}

/// One line about a session.
pub fn session_line(s: &Value) -> String {
    let title = match text(s, "title") {
        "" => String::new(),
        title => format!(" \"{title}\""),
    };
    format!(
        "{}{title} ({}, process {})",
        text(s, "name"),
        text(s, "status"),
        text(s, "process")
    )
}

/// `show`: the session's fields, one a line.
pub fn session(s: &Value) -> String {
    let mut lines = vec![session_line(s)];
    let mut field = |label: &str, value: String| {
        if !value.is_empty() {
            lines.push(format!("  {label:<13}{value}"));
        }
    };
    field("dir", text(s, "dir").to_owned());
    field(
        "persona",
        s["persona"].as_str().unwrap_or("default").to_owned(),
    );
    field(
        "pid",
        s["pid"].as_i64().map(|p| p.to_string()).unwrap_or_default(),
    );
    field("conversation", text(s, "conversation").to_owned());
    field("tags", joined(&s["tags"]));
    if s["usage"].is_object() {
        field("cost", cost(s));
    }
    field(
        "budget",
        s["budget_usd"]
            .as_f64()
            .map(|b| format!("${b:.2}"))
            .unwrap_or_default(),
    );
    field("created", text(s, "created").to_owned());
    field(
        "last active",
        ago(text(s, "last_active"), SystemTime::now()),
    );
    lines.join("\n")
}

pub fn switched(v: &Value) -> String {
    match (v["active"].as_str(), v["changed"].as_bool()) {
        (Some(active), Some(false)) => format!("{active} is already the current session"),
        (Some(active), _) => match v["previous"].as_str() {
            Some(previous) => format!("{active} is the current session ({previous} suspended)"),
            None => format!("{active} is the current session"),
        },
        (None, _) => "no session is current".to_owned(),
    }
}

pub fn personas(list: &Value) -> String {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let header = ["KEY", "MODEL", "DESCRIPTION"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for p in items {
        rows.push(vec![
            text(p, "key").to_owned(),
            text(&p["settings"], "model").to_owned(),
            text(p, "description").to_owned(),
        ]);
    }
    plain_table(&rows)
}

pub fn reloaded(v: &Value) -> String {
    let keys = v["personas"].as_array().map_or(0, Vec::len);
    let mut lines = vec![format!("reloaded: {keys} personas")];
    for s in v["skipped"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        lines.push(format!(
            "  skipped {}: {}",
            text(s, "path"),
            text(s, "reason")
        ));
    }
    lines.join("\n")
}

pub fn archive(list: &Value) -> String {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return "the archive is empty".to_owned();
    }
    let header = ["ID", "NAME", "ARCHIVED", "SIZE"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for e in items {
        let size = e["size_bytes"]
            .as_u64()
            .map(|b| format!("{} KiB", b.div_ceil(1024)))
            .unwrap_or_default();
        rows.push(vec![
            text(e, "id").to_owned(),
            text(e, "name").to_owned(),
            ago(text(e, "archived"), SystemTime::now()),
            size,
        ]);
    }
    plain_table(&rows)
}

pub fn transcript(v: &Value) -> String {
    let items = v["messages"]
        .as_array()
        .or(v.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    if items.is_empty() {
        return "no messages".to_owned();
    }
    items
        .iter()
        .map(|m| {
            let tools = joined(&m["tools"]);
            let tools = if tools.is_empty() {
                String::new()
            } else {
                format!(" [{tools}]")
            };
            format!(
                "{} {}: {}{tools}",
                text(m, "time"),
                text(m, "role"),
                text(m, "text")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    #[test]
    fn times_read_as_a_person_says_them() {
        let now = at("2026-11-24T12:00:00+00:00");
        assert_eq!(ago("2026-11-24T11:59:30+00:00", now), "just now");
        assert_eq!(ago("2026-11-24T11:55:00+00:00", now), "5 min ago");
        assert_eq!(ago("2026-11-24T09:00:00+00:00", now), "3 h ago");
        assert_eq!(ago("2026-11-23T11:00:00+00:00", now), "1 day ago");
        assert_eq!(ago("2026-11-20T12:00:00+00:00", now), "4 days ago");
    }

    /// The `ls` table for a known store, pinned.
    #[test]
    fn the_ls_table_is_pinned() {
        let now = at("2026-11-24T12:00:00+00:00");
        let list = json!([
            { "name": "homelab", "title": "Home lab", "status": "active", "process": "alive",
              "persona": "default", "last_active": "2026-11-24T11:55:00+00:00",
              "usage": { "cost_usd": 1.234 } },
            { "name": "ideas", "status": "suspended", "process": "gone", "persona": "brainstorm",
              "last_active": "2026-11-24T09:00:00+00:00", "usage": { "cost_usd": 0.0042 } },
            { "name": "old", "status": "idle", "process": "none", "persona": null,
              "last_active": "2026-11-20T12:00:00+00:00" }
        ]);
        let expected = [
            "   NAME     TITLE     STATUS     PROCESS  PERSONA     COST     LAST ACTIVE",
            "*  homelab  Home lab  active     alive    default     $1.23    5 min ago",
            "   ideas              suspended  gone     brainstorm  $0.0042  3 h ago",
            "   old                idle       none     default     -        4 days ago",
        ]
        .join("\n");
        assert_eq!(
            sessions_at(&list, Some("homelab"), Style::Plain, now),
            expected
        );
        let coloured = sessions_at(&list, Some("homelab"), Style::Colour, now);
        assert!(
            coloured.contains("\x1b[1mhomelab\x1b[0m") && coloured.contains("\x1b[31mgone\x1b[0m")
        );
        assert_eq!(
            sessions_at(&json!([]), None, Style::Plain, now),
            "no sessions"
        );
    }
}
