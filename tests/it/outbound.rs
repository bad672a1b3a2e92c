//! Outbound mail against a real SMTP server (aiosmtpd): what each template looks like on the
//! wire, threading, retries and permanent failures, a server that is down, the loop rules, the
//! rate limit, approval by SQL, header injection, claim races and expired claims.

use std::time::Duration;

use intake::on_pool;
use intake::store::Store;

use crate::dovecot::{Daemon, make_certificates, wait_until};
use crate::harness::{Backend, Intake, parse_ingest_line};
use crate::smtp::{Delivered, SmtpSink};

/// `[smtp]` to the sink and `[outbound]` with the shipped templates and quick retries.
fn outbound_config(port: u16, extra_outbound: &str) -> String {
    format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n\
         from = \"Example Support <support@example.com>\"\ntimeout = \"5s\"\n\
         [outbound]\ntemplates_dir = \"{}/config/templates\"\nretry_delay = \"1s\"\n\
         poll_interval = \"1s\"\nportal_url = \"https://help.example.com\"\n{extra_outbound}\n",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn mail(from: &str, subject: &str, message_id: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n{extra_headers}\r\nHello.\r\n"
    )
    .into_bytes()
}

async fn execute(store: &Store, sql: &'static str) {
    on_pool!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
    });
}

async fn scalar(store: &Store, sql: &'static str) -> i64 {
    on_pool!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|error| panic!("{sql}: {error}"))
    })
}

/// (template, state, attempts, last_error) of every outbound row, oldest first.
async fn rows(store: &Store) -> Vec<(String, String, i64, Option<String>)> {
    on_pool!(store, pool => {
        sqlx::query_as::<_, (String, String, i64, Option<String>)>(
            "SELECT template, state, CAST(attempts AS BIGINT), last_error FROM outbound ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .expect("outbound rows")
    })
}

fn flush(intake: &Intake) -> String {
    intake.run_ok(&["queue", "flush"], None)
}

fn by_subject<'a>(delivered: &'a [Delivered], needle: &str) -> &'a Delivered {
    delivered
        .iter()
        .find(|mail| {
            mail.header("Subject")
                .is_some_and(|subject| subject.contains(needle))
        })
        .unwrap_or_else(|| {
            panic!(
                "no mail with {needle:?} in its subject among {:?}",
                delivered
                    .iter()
                    .map(|mail| mail.header("Subject"))
                    .collect::<Vec<_>>()
            )
        })
}

