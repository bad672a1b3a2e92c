//! The test harness: a fresh database per test on either backend, and the real `intake` binary
//! run against it with a throwaway configuration.
//!
//! PostgreSQL tests read the server from `INTAKE_TEST_POSTGRES_URL` (set by `scripts/test` and
//! `.ci/run`). A missing URL fails the test: the PostgreSQL half of the suite never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use intake::store::{Store, StoreError};
use sqlx::Connection;

pub const POSTGRES_URL_VARIABLE: &str = "INTAKE_TEST_POSTGRES_URL";

/// Test databases left behind by a killed run are dropped once they are this old.
const STALE_DATABASE_SECONDS: u64 = 6 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>, // (admin URL, database name)
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .unwrap_or(0)
}

pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VARIABLE} is not set: the PostgreSQL tests never skip. Set it to a \
             server where databases may be created, e.g. \
             postgres://postgres@127.0.0.1:5432/postgres (scripts/test does this)"
        )
    })
}

/// `postgres://host/db` with the database replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|index| index + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

impl TestDb {
    pub async fn new(backend: Backend, dir: &Path) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.join("intake.db").display()),
                postgres: None,
            },
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!(
                    "intake_test_{}_{}_{}",
                    unix_seconds(),
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst)
                );
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| panic!("connecting to {admin_url}: {error}"));
                drop_stale_databases(&mut admin).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|error| panic!("creating database {name}: {error}"));
                let _ = admin.close().await;
                TestDb {
                    url: with_database(&admin_url, &name),
                    postgres: Some((admin_url, name)),
                }
            }
        }
    }
}

async fn drop_stale_databases(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'intake\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let now = unix_seconds();
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|seconds| seconds.parse::<u64>().ok());
        if created.is_some_and(|created| created + STALE_DATABASE_SECONDS < now) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A configured intake installation: a temporary directory, a config file, a database.
pub struct Intake {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: TestDb,
}

/// The base configuration every test starts from: one mailbox whose address is ours.
const BASE_CONFIG: &str = r#"
[[mailbox]]
name = "support"
department = "Support"
address = "support@example.com"
host = "127.0.0.1"
port = 1143
security = "plain"
username = "support"
password = "not-used-by-ingest"
"#;

impl Intake {
    /// `extra` holds whole TOML sections, e.g. `[clients]\npending_mail = "hold"`.
    pub async fn new(backend: Backend, extra: &str) -> Intake {
        Intake::custom(backend, &format!("{extra}\n{BASE_CONFIG}")).await
    }

    /// A configuration of `body` (sections and mailboxes) plus the test's state and database.
    pub async fn custom(backend: Backend, body: &str) -> Intake {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = TestDb::new(backend, dir.path()).await;
        let config = dir.path().join("intake.toml");
        let intake = Intake { dir, config, db };
        intake.write_config(body);
        intake
    }

    /// Replaces the configuration body, keeping state and database (for reload tests).
    pub fn write_config(&self, body: &str) {
        let text = format!(
            "state_dir = \"{}\"\n[database]\nurl = \"{}\"\n{body}\n",
            self.dir.path().display(),
            self.db.url
        );
        std::fs::write(&self.config, text).expect("writing the test config");
    }

    /// Runs the real binary with `-c CONFIG ARGS…`, feeding `stdin` when given.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_binary(&self.config, args, stdin)
    }

    /// Runs and insists on exit status 0, returning stdout.
    pub fn run_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "intake {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `intake --json ARGS…`, insisting on success, and parses what it prints.
    pub fn run_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.run_ok(&all, None);
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{args:?}: {error}\n{stdout}"))
    }

    /// Runs a command that must be refused: exit 65, the reason on stderr. Returns stderr.
    pub fn run_refused(&self, args: &[&str]) -> String {
        let output = self.run(args, None);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(65),
            "intake {args:?} should be refused\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        );
        stderr
    }

    /// A pool on the test database, for checking rows. A database the daemon under test is
    /// busy with (seen once in a full parallel run on 2 cores: SQLITE_BUSY while opening, as
    /// the daemon started) is tried again for up to 30 s, as intake itself retries; any other
    /// error fails the test at once.
    pub async fn store(&self) -> Store {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Store::connect(&self.db.url).await {
                Ok(store) => return store,
                Err(StoreError::Unavailable(why)) if std::time::Instant::now() < deadline => {
                    eprintln!("connecting to {} again: {why}", self.db.url);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("connecting to {}: {error}", self.db.url),
            }
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn run_binary(config: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
    command
        .arg("-c")
        .arg(config)
        .args(args)
        .env("INTAKE_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("starting the intake binary");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // intake may exit before reading (a bad config): a broken pipe is its answer, not ours.
        if let Err(error) = pipe.write_all(bytes)
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            panic!("writing to intake's stdin: {error}");
        }
    }
    child.wait_with_output().expect("waiting for intake")
}

/// `outcome hash source` as `intake ingest` prints it.
pub struct IngestLine {
    pub outcome: String,
    pub hash: Option<String>,
}

pub fn parse_ingest_line(line: &str) -> IngestLine {
    let mut fields = line.split_whitespace();
    let outcome = fields.next().unwrap_or_default().to_string();
    let hash = fields
        .next()
        .filter(|hash| *hash != "-")
        .map(str::to_string);
    IngestLine { outcome, hash }
}

/// Runs one SQL statement with the client staff would use: `sqlite3` on the SQLite file,
/// `psql` on PostgreSQL (stopping at the first error).
fn database_client(intake: &Intake, backend: Backend, sql: &str) -> Output {
    match backend {
        Backend::Sqlite => {
            let file = intake.db.url.trim_start_matches("sqlite://");
            Command::new("sqlite3")
                .args(["-separator", "|", file, sql])
                .output()
        }
        Backend::Postgres => Command::new("psql")
            .args([
                intake.db.url.as_str(),
                "-X",
                "-At",
                "-F",
                "|",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output(),
    }
    .unwrap_or_else(|error| panic!("{backend:?} client: {error} (scripts/test installs it)"))
}

/// Rows as `a|b|c` lines, read the way a person at a shell reads them: the `sqlite3`
/// command-line client on the SQLite file, `psql` on PostgreSQL.
pub fn query(intake: &Intake, backend: Backend, sql: &str) -> Vec<String> {
    let output = database_client(intake, backend, sql);
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A statement that must fail, as a viewer would see it fail; returns the error text.
pub fn query_fails(intake: &Intake, backend: Backend, sql: &str) -> String {
    let output = database_client(intake, backend, sql);
    assert!(!output.status.success(), "{sql} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
