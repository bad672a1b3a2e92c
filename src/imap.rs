//! A task per mailbox folder: hold the folder's lease, log in, fetch what is new, ingest it
//! through the pipeline with its UID checkpoint, apply the after-ingest action, then wait with
//! IDLE or poll. Any error: log it, record it for staff, reconnect with capped backoff; but
//! an after-ingest action the server refuses (NO or BAD) only stays owed and is retried, and
//! later mail goes on coming in (`Awaiting`, `Folder::owe`).
//!
//! Exactly once: the checkpoint commits with each message; the after-ingest action runs only
//! after that commit. A crash in between leaves the message in the folder, and the recovery
//! pass at the next login finds it again, which the pipeline records as a `duplicate`.
//! Never deletes a message whose bytes were not all stored.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::types::Mailbox;
use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config::{AfterIngest, ExistingMail, ImapAuth, MailboxSettings, Security};
use crate::message::{Origin, Quiet};
use crate::pipeline::{Batch, Pipeline};
use crate::store::StoreError;
use crate::store::folders::{self, Checkpoint, FolderKey};

/// One IMAP command may take this long before the connection is presumed dead.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Fetching a batch of bodies may take longer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// UIDs whose sizes are asked for in one command.
const SIZE_CHUNK: usize = 500;
/// Bodies fetched in one command, at most this many bytes (one larger message goes alone).
/// Up to three batches are in memory at a time: one read, one parsed, one written (`Conveyor`).
const BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// Bodies fetched in one command, at most this many messages.
const BATCH_MESSAGES: usize = 100;
/// IDLE is restarted this often, well before servers drop it (RFC 2177: 29 minutes).
pub const IDLE_RENEW: Duration = Duration::from_secs(10 * 60);
/// A folder lease lasts this long unless renewed; another instance takes over after it.
pub const LEASE_TTL: Duration = Duration::from_secs(45);
/// The lease is renewed this often.
const LEASE_RENEW: Duration = Duration::from_secs(15);
/// How often a waiting instance asks for a lease held by another.
const LEASE_RETRY: Duration = Duration::from_secs(10);