fn common_headers(mail: &Delivered, to: &str) {
    assert_eq!(mail.rcpt_tos, vec![to.to_string()]);
    assert_eq!(
        mail.header("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        mail.header("From").as_deref(),
        Some("\"Example Support\" <support@example.com>")
    );
    assert!(mail.header("To").is_some_and(|value| value.contains(to)));
    assert!(mail.header("Date").is_some(), "a Date header");
    let message_id = mail.header("Message-ID").expect("a Message-ID");
    assert!(
        message_id.starts_with("<intake.") && message_id.ends_with("@example.com>"),
        "{message_id}"
    );
}

on_both_backends!(templates_threading_and_approval, |backend| async move {
    let sink = SmtpSink::start("");
    let intake = Intake::new(
        backend,
        &format!(
            "[clients]\nauto_approve = false\n{}",
            outbound_config(sink.port, "")
        ),
    )
    .await;
    let line = intake.run_ok(
        &["ingest", "--mailbox", "support"],
        Some(&mail(
            "Ada Lovelace <ada@contoso.com>",
            "Printer on fire",
            "orig-1@contoso.com",
            "References: <older-1@contoso.com>\r\n",
        )),
    );
    let hash = parse_ingest_line(&line).hash.expect("a new incident");
    assert_eq!(
        flush(&intake).trim(),
        "2 sent, 0 to retry, 0 dead, 0 suppressed"
    );

    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 2);
    let registration = by_subject(&delivered, "registration");
    common_headers(registration, "ada@contoso.com");
    assert!(
        registration
            .header("To")
            .is_some_and(|to| to.contains("Ada Lovelace"))
    );
    let body = registration.body_text();
    assert!(body.contains("Hello Ada Lovelace,"), "{body}");
    assert!(body.contains("waiting for approval"), "{body}");
    assert!(body.contains("https://help.example.com"), "{body}");
    assert!(
        registration.header("In-Reply-To").is_none(),
        "registration answers no message"
    );

    let ack = by_subject(&delivered, &format!("[#{hash}]"));
    common_headers(ack, "ada@contoso.com");
    assert_eq!(
        ack.header("Subject"),
        Some(format!("Re: Printer on fire [#{hash}]"))
    );
    assert_eq!(
        ack.header("In-Reply-To").as_deref(),
        Some("<orig-1@contoso.com>")
    );
    assert_eq!(
        ack.header("References").as_deref(),
        Some("<older-1@contoso.com> <orig-1@contoso.com>")
    );
    let body = ack.body_text();
    assert!(body.contains(&format!("opened incident {hash}")), "{body}");
    assert!(
        ack.parsed().body_html(0).is_some(),
        "the shipped template has an HTML part"
    );

    let store = intake.store().await;
    assert_eq!(
        rows(&store)
            .await
            .iter()
            .map(|(template, state, attempts, _)| (template.as_str(), state.as_str(), *attempts))
            .collect::<Vec<_>>(),
        vec![("registration", "sent", 1), ("acknowledgement", "sent", 1)]
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT count(*) FROM messages m JOIN incidents i ON i.id = m.incident_id \
             WHERE m.direction = 'outbound'"
        )
        .await,
        1,
        "the acknowledgement is stored on its incident"
    );

    // The customer answers the acknowledgement without the tag: it threads by In-Reply-To.
    let ack_id = ack.header("Message-ID").expect("Message-ID");
    let reply = intake.run_ok(
        &["ingest", "--mailbox", "support"],
        Some(&mail(
            "Ada Lovelace <ada@contoso.com>",
            "Re: thanks",
            "reply-1@contoso.com",
            &format!("In-Reply-To: {ack_id}\r\n"),
        )),
    );
    let reply = parse_ingest_line(&reply);
    assert_eq!(reply.outcome, "appended");
    assert_eq!(reply.hash.as_deref(), Some(hash.as_str()));
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 0 dead, 0 suppressed"
    );

    // Staff approve the client by editing the row: one approval mail, and never a second.
    execute(
        &store,
        "UPDATE clients SET approval = 'approved' WHERE email = 'ada@contoso.com'",
    )
    .await;
    assert_eq!(
        flush(&intake).trim(),
        "1 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    execute(
        &store,
        "UPDATE clients SET approval = 'pending' WHERE email = 'ada@contoso.com'",
    )
    .await;
    execute(
        &store,
        "UPDATE clients SET approval = 'approved' WHERE email = 'ada@contoso.com'",
    )
    .await;
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 3);
    let approval = by_subject(&delivered, "approved");
    common_headers(approval, "ada@contoso.com");
    assert!(
        approval
            .body_text()
            .contains("have approved ada@contoso.com")
    );
    store.close().await;
});

