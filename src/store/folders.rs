//! IMAP folder state in `mailbox_folders`: the UID checkpoint, the lease that lets one instance
//! ingest a folder at a time, and the last success or error, for staff and `/health`.
//!
//! Invariant: `advance` runs in the transaction that stores the message it names, so after a
//! crash the checkpoint never claims a message the database does not hold.

use std::time::Duration;

use crate::on_pool;
use crate::on_tx;

use super::{Store, StoreError, Timestamp, Tx};

/// One watched folder of one configured mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderKey {
    pub mailbox: String,
    pub folder: String,
}

/// "Everything up to `uid` under `uid_validity` is stored."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    pub key: &'a FolderKey,
    pub uid_validity: u32,
    pub uid: u32,
}

/// Where ingestion of a folder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderState {
    /// None until the folder is first watched.
    pub uid_validity: Option<u32>,
    pub last_uid: u32,
    /// Messages up to this UID were in the folder before intake first watched it, and are
    /// ingested without mail (`existing_mail = "quiet"`); 0 for none.
    pub quiet_through_uid: u32,
}

fn after(now: Timestamp, duration: Duration) -> Timestamp {
    Timestamp(now.0 + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX))
}

/// Takes or renews the lease on `key` for `holder`; false while another live holder has it.
pub async fn acquire_lease(
    store: &Store,
    key: &FolderKey,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let now = Timestamp::now();
    let expires = after(now, ttl);
    let mut tx = store.begin().await?;
    let taken: Option<String> = on_tx!(&mut tx, conn => {
        sqlx::query(
            "INSERT INTO mailbox_folders (mailbox, folder, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&key.mailbox)
        .bind(&key.folder)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query_scalar(
            "UPDATE mailbox_folders SET lease_holder = $3, lease_expires_at = $4, updated_at = $5 \
             WHERE mailbox = $1 AND folder = $2 AND (lease_holder IS NULL OR lease_holder = $3 \
             OR lease_expires_at IS NULL OR lease_expires_at < $5) RETURNING lease_holder",
        )
        .bind(&key.mailbox)
        .bind(&key.folder)
        .bind(holder)
        .bind(expires)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?
    });
    tx.commit().await?;
    Ok(taken.is_some())
}

/// Gives the lease up at once, so another instance need not wait for it to expire.
pub async fn release_lease(store: &Store, key: &FolderKey, holder: &str) -> Result<(), StoreError> {
    on_pool!(store, pool => {
        sqlx::query(
            "UPDATE mailbox_folders SET lease_holder = NULL, lease_expires_at = NULL \
             WHERE mailbox = $1 AND folder = $2 AND lease_holder = $3",
        )
        .bind(&key.mailbox)
        .bind(&key.folder)
        .bind(holder)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Frees every lease not held by `holder`: for the sole instance on a database (`run_lock`),
/// whose other holders are known dead. Returns the folders freed.
pub async fn release_others_leases(
    store: &Store,
    holder: &str,
) -> Result<Vec<FolderKey>, StoreError> {
    let freed: Vec<(String, String)> = on_pool!(store, pool => {
        sqlx::query_as(
            "UPDATE mailbox_folders SET lease_holder = NULL, lease_expires_at = NULL \
             WHERE lease_holder IS NOT NULL AND lease_holder <> $1 RETURNING mailbox, folder",
        )
        .bind(holder)
        .fetch_all(pool)
        .await?
    });
    Ok(freed
        .into_iter()
        .map(|(mailbox, folder)| FolderKey { mailbox, folder })
        .collect())
}

pub async fn state(store: &Store, key: &FolderKey) -> Result<FolderState, StoreError> {
    let row: Option<(Option<i64>, i64, i64)> = on_pool!(store, pool => {
        sqlx::query_as(
            "SELECT uid_validity, last_uid, quiet_through_uid FROM mailbox_folders \
             WHERE mailbox = $1 AND folder = $2",
        )
        .bind(&key.mailbox)
        .bind(&key.folder)
        .fetch_optional(pool)
        .await?
    });
    let (uid_validity, last_uid, quiet_through_uid) = row.unwrap_or((None, 0, 0));
    Ok(FolderState {
        uid_validity: uid_validity.and_then(|value| u32::try_from(value).ok()),
        last_uid: u32::try_from(last_uid).unwrap_or(0),
        quiet_through_uid: u32::try_from(quiet_through_uid).unwrap_or(0),
    })
}

/// Starts the folder over under `uid_validity`, with no UID stored yet. Called before anything
/// is ingested, so a crash part-way through keeps what it writes:
/// - at a folder's first watch, `quiet_through_uid` is the highest UID it holds when that mail
///   is to stay quiet (`existing_mail = "quiet"`), else 0;
/// - after a UIDVALIDITY change, 0: every old UID is void, messages already stored come back
///   as duplicates (never second incidents), and the others are new to intake and answered.
pub async fn reset(
    store: &Store,
    key: &FolderKey,
    uid_validity: u32,
    quiet_through_uid: u32,
) -> Result<(), StoreError> {
    let now = Timestamp::now();
    on_pool!(store, pool => {
        sqlx::query(
            "UPDATE mailbox_folders SET uid_validity = $3, last_uid = 0, quiet_through_uid = $4, \
             updated_at = $5 WHERE mailbox = $1 AND folder = $2",
        )
        .bind(&key.mailbox)
        .bind(&key.folder)
        .bind(i64::from(uid_validity))
        .bind(i64::from(quiet_through_uid))
        .bind(now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Moves the checkpoint forward (never back) inside the message's transaction.
pub async fn advance(tx: &mut Tx, checkpoint: &Checkpoint<'_>) -> Result<(), StoreError> {
    let now = Timestamp::now();
    on_tx!(tx, conn => {
        sqlx::query(
            "UPDATE mailbox_folders SET uid_validity = $3, \
             last_uid = CASE WHEN last_uid < $4 THEN $4 ELSE last_uid END, \
             last_success_at = $5, updated_at = $5 WHERE mailbox = $1 AND folder = $2",
        )
        .bind(&checkpoint.key.mailbox)
        .bind(&checkpoint.key.folder)
        .bind(i64::from(checkpoint.uid_validity))
        .bind(i64::from(checkpoint.uid))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// A poll that found nothing new still counts as a success for `/health`. `owing`: why an
/// after-ingest action the server refused is still owed (the mail is in, but staff should
/// know), kept in `last_error`; `None` clears it.
pub async fn record_success(
    store: &Store,
    key: &FolderKey,
    owing: Option<&str>,
) -> Result<(), StoreError> {
    let now = Timestamp::now();
    on_pool!(store, pool => {
        sqlx::query(
            "UPDATE mailbox_folders SET last_success_at = $3, last_error = $4, \
             last_error_at = CASE WHEN $4 IS NULL THEN last_error_at ELSE $3 END, updated_at = $3 \
             WHERE mailbox = $1 AND folder = $2",
        )
        .bind(&key.mailbox)
        .bind(&key.folder)
        .bind(now)
        .bind(owing)
        .execute(pool)
        .await?;
    });
    Ok(())
}

pub async fn record_error(store: &Store, key: &FolderKey, error: &str) -> Result<(), StoreError> {
    let now = Timestamp::now();
    on_pool!(store, pool => {
        sqlx::query(
            "UPDATE mailbox_folders SET last_error = $3, last_error_at = $4, updated_at = $4 \
             WHERE mailbox = $1 AND folder = $2",
        )
        .bind(&key.mailbox)
        .bind(&key.folder)
        .bind(error)
        .bind(now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// What `/health` and the metrics need to know about one folder.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FolderHealth {
    pub mailbox: String,
    pub folder: String,
    pub last_success_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Every folder any instance has watched, with its last success and error.
pub async fn health(store: &Store) -> Result<Vec<FolderHealth>, StoreError> {
    Ok(on_pool!(store, pool => {
        sqlx::query_as::<_, FolderHealth>(
            "SELECT mailbox, folder, last_success_at, last_error FROM mailbox_folders \
             ORDER BY mailbox, folder",
        )
        .fetch_all(pool)
        .await?
    }))
}