/// What went wrong with a mailbox; every variant is retried after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("TLS with {0}")]
    Tls(String),
    #[error("login refused for {0}")]
    Login(String),
    #[error("IMAP {0}")]
    Protocol(String),
    /// The server answered NO or BAD: the connection itself is fine.
    #[error("IMAP {0}")]
    Refused(String),
    #[error("no answer within {0:?} to {1}")]
    Timeout(Duration, &'static str),
    #[error("cannot read {0}")]
    Local(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Database(#[from] StoreError),
}

/// Counters the daemon shows in its status line.
#[derive(Debug, Default)]
pub struct Activity {
    pub messages: AtomicU64,
}

/// Everything a folder task needs; cloned per task.
#[derive(Clone)]
pub struct FolderTask {
    pub key: FolderKey,
    pub mailbox: MailboxSettings,
    pub pipeline: Pipeline,
    /// Identifies this instance in `mailbox_folders.lease_holder`.
    pub holder: String,
    /// Whether this instance may take folder leases at all: false while another `intake run`
    /// holds the SQLite database's run lock (`run_lock`), always true on PostgreSQL.
    pub may_lease: tokio::sync::watch::Receiver<bool>,
    pub activity: Arc<Activity>,
}

/// Capped exponential backoff with ±20% jitter: 1 s, 2 s, 4 s … 5 min.
/// `jitter` is a number in [0, 1) drawn by the caller, so this stays a pure function.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = 2f64.powi(attempt.min(16) as i32).min(300.0);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64((base * factor).min(300.0))
}

/// Runs one folder until `stop` is cancelled. Never returns early on error.
pub async fn run_folder(task: FolderTask, stop: CancellationToken) {
    let store = task.pipeline.store().clone();
    let mut attempt: u32 = 0;
    let mut last_logged: Option<String> = None;
    let mut awaiting = Awaiting::default();
    loop {
        if !wait_for_lease(&task, &stop).await {
            return;
        }
        let session_stop = stop.child_token();
        let keeper = tokio::spawn(keep_lease(task.clone(), session_stop.clone()));
        let mut connected = false;
        let result = run_session(&task, &session_stop, &mut connected, &mut awaiting).await;
        keeper.abort();
        if connected {
            attempt = 0;
        }
        match result {
            Ok(()) if stop.is_cancelled() => {
                if let Err(error) = folders::release_lease(&store, &task.key, &task.holder).await {
                    tracing::warn!(mailbox = %task.key.mailbox, folder = %task.key.folder, %error, "cannot release the folder lease");
                }
                return;
            }
            Ok(()) => {
                tracing::warn!(mailbox = %task.key.mailbox, folder = %task.key.folder, "folder lease lost to another instance; waiting to take it back");
            }
            Err(error) => {
                crate::monitor::imap_error(&task.key.mailbox);
                let text = error.to_string();
                if is_new_failure(&mut last_logged, &text) {
                    tracing::warn!(mailbox = %task.key.mailbox, folder = %task.key.folder, error = %text, "mailbox failed; reconnecting with backoff");
                } else {
                    tracing::debug!(mailbox = %task.key.mailbox, folder = %task.key.folder, error = %text, "mailbox still failing");
                }
                let _ = folders::record_error(&store, &task.key, &text).await;
                let delay = backoff(attempt, rand::random::<f64>());
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = folders::release_lease(&store, &task.key, &task.holder).await;
                        return;
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Whether `text` differs from the failure logged last (`last`, then set to it): each distinct
/// failure is a warning once, a repeat of it (a full disk, a server down) only a debug line.
fn is_new_failure(last: &mut Option<String>, text: &str) -> bool {
    if last.as_deref() == Some(text) {
        return false;
    }
    *last = Some(text.to_string());
    true
}

/// Waits until this instance holds the folder; false when stopped first.
async fn wait_for_lease(task: &FolderTask, stop: &CancellationToken) -> bool {
    let store = task.pipeline.store();
    let mut told = false;
    let mut last_error: Option<String> = None;
    let mut may_lease = task.may_lease.clone();
    loop {
        // The daemon says once why it stands by; the folders wait without a word.
        while !*may_lease.borrow_and_update() {
            tokio::select! {
                _ = stop.cancelled() => return false,
                changed = may_lease.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
            }
        }
        match folders::acquire_lease(store, &task.key, &task.holder, LEASE_TTL).await {
            Ok(true) => return true,
            Ok(false) if !told => {
                tracing::info!(mailbox = %task.key.mailbox, folder = %task.key.folder, "another instance holds this folder; standing by");
                told = true;
            }
            Ok(false) => {}
            Err(error) => {
                let text = error.to_string();
                if is_new_failure(&mut last_error, &text) {
                    tracing::warn!(mailbox = %task.key.mailbox, folder = %task.key.folder, error = %text, "cannot take the folder lease");
                } else {
                    tracing::debug!(mailbox = %task.key.mailbox, folder = %task.key.folder, error = %text, "still cannot take the folder lease");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(LEASE_RETRY) => {}
        }
    }
}

/// Renews the lease; cancels `session_stop` if another instance took it meanwhile.
async fn keep_lease(task: FolderTask, session_stop: CancellationToken) {
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        match folders::acquire_lease(task.pipeline.store(), &task.key, &task.holder, LEASE_TTL)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                session_stop.cancel();
                return;
            }
            // The database is away: ingestion fails anyway; keep trying while the lease lasts.
            Err(error) => {
                tracing::debug!(%error, "cannot renew the folder lease")
            }
        }
    }
}

type ImapSession = Session<Transport>;

/// Messages this process committed whose IMAP action has not been seen to succeed, kept across
/// the sessions of one folder task: the recovery pass retries their action alone instead of
/// taking them again, so a move the server keeps refusing adds no `duplicate` row per
/// reconnection. After a restart this is empty, and the recovery pass records a `duplicate`.
#[derive(Default)]
struct Awaiting {
    uid_validity: u32,
    actions: BTreeMap<u32, Action>,
}

/// What a committed message still waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The mailbox's `after_ingest`.
    AfterIngest,
    /// Moving aside to `oversized_folder`.
    Oversized,
}

async fn run_session(
    task: &FolderTask,
    stop: &CancellationToken,
    connected: &mut bool,
    awaiting: &mut Awaiting,
) -> Result<(), ImapError> {
    let mailbox = &task.mailbox;
    let store = task.pipeline.store();
    let mut session = connect(mailbox).await?;
    let capabilities = timed("CAPABILITY", COMMAND_TIMEOUT, session.capabilities()).await?;
    let can_idle = capabilities.has_str("IDLE");
    let can_move = capabilities.has_str("MOVE");
    let can_expunge = capabilities.has_str("UIDPLUS");
    // Deleting, or moving without MOVE, ends in an expunge; only UIDPLUS's UID EXPUNGE removes
    // intake's messages and not also those another client flagged \Deleted and may restore.
    // Refused before anything is ingested: failing after each commit would take the same
    // messages again on every reconnection.
    let expunges = match mailbox.after_ingest {
        AfterIngest::Seen => None,
        AfterIngest::Delete => Some("delete"),
        AfterIngest::Move => (!can_move).then_some("move"),
    };
    if let Some(action) = expunges
        && !can_expunge
    {
        return Err(ImapError::Config(format!(
            "mailbox {}: after_ingest = \"{action}\" needs a server with UIDPLUS{} to remove \
             only the messages intake took; this one has not: use after_ingest = \"seen\"",
            mailbox.name,
            if action == "move" { " or MOVE" } else { "" }
        )));
    }
    let selected = timed(
        "SELECT",
        COMMAND_TIMEOUT,
        session.select(wire_name(&task.key.folder)),
    )
    .await?;
    let uid_validity = selected.uid_validity.ok_or_else(|| {
        ImapError::Protocol(format!("SELECT {}: no UIDVALIDITY", task.key.folder))
    })?;
    let mut state = folders::state(store, &task.key).await?;
    // A folder seen for the first time, or renumbered by the server, starts over.
    let start_over = match state.uid_validity {
        Some(known) if known == uid_validity => None,
        Some(previous) => {
            tracing::warn!(mailbox = %task.key.mailbox, folder = %task.key.folder, previous, current = uid_validity,
                "UIDVALIDITY changed: rescanning the whole folder; stored messages come back as duplicates");
            Some(0)
        }
        None => match mailbox.existing_mail {
            ExistingMail::Quiet => {
                let through_uid = highest_uid(&mut session, &selected).await?;
                if through_uid > 0 {
                    tracing::info!(mailbox = %task.key.mailbox, folder = %task.key.folder, through_uid,
                        "first time this folder is watched: the mail already in it is ingested without registration or acknowledgement mail (existing_mail = \"quiet\")");
                }
                Some(through_uid)
            }
            ExistingMail::Acknowledge => Some(0),
        },
    };
    if let Some(quiet_through_uid) = start_over {
        folders::reset(store, &task.key, uid_validity, quiet_through_uid).await?;
        state.last_uid = 0;
        state.quiet_through_uid = quiet_through_uid;
    }
    if awaiting.uid_validity != uid_validity {
        *awaiting = Awaiting {
            uid_validity,
            actions: BTreeMap::new(),
        };
    }
    *connected = true;
    // Whether moves are UID MOVE or, without it, copy, delete and expunge.
    tracing::info!(mailbox = %task.key.mailbox, folder = %task.key.folder, idle = can_idle && mailbox.idle, r#move = can_move, "mailbox connected");

    let mut folder = Folder {
        task,
        uid_validity,
        last_uid: state.last_uid,
        quiet_through_uid: state.quiet_through_uid,
        can_move,
        can_expunge,
        ensured: std::collections::BTreeSet::new(),
        awaiting: &mut awaiting.actions,
        refused: None,
    };

    // Recovery: messages at or below the checkpoint still waiting for their after-ingest action.
    let pending_query = match mailbox.after_ingest {
        AfterIngest::Seen => "UNSEEN",
        AfterIngest::Move | AfterIngest::Delete => "ALL",
    };
    let pending = search(&mut session, pending_query, |uid| uid <= folder.last_uid).await?;
    let pending = folder.retry_awaiting(&mut session, pending).await?;
    folder.process(&mut session, pending, stop).await?;

    loop {
        folder.retry_owed(&mut session).await?;
        let query = format!("UID {}:*", folder.last_uid.saturating_add(1));
        let last_uid = folder.last_uid;
        let new = search(&mut session, &query, |uid| uid > last_uid).await?;
        let found = !new.is_empty();
        folder.process(&mut session, new, stop).await?;
        let owing = folder.owing();
        folders::record_success(store, &task.key, owing.as_deref()).await?;
        if stop.is_cancelled() {
            break;
        }
        if found {
            // Search again before waiting: mail that arrived while this batch was processed
            // was announced (EXISTS) in a response already read, and IDLE would not hear of it
            // again. Only a search that finds nothing new leads to IDLE or the poll interval.
            continue;
        }
        if can_idle && mailbox.idle {
            session = idle(session, stop).await?;
        } else {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(mailbox.poll_interval) => {}
            }
        }
        if stop.is_cancelled() {
            break;
        }
    }
    let _ = timed("LOGOUT", Duration::from_secs(5), session.logout()).await;
    Ok(())
}

/// The highest UID in the folder just selected (0 when empty): UIDNEXT minus one, or where a
/// server does not say UIDNEXT, the last UID a search finds.
async fn highest_uid(session: &mut ImapSession, selected: &Mailbox) -> Result<u32, ImapError> {
    if selected.exists == 0 {
        return Ok(0);
    }
    if let Some(next) = selected.uid_next {
        return Ok(next.saturating_sub(1));
    }
    let all = search(session, "ALL", |_| true).await?;
    Ok(all.last().copied().unwrap_or(0))
}

/// UIDs matching `query`, sorted, filtered (`n:*` always returns the highest UID).
async fn search(
    session: &mut ImapSession,
    query: &str,
    keep: impl Fn(u32) -> bool,
) -> Result<Vec<u32>, ImapError> {
    let found = timed("UID SEARCH", COMMAND_TIMEOUT, session.uid_search(query)).await?;
    let mut uids: Vec<u32> = found.into_iter().filter(|uid| keep(*uid)).collect();
    uids.sort_unstable();
    Ok(uids)
}

struct Folder<'a> {
    task: &'a FolderTask,
    uid_validity: u32,
    last_uid: u32,
    /// Messages up to this UID were here before intake first watched the folder, and are
    /// ingested without mail (`existing_mail = "quiet"`).
    quiet_through_uid: u32,
    can_move: bool,
    /// UIDPLUS: UID EXPUNGE removes exactly the messages named.
    can_expunge: bool,
    /// Folders this session has made sure exist (the move and oversized targets).
    ensured: std::collections::BTreeSet<String>,
    /// Committed by this process, action not yet done (`Awaiting`).
    awaiting: &'a mut BTreeMap<u32, Action>,
    /// The server's last refusal of an action (logged once), while any action is owed.
    refused: Option<String>,
}

impl Folder<'_> {
    /// Of the recovery pass's `pending`, applies the action still owed to those this process
    /// committed, and returns the others, to be taken again. What is no longer pending was
    /// acted on (or removed by someone else) and is forgotten.
    async fn retry_awaiting(
        &mut self,
        session: &mut ImapSession,
        pending: Vec<u32>,
    ) -> Result<Vec<u32>, ImapError> {
        self.awaiting
            .retain(|uid, _| pending.binary_search(uid).is_ok());
        let (owed, others): (Vec<u32>, Vec<u32>) = pending
            .into_iter()
            .partition(|uid| self.awaiting.contains_key(uid));
        let (after_ingest, oversized): (Vec<u32>, Vec<u32>) = owed
            .into_iter()
            .partition(|uid| self.awaiting.get(uid) == Some(&Action::AfterIngest));
        let done = self.after_ingest(session, &after_ingest).await;
        self.owe(done)?;
        for uid in oversized {
            let done = self.move_aside(session, uid).await;
            self.owe(done)?;
        }
        Ok(others)
    }

    /// Retries every action still owed (after each batch the server refused one for, before
    /// each search for new mail): a refusal leaves the messages owed and ingestion going on.
    async fn retry_owed(&mut self, session: &mut ImapSession) -> Result<(), ImapError> {
        if self.awaiting.is_empty() {
            return Ok(());
        }
        let owed: Vec<u32> = self.awaiting.keys().copied().collect();
        self.retry_awaiting(session, owed).await?;
        if self.awaiting.is_empty() {
            self.refused = None;
        }
        Ok(())
    }

    /// Passes on `result`, except that the server refusing an action (a folder it will not
    /// move into, say) is logged and leaves the messages owed: the mail is recorded, and
    /// the mail after it must not wait for a folder's rights to be mended.
    fn owe(&mut self, result: Result<(), ImapError>) -> Result<(), ImapError> {
        match result {
            Err(ImapError::Refused(text)) => {
                // Once until every owed action is done: the server's text varies (timings).
                if self.refused.is_none() {
                    tracing::warn!(mailbox = %self.task.key.mailbox, folder = %self.task.key.folder, error = %text,
                        "the server refused an after-ingest action; the messages stay in the folder, recorded once, and it is retried");
                }
                self.refused = Some(text);
                Ok(())
            }
            other => other,
        }
    }

    /// Why actions are still owed, for `last_error`.
    fn owing(&self) -> Option<String> {
        self.refused
            .as_ref()
            .filter(|_| !self.awaiting.is_empty())
            .map(|text| format!("IMAP {text}"))
    }

    /// Ingests `uids` in order, in bounded batches; stops between batches when asked.
    /// Batches go to the database on a `Conveyor`: while one is written, the next is parsed
    /// and the one after it read from the server.
    async fn process(
        &mut self,
        session: &mut ImapSession,
        uids: Vec<u32>,
        stop: &CancellationToken,
    ) -> Result<(), ImapError> {
        let mut conveyor = Conveyor::start(self.task.clone(), self.uid_validity);
        let fed = self.feed(session, &mut conveyor, uids, stop).await;
        // Invariant: what was fetched is committed, in order up to the first failure, before
        // this returns, whether it ends, stops or fails; a stop is honoured after that. The
        // after-ingest action follows unless the session failed (the recovery pass does it).
        let reported = conveyor.finish().await;
        if let Err(error) = fed {
            self.note_committed(&reported.committed);
            return Err(error);
        }
        self.act_on(session, reported).await
    }

    async fn feed(
        &mut self,
        session: &mut ImapSession,
        conveyor: &mut Conveyor,
        uids: Vec<u32>,
        stop: &CancellationToken,
    ) -> Result<(), ImapError> {
        let max_bytes = self.task.pipeline.max_message_bytes();
        for chunk in uids.chunks(SIZE_CHUNK) {
            let sizes = fetch_sizes(session, chunk).await?;
            let mut batch: Vec<u32> = Vec::new();
            let mut batch_bytes = 0u64;
            for uid in chunk {
                let Some(size) = sizes.get(uid).copied() else {
                    continue; // expunged meanwhile
                };
                if size > max_bytes {
                    self.send(session, conveyor, &mut batch, batch_bytes, stop)
                        .await?;
                    batch_bytes = 0;
                    self.settle(session, conveyor).await?;
                    self.oversized(session, *uid, size).await?;
                } else {
                    if !batch.is_empty()
                        && (batch_bytes + size > BATCH_BYTES || batch.len() >= BATCH_MESSAGES)
                    {
                        self.send(session, conveyor, &mut batch, batch_bytes, stop)
                            .await?;
                        batch_bytes = 0;
                    }
                    batch.push(*uid);
                    batch_bytes += size;
                }
                if stop.is_cancelled() {
                    break;
                }
            }
            self.send(session, conveyor, &mut batch, batch_bytes, stop)
                .await?;
            if stop.is_cancelled() {
                break;
            }
        }
        Ok(())
    }

    fn origin(&self, uid: u32) -> Origin {
        Origin {
            source: format!(
                "imap:{}/{} uid {uid}",
                self.task.key.mailbox, self.task.key.folder
            ),
            mailbox: Some(self.task.mailbox.name.clone()),
            uid: Some(uid),
            department: Some(self.task.mailbox.department.clone()),
            raw_is_complete: true,
            declared_size_bytes: None,
            quiet: (uid <= self.quiet_through_uid).then_some(Quiet::ExistingMail),
        }
    }

    /// Fetches `batch` (`bytes` in all), starts parsing it and puts it on the conveyor, then
    /// applies the after-ingest action to whatever has been committed meanwhile. After a stop,
    /// `batch` is not fetched.
    async fn send(
        &mut self,
        session: &mut ImapSession,
        conveyor: &mut Conveyor,
        batch: &mut Vec<u32>,
        bytes: u64,
        stop: &CancellationToken,
    ) -> Result<(), ImapError> {
        let uids = std::mem::take(batch);
        if uids.is_empty() || stop.is_cancelled() {
            return Ok(());
        }
        let large = bytes > BATCH_BYTES;
        if large || conveyor.carries_large {
            // A large message goes alone: it is never in memory beside another batch.
            self.settle(session, conveyor).await?;
            if large {
                // What the earlier batches freed goes back before the large one comes in.
                crate::memory::give_back_free_memory();
            }
        }
        let started = std::time::Instant::now();
        let bodies = fetch_bodies(session, &uids, "BODY.PEEK[]").await?;
        let items: Vec<(u32, Vec<u8>, Origin)> = bodies
            .into_iter()
            .map(|(uid, raw)| (uid, raw, self.origin(uid)))
            .collect();
        tracing::debug!(
            messages = items.len(),
            fetch_ms = started.elapsed().as_millis() as u64,
            "batch fetched"
        );
        if !conveyor
            .put(self.task.pipeline.parse_batch(items), large)
            .await
        {
            // The committer stopped at a failure, which settle reports; this batch is dropped
            // and stays in the folder.
            self.settle(session, conveyor).await?;
            return Err(ImapError::Local("the committer stopped".into()));
        }
        let reported = conveyor.committed_so_far();
        self.act_on(session, reported).await
    }

    /// Waits until everything on the conveyor is committed, and applies the after-ingest action.
    async fn settle(
        &mut self,
        session: &mut ImapSession,
        conveyor: &mut Conveyor,
    ) -> Result<(), ImapError> {
        let reported = conveyor.all_committed().await;
        self.act_on(session, reported).await
    }

    /// Notes what the conveyor reported committed and applies its after-ingest action, then
    /// passes on a failure it reported.
    async fn act_on(
        &mut self,
        session: &mut ImapSession,
        reported: Reported,
    ) -> Result<(), ImapError> {
        self.note_committed(&reported.committed);
        let done = self.after_ingest(session, &reported.committed).await;
        self.owe(done)?;
        reported.failure.map_or(Ok(()), Err)
    }

    /// The next search starts after what was committed, and each of it is owed its action.
    fn note_committed(&mut self, uids: &[u32]) {
        if let Some(last) = uids.iter().max() {
            self.last_uid = self.last_uid.max(*last);
        }
        for uid in uids {
            self.awaiting.insert(*uid, Action::AfterIngest);
        }
    }

    async fn ingest(&mut self, uid: u32, raw: &[u8], origin: Origin) -> Result<(), ImapError> {
        let checkpoint = Checkpoint {
            key: &self.task.key,
            uid_validity: self.uid_validity,
            uid,
        };
        let applied = self
            .task
            .pipeline
            .ingest(raw, &origin, Some(&checkpoint))
            .await?;
        self.note_committed(&[uid]);
        self.task.activity.messages.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(uid, outcome = applied.outcome.as_str(), "committed");
        Ok(())
    }

    /// Records an oversized message by its headers and moves it aside; never deletes it.
    async fn oversized(
        &mut self,
        session: &mut ImapSession,
        uid: u32,
        size: u64,
    ) -> Result<(), ImapError> {
        let headers = fetch_bodies(session, &[uid], "BODY.PEEK[HEADER]").await?;
        let Some((_, raw)) = headers.into_iter().next() else {
            return Ok(()); // expunged meanwhile
        };
        let mut origin = self.origin(uid);
        origin.raw_is_complete = false;
        origin.declared_size_bytes = Some(size);
        self.ingest(uid, &raw, origin).await?;
        self.awaiting.insert(uid, Action::Oversized);
        let done = self.move_aside(session, uid).await;
        self.owe(done)
    }

    async fn move_aside(&mut self, session: &mut ImapSession, uid: u32) -> Result<(), ImapError> {
        let target = self.task.mailbox.oversized_folder.clone();
        self.move_to(session, &[uid], &target).await?;
        self.awaiting.remove(&uid);
        Ok(())
    }

    async fn after_ingest(
        &mut self,
        session: &mut ImapSession,
        uids: &[u32],
    ) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        self.apply_after_ingest(session, uids).await?;
        for uid in uids {
            self.awaiting.remove(uid);
        }
        Ok(())
    }

    async fn apply_after_ingest(
        &mut self,
        session: &mut ImapSession,
        uids: &[u32],
    ) -> Result<(), ImapError> {
        match self.task.mailbox.after_ingest {
            AfterIngest::Seen => store_flags(session, uids, "+FLAGS.SILENT (\\Seen)").await,
            AfterIngest::Move => {
                // Invariant: config validation requires move_to with "move"; say so if not.
                let Some(target) = self.task.mailbox.move_to.clone() else {
                    return Err(ImapError::Config(format!(
                        "mailbox {}: after_ingest = \"move\" without move_to",
                        self.task.mailbox.name
                    )));
                };
                self.move_to(session, uids, &target).await
            }
            AfterIngest::Delete => {
                store_flags(session, uids, "+FLAGS.SILENT (\\Seen \\Deleted)").await?;
                expunge(session, uids).await
            }
        }
    }

    /// Moves `uids` to `target`, which is created first if it does not exist yet (once per
    /// session; a CREATE of an existing folder fails harmlessly). An operator's `move_to`
    /// folder that was never made would otherwise fail every move, and every reconnection's
    /// recovery pass would record the same messages as duplicates again.
    async fn move_to(
        &mut self,
        session: &mut ImapSession,
        uids: &[u32],
        target: &str,
    ) -> Result<(), ImapError> {
        if self.ensured.insert(target.to_string()) {
            let _ = timed("CREATE", COMMAND_TIMEOUT, session.create(wire_name(target))).await;
        }
        let set = uid_set(uids);
        let target = wire_name(target);
        if self.can_move {
            timed("UID MOVE", COMMAND_TIMEOUT, session.uid_mv(&set, &target)).await?;
            return Ok(());
        }
        // RFC 6851 fallback: copy, then delete the original.
        timed("UID COPY", COMMAND_TIMEOUT, session.uid_copy(&set, &target)).await?;
        if !self.can_expunge {
            // Only an oversized message under after_ingest = "seen" comes here (a session
            // refuses delete, and move without MOVE, on such a server): the copy is aside,
            // the original stays, marked seen, so that no search takes it again.
            return store_flags(session, uids, "+FLAGS.SILENT (\\Seen)").await;
        }
        store_flags(session, uids, "+FLAGS.SILENT (\\Seen \\Deleted)").await?;
        expunge(session, uids).await
    }
}