on_both_backends!(temporary_then_permanent_failures, |backend| async move {
    let sink = SmtpSink::start("451,550");
    let intake = Intake::new(backend, &outbound_config(sink.port, "registration = false")).await;
    intake.run_ok(
        &["ingest"],
        Some(&mail("bob@contoso.com", "One", "one@contoso.com", "")),
    );
    // 451: retry, with the reason and a next attempt time.
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 1 to retry, 0 dead, 0 suppressed"
    );
    let store = intake.store().await;
    let after_first = rows(&store).await;
    assert_eq!(after_first[0].1, "retry");
    assert_eq!(after_first[0].2, 1);
    assert!(
        after_first[0]
            .3
            .as_deref()
            .is_some_and(|why| why.contains("451")),
        "{after_first:?}"
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT count(*) FROM outbound WHERE next_attempt_at > updated_at"
        )
        .await,
        1,
        "the retry waits"
    );
    // The next attempt gets 550: dead at once, no third try.
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 1 dead, 0 suppressed"
    );
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    let after = rows(&store).await;
    assert_eq!((after[0].1.as_str(), after[0].2), ("dead", 2));
    assert!(after[0].3.as_deref().is_some_and(|why| why.contains("550")));
    assert_eq!(sink.attempts().len(), 2);
    assert!(sink.delivered().is_empty());

    // A second mail: 451 is behind us, so 250 at once, and exactly one copy.
    intake.run_ok(
        &["ingest"],
        Some(&mail("carol@contoso.com", "Two", "two@contoso.com", "")),
    );
    execute(
        &store,
        "UPDATE outbound SET state = 'queued' WHERE state = 'dead'",
    )
    .await;
    execute(
        &store,
        "UPDATE outbound SET attempts = 0 WHERE recipient = 'bob@contoso.com'",
    )
    .await;
    assert_eq!(
        flush(&intake).trim(),
        "2 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    assert_eq!(sink.delivered().len(), 2);
    store.close().await;
});

#[tokio::test]
async fn a_retry_after_451_delivers_once_with_the_same_message_id() {
    let sink = SmtpSink::start("451");
    let intake = Intake::new(
        Backend::Sqlite,
        &outbound_config(sink.port, "registration = false"),
    )
    .await;
    intake.run_ok(
        &["ingest"],
        Some(&mail("dan@contoso.com", "Once", "once@contoso.com", "")),
    );
    flush(&intake);
    let store = intake.store().await;
    let fixed: String = on_pool!(&store, pool => {
        sqlx::query_scalar("SELECT message_id_header FROM outbound").fetch_one(pool).await.expect("a Message-ID")
    });
    assert_eq!(
        flush(&intake).trim(),
        "1 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].header("Message-ID"),
        Some(format!("<{fixed}>"))
    );
    assert_eq!(
        sink.attempts(),
        vec!["451 dan@contoso.com", "250 dan@contoso.com"]
    );
    store.close().await;
}

