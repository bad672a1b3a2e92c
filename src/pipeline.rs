//! One message from raw bytes to committed rows: parse → facts → decide → apply → log line.
//!
//! Shared by `intake ingest` and the IMAP poller. Never loses a message: a unique-key race is
//! retried, a failure that is not the database being away is recorded as an `error` row with the
//! raw bytes, and only `StoreError::Unavailable` reaches the caller, who must keep the message
//! and try again later.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::config::{DepartmentAccess, Settings};
use crate::ingest::hash::HashFormat;
use crate::ingest::{Policy, decide};
use crate::message::{Inbound, Origin};
use crate::store::apply::{Applied, Deferred, Received, apply, record_failure};
use crate::store::folders::{self, Checkpoint, FolderKey};
use crate::store::{Store, StoreError, Tx, facts};

/// A race with another writer is retried this many times before it counts as a failure.
const MAX_CONFLICT_ATTEMPTS: usize = 5;

/// Cheap to clone: clones share the store and the rules, and `update` changes the rules for
/// all of them at their next message.
#[derive(Clone)]
pub struct Pipeline {
    store: Store,
    rules: Arc<RwLock<Arc<Rules>>>,
    /// Marked after each commit, for every listener: the outbound worker sends an
    /// acknowledgement at once, the WAL checkpointer (`store::checkpoint`) follows the writes.
    committed: Arc<watch::Sender<()>>,
}

/// What the configuration says about deciding.
struct Rules {
    policy: Policy,
    hash_format: HashFormat,
    /// Department (lower-cased) → the mailbox serving it, for organisation routing.
    routes: BTreeMap<String, String>,
    max_message_bytes: u64,
}

impl Rules {
    fn from_settings(settings: &Settings) -> Rules {
        Rules {
            policy: Policy::from_settings(settings),
            hash_format: settings.incidents.hash_format.clone(),
            routes: settings.department_mailboxes(),
            max_message_bytes: settings.limits.max_message_bytes,
        }
    }

    /// Reads a message, judging its size by what the server declared when only headers came.
    fn parse(&self, raw: &[u8], origin: &Origin) -> Inbound {
        let size_bytes = origin.declared_size_bytes.unwrap_or(raw.len() as u64);
        Inbound::parse_sized(raw, size_bytes, self.max_message_bytes)
    }

    /// Facts, decision and rows for one message, in the caller's transaction; the rows left in
    /// `deferred` are the caller's to write before it commits.
    async fn decide_and_apply(
        &self,
        tx: &mut Tx,
        received: &Received<'_>,
        deferred: &mut Deferred,
    ) -> Result<Applied, StoreError> {
        let mut facts = facts::gather(
            tx,
            received.inbound,
            received.origin.department.as_deref(),
            self.policy.department_access == DepartmentAccess::Restricted,
            &self.hash_format,
        )
        .await?;
        facts.quiet = received.origin.quiet;
        let decision = decide(received.inbound, &facts, &self.policy);
        apply(
            tx,
            received,
            &decision,
            &facts,
            &self.hash_format,
            &self.routes,
            deferred,
        )
        .await
    }
}

/// An IMAP batch as fetched and parsed, not yet committed.
pub struct Batch {
    /// `(uid, raw bytes, origin)` in UID order.
    items: Vec<(u32, Vec<u8>, Origin)>,
    /// `items`, parsed, in the same order.
    parsed: Vec<Inbound>,
}

impl Batch {
    pub fn uids(&self) -> impl Iterator<Item = u32> + '_ {
        self.items.iter().map(|(uid, _, _)| *uid)
    }
}

impl Pipeline {
    pub fn new(store: Store, settings: &Settings) -> Pipeline {
        Pipeline {
            store,
            rules: Arc::new(RwLock::new(Arc::new(Rules::from_settings(settings)))),
            committed: Arc::new(watch::Sender::new(())),
        }
    }

    /// A listener whose `changed()` returns once after any number of commits since it last
    /// looked.
    pub fn committed(&self) -> watch::Receiver<()> {
        self.committed.subscribe()
    }

    fn rung_after_commit(&self) {
        self.committed.send_replace(());
    }

    /// Applies a reloaded configuration to every clone, from their next message on.
    pub fn update(&self, settings: &Settings) {
        let rules = Arc::new(Rules::from_settings(settings));
        match self.rules.write() {
            Ok(mut current) => *current = rules,
            Err(poisoned) => *poisoned.into_inner() = rules,
        }
    }

    fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(rules) => rules.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn max_message_bytes(&self) -> u64 {
        self.rules().max_message_bytes
    }