/// A folder name as IMAP4rev1 sends it: modified UTF-7 (RFC 3501, 5.1.3). Operators write
/// names as their mail client shows them ("Traité", "Отработано"); sent as UTF-8, a server
/// refuses them or takes them for another folder. Printable ASCII stands for itself but `&`,
/// which becomes `&-`; any other run is UTF-16BE in base64 with `,` for `/`, unpadded, between
/// `&` and `-`: base64's `IMAP_MUTF7` alphabet. (utf7-imap, the crate for all of this, was
/// last released in 2022, would bring a second base64, and counts DEL as printable.)
fn wire_name(folder: &str) -> String {
    use base64::Engine;
    const MODIFIED_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        base64::engine::general_purpose::NO_PAD,
    );
    let mut wire = String::with_capacity(folder.len());
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, wire: &mut String| {
        if !run.is_empty() {
            wire.push('&');
            wire.push_str(&MODIFIED_BASE64.encode(&run));
            wire.push('-');
            run.clear();
        }
    };
    for character in folder.chars() {
        if (' '..='~').contains(&character) {
            flush(&mut run, &mut wire);
            wire.push(character);
            if character == '&' {
                wire.push('-');
            }
        } else {
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                run.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut run, &mut wire);
    wire
}

/// Batches on their way into the database, in UID order. Each is parsed on a blocking thread
/// and committed (with the folder checkpoint) by a task of its own, so reading from the server,
/// parsing and writing go on at once. At most three batches are in memory: one being written,
/// one waiting (`QUEUED`), one being read.
struct Conveyor {
    queue: tokio::sync::mpsc::Sender<tokio::task::JoinHandle<Batch>>,
    results: tokio::sync::mpsc::UnboundedReceiver<Result<Vec<u32>, ImapError>>,
    /// Batches put on and not yet reported back.
    in_flight: usize,
    /// Whether a batch on it is over `BATCH_BYTES`.
    carries_large: bool,
    committer: tokio::task::JoinHandle<()>,
}

