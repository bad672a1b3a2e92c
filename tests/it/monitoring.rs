//! `[metrics] listen` on a running daemon with a real Dovecot: what Prometheus scrapes, and a
//! `/health` that turns 503 when a mailbox stops being checked or the database goes away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::dovecot::{Daemon, Dovecot, wait_until};
use crate::harness::{Backend, Intake, postgres_admin_url};
use crate::smtp::free_port;

/// (status code, body) of `GET path`, or None while nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

async fn wait_for_status(port: u16, path: &str, status: u16, limit: Duration) -> String {
    let mut body = String::new();
    wait_until(limit, &format!("GET {path} to answer {status}"), || {
        let answer = get(port, path);
        let matched = answer.as_ref().is_some_and(|(code, _)| *code == status);
        if let Some((_, text)) = answer {
            body = text;
        }
        async move { matched }
    })
    .await;
    body
}

fn config(imap_port: u16, metrics_port: u16) -> String {
    format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\nstale_after = \"2s\"\n\
         [[mailbox]]\nname = \"support\"\naddress = \"support@example.com\"\nhost = \"127.0.0.1\"\n\
         port = {imap_port}\nsecurity = \"plain\"\nusername = \"support\"\npassword = \"secret\"\n\
         idle = false\npoll_interval = \"1s\"\n\
         # Delivered as the daemon starts: answered whether it finds the mail there or not.\n\
         existing_mail = \"acknowledge\"\n"
    )
}

fn mail(index: usize) -> Vec<u8> {
    format!(
        "From: Customer <c{index}@contoso.com>\r\nTo: support@example.com\r\nSubject: Problem {index}\r\n\
         Message-ID: <metrics-{index}@contoso.com>\r\n\r\nBody.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn metrics_count_messages_and_health_follows_the_mailbox() {
    let mut dovecot = Dovecot::start(&[("support", "secret")]);
    let port = free_port();
    let intake = Intake::custom(Backend::Sqlite, &config(dovecot.imap_port, port)).await;
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));

    dovecot.deliver("support", "INBOX", &mail(1));
    dovecot.deliver("support", "INBOX", &mail(2));
    wait_until(Duration::from_secs(20), "two messages counted", || async {
        get(port, "/metrics").is_some_and(|(_, body)| {
            body.contains("intake_messages_total{mailbox=\"support\",outcome=\"created\"} 2")
        })
    })
    .await;
    let (status, metrics) = get(port, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    for expected in [
        "# TYPE intake_messages_total counter",
        "intake_database_up 1",
        "intake_mailbox_last_success_timestamp_seconds{mailbox=\"support\",folder=\"INBOX\"} ",
        // No [smtp]: each new client's registration and each acknowledgement wait queued.
        "intake_outbound_queue{state=\"queued\"} 4",
        "intake_outbound_queue{state=\"dead\"} 0",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected:?} missing:\n{metrics}"
        );
    }
    let health = wait_for_status(port, "/health", 200, Duration::from_secs(5)).await;
    assert!(health.contains("support/INBOX: ok, checked"), "{health}");
    assert_eq!(get(port, "/elsewhere").map(|(code, _)| code), Some(404));

    // A second instance cannot take the same address: it says which key, and does not start.
    let mut second = Daemon::start(&intake.config, intake.path("second.log"));
    assert_eq!(second.wait(Duration::from_secs(20)), Some(78));
    assert!(
        second.log_text().contains("metrics.listen"),
        "{}",
        second.log_text()
    );

    // The server goes away: once the folder misses its period plus stale_after, 503 with why.
    dovecot.stop();
    let health = wait_for_status(port, "/health", 503, Duration::from_secs(20)).await;
    assert!(health.starts_with("unhealthy\n"), "{health}");
    assert!(health.contains("support/INBOX: STALE"), "{health}");
    assert!(health.contains("last error:"), "{health}");
    let (_, metrics) = get(port, "/metrics").expect("metrics answer");
    assert!(
        metrics.contains("intake_imap_errors_total{mailbox=\"support\"}"),
        "{metrics}"
    );

    dovecot.restart();
    wait_for_status(port, "/health", 200, Duration::from_secs(30)).await;
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

#[tokio::test]
async fn health_fails_while_the_database_is_unreachable() {
    let dovecot = Dovecot::start(&[("support", "secret")]);
    let port = free_port();
    let intake = Intake::custom(Backend::Postgres, &config(dovecot.imap_port, port)).await;
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_for_status(port, "/health", 200, Duration::from_secs(20)).await;

    let name = intake
        .db
        .url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("a database name")
        .to_string();
    let admin = postgres_admin_url();
    let psql = |sql: &str| {
        let status = std::process::Command::new("psql")
            .args([admin.as_str(), "-X", "-q", "-c", sql])
            .status()
            .expect("psql");
        assert!(status.success(), "{sql}");
    };
    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    let health = wait_for_status(port, "/health", 503, Duration::from_secs(30)).await;
    assert!(health.contains("database: unreachable"), "{health}");
    let (_, metrics) = get(port, "/metrics").expect("metrics answer");
    assert!(metrics.contains("intake_database_up 0"), "{metrics}");

    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    wait_for_status(port, "/health", 200, Duration::from_secs(30)).await;
    assert_eq!(daemon.terminate(Duration::from_secs(15)), Some(0));
}
