//! The session's wire format: its metadata plus what is computed at answer time — `dir`,
//! `process` and `idle_seconds` ([`SessionJson`]) — and the filters of `GET /sessions`
//! ([`Filter`]; its cached body is `list_cache`'s).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{
    Conversation, ConversationId, DEFAULT_PERSONA, Dollars, Metadata, PersonaKey, SessionName,
    Status, Tag, Tags, Timestamp, Title, Usage,
};
use crate::process::{Liveness, Probe};
use crate::store::{Entry, Store, Version, layout};

/// The names computed at answer time: a stored field of the same name (someone else's)
/// is not shown, so that it cannot shadow them.
const COMPUTED: [&str; 3] = ["dir", "process", "idle_seconds"];

/// Where the answer's part computed at answer time begins (after `dir`, which a run
/// never changes).
const PROCESS_KEY: &[u8] = b",\"process\":";

/// A session as answered: its metadata as stored (each field this service added only
/// when it has a value, as in the file), `dir` (the absolute path of its directory),
/// `process` (whether its recorded process runs) and `idle_seconds` (since the last
/// switch to it or report about it).
#[derive(Debug, Clone)]
pub struct SessionJson {
    pub entry: Arc<Entry>,
    pub dir: PathBuf,
    pub process: Liveness,
    pub idle_seconds: u64,
}

impl SessionJson {
    pub fn new(store: &Store, entry: Arc<Entry>) -> Self {
        Self::at(store, entry, SystemTime::now())
    }

    /// The session as answered at `now`.
    pub fn at(store: &Store, entry: Arc<Entry>, now: SystemTime) -> Self {
        let dir = store.session_dir(&entry.metadata.name);
        let process = store.liveness(&entry);
        let idle_seconds = idle_seconds(&entry.metadata, now);
        Self {
            entry,
            dir,
            process,
            idle_seconds,
        }
    }

    /// The session as answered by the store in `sessions_dir`, for a caller that holds
    /// no handle on the store (the change feed's task), with `probe` for its process.
    pub fn under(sessions_dir: &Path, probe: &Probe, entry: Arc<Entry>) -> Self {
        let dir = layout::session_dir(sessions_dir, &entry.metadata.name);
        let metadata = &entry.metadata;
        let process = probe.check(metadata.pid, metadata.pid_recorded);
        let idle_seconds = idle_seconds(metadata, SystemTime::now());
        Self {
            entry,
            dir,
            process,
            idle_seconds,
        }
    }

    pub fn metadata(&self) -> &Metadata {
        &self.entry.metadata
    }

    /// The answer as JSON: the same bytes as its `Serialize` form, made of the stored
    /// part, serialised once per entry (every field up to `dir`), and the two computed
    /// at answer time. A GET then copies bytes instead of serialising the metadata.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }

    /// [`to_json`](Self::to_json), appended to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let stored = self.entry.rendered.get_or_init(|| self.render_stored());
        out.reserve(stored.len() + 48);
        out.extend_from_slice(stored);
        out.extend_from_slice(PROCESS_KEY);
        // Neither part needs escaping: a word of ours, and a number.
        write!(
            out,
            "\"{}\",\"idle_seconds\":{}}}",
            self.process.as_str(),
            self.idle_seconds
        )
        .expect("writing to a Vec cannot fail");
    }

    /// The serialised form cut just before `"process"`, the first computed field that
    /// changes between answers. No stored field can carry that key (see [`COMPUTED`]),
    /// and inside a JSON string a quote is escaped, so its last occurrence is the cut.
    fn render_stored(&self) -> Box<[u8]> {
        let mut full = serde_json::to_vec(self).expect("a session serialises");
        let cut = full
            .windows(PROCESS_KEY.len())
            .rposition(|w| w == PROCESS_KEY)
            .expect("the answer has a process field");
        full.truncate(cut);
        full.into_boxed_slice()
    }

    pub fn version(&self) -> Version {
        self.entry.version
    }
}

/// When the session was last used: the last switch to it or report about it.
pub fn last_used(metadata: &Metadata) -> Timestamp {
    metadata
        .last_report
        .map_or(metadata.last_active, |r| r.max(metadata.last_active))
}

/// A session answer's tag: its version and its process.
impl From<&SessionJson> for crate::http::conditional::Tag {
    fn from(session: &SessionJson) -> Self {
        Self::with_process(session.entry.version, session.process)
    }
}

/// Seconds since the session was last used ([`last_used`]).
pub fn idle_seconds(metadata: &Metadata, now: SystemTime) -> u64 {
    now.duration_since(last_used(metadata).to_system_time())
        .map_or(0, |d| d.as_secs())
}

/// The usage totals, without the ids kept to count each message once.
#[derive(Serialize)]
struct UsageView<'a> {
    cost_usd: Dollars,
    turns: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    results: u64,
    updated: Timestamp,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl<'a> From<&'a Usage> for UsageView<'a> {
    fn from(u: &'a Usage) -> Self {
        Self {
            cost_usd: u.cost_usd,
            turns: u.turns,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_tokens,
            cache_creation_tokens: u.cache_creation_tokens,
            results: u.results,
            updated: u.updated,
            extra: &u.extra,
        }
    }
}