/// Batches that may wait, parsed or being parsed, while another is written.
const QUEUED: usize = 1;

impl Conveyor {
    fn start(task: FolderTask, uid_validity: u32) -> Conveyor {
        let (queue, mut waiting) = tokio::sync::mpsc::channel(QUEUED);
        let (report, results) = tokio::sync::mpsc::unbounded_channel();
        let committer = tokio::spawn(async move {
            // Invariant: commits in the order put on, and none after a failure: the
            // checkpoint must never pass a batch that was not committed.
            while let Some(parsing) = waiting.recv().await {
                let result = match parsing.await {
                    Ok(batch) => commit(&task, uid_validity, &batch).await,
                    Err(why) => Err(ImapError::Local(format!("parsing a batch failed: {why}"))),
                };
                let failed = result.is_err();
                if report.send(result).is_err() || failed {
                    break;
                }
            }
        });
        Conveyor {
            queue,
            results,
            in_flight: 0,
            carries_large: false,
            committer,
        }
    }

    /// Puts a batch being parsed on; false if the committer has stopped at a failure.
    async fn put(&mut self, parsing: tokio::task::JoinHandle<Batch>, large: bool) -> bool {
        if self.queue.send(parsing).await.is_err() {
            return false;
        }
        self.in_flight += 1;
        self.carries_large |= large;
        true
    }

