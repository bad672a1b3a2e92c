//! SQLite's WAL checkpoints, off the commit path where they can be.
//!
//! A checkpoint copies what was committed to the WAL into the database file and `fsync`s
//! both. Run by SQLite's autocheckpoint it happens inside the commit that crossed the
//! threshold, and that batch waits for it: on the VM in BENCHMARKS.md, 300-600 ms a time,
//! about 4 of 10.5 s in a 5,000-message run with a 64 MiB threshold. The daemon runs PASSIVE
//! checkpoints here instead, on a connection of its own, shortly after commits, while the
//! folder tasks go on committing; when commits stop it cuts the WAL file back to nothing.
//!
//! What is left on the commit path: SQLite restarts the WAL from its start only when a write
//! begins with every frame copied, which a checkpoint running beside a busy writer never
//! achieves. So under sustained load the WAL still grows to the writers' autocheckpoint
//! (`WAL_BYTES`, 256 MiB) and one commit per 256 MiB copies the last frames and waits for
//! the `fsync`s (300-400 ms measured). The same autocheckpoint serves the short-lived
//! commands (`intake ingest`, the admin commands) and covers for this task when its
//! connection fails.

use std::time::Duration;

use sqlx::{ConnectOptions, SqliteConnection, SqlitePool};
use tokio::sync::watch;
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
pub async fn run(store: Store, mut committed: watch::Receiver<()>, stop: CancellationToken) {
    let Store::Sqlite(pool) = store else {
        return;
    };
    let mut checkpointer = Checkpointer {
        pool,
        connection: None,
        failing: false,
        held_open: false,
    };
    let mut written = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Ok(()) = committed.changed() => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(GATHER) => {}
                }
                checkpointer.run(Mode::Passive).await;
                written = true;
            }
            _ = tokio::time::sleep(IDLE), if written => {
                written = false;
                let cut = checkpointer.run(Mode::Truncate).await;
                if cut.is_some_and(|done| done.busy) {
                    if !checkpointer.held_open {
                        tracing::warn!(
                            "the SQLite WAL cannot be cut back: another connection keeps a transaction open \
                             (a database viewer?); the WAL grows until it ends"
                        );
                    }
                    checkpointer.held_open = true;
                } else if cut.is_some() {
                    checkpointer.held_open = false;
                }
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
    /// The last TRUNCATE found a reader in the way (warned once per spell).
    held_open: bool,
}

impl Checkpointer {
    /// One checkpoint, logged; `None` when it failed.
    async fn run(&mut self, mode: Mode) -> Option<Checkpointed> {
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
                Some(done)
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, "WAL checkpoint failed; commits will checkpoint themselves");
                }
                self.failing = true;
                self.connection = None;
                None
            }
        }
    }

    async fn attempt(&mut self, mode: Mode) -> Result<Checkpointed, sqlx::Error> {
        let connection = match &mut self.connection {
            Some(open) => open,
            None => {
                let mut open = connect_from_blocking_thread(&self.pool).await?;
                sqlx::query("PRAGMA busy_timeout = 0")
                    .execute(&mut open)
                    .await?;
                self.connection.insert(open)
            }
        };
        checkpoint(connection, mode).await
    }
}

/// A new connection to the pool's database, outside the pool. It is opened from a blocking
/// thread, where sqlx starts the connection's own thread, which so inherits the blocking
/// thread's CPUs: the checkpoint's page copying stays off the CPU the runtime shares with the
/// writers (`crate::cpu`).
async fn connect_from_blocking_thread(pool: &SqlitePool) -> Result<SqliteConnection, sqlx::Error> {
    let options = (*pool.connect_options()).clone();
    let runtime = tokio::runtime::Handle::current();
    // Opening needs no I/O driver (sqlx's SQLite connections answer over channels), so
    // `Handle::block_on` may drive it from outside the runtime thread.
    tokio::task::spawn_blocking(move || runtime.block_on(options.connect()))
        .await
        .map_err(|failed| {
            // The thread panicked or the runtime is shutting down: say which.
            sqlx::Error::Io(std::io::Error::other(format!(
                "opening the checkpoint connection: {failed}"
            )))
        })
        .and_then(|opened| opened)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use super::*;

    /// A SQLite store with one table of blobs and the checkpointer running on it, with the
    /// signal a pipeline would ring.
    struct Fixture {
        _dir: tempfile::TempDir,
        pool: SqlitePool,
        wal: PathBuf,
        committed: watch::Sender<()>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("wal.db").display());
        let Store::Sqlite(pool) = Store::connect(&url).await.expect("store") else {
            panic!("a sqlite URL opens SQLite");
        };
        sqlx::query("CREATE TABLE kept (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL)")
            .execute(&pool)
            .await
            .expect("a table");
        let committed = watch::Sender::new(());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            Store::Sqlite(pool.clone()),
            committed.subscribe(),
            stop.clone(),
        ));
        Fixture {
            wal: dir.path().join("wal.db-wal"),
            _dir: dir,
            pool,
            committed,
            stop,
            task,
        }
    }

    impl Fixture {
        async fn finish(self) {
            self.stop.cancel();
            self.task.await.expect("the checkpointer stops");
        }
    }

    async fn write(pool: &SqlitePool) {
        sqlx::query("INSERT INTO kept (bytes) VALUES (zeroblob(4000000))")
            .execute(pool)
            .await
            .expect("a write");
    }

    fn wal_bytes(wal: &Path) -> u64 {
        std::fs::metadata(wal).map(|meta| meta.len()).unwrap_or(0)
    }

    async fn wait_for_empty_wal(wal: &Path, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if wal_bytes(wal) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_wal_is_cut_back_once_commits_stop() {
        let fixture = fixture().await;
        let (pool, wal, committed) = (&fixture.pool, &fixture.wal, &fixture.committed);

        write(pool).await;
        assert!(wal_bytes(wal) > 4_000_000, "the write is in the WAL");
        committed.send_replace(());
        assert!(
            wait_for_empty_wal(wal, IDLE + Duration::from_secs(5)).await,
            "the WAL is cut back after {IDLE:?} without a commit"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM kept")
            .fetch_one(pool)
            .await
            .expect("count");
        assert_eq!(rows, 1);

        fixture.finish().await;
    }

    #[tokio::test]
    async fn a_reader_in_the_way_holds_up_no_writer() {
        let fixture = fixture().await;
        let (pool, wal, committed) = (&fixture.pool, &fixture.wal, &fixture.committed);

        write(pool).await;
        // A staff viewer with a read transaction open.
        let mut reader = pool.acquire().await.expect("a reader").detach();
        sqlx::query("BEGIN")
            .execute(&mut reader)
            .await
            .expect("begin");
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM kept")
            .fetch_one(&mut reader)
            .await
            .expect("read");
        committed.send_replace(());
        // Past the moment the checkpointer tries to cut the WAL back.
        tokio::time::sleep(GATHER + IDLE + Duration::from_millis(500)).await;
        let started = Instant::now();
        write(pool).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a write waited {:?} for the checkpointer",
            started.elapsed()
        );
        assert!(wal_bytes(wal) > 0, "the reader still needs the WAL");

        // Once the reader is gone, the next quiet spell cuts it back.
        sqlx::query("COMMIT")
            .execute(&mut reader)
            .await
            .expect("commit");
        committed.send_replace(());
        assert!(wait_for_empty_wal(wal, IDLE + Duration::from_secs(5)).await);

        fixture.finish().await;
    }
}
