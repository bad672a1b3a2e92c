//! SQLite's WAL checkpoints, off the commit path.
//!
//! A checkpoint copies what was committed to the WAL into the database file and `fsync`s
//! both. Run by SQLite's autocheckpoint, it happens inside the commit that crossed the
//! threshold, and that batch waits for it (about half a second per 64 MiB on the VM in
//! BENCHMARKS.md). The daemon runs checkpoints here instead, on a connection of its own,
//! shortly after each commit, while the folder tasks go on committing. SQLite lets a PASSIVE
//! checkpoint run beside a writer, and a writer whose autocheckpoint finds this one running
//! skips its own, so no commit waits. The writers' autocheckpoint at `WAL_BYTES` stays as the
//! backstop for the short-lived commands (`intake ingest`, the admin commands) and for when
//! this one falls behind or its connection fails.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Store;

/// Commits within this time after the first are checkpointed together.
const GATHER: Duration = Duration::from_millis(100);
/// After this long without a commit the WAL file is cut back to nothing.
const IDLE: Duration = Duration::from_secs(2);

/// What one checkpoint reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    /// A reader or writer kept it from finishing (TRUNCATE only; PASSIVE does what it can).
    pub busy: bool,
    /// Frames in the WAL; -1 when another checkpoint was running.
    pub wal_frames: i64,
    /// Of those, frames now in the database file.
    pub copied_frames: i64,
}

/// How far a checkpoint goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copies what no reader still needs; never waits for a lock, never blocks a writer.
    Passive,
    /// Copies everything and cuts the WAL file to zero bytes, when no reader or writer is in
    /// the way: with the connection's busy timeout at zero it gives up at once rather than
    /// hold back the writers while a reader (a staff viewer) finishes.
    Truncate,
}

/// One checkpoint on `connection`.
pub async fn checkpoint(
    connection: &mut SqliteConnection,
    mode: Mode,
) -> Result<Checkpointed, sqlx::Error> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let (busy, wal_frames, copied_frames): (i64, i64, i64) =
        sqlx::query_as(sql).fetch_one(connection).await?;
    Ok(Checkpointed {
        busy: busy != 0,
        wal_frames,
        copied_frames,
    })
}

/// Checkpoints the SQLite WAL after commits (`committed` is rung after each) and cuts it back
/// when commits stop, until `stop`. Does nothing on PostgreSQL. A failure is logged once when
/// it starts and retried at the next commit; the writers' autocheckpoint covers the meantime.
pub async fn run(store: Store, committed: Arc<Notify>, stop: CancellationToken) {
    let Store::Sqlite(pool) = store else {
        return;
    };
    let mut checkpointer = Checkpointer {
        pool,
        connection: None,
        failing: false,
    };
    let mut written = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = committed.notified() => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(GATHER) => {}
                }
                checkpointer.run(Mode::Passive).await;
                written = true;
            }
            _ = tokio::time::sleep(IDLE), if written => {
                checkpointer.run(Mode::Truncate).await;
                written = false;
            }
        }
    }
    if let Some(open) = checkpointer.connection {
        use sqlx::Connection;
        if let Err(error) = open.close().await {
            tracing::debug!(%error, "closing the checkpoint connection");
        }
    }
}

struct Checkpointer {
    pool: SqlitePool,
    /// Its own connection, out of the pool: the folder tasks never wait for it.
    connection: Option<SqliteConnection>,
    failing: bool,
}

impl Checkpointer {
    async fn run(&mut self, mode: Mode) {
        match self.attempt(mode).await {
            Ok(done) => {
                if self.failing {
                    tracing::info!("WAL checkpoints are running again");
                }
                self.failing = false;
                tracing::debug!(
                    ?mode,
                    busy = done.busy,
                    wal_frames = done.wal_frames,
                    copied_frames = done.copied_frames,
                    "WAL checkpoint"
                );
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, "WAL checkpoint failed; commits will checkpoint themselves");
                }
                self.failing = true;
                self.connection = None;
            }
        }
    }

    async fn attempt(&mut self, mode: Mode) -> Result<Checkpointed, sqlx::Error> {
        let connection = match &mut self.connection {
            Some(open) => open,
            None => {
                let mut open = self.pool.acquire().await?.detach();
                sqlx::query("PRAGMA busy_timeout = 0")
                    .execute(&mut open)
                    .await?;
                self.connection.insert(open)
            }
        };
        checkpoint(connection, mode).await
    }
}