impl Serialize for SessionJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            name: &'a str,
            created: Timestamp,
            last_active: Timestamp,
            persona: &'a Option<String>,
            pid: Option<i64>,
            status: Status,
            #[serde(skip_serializing_if = "Option::is_none")]
            pid_recorded: Option<Timestamp>,
            #[serde(skip_serializing_if = "Option::is_none")]
            conversation: Option<ConversationId>,
            #[serde(skip_serializing_if = "<[Conversation]>::is_empty")]
            conversations: &'a [Conversation],
            #[serde(skip_serializing_if = "Option::is_none")]
            usage: Option<UsageView<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            budget_usd: Option<Dollars>,
            #[serde(skip_serializing_if = "Option::is_none")]
            last_report: Option<Timestamp>,
            #[serde(skip_serializing_if = "Option::is_none")]
            title: Option<&'a str>,
            #[serde(skip_serializing_if = "Tags::is_empty")]
            tags: &'a Tags,
            #[serde(skip_serializing_if = "<[SessionName]>::is_empty")]
            previous_names: &'a [SessionName],
            #[serde(flatten)]
            extra: &'a Map<String, Value>,
            dir: &'a std::path::Path,
            process: Liveness,
            idle_seconds: u64,
        }
        let m = &self.entry.metadata;
        let shadowed = COMPUTED.iter().any(|k| m.extra.contains_key(*k));
        let kept;
        let extra = if shadowed {
            let mut extra = m.extra.clone();
            extra.retain(|k, _| !COMPUTED.contains(&k.as_str()));
            kept = extra;
            &kept
        } else {
            &m.extra
        };
        View {
            name: m.name.as_str(),
            created: m.created,
            last_active: m.last_active,
            persona: &m.persona,
            pid: m.pid,
            status: m.status,
            pid_recorded: m.pid_recorded,
            conversation: m.conversation,
            conversations: &m.conversations,
            usage: m.usage.as_deref().map(UsageView::from),
            budget_usd: m.budget_usd,
            last_report: m.last_report,
            title: m.title.as_ref().map(Title::as_str),
            tags: &m.tags,
            previous_names: &m.previous_names,
            extra,
            dir: &self.dir,
            process: self.process,
            idle_seconds: self.idle_seconds,
        }
        .serialize(serializer)
    }
}

/// Which sessions a list shows: those that pass every filter given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub status: Option<Status>,
    pub process: Option<Liveness>,
    /// Only sessions idle for at least this many seconds.
    pub idle_for: Option<u64>,
    /// Only sessions with this tag.
    pub tag: Option<Tag>,
    /// Only sessions whose metadata records this persona: a library key (`default` also
    /// takes the sessions that recorded none, which got the default persona), or
    /// `custom`.
    pub persona: Option<PersonaKey>,
    /// Only sessions whose name or title contains this text, in lower case (the
    /// comparison is case-insensitive).
    pub text: Option<String>,
}

impl Filter {
    /// Whether the stored state of a session passes every filter but `process`, which
    /// reads `/proc` (see [`SessionJson`]): quick, no I/O.
    pub fn keeps(&self, m: &Metadata, now: SystemTime) -> bool {
        self.status.is_none_or(|s| m.status == s)
            && self.idle_for.is_none_or(|min| idle_seconds(m, now) >= min)
            && self.tag.as_ref().is_none_or(|t| m.tags.contains(t))
            && self
                .persona
                .as_ref()
                .is_none_or(|key| match m.persona.as_deref() {
                    Some(recorded) => recorded == key.as_str(),
                    None => key.as_str() == DEFAULT_PERSONA,
                })
            && self.text.as_deref().is_none_or(|text| {
                m.name.as_str().to_ascii_lowercase().contains(text)
                    || m.title
                        .as_ref()
                        .is_some_and(|t| t.as_str().to_lowercase().contains(text))
            })
    }

    /// Whether only `status` is given, the one filter whose answers are cached.
    pub(super) fn status_only(&self) -> bool {
        *self
            == Self {
                status: self.status,
                ..Self::default()
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Version;

    fn answer(metadata: Metadata, pid: bool) -> SessionJson {
        let mut metadata = metadata;
        if pid {
            metadata.pid = Some(i64::from(i32::MAX));
        }
        let entry = Arc::new(Entry::new(metadata, Version { epoch: 1, seq: 7 }));
        SessionJson::under(Path::new("/srv/s \"q\""), &Probe::new(true), entry)
    }

    /// The bytes a GET copies are the bytes serde writes, whatever the stored fields
    /// hold: strings that look like the cut, a stored field named like a computed one,
    /// the fields this service adds, and more than one answer from one entry.
    #[test]
    fn the_cached_form_is_the_serialised_form() {
        let created = Timestamp::from_micros(1_700_000_000_000_000).unwrap();
        let plain = Metadata::new(SessionName::parse("plain").unwrap(), None, created);
        let mut odd = Metadata::new(
            SessionName::parse("odd").unwrap(),
            Some("custom".to_owned()),
            created,
        );
        odd.title = Some(Title::parse(",\"process\":\"alive\"}").unwrap());
        odd.tags = Tags::parse(&["work"]).unwrap();
        odd.extra
            .insert("process".to_owned(), Value::from("stored"));
        odd.extra
            .insert("zz".to_owned(), Value::from(",\"process\":1"));
        for session in [
            answer(plain.clone(), false),
            answer(plain, true),
            answer(odd, true),
        ] {
            let expected = serde_json::to_vec(&session).unwrap();
            assert_eq!(session.to_json(), expected);
            assert!(session.entry.rendered.get().is_some());
            assert_eq!(session.to_json(), expected, "from the cache");
            let mut listed = b"[".to_vec();
            session.write_json(&mut listed);
            assert_eq!(&listed[1..], expected);
        }
    }
}
