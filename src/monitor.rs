//! `[metrics] listen`: Prometheus text on `/metrics` and a health verdict on `/health`, served
//! by `intake run`.
//!
//! Counters (messages by mailbox and outcome, IMAP failures, sent and failed outbound mail)
//! are recorded where things happen through the `metrics` facade; without a listener no
//! recorder is installed and recording costs nothing. What describes the database rather than
//! this process (outbound queue depth by state, each folder's last successful check) is read
//! at scrape time, so it is true however many instances share the database, and a folder
//! removed by a reload disappears from the output at once.
//!
//! A folder is stale when its last successful check (`mailbox_folders.last_success_at`,
//! written by whichever instance holds it) is older than its own period — `poll_interval`,
//! or the IDLE renewal — plus `metrics.stale_after`. `/health` answers 503 naming every stale
//! folder, or the database when it does not answer.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::imap::IDLE_RENEW;
use crate::store::folders::{self, FolderHealth};
use crate::store::{Store, Timestamp, outbound as queue};

const MESSAGES: &str = "intake_messages_total";
const IMAP_ERRORS: &str = "intake_imap_errors_total";
const SENT: &str = "intake_outbound_sent_total";
const SEND_FAILURES: &str = "intake_outbound_send_failures_total";
/// How long a scrape waits for the database before calling it unreachable.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One message ingested (or recorded as rejected) from `mailbox`.
pub fn message(mailbox: Option<&str>, outcome: &'static str) {
    metrics::counter!(MESSAGES, "mailbox" => mailbox.unwrap_or("-").to_string(), "outcome" => outcome)
        .increment(1);
}

/// A session with `mailbox` failed: connection, login, TLS, protocol or database error.
pub fn imap_error(mailbox: &str) {
    metrics::counter!(IMAP_ERRORS, "mailbox" => mailbox.to_string()).increment(1);
}

/// An outbound mail was sent.
pub fn sent(template: &str) {
    metrics::counter!(SENT, "template" => template.to_string()).increment(1);
}

/// An attempt to send failed; the mail is retried later or dead.
pub fn send_failure(template: &str) {
    metrics::counter!(SEND_FAILURES, "template" => template.to_string()).increment(1);
}

/// A folder this instance is configured to watch, and how often it should succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub mailbox: String,
    pub folder: String,
    pub period: Duration,
    /// When this instance began watching it: a folder is not judged on the time before (a
    /// restart after a day's stop, a mailbox added by a reload).
    pub since: Timestamp,
}

/// The folders of `settings`, watched since `now` unless `before` already watched them.
pub fn watched(settings: &Settings, before: &[Watched], now: Timestamp) -> Vec<Watched> {
    settings
        .mailboxes
        .iter()
        .flat_map(|mailbox| {
            let period = if mailbox.idle {
                IDLE_RENEW.max(mailbox.poll_interval)
            } else {
                mailbox.poll_interval
            };
            mailbox.folders.iter().map(move |folder| {
                let since = before
                    .iter()
                    .find(|old| old.mailbox == mailbox.name && old.folder == *folder)
                    .map_or(now, |old| old.since);
                Watched {
                    mailbox: mailbox.name.clone(),
                    folder: folder.clone(),
                    period,
                    since,
                }
            })
        })
        .collect()
}

/// The state the listener reports on; the daemon updates it on reload.
pub struct Monitor {
    handle: PrometheusHandle,
    store: Store,
    config: RwLock<(Vec<Watched>, Duration)>,
}

impl Monitor {
    /// Installs the process-wide recorder. Call once, before any metric is recorded.
    pub fn install(store: Store, settings: &Settings) -> Result<Arc<Monitor>, String> {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
        metrics::describe_counter!(MESSAGES, "Messages ingested, by mailbox and outcome");
        metrics::describe_counter!(
            IMAP_ERRORS,
            "Failed IMAP sessions (connection, TLS, login, protocol), by mailbox"
        );
        metrics::describe_counter!(SENT, "Outbound mails sent, by template");
        metrics::describe_counter!(
            SEND_FAILURES,
            "Failed send attempts (the mail is retried or dead), by template"
        );
        Ok(Arc::new(Monitor {
            handle,
            store,
            config: RwLock::new((
                watched(settings, &[], Timestamp::now()),
                settings.metrics.stale_after,
            )),
        }))
    }

    /// Takes the folders and threshold of a reloaded configuration.
    pub fn update(&self, settings: &Settings) {
        if let Ok(mut config) = self.config.write() {
            let folders = watched(settings, &config.0, Timestamp::now());
            *config = (folders, settings.metrics.stale_after);
        }
    }

