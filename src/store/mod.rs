//! The database: SQLite (the embedded default) or PostgreSQL, chosen by the URL scheme.
//!
//! Only this module writes SQL, and always with bound parameters. Each query is written once
//! and compiled for both backends by `on_tx!`, which expands its body once per concrete
//! connection type. Migrations live in `migrations/sqlite` and `migrations/postgres`.

/// SQL: the id of the client a parameter names (`client_named!("$1")`), by main email,
/// additional address or reference, in that order. One definition for every command that
/// takes a client; a macro, not a `const`, so that `concat!` can build whole statements.
macro_rules! client_named {
    ($parameter:literal) => {
        concat!(
            "coalesce((SELECT id FROM clients WHERE lower(email) = lower(",
            $parameter,
            ")), (SELECT client_id FROM client_addresses WHERE address = lower(",
            $parameter,
            ")), (SELECT id FROM clients WHERE reference = upper(",
            $parameter,
            ")))"
        )
    };
}

pub mod admin;
pub mod apply;
pub mod blobs;
pub mod checkpoint;
pub mod facts;
pub mod folders;
pub mod outbound;
pub mod read;
pub mod references;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous, SqliteTypeInfo,
    SqliteValueRef,
};
use sqlx::{Decode, Encode, PgPool, Postgres, Sqlite, SqlitePool, Transaction, Type};

use crate::ingest::OrganisationId;

/// What went wrong with the database, by what the caller should do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, is locked too long or its disk is full: try again later
    /// (`intake ingest` exits 75 so the MTA keeps the message).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Another writer got there first (a unique key): run the whole transaction again.
    #[error("conflicting concurrent write: {0}")]
    Conflict(String),
    /// Anything else: a bug or a schema edited by hand. Logged; the message stays where it was.
    #[error("database error: {0}")]
    Failed(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(database_error) => {
                if database_error.is_unique_violation() {
                    return StoreError::Conflict(database_error.message().to_string());
                }
                let code = database_error
                    .code()
                    .map(|code| code.to_string())
                    .unwrap_or_default();
                let sqlite = database_error
                    .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                    .is_some();
                // SQLite's extended result code; its low byte is the primary one.
                let sqlite_code = sqlite.then(|| code.parse::<u32>().ok()).flatten();
                let temporary = if sqlite {
                    // Primary codes 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL.
                    sqlite_code.is_some_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13))
                } else {
                    // PostgreSQL SQLSTATE classes: 08 connection, 53 resources, 57P operator.
                    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
                };
                if sqlite_code == Some(5) {
                    // Plain SQLITE_BUSY: the busy timeout ran out waiting for the write lock.
                    // Only one intake runs per SQLite file (run_lock), and the CLI's writes
                    // take milliseconds: a lock held that long is nearly always someone's
                    // unsaved edit in a viewer.
                    StoreError::Unavailable(format!(
                        "{} (another program holds the write lock: a database viewer with \
                         unsaved changes? intake retries once it is released)",
                        database_error.message()
                    ))
                } else if temporary {
                    StoreError::Unavailable(database_error.message().to_string())
                } else {
                    StoreError::Failed(database_error.message().to_string())
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Failed(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Failed(format!("migration: {other}")),
        }
    }
}

/// A pool for one of the two backends.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Whether a SQLite connection given back to the pool may be handed out again. When a COMMIT
/// fails on a full disk or an I/O error, SQLite rolls the transaction back itself; sqlx 0.9
/// still counts it open, its own ROLLBACK then fails, and the connection would come back
/// "in a transaction": the next `BEGIN IMMEDIATE` on it fails ("attempted to call begin_with
/// at non-zero transaction depth") long after the disk has room again. Such a connection is
/// closed instead, and the pool opens a fresh one. Only a connection given back with a
/// transaction counted open costs a round trip: the one that runs sqlx's queued ROLLBACK.
async fn still_usable(connection: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::Connection;
    if !connection.is_in_transaction() {
        return true;
    }
    connection.ping().await.is_ok() && !connection.is_in_transaction()
}

/// A write transaction on either backend.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's concrete connection, once per backend.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(transaction) => {
                let $conn = &mut **transaction;
                $body
            }
            $crate::store::Tx::Postgres(transaction) => {
                let $conn = &mut **transaction;
                $body
            }
        }
    };
}