#[tokio::test]
async fn an_expired_claim_is_sent_and_a_live_one_is_left_alone() {
    let sink = SmtpSink::start("");
    let intake = Intake::new(Backend::Sqlite, &outbound_config(sink.port, "")).await;
    intake.run_ok(&["migrate"], None);
    let store = intake.store().await;
    // A worker died mid-send (its claim passed) and another is sending right now.
    execute(
        &store,
        "INSERT INTO outbound (template, recipient, state, attempts, claimed_until) VALUES \
         ('registration', 'dead-worker@contoso.com', 'sending', 1, '2000-01-01T00:00:00.000Z'), \
         ('registration', 'live-worker@contoso.com', 'sending', 1, '2999-01-01T00:00:00.000Z')",
    )
    .await;
    assert_eq!(
        flush(&intake).trim(),
        "1 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].rcpt_tos, vec!["dead-worker@contoso.com"]);
    let states = rows(&store).await;
    assert_eq!((states[0].1.as_str(), states[0].2), ("sent", 2));
    assert_eq!(states[1].1, "sending");
    store.close().await;
}

#[tokio::test]
async fn a_server_that_is_down_and_then_up_gets_the_mail_from_the_daemon() {
    let mut sink = SmtpSink::not_started(&[]);
    let intake = Intake::custom(
        Backend::Sqlite,
        &format!(
            "[clients]\nauto_approve = false\n{}",
            outbound_config(sink.port, "")
        ),
    )
    .await;
    intake.run_ok(
        &["ingest"],
        Some(&mail("erin@contoso.com", "Down", "down@contoso.com", "")),
    );
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    let store = intake.store().await;
    wait_until(
        Duration::from_secs(20),
        "both mails to wait for a retry",
        || async {
            scalar(
                &store,
                "SELECT count(*) FROM outbound WHERE state = 'retry' AND last_error IS NOT NULL",
            )
            .await
                == 2
        },
    )
    .await;

    sink.launch("");
    wait_until(Duration::from_secs(30), "both mails to be sent", || async {
        scalar(&store, "SELECT count(*) FROM outbound WHERE state = 'sent'").await == 2
    })
    .await;
    assert_eq!(sink.delivered().len(), 2);

    // Approval by SQL while the daemon runs: its worker finds the row within a poll.
    execute(
        &store,
        "UPDATE clients SET approval = 'approved' WHERE email = 'erin@contoso.com'",
    )
    .await;
    wait_until(Duration::from_secs(20), "the approval mail", || async {
        sink.delivered().len() == 3
    })
    .await;
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    assert_eq!(sink.delivered().len(), 3, "exactly one approval mail");
    assert!(
        daemon.log_text().contains("mail sent"),
        "{}",
        daemon.log_text()
    );
    store.close().await;
}

#[tokio::test]
async fn machines_ourselves_banned_and_spam_get_nothing() {
    let sink = SmtpSink::start("");
    let intake = Intake::new(Backend::Sqlite, &outbound_config(sink.port, "")).await;
    let automatic = [
        mail(
            "robot@vendor.example",
            "Out of office",
            "ooo@vendor.example",
            "Auto-Submitted: auto-replied\r\n",
        ),
        mail(
            "MAILER-DAEMON@mx.vendor.example",
            "Undelivered Mail Returned to Sender",
            "bounce@vendor.example",
            "",
        ),
        mail(
            "list@lists.example",
            "Weekly digest",
            "digest@lists.example",
            "List-Id: <news.lists.example>\r\n",
        ),
        mail(
            "support@example.com",
            "From ourselves",
            "self@example.com",
            "",
        ),
        mail(
            "news@vendor.example",
            "Newsletter",
            "bulk@vendor.example",
            "Precedence: bulk\r\n",
        ),
    ];
    for raw in &automatic {
        intake.run_ok(&["ingest"], Some(raw));
    }
    let store = intake.store().await;
    let queued = rows(&store).await;
    assert!(
        queued.is_empty(),
        "nothing queued for automatic mail: {queued:?}"
    );

    // Whatever queued them, rows to ourselves, to machines, to banned or spam clients stay home.
    intake.run_ok(
        &["ingest"],
        Some(&mail("mallory@contoso.com", "Hi", "m1@contoso.com", "")),
    );
    intake.run_ok(
        &["ingest"],
        Some(&mail("spammer@contoso.com", "Hi", "s1@contoso.com", "")),
    );
    execute(
        &store,
        "UPDATE clients SET standing = 'banned' WHERE email = 'mallory@contoso.com'",
    )
    .await;
    execute(
        &store,
        "UPDATE clients SET standing = 'spam' WHERE email = 'spammer@contoso.com'",
    )
    .await;
    execute(
        &store,
        "INSERT INTO outbound (template, recipient) VALUES \
         ('registration', 'Support@Example.com'), ('registration', 'noreply@vendor.example')",
    )
    .await;
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 0 dead, 6 suppressed"
    );
    assert!(sink.delivered().is_empty());
    assert!(sink.attempts().is_empty());
    let reasons: Vec<String> = rows(&store)
        .await
        .into_iter()
        .map(|(_, state, _, why)| format!("{state}: {}", why.unwrap_or_default()))
        .collect();
    for expected in [
        "suppressed: the client is banned",
        "suppressed: the client is marked spam",
        "suppressed: the recipient is one of our own addresses",
        "suppressed: the recipient noreply@vendor.example is a machine",
    ] {
        assert!(
            reasons.iter().any(|reason| reason == expected),
            "{expected} in {reasons:?}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn at_most_max_auto_per_recipient_per_hour() {
    let sink = SmtpSink::start("");
    let intake = Intake::new(
        Backend::Sqlite,
        &outbound_config(sink.port, "max_auto_per_recipient_per_hour = 2"),
    )
    .await;
    for index in 0..4 {
        intake.run_ok(
            &["ingest"],
            Some(&mail(
                "frank@contoso.com",
                &format!("Problem {index}"),
                &format!("p{index}@contoso.com"),
                "",
            )),
        );
    }
    // A registration and four acknowledgements: two go out, the rest are held back.
    assert_eq!(
        flush(&intake).trim(),
        "2 sent, 0 to retry, 0 dead, 3 suppressed"
    );
    assert_eq!(sink.delivered().len(), 2);
    let store = intake.store().await;
    let limited = rows(&store)
        .await
        .into_iter()
        .filter(|(_, state, _, why)| {
            state == "suppressed"
                && why
                    .as_deref()
                    .is_some_and(|why| why.starts_with("rate limit"))
        })
        .count();
    assert_eq!(limited, 3);
    let sent: Vec<String> = rows(&store)
        .await
        .into_iter()
        .filter(|(_, state, _, _)| state == "sent")
        .map(|(template, _, _, _)| template)
        .collect();
    assert_eq!(
        sent,
        vec!["registration", "acknowledgement"],
        "the oldest mail goes first"
    );
    // Another recipient is not limited by frank's mail.
    intake.run_ok(
        &["ingest"],
        Some(&mail("grace@contoso.com", "Mine", "g1@contoso.com", "")),
    );
    assert_eq!(
        flush(&intake).trim(),
        "2 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    store.close().await;
}

#[tokio::test]
async fn header_injection_in_names_and_subjects_stays_out_of_the_headers() {
    let sink = SmtpSink::start("");
    let intake = Intake::new(Backend::Sqlite, &outbound_config(sink.port, "")).await;
    // Encoded words decode to CR LF inside the display name and the subject.
    intake.run_ok(
        &["ingest"],
        Some(&mail(
            "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40evil=2Eexample?= <eve@contoso.com>",
            "=?utf-8?q?Help=0D=0ABcc=3A_victim=40evil=2Eexample=0D=0AX-Evil=3A_1?=",
            "inject@contoso.com",
            "",
        )),
    );
    assert_eq!(
        flush(&intake).trim(),
        "2 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 2);
    for mail in &delivered {
        assert_eq!(mail.rcpt_tos, vec!["eve@contoso.com"]);
        let lines = mail.header_lines();
        for line in &lines {
            let lower = line.to_ascii_lowercase();
            assert!(
                !lower.starts_with("bcc:") && !lower.starts_with("x-evil:"),
                "injected header {line:?} in\n{lines:#?}"
            );
        }
        let parsed = mail.parsed();
        let to = parsed.to().and_then(|to| to.first()).expect("a To");
        assert_eq!(to.address(), Some("eve@contoso.com"));
        assert!(
            to.name().is_some_and(|name| !name.contains(['\r', '\n'])),
            "{:?}",
            to.name()
        );
    }
    let ack = delivered
        .iter()
        .find(|mail| mail.header("In-Reply-To").is_some())
        .expect("the acknowledgement");
    let subject = ack
        .parsed()
        .subject()
        .map(str::to_string)
        .expect("a subject");
    assert!(
        subject.starts_with("Re: Help Bcc: victim@evil.example X-Evil: 1 [#"),
        "{subject:?}"
    );
}

on_both_backends!(racing_flushes_send_each_mail_once, |backend| async move {
    let sink = SmtpSink::start("");
    let intake = Intake::new(backend, &outbound_config(sink.port, "")).await;
    intake.run_ok(&["migrate"], None);
    let store = intake.store().await;
    for index in 0..30 {
        on_pool!(&store, pool => {
            sqlx::query("INSERT INTO outbound (template, recipient) VALUES ('registration', $1)")
                .bind(format!("racer{index}@contoso.com"))
                .execute(pool)
                .await
                .expect("queue a row");
        });
    }
    let flushes: Vec<std::process::Child> = (0..3)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_intake"))
                .arg("-c")
                .arg(&intake.config)
                .args(["queue", "flush"])
                .env("INTAKE_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start a flush")
        })
        .collect();
    for flush in flushes {
        let output = flush.wait_with_output().expect("a flush ends");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut recipients: Vec<String> = sink
        .delivered()
        .iter()
        .flat_map(|mail| mail.rcpt_tos.clone())
        .collect();
    recipients.sort();
    let before = recipients.len();
    recipients.dedup();
    assert_eq!(before, 30, "every mail sent");
    assert_eq!(recipients.len(), 30, "none twice");
    assert_eq!(
        scalar(
            &store,
            "SELECT count(*) FROM outbound WHERE state = 'sent' AND attempts = 1"
        )
        .await,
        30
    );
    store.close().await;
});

#[tokio::test]
async fn template_errors_are_reported_with_file_and_line() {
    let sink = SmtpSink::start("");
    let intake = Intake::new(Backend::Sqlite, &outbound_config(sink.port, "")).await;
    let templates = intake.path("templates");
    std::fs::create_dir_all(&templates).expect("templates dir");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    for entry in std::fs::read_dir(&shipped)
        .expect("shipped templates")
        .flatten()
    {
        std::fs::copy(entry.path(), templates.join(entry.file_name())).expect("copy");
    }
    std::fs::write(
        templates.join("acknowledgement.txt"),
        "Hello,\n\nYour incident is {{ incident_hsh }}.\n",
    )
    .expect("break a template");
    intake.write_config(&format!(
        "{}\n[[mailbox]]\nname = \"support\"\naddress = \"support@example.com\"\nhost = \"127.0.0.1\"\n\
         security = \"plain\"\nusername = \"support\"\npassword = \"x\"\n",
        outbound_config(sink.port, "").replace(
            &format!("{}/config/templates", env!("CARGO_MANIFEST_DIR")),
            "templates"
        )
    ));
    let expected = format!("{}:3:", templates.join("acknowledgement.txt").display());
    for command in ["check-config", "run"] {
        let output = intake.run(&[command], None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{command}: {stderr}");
        assert!(stderr.contains(&expected), "{command}: {stderr}");
        assert!(stderr.contains("incident_hsh"), "{command}: {stderr}");
    }
    std::fs::write(
        templates.join("acknowledgement.txt"),
        "Hello,\n\n{% if incident_hash %}\nYour incident is {{ incident_hash }}.\n",
    )
    .expect("break the syntax");
    let output = intake.run(&["check-config"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&templates.join("acknowledgement.txt").display().to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn tls_is_verified_and_a_private_ca_is_accepted() {
    let certificates = tempfile::tempdir().expect("a directory for certificates");
    make_certificates(certificates.path());
    let path = |name: &str| certificates.path().join(name).display().to_string();
    for (mode, security) in [("starttls", "starttls"), ("implicit", "tls")] {
        let mut sink = SmtpSink::not_started(&[
            "--tls",
            mode,
            "--cert",
            &path("server.pem"),
            "--key",
            &path("server.key"),
        ]);
        sink.launch("");
        let config = |ca_file: &str| {
            outbound_config(sink.port, "registration = false").replace(
                "security = \"plain\"",
                &format!("security = \"{security}\"\n{ca_file}"),
            )
        };
        let intake = Intake::new(Backend::Sqlite, &config("")).await;
        intake.run_ok(
            &["ingest"],
            Some(&mail("tls@contoso.com", "Secret", "tls@contoso.com", "")),
        );
        // The test CA is no system root: refused, and the reason is on the row.
        assert_eq!(
            flush(&intake).trim(),
            "0 sent, 1 to retry, 0 dead, 0 suppressed",
            "{mode}"
        );
        let store = intake.store().await;
        let why = rows(&store).await[0].3.clone().unwrap_or_default();
        assert!(
            why.to_lowercase().contains("certificate") || why.to_lowercase().contains("issuer"),
            "{mode}: {why}"
        );
        assert!(sink.delivered().is_empty());

        intake.write_config(&format!(
            "{}\n[[mailbox]]\nname = \"support\"\naddress = \"support@example.com\"\n\
             host = \"127.0.0.1\"\nsecurity = \"plain\"\nusername = \"support\"\npassword = \"x\"\n",
            config(&format!("ca_file = \"{}\"", path("ca.pem")))
        ));
        assert_eq!(
            flush(&intake).trim(),
            "1 sent, 0 to retry, 0 dead, 0 suppressed",
            "{mode}"
        );
        assert_eq!(sink.delivered().len(), 1, "{mode}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_550_is_dead_after_one_try_and_max_attempts_ends_retries() {
    let sink = SmtpSink::start("550,451,451");
    let intake = Intake::new(
        Backend::Sqlite,
        &outbound_config(sink.port, "registration = false\nmax_attempts = 2"),
    )
    .await;
    intake.run_ok(
        &["ingest"],
        Some(&mail("refused@contoso.com", "A", "a@contoso.com", "")),
    );
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 1 dead, 0 suppressed"
    );
    let store = intake.store().await;
    let first = rows(&store).await;
    assert_eq!((first[0].1.as_str(), first[0].2), ("dead", 1));
    assert!(first[0].3.as_deref().is_some_and(|why| why.contains("550")));

    intake.run_ok(
        &["ingest"],
        Some(&mail("busy@contoso.com", "B", "b@contoso.com", "")),
    );
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 1 to retry, 0 dead, 0 suppressed"
    );
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 1 dead, 0 suppressed"
    );
    let second = rows(&store).await;
    assert_eq!((second[1].1.as_str(), second[1].2), ("dead", 2));
    assert!(
        second[1]
            .3
            .as_deref()
            .is_some_and(|why| why.contains("451") && why.contains("gave up after 2 attempts")),
        "{second:?}"
    );
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    assert_eq!(sink.attempts().len(), 3);
    assert!(sink.delivered().is_empty());

    // Staff see the dead mail and queue it again from the shell.
    let listed = intake.run_ok(&["queue", "list", "--state", "dead"], None);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].starts_with("ID  STATE"), "{listed}");
    let refused_line = lines
        .iter()
        .find(|line| line.contains("refused@contoso.com"))
        .expect("the refused mail is listed");
    assert!(refused_line.contains("550"), "{refused_line}");
    let id = refused_line.split_whitespace().next().expect("an id");
    assert_eq!(
        intake.run_ok(&["queue", "retry", id], None).trim(),
        format!("{id} queued")
    );
    let again = intake.run(&["queue", "retry", id, "999"], None);
    assert!(
        !again.status.success(),
        "a queued row and a missing id are refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("{id}, 999")));
    assert_eq!(
        flush(&intake).trim(),
        "1 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    assert_eq!(sink.delivered().len(), 1);
    assert!(
        intake
            .run_ok(&["queue", "list", "--state", "sent"], None)
            .contains("refused@contoso.com")
    );
    store.close().await;
}

#[tokio::test]
async fn a_row_the_worker_cannot_read_is_retried_with_the_reason_recorded() {
    let sink = SmtpSink::start("");
    let intake = Intake::new(
        Backend::Sqlite,
        &outbound_config(sink.port, "acknowledgement = false"),
    )
    .await;
    intake.run_ok(
        &["ingest"],
        Some(&mail("Hal <hal@contoso.com>", "Hi", "hal@contoso.com", "")),
    );
    let store = intake.store().await;
    // A viewer wrote bytes that are not UTF-8 into the name column: SQLite takes them.
    execute(
        &store,
        "UPDATE clients SET display_name = x'FFFE' WHERE email = 'hal@contoso.com'",
    )
    .await;
    assert_eq!(
        flush(&intake).trim(),
        "0 sent, 1 to retry, 0 dead, 0 suppressed"
    );
    let failed = rows(&store).await;
    assert_eq!((failed[0].1.as_str(), failed[0].2), ("retry", 1));
    assert!(
        failed[0]
            .3
            .as_deref()
            .is_some_and(|why| why.starts_with("database error:")),
        "{failed:?}"
    );
    execute(
        &store,
        "UPDATE clients SET display_name = 'Hal' WHERE email = 'hal@contoso.com'",
    )
    .await;
    assert_eq!(
        flush(&intake).trim(),
        "1 sent, 0 to retry, 0 dead, 0 suppressed"
    );
    assert_eq!(sink.delivered().len(), 1);
    store.close().await;
}
