//! Large blobs written without being bound whole.
//!
//! A value bound as a parameter is copied on its way into the database: on SQLite by sqlx into
//! its argument list, by SQLite when it is bound (`SQLITE_TRANSIENT`) and into the record SQLite
//! builds from the row; on PostgreSQL into sqlx's argument buffer and again into the message
//! sent. For a message near `max_message_bytes` those copies were most of intake's peak memory.
//! So a large value goes another way:
//! - SQLite, from [`IN_PLACE_FROM`] bytes: inserted as `zeroblob(length)`, which SQLite does
//!   not materialise (as the row's last column), then written over with SQLite's incremental
//!   blob I/O (`sqlite3_blob_write`), straight from intake's buffer into the database pages;
//! - PostgreSQL, from [`STAGED_FROM`] bytes: sent first in 1 MiB parts to a temporary table,
//!   then inserted as their concatenation, checked against the length.
//!
//! Both happen in the caller's transaction. Smaller values are bound as usual.

use std::ffi::{CStr, c_int, c_void};
use std::ptr;

use libsqlite3_sys as ffi;

use super::{StoreError, Tx};
use crate::on_tx;

/// From this size on, SQLite writes a value in place. Writing it in place costs a blob
/// handle and saves three copies; from 64 KiB (most attachments, the messages that carry them)
/// it is the cheaper: the 5,000-message run went from 2.40-3.42 s to 2.25-2.48 s with it
/// lowered from 1 MiB (BENCHMARKS.md).
pub const IN_PLACE_FROM: usize = 64 << 10;

/// From this size on, PostgreSQL receives a value in parts. Staging costs round trips, so only
/// values large enough for their copies to weigh on peak RSS go this way.
pub const STAGED_FROM: usize = 1 << 20;

/// The size of the parts a large value is sent in to PostgreSQL.
const PART_BYTES: usize = 1 << 20;

/// The blob columns that can be written in place: names are never taken from input.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    MessageRaw,
    AttachmentContent,
}

impl Column {
    fn table(self) -> &'static CStr {
        match self {
            Column::MessageRaw => c"messages",
            Column::AttachmentContent => c"attachments",
        }
    }

    fn column(self) -> &'static CStr {
        match self {
            Column::MessageRaw => c"raw",
            Column::AttachmentContent => c"content",
        }
    }

    fn name(self) -> String {
        format!(
            "{}.{}",
            self.table().to_string_lossy(),
            self.column().to_string_lossy()
        )
    }
}

/// How a value goes into an INSERT in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blob {
    /// Bound as the parameter itself (`$n`).
    Bound,
    /// SQLite: `zeroblob($n)` with the length bound, written over once the row exists.
    InPlace,
    /// PostgreSQL: the parts staged beforehand, concatenated; `$n` is bound to the length.
    Staged,
}

impl Blob {
    pub fn for_value(tx: &Tx, bytes: &[u8]) -> Blob {
        match tx {
            Tx::Sqlite(_) if bytes.len() >= IN_PLACE_FROM => Blob::InPlace,
            Tx::Postgres(_) if bytes.len() >= STAGED_FROM => Blob::Staged,
            _ => Blob::Bound,
        }
    }

    /// The SQL expression for the value, whose parameter is `parameter` (such as `$18`).
    pub fn sql(self, parameter: &str) -> String {
        match self {
            Blob::Bound => parameter.to_string(),
            Blob::InPlace => format!("zeroblob({parameter})"),
            // No row, so NULL, which the NOT NULL column refuses, unless every byte arrived.
            Blob::Staged => format!(
                "(SELECT string_agg(bytes, ''::bytea ORDER BY part) FROM intake_staged_blob \
                 HAVING sum(octet_length(bytes)) = {parameter}::bigint)"
            ),
        }
    }

    /// Whether the parameter is bound to the value's length rather than to the value.
    pub fn binds_length(self) -> bool {
        self != Blob::Bound
    }