/// Runs the one-row `INSERT` `$sql` (written without `RETURNING`) in transaction `$tx`, with
/// `$binds` binding its values to `$query`, and gives the new row's id: `None` when the row was
/// not inserted (`ON CONFLICT DO NOTHING`, or an `INSERT … SELECT … WHERE` that found nothing).
///
/// PostgreSQL gets `RETURNING id`. SQLite does not: there, a statement with `RETURNING` counts
/// as one that may write many rows, so inside a transaction it keeps a statement journal, and
/// every page it changes is first copied to a temporary file (64 KiB a page). Three such
/// inserts per message wrote 3 GB of journal per 5,000 messages (BENCHMARKS.md). SQLite's
/// `last_insert_rowid` gives the same id; a trigger's own inserts do not change it.
#[macro_export]
macro_rules! insert_id {
    ($tx:expr, $sql:expr, |$query:ident| $binds:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(transaction) => {
                let $query = sqlx::query(sqlx::AssertSqlSafe($sql));
                let done = $binds.execute(&mut **transaction).await?;
                (done.rows_affected() > 0).then(|| done.last_insert_rowid())
            }
            $crate::store::Tx::Postgres(transaction) => {
                let $query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                    "{} RETURNING id",
                    $sql
                )));
                $binds.fetch_optional(&mut **transaction).await?
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to the concrete pool, once per backend.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// The size of SQLite's WAL at which a commit checkpoints it itself, waiting for two `fsync`s.
/// The daemon checkpoints long before that, off the commit path (`checkpoint`); this is the
/// backstop for the short-lived commands and for when the daemon's checkpoints fall behind.
pub const WAL_BYTES: i64 = 256 << 20;
/// The page size of a SQLite database intake creates. Large pages suit a table of blobs: a
/// 60 KB message is one page write, not fifteen (BENCHMARKS.md). An existing database keeps its
/// page size (SQLite changes it only in a `VACUUM` outside WAL mode).
pub const NEW_DATABASE_PAGE_BYTES: u32 = 64 * 1024;
/// The page cache of each SQLite connection. SQLite's default, 2 MiB, holds only 32 pages of
/// 64 KiB: the index pages a batch of inserts walks fell out of it and were read back from the
/// file again and again. With 4 MiB the 5,000-message run went from 3.1 to 2.75 s; 16 MiB
/// gained little more (BENCHMARKS.md). At most four connections: 16 MiB in all.
pub const CACHE_BYTES: i64 = 4 << 20;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Whether `url` names a SQLite database (anything else is PostgreSQL).
    pub fn is_sqlite_url(url: &str) -> bool {
        url.starts_with("sqlite:")
    }

    /// Opens a pool; a SQLite file and its directory are created when missing.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if Store::is_sqlite_url(url) {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|error| StoreError::Failed(format!("database.url: {error}")))?
                .create_if_missing(true)
                .page_size(NEW_DATABASE_PAGE_BYTES)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let path = options.get_filename().to_path_buf();
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|error| {
                    StoreError::Unavailable(format!("creating {}: {error}", parent.display()))
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|connection, _metadata| {
                    Box::pin(async move {
                        // Counted in pages, and an existing database may have small ones.
                        let page_bytes: i64 = sqlx::query_scalar("PRAGMA page_size")
                            .fetch_one(&mut *connection)
                            .await?;
                        let pages = WAL_BYTES / page_bytes.max(512);
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "PRAGMA wal_autocheckpoint = {pages}"
                        )))
                        .execute(&mut *connection)
                        .await?;
                        // Negative: in KiB rather than in pages.
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "PRAGMA cache_size = -{}",
                            CACHE_BYTES / 1024
                        )))
                        .execute(&mut *connection)
                        .await?;
                        Ok(())
                    })
                })
                .after_release(|connection, _metadata| {
                    Box::pin(async move { Ok(still_usable(connection).await) })
                })
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(url)
                .map_err(|error| StoreError::Failed(format!("database.url: {error}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|_connection, _metadata| {
                    Box::pin(async {
                        disable_nagle_on_tcp_sockets();
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?;
            Ok(Store::Postgres(pool))
        }
    }

    /// Applies pending migrations; safe to run at every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// True when every embedded migration is recorded as applied: one read, no lock. Lets
    /// short-lived commands (one `intake ingest` per piped message) skip the migration lock
    /// that `migrate` takes; any doubt (no table yet, an error) answers false.
    pub async fn is_migrated(&self) -> bool {
        let migrator = match self {
            Store::Sqlite(_) => &SQLITE_MIGRATIONS,
            Store::Postgres(_) => &POSTGRES_MIGRATIONS,
        };
        let applied: Result<Vec<i64>, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await
        });
        match applied {
            Ok(applied) => migrator
                .iter()
                .all(|migration| applied.contains(&migration.version)),
            Err(_) => false,
        }
    }

    /// A write transaction. SQLite takes the write lock at once (`BEGIN IMMEDIATE`): a deferred
    /// transaction that reads and then writes fails with "database is locked" under contention.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Store::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Makes sure the default organisation exists and carries the configured name.
    pub async fn ensure_default_organisation(
        &self,
        name: &str,
    ) -> Result<OrganisationId, StoreError> {
        // Read first: a write transaction at every start would serialize concurrent pipes.
        let current: Option<(i64, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, name FROM organisations WHERE is_default")
                .fetch_optional(pool)
                .await?
        });
        if let Some((id, current)) = current
            && current == name
        {
            return Ok(id);
        }
        let mut tx = self.begin().await?;
        let id = on_tx!(&mut tx, conn => {
            let now = Timestamp::now();
            let existing: Option<(i64, String)> =
                sqlx::query_as("SELECT id, name FROM organisations WHERE is_default")
                    .fetch_optional(&mut *conn)
                    .await?;
            match existing {
                Some((id, current)) if current == name => id,
                Some((id, _)) => {
                    sqlx::query("UPDATE organisations SET name = $1, updated_at = $2 WHERE id = $3")
                        .bind(name)
                        .bind(now)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                    id
                }
                None => {
                    // An ordinary organisation of that name becomes the default one.
                    let promoted: Option<i64> = sqlx::query_scalar(
                        "UPDATE organisations SET is_default = TRUE, updated_at = $2 \
                         WHERE lower(name) = lower($1) RETURNING id",
                    )
                    .bind(name)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                    match promoted {
                        Some(id) => id,
                        None => {
                            sqlx::query_scalar(
                                "INSERT INTO organisations (name, is_default, created_at, updated_at) \
                                 VALUES ($1, TRUE, $2, $2) RETURNING id",
                            )
                            .bind(name)
                            .bind(now)
                            .fetch_one(&mut *conn)
                            .await?
                        }
                    }
                }
            }
        });
        tx.commit().await?;
        Ok(id)
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// The file of a SQLite database, symbolic links resolved, so that every name of it gives
    /// the same path (none for PostgreSQL or an in-memory database).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match self {
            Store::Sqlite(pool) => std::fs::canonicalize(pool.connect_options().get_filename())
                .ok()
                .filter(|path| path.is_file()),
            Store::Postgres(_) => None,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(transaction) => transaction.commit().await?,
            Tx::Postgres(transaction) => transaction.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(transaction) => transaction.rollback().await?,
            Tx::Postgres(transaction) => transaction.rollback().await?,
        }
        Ok(())
    }
}