    fn config(&self) -> (Vec<Watched>, Duration) {
        self.config
            .read()
            .map(|config| config.clone())
            .unwrap_or_default()
    }

    async fn folders(&self) -> Result<Vec<FolderHealth>, String> {
        match tokio::time::timeout(DATABASE_TIMEOUT, folders::health(&self.store)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {}s", DATABASE_TIMEOUT.as_secs())),
        }
    }

    async fn health(&self) -> Verdict {
        let (watched, stale_after) = self.config();
        match self.folders().await {
            Ok(rows) => judge(Timestamp::now(), &watched, stale_after, &rows),
            Err(error) => Verdict {
                healthy: false,
                lines: vec![format!("database: unreachable: {error}")],
            },
        }
    }

    async fn metrics(&self) -> String {
        let mut text = self.handle.render();
        let (watched, _) = self.config();
        let folders = self.folders().await;
        let depth = match tokio::time::timeout(DATABASE_TIMEOUT, queue::depth_by_state(&self.store))
            .await
        {
            Ok(Ok(depth)) => Some(depth),
            _ => None,
        };
        let up = folders.is_ok() && depth.is_some();
        gauge_header(
            &mut text,
            "intake_database_up",
            "1 when the database answered this scrape",
        );
        let _ = writeln!(text, "intake_database_up {}", u8::from(up));
        if let Ok(rows) = &folders {
            gauge_header(
                &mut text,
                "intake_mailbox_last_success_timestamp_seconds",
                "Unix time of the last successful check of a watched folder (by any instance)",
            );
            for watched in &watched {
                let last = rows
                    .iter()
                    .find(|row| row.mailbox == watched.mailbox && row.folder == watched.folder)
                    .and_then(|row| row.last_success_at);
                if let Some(last) = last {
                    let _ = writeln!(
                        text,
                        "intake_mailbox_last_success_timestamp_seconds{{mailbox=\"{}\",folder=\"{}\"}} {:.3}",
                        escape(&watched.mailbox),
                        escape(&watched.folder),
                        last.0.timestamp_millis() as f64 / 1000.0
                    );
                }
            }
        }
        if let Some(depth) = depth {
            gauge_header(
                &mut text,
                "intake_outbound_queue",
                "Outbound mails by state",
            );
            for state in ["queued", "sending", "retry", "sent", "dead", "suppressed"] {
                let count = depth
                    .iter()
                    .find(|(name, _)| name == state)
                    .map(|(_, count)| *count)
                    .unwrap_or(0);
                let _ = writeln!(text, "intake_outbound_queue{{state=\"{state}\"}} {count}");
            }
        }
        text
    }

    async fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_string());
        }
        match path {
            "/metrics" => reply(StatusCode::OK, self.metrics().await),
            "/health" => {
                let verdict = self.health().await;
                let status = if verdict.healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let mut body = String::from(if verdict.healthy {
                    "ok\n"
                } else {
                    "unhealthy\n"
                });
                for line in verdict.lines {
                    body.push_str(&line);
                    body.push('\n');
                }
                reply(status, body)
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "not found: try /metrics or /health\n".to_string(),
            ),
        }
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn gauge_header(text: &mut String, name: &str, help: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// A label value in the Prometheus text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What `/health` says: healthy, and one line per folder (and per problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub healthy: bool,
    pub lines: Vec<String>,
}

/// Pure: is every watched folder checked recently enough? Time counts from the later of its
/// last success and when this instance began watching it, so a fresh start or a newly added
/// mailbox is healthy until its first period has passed.
pub fn judge(
    now: Timestamp,
    watched: &[Watched],
    stale_after: Duration,
    rows: &[FolderHealth],
) -> Verdict {
    let mut verdict = Verdict {
        healthy: true,
        lines: vec!["database: ok".to_string()],
    };
    for folder in watched {
        let row = rows
            .iter()
            .find(|row| row.mailbox == folder.mailbox && row.folder == folder.folder);
        let last = row.and_then(|row| row.last_success_at);
        let since = last.map_or(folder.since, |last| last.max(folder.since));
        let age = (now.0 - since.0).to_std().unwrap_or(Duration::ZERO);
        let limit = folder.period + stale_after;
        let name = format!("{}/{}", folder.mailbox, folder.folder);
        if age <= limit {
            match last {
                Some(_) => verdict
                    .lines
                    .push(format!("{name}: ok, checked {}s ago", age.as_secs())),
                None => verdict.lines.push(format!(
                    "{name}: ok, not checked yet (watched for {}s)",
                    age.as_secs()
                )),
            }
            continue;
        }
        verdict.healthy = false;
        let when = match last {
            Some(_) => format!("no successful check for {}s", age.as_secs()),
            None => format!("never checked successfully in {}s", age.as_secs()),
        };
        let error = row
            .and_then(|row| row.last_error.as_deref())
            .map(|error| format!("; last error: {error}"))
            .unwrap_or_default();
        verdict.lines.push(format!(
            "{name}: STALE, {when} (limit {}s){error}",
            limit.as_secs()
        ));
    }
    verdict
}