    /// Before the INSERT: on PostgreSQL, sends `bytes` in parts to the staging table.
    pub async fn before_insert(self, tx: &mut Tx, bytes: &[u8]) -> Result<(), StoreError> {
        if self != Blob::Staged {
            return Ok(());
        }
        on_tx!(tx, conn => {
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass('pg_temp.intake_staged_blob') IS NOT NULL")
                    .fetch_one(&mut *conn)
                    .await?;
            if exists {
                sqlx::query("DELETE FROM intake_staged_blob")
                    .execute(&mut *conn)
                    .await?;
            } else {
                // Per connection; its rows go at commit, the table itself if the transaction
                // rolls back.
                sqlx::query(
                    "CREATE TEMPORARY TABLE intake_staged_blob (part integer NOT NULL, \
                     bytes bytea NOT NULL) ON COMMIT DELETE ROWS",
                )
                .execute(&mut *conn)
                .await?;
            }
            for (part, bytes) in bytes.chunks(PART_BYTES).enumerate() {
                sqlx::query("INSERT INTO intake_staged_blob (part, bytes) VALUES ($1, $2)")
                    .bind(part as i32)
                    .bind(bytes)
                    .execute(&mut *conn)
                    .await?;
            }
        });
        Ok(())
    }

    /// After the INSERT gave row `rowid`: on SQLite, writes `bytes` over its zeroblob.
    pub async fn after_insert(
        self,
        tx: &mut Tx,
        column: Column,
        rowid: i64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if self == Blob::InPlace {
            write_in_place(tx, column, rowid, bytes).await
        } else {
            Ok(())
        }
    }
}

/// Writes `bytes` over the `zeroblob` of `column` in row `rowid`, inserted earlier in `tx`
/// with exactly `bytes.len()` bytes.
async fn write_in_place(
    tx: &mut Tx,
    column: Column,
    rowid: i64,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let Tx::Sqlite(transaction) = tx else {
        return Err(StoreError::Failed(format!(
            "{} is written in place only on SQLite",
            column.name()
        )));
    };
    let length = c_int::try_from(bytes.len()).map_err(|_| {
        StoreError::Failed(format!(
            "{} of row {rowid}: {} bytes is more than SQLite can hold",
            column.name(),
            bytes.len()
        ))
    })?;
    let mut handle = (**transaction).lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // No await from here on: the handle stays locked from sqlx's worker thread until the blob
    // is closed, so nothing else touches this connection meanwhile.
    let mut blob: *mut ffi::sqlite3_blob = ptr::null_mut();
    // SAFETY: `db` is a live connection handle, locked for this thread by `handle`; the names
    // are NUL-terminated constants; `blob` receives a handle or NULL.
    let opened = unsafe {
        ffi::sqlite3_blob_open(
            db,
            c"main".as_ptr(),
            column.table().as_ptr(),
            column.column().as_ptr(),
            rowid,
            1,
            &mut blob,
        )
    };
    // SAFETY: `blob` was opened above for `length` bytes (the zeroblob's size) and `bytes` is
    // `length` bytes long and outlives the call.
    let written = if opened == ffi::SQLITE_OK {
        unsafe { ffi::sqlite3_blob_write(blob, bytes.as_ptr().cast::<c_void>(), length, 0) }
    } else {
        opened
    };
    // SAFETY: closing NULL is a no-op; otherwise `blob` is open and closed exactly once here.
    let closed = unsafe { ffi::sqlite3_blob_close(blob) };
    let code = if written != ffi::SQLITE_OK {
        written
    } else {
        closed
    };
    if code == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: `db` is still locked for this thread; SQLite owns the message it returns.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    let why = format!("writing {} of row {rowid}: {message}", column.name());
    // SQLite primary result codes: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, as `From<sqlx::Error>`.
    Err(if matches!(code & 0xff, 5 | 6 | 10 | 13) {
        StoreError::Unavailable(why)
    } else {
        StoreError::Failed(why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn a_row_that_is_not_there_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("blobs.db").display());
        let store = Store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrate");
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(Blob::for_value(&tx, &[0; 16]), Blob::Bound);
        assert_eq!(
            Blob::for_value(&tx, &vec![0; IN_PLACE_FROM - 1]),
            Blob::Bound
        );
        assert_eq!(Blob::for_value(&tx, &vec![0; IN_PLACE_FROM]), Blob::InPlace);
        assert_eq!(Blob::InPlace.sql("$3"), "zeroblob($3)");
        assert!(Blob::InPlace.binds_length() && !Blob::Bound.binds_length());
        match write_in_place(&mut tx, Column::MessageRaw, 42, b"bytes").await {
            Err(StoreError::Failed(why)) => {
                assert!(why.starts_with("writing messages.raw of row 42: "), "{why}")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        // The connection is usable afterwards: the handle went back to sqlx.
        let one: i64 = crate::on_tx!(&mut tx, conn => {
            sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await.expect("select")
        });
        assert_eq!(one, 1);
    }
}