/// sqlx 0.9.0 leaves Nagle's algorithm on for its TCP connections (sqlx issue #4335, fixed
/// upstream but not released): a statement whose parameters take two writes, such as storing
/// a 20 KB message, then waits about 40 ms for the server's delayed ACK. Measured here: 300
/// such messages took 18 s over TCP and 1.7 s over a Unix socket. sqlx gives no access to its
/// socket, so each new connection turns TCP_NODELAY on for every TCP socket of this process,
/// which is right for all of them (IMAP too). Remove once sqlx sets it again.
fn disable_nagle_on_tcp_sockets() {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only used for one setsockopt call. If another thread closed
        // it meanwhile, the call fails (EBADF, ENOTSOCK) or sets TCP_NODELAY on whatever socket
        // reused the number, which is harmless; no memory is touched either way. Unix and
        // non-TCP sockets refuse the option, and the error is ignored.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = socket2::SockRef::from(&borrowed).set_tcp_nodelay(true);
    }
}

/// A UTC time. SQLite stores it as ISO-8601 text (`2026-11-23T19:21:26.123Z`), which sorts
/// and reads well in a viewer; PostgreSQL as `timestamptz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(Utc::now())
    }

    pub fn to_iso(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

/// As staff read it: ISO-8601 UTC text, in `--json` output too.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_iso())
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(type_info: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(type_info)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(
        &self,
        buffer: &mut <Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.to_iso(), buffer)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<Sqlite>>::decode(value)?;
        // Staff may type `2026-11-23 19:21:26` in a viewer: accept it as UTC.
        let parsed = DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                    .map(|naive| naive.and_utc())
            })?;
        Ok(Timestamp(parsed))
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(
        &self,
        buffer: &mut <Postgres as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buffer)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Timestamp(<DateTime<Utc> as Decode<Postgres>>::decode(
            value,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// journal_mode, page_size, wal_autocheckpoint; and the cache size is `CACHE_BYTES`.
    async fn pragmas(pool: &SqlitePool) -> (String, i64, i64) {
        let mut connection = pool.acquire().await.expect("a connection");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *connection)
            .await
            .expect("journal_mode");
        let page_bytes: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *connection)
            .await
            .expect("page_size");
        let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut *connection)
            .await
            .expect("wal_autocheckpoint");
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *connection)
            .await
            .expect("cache_size");
        assert_eq!(cache, -CACHE_BYTES / 1024, "cache_size in KiB");
        (mode, page_bytes, pages)
    }

    #[tokio::test]
    async fn a_connection_whose_transaction_sqlite_ended_is_not_handed_out_again() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("ended.db").display());
        let store = Store::connect(&url).await.expect("store");
        let Store::Sqlite(pool) = &store else {
            panic!("a sqlite URL opens SQLite");
        };
        {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
            // What SQLite does itself when a COMMIT fails on a full disk: the transaction is
            // gone, and sqlx still counts it (its own ROLLBACK, when `tx` drops, then fails).
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut *tx)
                .await
                .expect("rollback");
            assert!(tx.is_in_transaction(), "sqlx still counts the transaction");
        }
        // Every connection the pool holds, the one above included if it were kept.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.acquire().await.expect("a connection"));
        }
        for connection in &held {
            assert!(
                !connection.is_in_transaction(),
                "a connection still in a transaction"
            );
        }
        drop(held);
        for _ in 0..4 {
            let tx = store.begin().await.expect("a write transaction begins");
            tx.commit().await.expect("and commits");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn every_name_of_a_sqlite_database_gives_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.db");
        let link = dir.path().join("link.db");
        let direct = Store::connect(&format!("sqlite://{}", real.display()))
            .await
            .expect("store");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let linked = Store::connect(&format!("sqlite://{}", link.display()))
            .await
            .expect("store through the link");
        let file = direct.sqlite_file().expect("a file");
        assert_eq!(file, std::fs::canonicalize(&real).expect("canonical"));
        assert_eq!(linked.sqlite_file(), Some(file));
        direct.close().await;
        linked.close().await;
        let memory = Store::connect("sqlite::memory:").await.expect("in memory");
        assert_eq!(memory.sqlite_file(), None);
    }

    #[tokio::test]
    async fn new_sqlite_databases_have_large_pages_and_checkpoint_every_wal_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("pragmas.db").display());
        let Store::Sqlite(pool) = Store::connect(&url).await.expect("store") else {
            panic!("a sqlite URL opens SQLite");
        };
        let (mode, page_bytes, pages) = pragmas(&pool).await;
        assert_eq!(mode, "wal");
        assert_eq!(page_bytes, 65536);
        assert_eq!(pages * page_bytes, WAL_BYTES);
    }

    #[tokio::test]
    async fn an_existing_sqlite_database_keeps_its_pages_and_checkpoints_by_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let old = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .page_size(4096)
            .journal_mode(SqliteJournalMode::Wal);
        let old = SqlitePool::connect_with(old).await.expect("old database");
        sqlx::query("CREATE TABLE kept (id INTEGER PRIMARY KEY)")
            .execute(&old)
            .await
            .expect("a table");
        old.close().await;

        let url = format!("sqlite://{}", path.display());
        let Store::Sqlite(pool) = Store::connect(&url).await.expect("store") else {
            panic!("a sqlite URL opens SQLite");
        };
        let (mode, page_bytes, pages) = pragmas(&pool).await;
        assert_eq!(mode, "wal");
        assert_eq!(page_bytes, 4096);
        assert_eq!(pages, WAL_BYTES / 4096);
    }
}
