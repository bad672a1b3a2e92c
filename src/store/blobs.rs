//! Large blobs written into SQLite in place, not bound.
//!
//! A value bound as a parameter is copied three times on its way into SQLite: by sqlx into its
//! argument list, by SQLite when it is bound (`SQLITE_TRANSIENT`), and into the record SQLite
//! builds from the row. For a message near `max_message_bytes` those copies were most of
//! intake's peak memory. So on SQLite a large value is inserted as `zeroblob(length)`, which
//! SQLite does not materialise, and then written over with SQLite's incremental blob I/O
//! (`sqlite3_blob_write`): straight from intake's buffer into the database pages, in the same
//! transaction. Small values, and every value on PostgreSQL, are bound as usual.

use std::ffi::{CStr, c_int, c_void};
use std::ptr;

use libsqlite3_sys as ffi;

use super::{StoreError, Tx};

/// From this size on, a SQLite blob is written in place.
pub const IN_PLACE_FROM: usize = 1 << 20;

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

/// How `bytes` go into an INSERT in `tx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blob {
    /// Bound as the parameter itself (`$n`).
    Bound,
    /// `zeroblob($n)` with the length bound, then [`write_in_place`] once the row exists.
    InPlace,
}

impl Blob {
    pub fn for_value(tx: &Tx, bytes: &[u8]) -> Blob {
        if matches!(tx, Tx::Sqlite(_)) && bytes.len() >= IN_PLACE_FROM {
            Blob::InPlace
        } else {
            Blob::Bound
        }
    }

    /// The SQL expression for parameter `parameter` (such as `$18`).
    pub fn sql(self, parameter: &str) -> String {
        match self {
            Blob::Bound => parameter.to_string(),
            Blob::InPlace => format!("zeroblob({parameter})"),
        }
    }
}

/// Writes `bytes` over the `zeroblob` of `column` in row `rowid`, inserted earlier in `tx`
/// with exactly `bytes.len()` bytes.
pub async fn write_in_place(
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
        assert_eq!(Blob::for_value(&tx, &vec![0; IN_PLACE_FROM]), Blob::InPlace);
        assert_eq!(Blob::InPlace.sql("$3"), "zeroblob($3)");
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