    /// What was committed since last asked, without waiting.
    fn committed_so_far(&mut self) -> Reported {
        let mut reported = Reported::default();
        while let Ok(result) = self.results.try_recv() {
            reported.add(result);
            self.in_flight -= 1;
        }
        self.carries_large &= self.in_flight > 0;
        reported
    }

    /// Waits until every batch put on is reported.
    async fn all_committed(&mut self) -> Reported {
        let mut reported = Reported::default();
        while self.in_flight > 0 {
            let Some(result) = self.results.recv().await else {
                reported.add(Err(ImapError::Local(
                    "the committer stopped unexpectedly".into(),
                )));
                break;
            };
            reported.add(result);
            self.in_flight -= 1;
        }
        self.in_flight = 0;
        self.carries_large = false;
        reported
    }

    /// Takes no more batches and waits for the committer to finish those it has.
    async fn finish(self) -> Reported {
        let Conveyor {
            queue,
            mut results,
            committer,
            ..
        } = self;
        // Closing the queue ends the committer once it has committed what is on it.
        drop(queue);
        let mut reported = Reported::default();
        while let Some(result) = results.recv().await {
            reported.add(result);
        }
        if let Err(why) = committer.await {
            reported.add(Err(ImapError::Local(format!(
                "the committer failed: {why}"
            ))));
        }
        reported
    }
}