/// Binds the listener; an address in use or not allowed stops the start with a clear error.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(address).await
}

/// Serves `/metrics` and `/health` until `stop`. HTTP/1.1 by hyper; one task per connection.
pub async fn serve(listener: TcpListener, monitor: Arc<Monitor>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let monitor = monitor.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let monitor = monitor.clone();
                async move {
                    Ok::<_, Infallible>(
                        monitor
                            .respond(request.method(), request.uri().path())
                            .await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "metrics connection ended with an error");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> Timestamp {
        Timestamp(
            chrono::Utc
                .timestamp_opt(1_800_000_000 + seconds, 0)
                .single()
                .expect("a valid time"),
        )
    }

    fn folder(mailbox: &str, period: u64) -> Watched {
        Watched {
            mailbox: mailbox.to_string(),
            folder: "INBOX".to_string(),
            period: Duration::from_secs(period),
            since: at(0),
        }
    }

    fn row(mailbox: &str, last: Option<Timestamp>, error: Option<&str>) -> FolderHealth {
        FolderHealth {
            mailbox: mailbox.to_string(),
            folder: "INBOX".to_string(),
            last_success_at: last,
            last_error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_folder_is_stale_after_its_period_plus_the_threshold() {
        let watched = [folder("support", 60), folder("sales", 600)];
        let rows = [
            row("support", Some(at(0)), None),
            row("sales", Some(at(0)), None),
        ];
        let stale_after = Duration::from_secs(300);
        let fine = judge(at(360), &watched, stale_after, &rows);
        assert!(fine.healthy, "{fine:?}");

        let late = judge(at(361), &watched, stale_after, &rows);
        assert!(!late.healthy);
        assert!(
            late.lines
                .iter()
                .any(|line| line.starts_with("support/INBOX: STALE"))
        );
        assert!(
            late.lines
                .iter()
                .any(|line| line.starts_with("sales/INBOX: ok"))
        );
    }

    #[test]
    fn a_never_checked_folder_counts_from_the_start_and_shows_the_last_error() {
        let watched = [folder("support", 60)];
        let rows = [row("support", None, Some("LOGIN failed"))];
        let stale_after = Duration::from_secs(10);
        assert!(judge(at(70), &watched, stale_after, &rows).healthy);
        let verdict = judge(at(71), &watched, stale_after, &rows);
        assert!(!verdict.healthy);
        assert_eq!(
            verdict.lines.last().map(String::as_str),
            Some(
                "support/INBOX: STALE, never checked successfully in 71s (limit 70s); \
                 last error: LOGIN failed"
            )
        );
        // No row at all (the task has not started yet) is the same.
        assert!(!judge(at(71), &watched, stale_after, &[]).healthy);
    }

    #[test]
    fn an_old_success_counts_from_when_watching_began() {
        // Restarted at 10,000 after a long stop: the success at 0 is not held against it.
        let mut restarted = folder("support", 60);
        restarted.since = at(10_000);
        let rows = [row("support", Some(at(0)), None)];
        let stale_after = Duration::from_secs(10);
        assert!(judge(at(10_070), &[restarted.clone()], stale_after, &rows).healthy);
        assert!(!judge(at(10_071), &[restarted], stale_after, &rows).healthy);
    }

    #[test]
    fn a_reload_keeps_when_each_folder_began_to_be_watched() {
        let settings = |names: &[&str]| {
            let text: String = names
                .iter()
                .map(|name| {
                    format!(
                        "[[mailbox]]\nname = \"{name}\"\naddress = \"{name}@example.com\"\n\
                         host = \"imap.example.com\"\nusername = \"{name}\"\npassword = \"x\"\n"
                    )
                })
                .collect();
            Settings::parse(&text, std::path::Path::new("intake.toml")).expect("valid")
        };
        let first = watched(&settings(&["support"]), &[], at(0));
        let reloaded = watched(&settings(&["support", "sales"]), &first, at(500));
        let since: Vec<(String, Timestamp)> = reloaded
            .into_iter()
            .map(|folder| (folder.mailbox, folder.since))
            .collect();
        assert_eq!(
            since,
            [
                ("support".to_string(), at(0)),
                ("sales".to_string(), at(500))
            ]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