    /// Ingests one message and commits it, with the folder checkpoint when it came from IMAP.
    /// `Err` only when the database is unavailable: the message stays at its source.
    pub async fn ingest(
        &self,
        raw: &[u8],
        origin: &Origin,
        checkpoint: Option<&Checkpoint<'_>>,
    ) -> Result<Applied, StoreError> {
        let rules = self.rules();
        let inbound = rules.parse(raw, origin);
        let received = Received {
            inbound: &inbound,
            raw,
            origin,
        };
        let mut last_conflict = String::new();
        for _ in 0..MAX_CONFLICT_ATTEMPTS {
            let mut tx = self.store.begin().await?;
            let attempt = async {
                let mut deferred = Deferred::default();
                let applied = rules
                    .decide_and_apply(&mut tx, &received, &mut deferred)
                    .await?;
                deferred.write(&mut tx).await?;
                if let Some(checkpoint) = checkpoint {
                    folders::advance(&mut tx, checkpoint).await?;
                }
                Ok(applied)
            }
            .await;
            match attempt {
                Ok(applied) => {
                    tx.commit().await?;
                    self.rung_after_commit();
                    log_line(origin, &applied);
                    return Ok(applied);
                }
                Err(StoreError::Conflict(why)) => {
                    tx.rollback().await?;
                    last_conflict = why;
                }
                Err(StoreError::Unavailable(why)) => {
                    // Dropping the transaction rolls it back; the database may be gone anyway.
                    drop(tx);
                    return Err(StoreError::Unavailable(why));
                }
                Err(StoreError::Failed(why)) => {
                    tx.rollback().await?;
                    return self
                        .record_failure(raw, &inbound, origin, checkpoint, &why)
                        .await;
                }
            }
        }
        self.record_failure(
            raw,
            &inbound,
            origin,
            checkpoint,
            &format!("still conflicting after {MAX_CONFLICT_ATTEMPTS} attempts: {last_conflict}"),
        )
        .await
    }

    /// Starts parsing an IMAP batch on a blocking thread, so that the folder task can read the
    /// next batch while this one is parsed and an earlier one written.
    pub fn parse_batch(
        &self,
        items: Vec<(u32, Vec<u8>, Origin)>,
    ) -> tokio::task::JoinHandle<Batch> {
        let rules = self.rules();
        tokio::task::spawn_blocking(move || {
            let parsed = items
                .iter()
                .map(|(_, raw, origin)| rules.parse(raw, origin))
                .collect();
            Batch { items, parsed }
        })
    }

    /// Ingests messages from one IMAP folder in ONE transaction that also moves the folder's
    /// checkpoint past the last of them: one commit (one fsync) per batch, not per message.
    /// If any message fails in any way other than the database being away, the batch is
    /// rolled back and each message goes through `ingest` on its own, with its own handling.
    pub async fn ingest_batch(
        &self,
        batch: &Batch,
        key: &FolderKey,
        uid_validity: u32,
    ) -> Result<Vec<Applied>, StoreError> {
        let Batch { items, parsed } = batch;
        let Some(last_uid) = batch.uids().max() else {
            return Ok(Vec::new());
        };
        let rules = self.rules();
        let mut tx = self.store.begin().await?;
        let attempt = async {
            let mut results = Vec::with_capacity(items.len());
            let mut deferred = Deferred::default();
            for ((_, raw, origin), inbound) in items.iter().zip(parsed) {
                let received = Received {
                    inbound,
                    raw,
                    origin,
                };
                results.push(
                    rules
                        .decide_and_apply(&mut tx, &received, &mut deferred)
                        .await?,
                );
            }
            deferred.write(&mut tx).await?;
            let checkpoint = Checkpoint {
                key,
                uid_validity,
                uid: last_uid,
            };
            folders::advance(&mut tx, &checkpoint).await?;
            Ok::<_, StoreError>(results)
        }
        .await;
        match attempt {
            Ok(results) => {
                tx.commit().await?;
                self.rung_after_commit();
                for ((_, _, origin), applied) in items.iter().zip(&results) {
                    log_line(origin, applied);
                }
                Ok(results)
            }
            Err(StoreError::Unavailable(why)) => {
                drop(tx);
                Err(StoreError::Unavailable(why))
            }
            Err(why) => {
                tx.rollback().await?;
                tracing::debug!(error = %why, "batch rolled back; ingesting its messages one by one");
                let mut results = Vec::with_capacity(items.len());
                for (uid, raw, origin) in items {
                    let checkpoint = Checkpoint {
                        key,
                        uid_validity,
                        uid: *uid,
                    };
                    results.push(self.ingest(raw, origin, Some(&checkpoint)).await?);
                }
                Ok(results)
            }
        }
    }

    async fn record_failure(
        &self,
        raw: &[u8],
        inbound: &Inbound,
        origin: &Origin,
        checkpoint: Option<&Checkpoint<'_>>,
        why: &str,
    ) -> Result<Applied, StoreError> {
        tracing::error!(source = %origin.source, error = %why, "message could not be applied; recording it as an error");
        let mut tx = self.store.begin().await?;
        let applied = record_failure(&mut tx, raw, inbound, origin, why).await?;
        if let Some(checkpoint) = checkpoint {
            folders::advance(&mut tx, checkpoint).await?;
        }
        tx.commit().await?;
        self.rung_after_commit();
        log_line(origin, &applied);
        Ok(applied)
    }
}

/// The one info line per message: mailbox, uid, outcome, hash (and where it came from).
fn log_line(origin: &Origin, applied: &Applied) {
    crate::monitor::message(origin.mailbox.as_deref(), applied.outcome.as_str());
    tracing::info!(
        mailbox = origin.mailbox.as_deref().unwrap_or("-"),
        uid = origin.uid,
        outcome = applied.outcome.as_str(),
        hash = applied.incident_hash.as_deref().unwrap_or("-"),
        source = %origin.source,
        reason = applied.reason.as_deref(),
        "message ingested"
    );
}