/// What the conveyor reported: the UIDs committed, and the failure that stopped it, if any.
#[derive(Default)]
struct Reported {
    committed: Vec<u32>,
    failure: Option<ImapError>,
}

impl Reported {
    fn add(&mut self, result: Result<Vec<u32>, ImapError>) {
        match result {
            Ok(uids) => self.committed.extend(uids),
            Err(why) => {
                self.failure.get_or_insert(why);
            }
        }
    }
}

/// Commits `batch` with the folder checkpoint; the UIDs committed.
async fn commit(
    task: &FolderTask,
    uid_validity: u32,
    batch: &Batch,
) -> Result<Vec<u32>, ImapError> {
    // An empty batch (all expunged meanwhile) opens no transaction: ingest_batch sees to it.
    let started = std::time::Instant::now();
    let applied = task
        .pipeline
        .ingest_batch(batch, &task.key, uid_validity)
        .await?;
    task.activity
        .messages
        .fetch_add(applied.len() as u64, Ordering::Relaxed);
    tracing::debug!(
        messages = applied.len(),
        ingest_ms = started.elapsed().as_millis() as u64,
        "batch committed"
    );
    Ok(batch.uids().collect())
}

async fn store_flags(
    session: &mut ImapSession,
    uids: &[u32],
    change: &str,
) -> Result<(), ImapError> {
    let set = uid_set(uids);
    let drained = async {
        let stream = session.uid_store(&set, change).await?;
        let _: Vec<_> = stream.try_collect().await?;
        Ok::<(), async_imap::error::Error>(())
    };
    timed("UID STORE", COMMAND_TIMEOUT, drained).await
}

