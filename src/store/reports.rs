//! What the bot reports about a session's runs, and what the store derives from it: the
//! conversation a run is in (the CLI's `init` message), what a run cost (its `result`
//! message, each counted once), and whether the recorded process still runs.
//!
//! A process found gone is announced once ([`ChangeKind::ProcessGone`]), whether a
//! read or the periodic check ([`Store::check_processes`]) found it.

use std::sync::Arc;

use super::Store;
use super::error::StoreError;
use super::events::ChangeKind;
use super::index::{Entry, IfMatch};
use super::tx::Tx;
use crate::model::{
    ConversationId, Counted, InitMessage, ResultMessage, SessionName, Status, Timestamp,
};
use crate::process::Liveness;

impl Store {
    /// Records the conversation a run of the session is in, from the CLI's `init`
    /// message; `parent` is the conversation it was forked from. Returns the session and
    /// whether the conversation is new to it.
    pub async fn report_conversation(
        &self,
        name: SessionName,
        init: InitMessage,
        parent: Option<ConversationId>,
        if_match: Option<IfMatch>,
    ) -> Result<(Arc<Entry>, bool), StoreError> {
        self.write_batched("report_conversation", move |tx| {
            tx.precondition(&name, if_match.as_ref())?;
            tx.report_conversation(&name, &init, parent)
        })
        .await
    }

    /// Adds a `result` message of `run` (when known) to the session's usage, once per
    /// message.
    pub async fn record_usage(
        &self,
        name: SessionName,
        result: ResultMessage,
        run: Option<String>,
    ) -> Result<(Arc<Entry>, Counted), StoreError> {
        self.write_batched("record_usage", move |tx| {
            tx.record_usage(&name, &result, run.as_deref())
        })
        .await
    }

    /// Whether the session's recorded process still runs. A process found gone is
    /// announced, once.
    pub fn liveness(&self, entry: &Entry) -> Liveness {
        let metadata = &entry.metadata;
        let liveness = self.shared.probe.check(metadata.pid, metadata.pid_recorded);
        if liveness == Liveness::Gone
            && let Some(pid) = metadata.pid
        {
            self.announce_gone(&metadata.name, pid);
        }
        liveness
    }

    /// Checks every session that has a pid, announcing those whose process is gone;
    /// returns the `active` or `suspended` ones among them (a bot should have said so).
    pub fn check_processes(&self) -> Vec<SessionName> {
        let (_, entries) = self.list(None);
        entries
            .iter()
            .filter(|e| e.metadata.pid.is_some() && self.liveness(e) == Liveness::Gone)
            .filter(|e| e.metadata.status != Status::Idle)
            .map(|e| e.metadata.name.clone())
            .collect()
    }

    fn announce_gone(&self, name: &SessionName, pid: i64) {
        let mut announced = self
            .shared
            .announced
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if announced.insert((name.clone(), pid)) {
            drop(announced);
            tracing::info!(session = %name, pid, "the session's recorded process is gone");
            if let Ok(entry) = self.get(name) {
                self.shared.announce(ChangeKind::ProcessGone, entry);
            }
        }
    }
}

impl Tx<'_> {
    pub fn report_conversation(
        &mut self,
        name: &SessionName,
        init: &InitMessage,
        parent: Option<ConversationId>,
    ) -> Result<(Arc<Entry>, bool), StoreError> {
        let entry = self.get(name)?;
        let mut metadata = entry.metadata.clone();
        let now = Timestamp::now();
        let known = metadata
            .conversations
            .iter()
            .any(|c| c.id == init.session_id);
        metadata
            .set_conversation(Some(init.session_id), parent, init.model.as_deref(), now)
            .map_err(StoreError::Invalid)?;
        metadata.last_report = Some(now);
        let entry = self.write_metadata(metadata, ChangeKind::Updated)?;
        Ok((entry, !known))
    }

    pub fn record_usage(
        &mut self,
        name: &SessionName,
        result: &ResultMessage,
        run: Option<&str>,
    ) -> Result<(Arc<Entry>, Counted), StoreError> {
        let entry = self.get(name)?;
        let mut metadata = entry.metadata.clone();
        let now = Timestamp::now();
        let counted = metadata.count_result(result, run, now);
        if counted == Counted::Duplicate {
            return Ok((entry, counted));
        }
        metadata.last_report = Some(now);
        let entry = self.write_metadata(metadata, ChangeKind::Updated)?;
        if let Counted::Added {
            exhausted_now: true,
        } = counted
        {
            tracing::info!(session = %name, "the session has reached its budget");
            self.note(ChangeKind::BudgetExhausted, entry.clone());
        }
        Ok((entry, counted))
    }
}