async fn expunge(session: &mut ImapSession, uids: &[u32]) -> Result<(), ImapError> {
    let set = uid_set(uids);
    let drained = async {
        let stream = session.uid_expunge(&set).await?;
        let _: Vec<_> = stream.try_collect().await?;
        Ok::<(), async_imap::error::Error>(())
    };
    timed("UID EXPUNGE", COMMAND_TIMEOUT, drained).await
}

async fn fetch_sizes(
    session: &mut ImapSession,
    uids: &[u32],
) -> Result<HashMap<u32, u64>, ImapError> {
    let set = uid_set(uids);
    let drained = async {
        let stream = session.uid_fetch(&set, "(UID RFC822.SIZE)").await?;
        let fetches: Vec<_> = stream.try_collect().await?;
        Ok::<_, async_imap::error::Error>(
            fetches
                .iter()
                .filter_map(|fetch| Some((fetch.uid?, u64::from(fetch.size?))))
                .collect(),
        )
    };
    timed("UID FETCH RFC822.SIZE", COMMAND_TIMEOUT, drained).await
}

/// `(uid, bytes)` in UID order for a BODY.PEEK section.
async fn fetch_bodies(
    session: &mut ImapSession,
    uids: &[u32],
    section: &str,
) -> Result<Vec<(u32, Vec<u8>)>, ImapError> {
    let set = uid_set(uids);
    let query = format!("(UID {section})");
    let headers_only = section.contains("HEADER");
    let drained = async {
        let stream = session.uid_fetch(&set, &query).await?;
        let fetches: Vec<_> = stream.try_collect().await?;
        let mut bodies = BTreeMap::new();
        for fetch in &fetches {
            let bytes = if headers_only {
                fetch.header()
            } else {
                fetch.body()
            };
            if let (Some(uid), Some(bytes)) = (fetch.uid, bytes) {
                bodies.insert(uid, bytes.to_vec());
            }
        }
        Ok::<_, async_imap::error::Error>(bodies.into_iter().collect())
    };
    timed("UID FETCH BODY", FETCH_TIMEOUT, drained).await
}

/// `1,2,5` for a UID list.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits in IDLE until the server reports a change, the renewal time comes, or `stop`.
async fn idle(session: ImapSession, stop: &CancellationToken) -> Result<ImapSession, ImapError> {
    let mut handle = session.idle();
    timed("IDLE", COMMAND_TIMEOUT, handle.init()).await?;
    {
        let (wait, interrupt) = handle.wait_with_timeout(IDLE_RENEW);
        tokio::select! {
            result = wait => {
                result.map_err(|error| ImapError::Protocol(format!("IDLE: {error}")))?;
            }
            _ = stop.cancelled() => drop(interrupt),
            _ = tokio::time::sleep(IDLE_RENEW) => {}
        }
    }
    timed("DONE", COMMAND_TIMEOUT, handle.done()).await
}

async fn timed<T>(
    what: &'static str,
    limit: Duration,
    future: impl Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, ImapError> {
    use async_imap::error::Error;
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error @ (Error::No(_) | Error::Bad(_)))) => {
            Err(ImapError::Refused(format!("{what}: {error}")))
        }
        Ok(Err(error)) => Err(ImapError::Protocol(format!("{what}: {error}"))),
        Err(_) => Err(ImapError::Timeout(limit, what)),
    }
}

/// Connects, upgrades to TLS as configured, reads the greeting and logs in.
pub async fn connect(mailbox: &MailboxSettings) -> Result<ImapSession, ImapError> {
    let address = format!("{}:{}", mailbox.host, mailbox.port);
    let tcp = tokio::time::timeout(COMMAND_TIMEOUT, TcpStream::connect(&address))
        .await
        .map_err(|_| ImapError::Connect(format!("{address}: timed out")))?
        .map_err(|error| ImapError::Connect(format!("{address}: {error}")))?;
    // A half-open connection would otherwise hang a read forever.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(5);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);

    let client = match mailbox.security {
        Security::Tls => {
            let tls = tls_wrap(mailbox, tcp).await?;
            let mut client = Client::new(Transport::Tls(Box::new(tls)));
            greeting(&mut client, &address).await?;
            client
        }
        Security::Starttls => {
            let mut client = Client::new(Transport::Plain(tcp));
            greeting(&mut client, &address).await?;
            timed(
                "STARTTLS",
                COMMAND_TIMEOUT,
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let Transport::Plain(tcp) = client.into_inner() else {
                return Err(ImapError::Protocol("STARTTLS on a TLS stream".to_string()));
            };
            let tls = tls_wrap(mailbox, tcp).await?;
            Client::new(Transport::Tls(Box::new(tls)))
        }
        Security::Plain => {
            let mut client = Client::new(Transport::Plain(tcp));
            greeting(&mut client, &address).await?;
            client
        }
    };
    let what = match mailbox.auth {
        ImapAuth::Password => "password",
        ImapAuth::Xoauth2 => "OAuth 2.0 token",
    };
    let password = mailbox.password.read().map_err(|error| {
        ImapError::Local(format!("the {what} for mailbox {}: {error}", mailbox.name))
    })?;
    let (command, result) = match mailbox.auth {
        ImapAuth::Password => (
            "LOGIN",
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                client.login(&mailbox.username, password.expose()),
            )
            .await,
        ),
        ImapAuth::Xoauth2 => (
            "AUTHENTICATE XOAUTH2",
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                client.authenticate(
                    "XOAUTH2",
                    Xoauth2::new(&mailbox.username, password.expose()),
                ),
            )
            .await,
        ),
    };
    match result {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((error, _))) => Err(ImapError::Login(format!(
            "{} at {address} ({command}): {error}",
            mailbox.username
        ))),
        Err(_) => Err(ImapError::Timeout(COMMAND_TIMEOUT, command)),
    }
}

/// The SASL XOAUTH2 client (Google's and Microsoft's IMAP): one initial response,
/// `user=NAME^Aauth=Bearer TOKEN^A^A`. A server that refuses the token sends its reason as a
/// challenge first; the empty answer lets it finish with NO, which `authenticate` reports.
struct Xoauth2 {
    response: Option<String>,
}

impl Xoauth2 {
    fn new(user: &str, token: &str) -> Xoauth2 {
        Xoauth2 {
            response: Some(format!("user={user}\x01auth=Bearer {token}\x01\x01")),
        }
    }
}

impl async_imap::Authenticator for Xoauth2 {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        self.response.take().unwrap_or_default()
    }
}

/// Reads the server's greeting. A `* BYE` greeting (too many connections, maintenance) is
/// reported as such, not as the login failure that would follow it.
async fn greeting(client: &mut Client<Transport>, address: &str) -> Result<(), ImapError> {
    use async_imap::imap_proto::{Response, Status};
    match tokio::time::timeout(COMMAND_TIMEOUT, client.read_response()).await {
        Ok(Ok(Some(response))) => match response.parsed() {
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Err(ImapError::Connect(format!(
                "{address}: the server refused the connection: {}",
                outcome.information.as_deref().unwrap_or("BYE")
            ))),
            _ => Ok(()),
        },
        Ok(Ok(None)) => Err(ImapError::Connect(format!(
            "{address}: closed before the greeting"
        ))),
        Ok(Err(error)) => Err(ImapError::Connect(format!("{address}: {error}"))),
        Err(_) => Err(ImapError::Timeout(COMMAND_TIMEOUT, "greeting")),
    }
}

async fn tls_wrap(
    mailbox: &MailboxSettings,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ImapError> {
    let connector = TlsConnector::from(Arc::new(tls_config(mailbox)?));
    let server_name = ServerName::try_from(mailbox.host.clone())
        .map_err(|error| ImapError::Tls(format!("{}: invalid host name: {error}", mailbox.host)))?;
    tokio::time::timeout(COMMAND_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| ImapError::Timeout(COMMAND_TIMEOUT, "TLS handshake"))?
        .map_err(|error| ImapError::Tls(format!("{}: {error}", mailbox.host)))
}

/// The system's trusted roots, plus `ca_file` when given. Verification is always on.
fn tls_config(mailbox: &MailboxSettings) -> Result<rustls::ClientConfig, ImapError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &mailbox.ca_file {
        let certificates = crate::config::read_ca_file(path)
            .map_err(|detail| ImapError::Local(format!("ca_file {detail}")))?;
        let (added, _) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(ImapError::Local(format!(
                "ca_file {}: no certificate in it",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ImapError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A plain or TLS connection, as async-imap's stream.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Transport::Plain(_) => "Transport::Plain",
            Transport::Tls(_) => "Transport::Tls",
        })
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(context),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_go_to_the_server_in_modified_utf7() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Support/Done 2026", "Support/Done 2026"),
            ("Q&A", "Q&-A"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Traité", "Trait&AOk-"),
            // RFC 3501, 5.1.3.
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            // Beyond the BMP: a surrogate pair.
            ("📥 in", "&2D3c5Q- in"),
            // Not printable ASCII, so encoded, as RFC 3501 asks.
            ("tab\there\u{7f}", "tab&AAk-here&AH8-"),
        ];
        for (name, wire) in cases {
            assert_eq!(wire_name(name), wire, "{name}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff(0, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(30, 0.5), Duration::from_secs(300));
        assert_eq!(
            backoff(30, 1.0),
            Duration::from_secs(300),
            "jitter never passes the cap"
        );
        assert!(backoff(4, 0.0) < backoff(4, 0.99));
        assert_eq!(backoff(2, 0.0), Duration::from_secs_f64(3.2));
    }

    /// A server that greets with BYE: the operator is told that, not "login refused".
    #[tokio::test]
    async fn bye_greeting_is_reported_as_a_refusal() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            socket
                .write_all(b"* BYE Too many connections, try later\r\n")
                .await
                .expect("write");
        });
        let text = format!(
            "[[mailbox]]\nname = \"m\"\naddress = \"m@example.com\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nsecurity = \"plain\"\nusername = \"m\"\npassword = \"x\"\n"
        );
        let settings = crate::config::Settings::parse(&text, std::path::Path::new("t.toml"))
            .expect("valid config");
        let error = match connect(&settings.mailboxes[0]).await {
            Ok(_) => panic!("a BYE greeting must not log in"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("refused the connection: Too many connections"),
            "{error}"
        );
        server.await.expect("server task");
    }

    #[test]
    fn xoauth2_sends_one_initial_response_then_an_empty_one() {
        use async_imap::Authenticator;
        let mut sasl = Xoauth2::new("support@example.com", "ya29.token");
        assert_eq!(
            sasl.process(b""),
            "user=support@example.com\u{1}auth=Bearer ya29.token\u{1}\u{1}"
        );
        assert_eq!(sasl.process(b"{\"status\":\"401\"}"), "");
    }

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[1, 2, 9]), "1,2,9");
    }
}
