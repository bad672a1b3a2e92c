//! `intake run` against a real Dovecot: delivery by IDLE and by polling, several mailboxes,
//! after-ingest actions, restarts, kill -9, server outages, UIDVALIDITY, bad passwords,
//! oversized mail, a full disk, a viewer holding the write lock, TLS, reload, and two
//! instances on one PostgreSQL database.

use std::time::Duration;

use intake::on_pool;
use intake::store::Store;

use crate::dovecot::{Daemon, Dovecot, poll_until, wait_until};
use crate::harness::{Backend, Intake};

const PASSWORD: &str = "secret";

fn mailbox(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[mailbox]]\nname = \"{name}\"\ndepartment = \"Dept {name}\"\naddress = \"{name}@example.com\"\n\
         host = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nusername = \"{name}\"\n\
         password = \"{PASSWORD}\"\npoll_interval = \"1s\"\n{extra}\n"
    )
}

fn mail(index: usize, from: &str) -> Vec<u8> {
    format!(
        "From: Customer {index} <{from}>\r\nTo: support@example.com\r\nSubject: Problem number {index}\r\n\
         Message-ID: <msg-{index}-{from}>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nBody of {index}.\r\n"
    )
    .into_bytes()
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    on_pool!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or(-1)
    })
}

async fn wait_for_count(store: &Store, sql: &'static str, expected: i64, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let seen = count(store, sql).await;
        if seen == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {sql} = {expected}; last saw {seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until `incidents` incidents exist (within `limit`) and every message left in support's
/// INBOX is marked seen (10 s more at most).
async fn wait_for_incidents_and_inbox_seen(
    store: &Store,
    dovecot: &Dovecot,
    incidents: i64,
    limit: Duration,
) {
    wait_for_count(store, "SELECT count(*) FROM incidents", incidents, limit).await;
    wait_until(Duration::from_secs(10), "the INBOX marked seen", || async {
        dovecot
            .messages("support", "INBOX")
            .iter()
            .all(|(_, flags)| flags.contains("\\Seen"))
    })
    .await;
}

/// Waits until `mailbox_folders.last_error` of `mailbox` contains every one of `needles`.
async fn wait_for_folder_error(store: &Store, mailbox: &str, needles: &[&str], limit: Duration) {
    let what = format!("mailbox {mailbox} to record an error containing {needles:?}");
    wait_until(limit, &what, || async {
        let error: Option<String> = on_pool!(store, pool => {
            sqlx::query_scalar("SELECT last_error FROM mailbox_folders WHERE mailbox = $1")
                .bind(mailbox)
                .fetch_optional(pool).await.ok().flatten().flatten()
        });
        error.is_some_and(|error| needles.iter().all(|needle| error.contains(needle)))
    })
    .await;
}

/// The number of times a daemon log line contains `text`.
/// Until the daemon logs that its mailbox is connected (20 s at most).
async fn wait_connected(daemon: &Daemon) {
    wait_until(
        Duration::from_secs(20),
        "the mailbox to connect",
        || async { daemon.log_text().contains("mailbox connected") },
    )
    .await;
}

fn occurrences(log: &str, text: &str) -> usize {
    log.matches(text).count()
}

#[tokio::test]
async fn idle_delivery_marks_seen_and_sigterm_exits_cleanly() {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, &mailbox("support", dovecot.imap_port, "")).await;
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    let store = intake.store().await;
    wait_connected(&daemon).await;
    assert!(
        daemon.log_text().contains("idle=true"),
        "{}",
        daemon.log_text()
    );

    dovecot.deliver("support", "INBOX", &mail(1, "alice@contoso.com"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        1,
        Duration::from_secs(10),
    )
    .await;
    let (mailbox, department, source): (String, String, String) = on_pool!(&store, pool => {
        sqlx::query_as("SELECT i.mailbox, i.department, l.source FROM incidents i JOIN ingest_log l ON l.incident_id = i.id")
            .fetch_one(pool).await.expect("incident")
    });
    assert_eq!(
        (mailbox.as_str(), department.as_str()),
        ("support", "Dept support")
    );
    assert_eq!(source, "imap:support/INBOX uid 1");
    wait_until(
        Duration::from_secs(5),
        "the message to be marked seen",
        || async {
            dovecot
                .messages("support", "INBOX")
                .iter()
                .all(|(_, flags)| flags.contains("\\Seen"))
        },
    )
    .await;

    // A reply arrives by IDLE too and is appended.
    let reply = b"From: alice@contoso.com\r\nSubject: Re: Problem number 1\r\nMessage-ID: <reply-1@contoso.com>\r\n\
In-Reply-To: <msg-1-alice@contoso.com>\r\n\r\nStill broken.\r\n";
    dovecot.deliver("support", "INBOX", reply);
    wait_for_count(
        &store,
        "SELECT count(*) FROM messages WHERE incident_id IS NOT NULL",
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(count(&store, "SELECT count(*) FROM incidents").await, 1);

    let code = daemon.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(log.contains("all mailboxes logged out"), "{log}");
    assert!(dovecot.log().contains("Logged out"), "intake sent LOGOUT");
    // The folder's state is there for staff: checkpoint, last success, no lease left behind.
    let (last_uid, holder): (i64, Option<String>) = on_pool!(&store, pool => {
        sqlx::query_as("SELECT last_uid, lease_holder FROM mailbox_folders").fetch_one(pool).await.expect("folder row")
    });
    assert_eq!(last_uid, 2);
    assert_eq!(holder, None, "the lease is released on a clean stop");
    store.close().await;
}

#[tokio::test]
async fn idle_hears_of_mail_that_arrived_while_a_batch_was_processed() {
    // Mail delivered one by one while the daemon is busy: the server announces some of it in
    // answers to the daemon's other commands, never again during IDLE. Each must still be
    // ingested at once, not at the next IDLE renewal (10 minutes).
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, &mailbox("support", dovecot.imap_port, "")).await;
    let daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    let store = intake.store().await;
    wait_connected(&daemon).await;
    for index in 0..30 {
        dovecot.deliver("support", "INBOX", &mail(index, "alice@contoso.com"));
    }
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        30,
        Duration::from_secs(15),
    )
    .await;
    drop(daemon);
    store.close().await;
}

#[tokio::test]
async fn polling_several_mailboxes_and_after_ingest_actions() {
    let dovecot = Dovecot::start(&[
        ("support", PASSWORD),
        ("sales", PASSWORD),
        ("billing", PASSWORD),
    ]);
    dovecot.create_folder("sales", "Processed");
    let body = format!(
        "{}{}{}",
        mailbox("support", dovecot.imap_port, "idle = false"),
        mailbox(
            "sales",
            dovecot.imap_port,
            "idle = false\nafter_ingest = \"move\"\nmove_to = \"Processed\""
        ),
        mailbox(
            "billing",
            dovecot.imap_port,
            "idle = false\nafter_ingest = \"delete\""
        ),
    );
    let intake = Intake::custom(Backend::Sqlite, &body).await;
    for (index, user) in ["support", "sales", "billing"].iter().enumerate() {
        dovecot.deliver(
            user,
            "INBOX",
            &mail(index, &format!("client@{user}.example")),
        );
    }
    let daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    let store = intake.store().await;
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        3,
        Duration::from_secs(20),
    )
    .await;
    assert!(daemon.log_text().contains("idle=false"), "polling was used");
    let departments: Vec<String> = on_pool!(&store, pool => {
        sqlx::query_scalar("SELECT department FROM incidents ORDER BY department").fetch_all(pool).await.expect("rows")
    });
    assert_eq!(
        departments,
        vec!["Dept billing", "Dept sales", "Dept support"]
    );

    wait_until(
        Duration::from_secs(10),
        "the after-ingest actions",
        || async {
            dovecot.messages("support", "INBOX").len() == 1
                && dovecot.messages("sales", "INBOX").is_empty()
                && dovecot.messages("sales", "Processed").len() == 1
                && dovecot.messages("billing", "INBOX").is_empty()
        },
    )
    .await;
    // Polling picks up a later message within the poll interval.
    dovecot.deliver("support", "INBOX", &mail(9, "late@support.example"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        4,
        Duration::from_secs(10),
    )
    .await;
    drop(daemon);
    store.close().await;
}

/// A Dovecot whose INBOX holds `messages` mails from `senders` senders, delivered straight
/// into the Maildir (doveadm takes too long), and an intake that moves what it ingests to Done.
async fn full_inbox_moving_to_done(
    backend: Backend,
    messages: usize,
    senders: usize,
) -> (Dovecot, Intake) {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    dovecot.create_folder("support", "Done");
    // The mail is there before the first start, yet these tests count its acknowledgements.
    let intake = Intake::custom(
        backend,
        &mailbox(
            "support",
            dovecot.imap_port,
            "after_ingest = \"move\"\nmove_to = \"Done\"\nexisting_mail = \"acknowledge\"",
        ),
    )
    .await;
    for index in 0..messages {
        dovecot.deliver_to_maildir(
            "support",
            &mail(index, &format!("c{}@contoso.com", index % senders)),
        );
    }
    (dovecot, intake)
}

/// Starts the daemon and returns it as soon as a first batch is committed: polled often, not at
/// wait_until's pace, so that it is stopped or killed mid-way.
async fn start_until_a_first_batch(intake: &Intake, store: &Store, log: &str) -> Daemon {
    let daemon = Daemon::start(&intake.config, intake.path(log));
    poll_until(
        Duration::from_secs(60),
        Duration::from_millis(5),
        "a first batch to be committed",
        || async { count(store, "SELECT count(*) FROM ingest_log").await > 0 },
    )
    .await;
    daemon
}

/// Waits until all `messages` (from `senders` senders) are incidents and out of the INBOX,
/// then checks that each reached Done and was recorded once (`assert_each_message_once`).
async fn wait_until_each_message_is_in_done_once(
    store: &Store,
    dovecot: &Dovecot,
    messages: usize,
    senders: usize,
) {
    wait_for_count(
        store,
        "SELECT count(*) FROM incidents",
        messages as i64,
        Duration::from_secs(120),
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "every message to be moved",
        || async { dovecot.messages("support", "INBOX").is_empty() },
    )
    .await;
    assert_eq!(dovecot.messages("support", "Done").len(), messages);
    assert_each_message_once(store, messages, senders).await;
}

/// Exactly one incident per message (from `senders` senders), every `ingest_log` row either
/// that or a `duplicate`, one acknowledgement per message and one registration per sender.
async fn assert_each_message_once(store: &Store, messages: usize, senders: usize) {
    // Exactly one incident per message, and every ingest_log row is either that or a duplicate.
    assert_eq!(
        count(
            store,
            "SELECT count(DISTINCT message_id_header) FROM messages WHERE incident_id IS NOT NULL"
        )
        .await,
        messages as i64
    );
    assert_eq!(
        count(
            store,
            "SELECT count(*) FROM ingest_log WHERE outcome = 'created'"
        )
        .await,
        messages as i64
    );
    let duplicates = count(
        store,
        "SELECT count(*) FROM ingest_log WHERE outcome = 'duplicate'",
    )
    .await;
    assert_eq!(
        count(store, "SELECT count(*) FROM ingest_log").await,
        messages as i64 + duplicates,
        "nothing but created and duplicate rows"
    );
    assert_eq!(
        count(
            store,
            "SELECT count(*) FROM outbound WHERE template = 'acknowledgement'"
        )
        .await,
        messages as i64
    );
    // One registration per sender, queued before that sender's first acknowledgement; a batch
    // queues more rows than one multi-row insert takes.
    assert_eq!(
        count(
            store,
            "SELECT count(DISTINCT recipient) FROM outbound WHERE template = 'registration'"
        )
        .await,
        senders as i64
    );
    assert_eq!(
        count(
            store,
            "SELECT count(*) FROM outbound WHERE template = 'registration'"
        )
        .await,
        senders as i64
    );
    assert_eq!(
        count(
            store,
            "SELECT count(*) FROM outbound r WHERE r.template = 'registration' AND r.id > \
             (SELECT min(a.id) FROM outbound a WHERE a.template = 'acknowledgement' \
              AND a.recipient = r.recipient)"
        )
        .await,
        0,
        "a registration queued after its sender's first acknowledgement"
    );
}

/// The crash window the design is about: a message committed but not yet marked, moved or
/// deleted. On restart it is found again and recorded as a duplicate, never a second incident.
async fn kill_minus_nine_mid_batch(backend: Backend) {
    // Enough that intake, at a few thousand small messages a second, is still busy when the
    // first batch is seen committed; straight into the Maildir, as doveadm takes too long.
    const MESSAGES: usize = 2000;
    let (dovecot, intake) = full_inbox_moving_to_done(backend, MESSAGES, 37).await;
    let store = intake.store().await;
    let mut daemon = start_until_a_first_batch(&intake, &store, "daemon-1.log").await;
    daemon.kill();
    let after_kill = count(&store, "SELECT count(*) FROM ingest_log").await;
    assert!(
        after_kill < MESSAGES as i64,
        "killed mid-way ({after_kill} done)"
    );

    let daemon = Daemon::start(&intake.config, intake.path("daemon-2.log"));
    wait_until_each_message_is_in_done_once(&store, &dovecot, MESSAGES, 37).await;
    // On SQLite the run lock shows the killed instance dead: its lease is not waited out.
    if backend == Backend::Sqlite {
        assert!(
            daemon
                .log_text()
                .contains("taking over at once the folders a stopped instance still held"),
            "the restarted daemon took the dead instance's folder at once"
        );
    }
    drop(daemon);
    store.close().await;
}

/// SIGTERM in the middle of a full INBOX: the daemon commits what it had fetched, moves every
/// message it committed, logs out and exits 0; a restart takes the rest. A clean stop leaves
/// nothing for the recovery pass, so not even a duplicate is recorded.
#[tokio::test]
async fn sigterm_mid_run_finishes_what_it_fetched_and_a_restart_the_rest() {
    const MESSAGES: usize = 2000;
    let (dovecot, intake) = full_inbox_moving_to_done(Backend::Sqlite, MESSAGES, 23).await;
    let store = intake.store().await;
    let mut daemon = start_until_a_first_batch(&intake, &store, "daemon-1.log").await;
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    let stopped_at = count(&store, "SELECT count(*) FROM ingest_log").await;
    assert!(
        stopped_at < MESSAGES as i64,
        "stopped mid-way ({stopped_at} done)"
    );
    assert_eq!(
        dovecot.messages("support", "Done").len() as i64,
        stopped_at,
        "every message committed before the stop was moved, and no other"
    );
    assert_eq!(
        dovecot.messages("support", "INBOX").len() as i64,
        MESSAGES as i64 - stopped_at
    );

    let daemon = Daemon::start(&intake.config, intake.path("daemon-2.log"));
    wait_until_each_message_is_in_done_once(&store, &dovecot, MESSAGES, 23).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM ingest_log").await,
        MESSAGES as i64,
        "no duplicate after a clean stop"
    );
    drop(daemon);
    store.close().await;
}

/// A mailbox a team used by hand until now: what is in the folder the first time intake watches
/// it becomes incidents, but nobody is mailed for it (`existing_mail`'s default), even across
/// a kill -9 part-way through; mail that arrives later is answered as usual.
#[tokio::test]
async fn mail_already_in_a_folder_is_taken_in_quietly_and_later_mail_answered() {
    const EXISTING: usize = 1000;
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, &mailbox("support", dovecot.imap_port, "")).await;
    for index in 0..EXISTING {
        let from = format!("c{}@contoso.com", index % 7);
        dovecot.deliver_to_maildir("support", &mail(index, &from));
    }
    let store = intake.store().await;
    let mut daemon = start_until_a_first_batch(&intake, &store, "daemon-1.log").await;
    daemon.kill();
    let after_kill = count(&store, "SELECT count(*) FROM ingest_log").await;
    assert!(
        after_kill < EXISTING as i64,
        "killed mid-way ({after_kill} done)"
    );
    assert!(
        daemon
            .log_text()
            .contains("first time this folder is watched"),
        "{}",
        daemon.log_text()
    );
    // While it is down: one more from a sender it knows, one from a new sender.
    dovecot.deliver("support", "INBOX", &mail(EXISTING, "c1@contoso.com"));
    dovecot.deliver("support", "INBOX", &mail(EXISTING + 1, "new@fabrikam.com"));

    let daemon = Daemon::start(&intake.config, intake.path("daemon-2.log"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        EXISTING as i64 + 2,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        count(&store, "SELECT max(quiet_through_uid) FROM mailbox_folders").await,
        EXISTING as i64
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM ingest_log WHERE outcome = 'created' AND reason LIKE \
             '%in the folder before intake first watched it (existing_mail = \"quiet\"): no mail sent%'"
        )
        .await,
        EXISTING as i64
    );
    assert_eq!(count(&store, "SELECT count(*) FROM clients").await, 8);
    let queued: Vec<(String, String)> = on_pool!(&store, pool => {
        sqlx::query_as("SELECT template, recipient FROM outbound ORDER BY template, recipient")
            .fetch_all(pool)
            .await
            .expect("outbound rows")
    });
    let expected = [
        ("acknowledgement", "c1@contoso.com"),
        ("acknowledgement", "new@fabrikam.com"),
        ("registration", "new@fabrikam.com"),
    ]
    .map(|(template, recipient)| (template.to_string(), recipient.to_string()));
    assert_eq!(
        queued, expected,
        "mail only for what came after the first start"
    );
    assert!(
        !daemon
            .log_text()
            .contains("first time this folder is watched")
    );
    drop(daemon);
    store.close().await;
}

#[tokio::test]
async fn kill_minus_nine_mid_batch_on_sqlite() {
    kill_minus_nine_mid_batch(Backend::Sqlite).await;
}

#[tokio::test]
async fn kill_minus_nine_mid_batch_on_postgres() {
    kill_minus_nine_mid_batch(Backend::Postgres).await;
}

/// The database going away mid-run: every PostgreSQL connection of the daemon is cut, three
/// times, while batches are being read, parsed and committed. The batch being committed rolls
/// back, the daemon says why, the folder task reconnects and goes on: nothing is lost,
/// nothing is recorded twice, nothing is recorded as an error.
#[tokio::test]
async fn postgres_connections_cut_mid_run_lose_and_repeat_nothing() {
    use sqlx::Connection;
    const MESSAGES: usize = 1500;
    const SENDERS: usize = 29;
    let (dovecot, intake) = full_inbox_moving_to_done(Backend::Postgres, MESSAGES, SENDERS).await;
    // The test's own connection: the one the cuts spare.
    let mut own = sqlx::PgConnection::connect(&intake.db.url)
        .await
        .expect("a connection of the test's own");
    let daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    let mut cut_at = Vec::new();
    for _ in 0..3 {
        let mut logged: i64 = 0;
        let waited = std::time::Instant::now();
        while logged == 0 || cut_at.last() == Some(&logged) {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "intake went on committing between the cuts"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            // Until the daemon has created the schema there is nothing to count.
            logged = sqlx::query_scalar("SELECT count(*) FROM ingest_log")
                .fetch_one(&mut own)
                .await
                .unwrap_or(0);
        }
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut own)
        .await
        .expect("cutting the daemon's connections");
        assert!(!cut.is_empty(), "the daemon had connections to cut");
        cut_at.push(logged);
    }
    assert!(
        cut_at.iter().all(|done| *done < MESSAGES as i64),
        "every cut came mid-run ({cut_at:?} of {MESSAGES} done)"
    );
    own.close().await.expect("closing");

    let store = intake.store().await;
    wait_until_each_message_is_in_done_once(&store, &dovecot, MESSAGES, SENDERS).await;
    assert!(
        daemon.log_text().contains("database unavailable"),
        "the daemon said why it stopped: {}",
        daemon.log_text()
    );
    drop(daemon);
    store.close().await;
}

#[tokio::test]
async fn restart_resumes_without_duplicates() {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, &mailbox("support", dovecot.imap_port, "")).await;
    let store = intake.store().await;
    for index in 0..3 {
        dovecot.deliver("support", "INBOX", &mail(index, "a@contoso.com"));
    }
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon-1.log"));
    wait_for_incidents_and_inbox_seen(&store, &dovecot, 3, Duration::from_secs(20)).await;
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    for index in 3..5 {
        dovecot.deliver("support", "INBOX", &mail(index, "a@contoso.com"));
    }
    let daemon = Daemon::start(&intake.config, intake.path("daemon-2.log"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        5,
        Duration::from_secs(20),
    )
    .await;
    wait_until(Duration::from_secs(5), "all five seen", || async {
        let messages = dovecot.messages("support", "INBOX");
        messages.len() == 5 && messages.iter().all(|(_, flags)| flags.contains("\\Seen"))
    })
    .await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM ingest_log").await,
        5,
        "no duplicate records"
    );
    drop(daemon);
    store.close().await;
}

#[tokio::test]
async fn dovecot_outage_uidvalidity_reset_and_a_wrong_password() {
    let mut dovecot = Dovecot::start(&[("support", PASSWORD), ("sales", "another-password")]);
    // sales is configured with the wrong password: it must fail alone and say why.
    let intake = Intake::custom(
        Backend::Sqlite,
        &format!(
            "{}{}",
            mailbox("support", dovecot.imap_port, ""),
            mailbox("sales", dovecot.imap_port, "")
        ),
    )
    .await;
    let store = intake.store().await;
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon-1.log"));
    dovecot.deliver("support", "INBOX", &mail(1, "a@contoso.com"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        1,
        Duration::from_secs(20),
    )
    .await;
    wait_for_folder_error(&store, "sales", &["login refused"], Duration::from_secs(10)).await;
    // The same failure again is only a debug line: the log says it once.
    wait_until(
        Duration::from_secs(20),
        "sales to fail a second time",
        || async {
            daemon
                .log_text()
                .contains("mailbox still failing mailbox=sales")
        },
    )
    .await;
    let log = daemon.log_text();
    assert_eq!(
        occurrences(&log, "login refused"),
        2,
        "one warning and one debug line for two failures:\n{log}"
    );
    assert_eq!(occurrences(&log, "WARN mailbox failed"), 1, "{log}");

    // The server goes away and comes back; mail delivered meanwhile arrives after reconnection.
    dovecot.stop();
    dovecot.deliver_to_maildir("support", &mail(2, "a@contoso.com"));
    wait_for_folder_error(&store, "support", &[], Duration::from_secs(10)).await;
    dovecot.restart();
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        2,
        Duration::from_secs(40),
    )
    .await;
    let log = daemon.log_text();
    assert!(
        log.contains("reconnecting with backoff mailbox=support"),
        "the outage was noticed and logged:\n{log}"
    );

    // UIDVALIDITY changes while intake is stopped: the folder is rescanned, nothing doubles.
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    dovecot.set_uid_validity("support", "INBOX", 4_000_000_000);
    dovecot.deliver("support", "INBOX", &mail(3, "a@contoso.com"));
    let daemon = Daemon::start(&intake.config, intake.path("daemon-2.log"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        3,
        Duration::from_secs(20),
    )
    .await;
    wait_for_count(
        &store,
        "SELECT count(*) FROM ingest_log WHERE outcome = 'duplicate'",
        2,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        daemon.log_text().contains("UIDVALIDITY changed"),
        "{}",
        daemon.log_text()
    );
    drop(daemon);
    store.close().await;
}

/// 20 KB from big@contoso.com: over the `max_message_bytes = 4096` of the oversized tests.
fn oversized_mail() -> Vec<u8> {
    let mut big =
        b"From: big@contoso.com\r\nSubject: Scan\r\nMessage-ID: <big@contoso.com>\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 20_000));
    big
}

#[tokio::test]
async fn oversized_message_is_recorded_by_headers_and_moved_aside() {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(
        Backend::Sqlite,
        &format!(
            "[limits]\nmax_message_bytes = 4096\n{}",
            mailbox("support", dovecot.imap_port, "")
        ),
    )
    .await;
    dovecot.deliver("support", "INBOX", &oversized_mail());
    dovecot.deliver("support", "INBOX", &mail(1, "small@contoso.com"));
    let store = intake.store().await;
    let daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM ingest_log",
        2,
        Duration::from_secs(20),
    )
    .await;
    let (outcome, reason, size, stored, complete): (String, String, i64, i64, i64) = on_pool!(&store, pool => {
        sqlx::query_as(
            "SELECT l.outcome, l.reason, m.size_bytes, CAST(length(m.raw) AS BIGINT), \
             CASE WHEN m.raw_is_complete THEN 1 ELSE 0 END \
             FROM ingest_log l JOIN messages m ON m.id = l.message_id WHERE m.from_address = 'big@contoso.com'",
        )
        .fetch_one(pool).await.expect("the oversized row")
    });
    assert_eq!(outcome, "rejected");
    assert!(reason.contains("max_message_bytes = 4096"), "{reason}");
    assert!(size > 20_000, "the declared size is recorded");
    assert!(stored < 200, "only the headers were downloaded");
    assert_eq!(complete, 0);
    assert_eq!(
        count(&store, "SELECT count(*) FROM incidents").await,
        1,
        "the small one still made its incident"
    );
    wait_until(
        Duration::from_secs(10),
        "the oversized message to be moved aside",
        || async {
            dovecot.messages("support", "Oversized").len() == 1
                && dovecot.messages("support", "INBOX").len() == 1
        },
    )
    .await;
    drop(daemon);
    store.close().await;
}

/// A tmpfs of its own for one test, unmounted when dropped: a disk that can really fill up.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: std::path::PathBuf, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(&path).expect("a mount point");
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "intake-test",
            ])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} (the integration tests run as root)",
            path.display()
        );
        SmallDisk { path }
    }

    /// Takes every free byte with one file, whose path it returns.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("the filler file");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
                Err(error) => panic!("filling {}: {error}", self.path.display()),
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a daemon a failed assertion left running still has files open here.
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_keeps_mail_in_the_mailbox_until_there_is_room() {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, "").await;
    let disk = SmallDisk::mount(intake.path("disk"), 32 << 20);
    let url = format!("sqlite://{}/intake.db", disk.path.display());
    let config = intake.path("full-disk.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[database]\nurl = \"{url}\"\n{}",
            disk.path.display(),
            mailbox("support", dovecot.imap_port, "")
        ),
    )
    .expect("the config");
    let store = Store::connect(&url)
        .await
        .expect("the database on the small disk");
    let mut daemon = Daemon::start(&config, intake.path("daemon.log"));
    dovecot.deliver("support", "INBOX", &mail(0, "full@contoso.com"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        1,
        Duration::from_secs(20),
    )
    .await;
    // The checkpointer cuts the WAL back to nothing after a commit: until then, a commit
    // could reuse its space instead of asking for more.
    let wal = disk.path.join("intake.db-wal");
    wait_until(
        Duration::from_secs(15),
        "the WAL to be cut back",
        || async { std::fs::metadata(&wal).map_or(true, |wal| wal.len() == 0) },
    )
    .await;
    let filler = disk.fill();
    // Bodies of 100 KB: a batch needs more WAL than any page it could overwrite.
    for index in 1..4 {
        let mut raw = mail(index, "full@contoso.com");
        raw.extend(std::iter::repeat_n(b'y', 100_000));
        raw.extend_from_slice(b"\r\n");
        dovecot.deliver("support", "INBOX", &raw);
    }
    // The commit fails, the session ends; the retries fail on the folder lease (a write too),
    // once every ten seconds. Each failure is logged once, with its reason.
    wait_until(
        Duration::from_secs(30),
        "the daemon to fail twice on the full disk",
        || async {
            daemon
                .log_text()
                .contains("still cannot take the folder lease")
        },
    )
    .await;
    let log = daemon.log_text();
    assert_eq!(
        occurrences(&log, "WARN mailbox failed"),
        1,
        "the failed commit is logged once:\n{log}"
    );
    assert_eq!(
        occurrences(&log, "WARN cannot take the folder lease"),
        1,
        "the failing retries are logged once:\n{log}"
    );
    assert_eq!(
        occurrences(&log, "WARN"),
        3,
        "and nothing else warns:\n{log}"
    );
    assert!(
        log.lines()
            .filter(|line| line.contains("WARN") && !line.contains("[smtp]"))
            .all(|line| line.contains("database or disk is full")),
        "each warning names the reason:\n{log}"
    );
    assert_eq!(count(&store, "SELECT count(*) FROM ingest_log").await, 1);
    let waiting: Vec<_> = dovecot
        .messages("support", "INBOX")
        .into_iter()
        .filter(|(_, flags)| !flags.contains("\\Seen"))
        .collect();
    assert_eq!(
        waiting.len(),
        3,
        "the new mail stays in the mailbox, not marked as ingested: {waiting:?}"
    );

    std::fs::remove_file(&filler).expect("making room");
    wait_for_incidents_and_inbox_seen(&store, &dovecot, 4, Duration::from_secs(40)).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM ingest_log").await,
        4,
        "each message once: no duplicate, no error record"
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM ingest_log WHERE outcome <> 'created'"
        )
        .await,
        0
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
    drop(disk);
}

#[tokio::test]
async fn a_viewer_holding_the_write_lock_delays_mail_and_loses_none() {
    use sqlx::Connection;
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, &mailbox("support", dovecot.imap_port, "")).await;
    let store = intake.store().await;
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    dovecot.deliver("support", "INBOX", &mail(0, "a@contoso.com"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        1,
        Duration::from_secs(20),
    )
    .await;
    // Staff edit a row in DB Browser for SQLite and leave it unsaved: a write transaction that
    // stays open, here for longer than intake's busy timeout (10 s).
    let mut viewer = sqlx::SqliteConnection::connect(&intake.db.url)
        .await
        .expect("the viewer's connection");
    sqlx::raw_sql("BEGIN IMMEDIATE; UPDATE clients SET note = 'edited in a viewer'")
        .execute(&mut viewer)
        .await
        .expect("the viewer's unsaved edit");
    for index in 1..4 {
        dovecot.deliver("support", "INBOX", &mail(index, "a@contoso.com"));
    }
    wait_until(
        Duration::from_secs(30),
        "the daemon to report the held lock",
        || async { daemon.log_text().contains("WARN mailbox failed") },
    )
    .await;
    let log = daemon.log_text();
    let warning = log
        .lines()
        .find(|line| line.contains("WARN mailbox failed"))
        .unwrap_or_default();
    assert!(
        warning.contains("database is locked") && warning.contains("a database viewer"),
        "the warning says what holds the mail up: {warning}"
    );
    let waiting = dovecot
        .messages("support", "INBOX")
        .iter()
        .filter(|(_, flags)| !flags.contains("\\Seen"))
        .count();
    assert_eq!(waiting, 3, "the new mail waits in the mailbox, unmarked");

    // The edit is saved: the mail comes in, each message once, and the edit stays.
    sqlx::raw_sql("COMMIT")
        .execute(&mut viewer)
        .await
        .expect("the viewer saves");
    viewer.close().await.expect("the viewer closes");
    wait_for_incidents_and_inbox_seen(&store, &dovecot, 4, Duration::from_secs(40)).await;
    assert_eq!(count(&store, "SELECT count(*) FROM ingest_log").await, 4);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM clients WHERE note = 'edited in a viewer'"
        )
        .await,
        1
    );
    let log = daemon.log_text();
    assert_eq!(occurrences(&log, "WARN mailbox failed"), 1, "{log}");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}

/// Delivers `messages` to support's INBOX, runs intake with `after_ingest = "move"` to a
/// folder `Done` that does not exist yet, and waits until each is in Done, none in the INBOX:
/// one incident and one log row per message, no failure. The daemon's log.
async fn every_message_moved_to_a_new_done(dovecot: &Dovecot, messages: usize) -> String {
    let intake = Intake::custom(
        Backend::Sqlite,
        &mailbox(
            "support",
            dovecot.imap_port,
            "after_ingest = \"move\"\nmove_to = \"Done\"",
        ),
    )
    .await;
    let store = intake.store().await;
    for index in 0..messages {
        dovecot.deliver("support", "INBOX", &mail(index, "a@contoso.com"));
    }
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_until(
        Duration::from_secs(20),
        "every message in Done and none left in the INBOX",
        || async {
            dovecot.messages("support", "Done").len() == messages
                && dovecot.messages("support", "INBOX").is_empty()
        },
    )
    .await;
    let messages = messages as i64;
    assert_eq!(
        count(&store, "SELECT count(*) FROM incidents").await,
        messages
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM ingest_log").await,
        messages,
        "no message recorded twice"
    );
    let log = daemon.log_text();
    assert_eq!(occurrences(&log, "WARN mailbox failed"), 0, "{log}");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
    log
}

#[tokio::test]
async fn folders_named_in_any_language_are_watched_and_moved_into() {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    dovecot.create_folder("support", "Entrée");
    let intake = Intake::custom(
        Backend::Sqlite,
        &mailbox(
            "support",
            dovecot.imap_port,
            "folders = [\"Entrée\"]\nafter_ingest = \"move\"\nmove_to = \"Traité & classé\"",
        ),
    )
    .await;
    let store = intake.store().await;
    for index in 0..2 {
        dovecot.deliver("support", "Entrée", &mail(index, "a@contoso.com"));
    }
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_until(
        Duration::from_secs(20),
        "both messages moved from Entrée to Traité & classé",
        || async {
            dovecot.messages("support", "Traité & classé").len() == 2
                && dovecot.messages("support", "Entrée").is_empty()
        },
    )
    .await;
    assert_eq!(count(&store, "SELECT count(*) FROM incidents").await, 2);
    assert_eq!(count(&store, "SELECT count(*) FROM ingest_log").await, 2);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM mailbox_folders WHERE folder = 'Entrée' AND last_uid = 2"
        )
        .await,
        1,
        "staff see the folder under the name the operator wrote"
    );
    let log = daemon.log_text();
    assert_eq!(occurrences(&log, "WARN mailbox failed"), 0, "{log}");
    assert!(log.contains("folder=Entrée"), "{log}");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}

/// A folder name Dovecot cannot create: each move there is refused, session after session.
fn uncreatable_folder() -> String {
    "x".repeat(300)
}

#[tokio::test]
async fn a_move_the_server_refuses_is_retried_without_taking_the_mail_again() {
    let config = format!(
        "after_ingest = \"move\"\nmove_to = \"{}\"",
        uncreatable_folder()
    );
    refused_moves_add_no_records(
        &config,
        [mail(0, "a@contoso.com"), mail(1, "b@contoso.com")],
    )
    .await;
}

#[tokio::test]
async fn an_oversized_message_the_server_will_not_move_aside_is_recorded_once() {
    let config = format!("oversized_folder = \"{}\"", uncreatable_folder());
    refused_moves_add_no_records(&config, [oversized_mail(), mail(1, "small@contoso.com")]).await;
}

/// Runs `messages` through a mailbox configured with `extra`, whose moves the server refuses:
/// each message is recorded once and stays in the INBOX, the refusal is logged once and shown
/// in `last_error`, and mail that comes after is not held up.
async fn refused_moves_add_no_records(extra: &str, messages: [Vec<u8>; 2]) {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(
        Backend::Sqlite,
        &format!(
            "[limits]\nmax_message_bytes = 4096\n{}",
            mailbox("support", dovecot.imap_port, extra)
        ),
    )
    .await;
    let store = intake.store().await;
    for raw in &messages {
        dovecot.deliver("support", "INBOX", raw);
    }
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM ingest_log",
        2,
        Duration::from_secs(20),
    )
    .await;
    wait_for_folder_error(&store, "support", &["UID MOVE"], Duration::from_secs(20)).await;
    // Later mail comes in while the refused moves are retried before each search.
    dovecot.deliver("support", "INBOX", &mail(7, "later@contoso.com"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM ingest_log",
        3,
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM ingest_log").await,
        3,
        "each message recorded once, however often its move is retried"
    );
    wait_for_folder_error(&store, "support", &["UID MOVE"], Duration::from_secs(5)).await;
    assert!(
        dovecot.messages("support", "INBOX").len() >= 2,
        "nothing lost: what could not be moved stays"
    );
    let log = daemon.log_text();
    assert_eq!(
        occurrences(&log, "the server refused an after-ingest action"),
        1,
        "{log}"
    );
    assert_eq!(occurrences(&log, "mailbox failed"), 0, "{log}");
    assert_eq!(
        occurrences(&log, "mailbox connected"),
        1,
        "no reconnection:\n{log}"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}

/// What an older server announces: IMAP4rev1 and common extensions, no MOVE (RFC 6851).
const WITHOUT_MOVE: &str =
    "imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UIDPLUS\n";
/// Nor UIDPLUS: such a server can only expunge every message flagged \\Deleted at once.
const WITHOUT_MOVE_OR_UIDPLUS: &str =
    "imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE\n";

#[tokio::test]
async fn a_move_to_folder_that_does_not_exist_yet_is_created() {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    every_message_moved_to_a_new_done(&dovecot, 2).await;
}

#[tokio::test]
async fn without_move_a_server_gets_copy_delete_and_expunge() {
    let dovecot = Dovecot::start_with(&[("support", PASSWORD)], WITHOUT_MOVE);
    let log = every_message_moved_to_a_new_done(&dovecot, 3).await;
    assert!(
        log.contains("mailbox connected mailbox=support folder=INBOX idle=true move=false"),
        "intake saw that the server has no MOVE:\n{log}"
    );
}

#[tokio::test]
async fn delete_on_a_server_without_uidplus_is_refused_before_anything_is_taken() {
    let dovecot = Dovecot::start_with(&[("support", PASSWORD)], WITHOUT_MOVE_OR_UIDPLUS);
    let intake = Intake::custom(
        Backend::Sqlite,
        &mailbox("support", dovecot.imap_port, "after_ingest = \"delete\""),
    )
    .await;
    let store = intake.store().await;
    dovecot.deliver("support", "INBOX", &mail(0, "a@contoso.com"));
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_for_folder_error(
        &store,
        "support",
        &[
            "after_ingest = \"delete\" needs a server with UIDPLUS",
            "use after_ingest = \"seen\"",
        ],
        Duration::from_secs(20),
    )
    .await;
    let log = daemon.log_text();
    assert_eq!(occurrences(&log, "WARN mailbox failed"), 1, "{log}");
    assert_eq!(
        count(&store, "SELECT count(*) FROM ingest_log").await,
        0,
        "nothing taken that could not be removed"
    );
    assert_eq!(dovecot.messages("support", "INBOX").len(), 1);
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}

#[tokio::test]
async fn oversized_mail_without_move_or_uidplus_is_copied_aside_and_marked_seen() {
    let dovecot = Dovecot::start_with(&[("support", PASSWORD)], WITHOUT_MOVE_OR_UIDPLUS);
    let intake = Intake::custom(
        Backend::Sqlite,
        &format!(
            "[limits]\nmax_message_bytes = 4096\n{}",
            mailbox("support", dovecot.imap_port, "")
        ),
    )
    .await;
    dovecot.deliver("support", "INBOX", &oversized_mail());
    dovecot.deliver("support", "INBOX", &mail(1, "small@contoso.com"));
    let store = intake.store().await;
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_until(
        Duration::from_secs(20),
        "the oversized message copied aside",
        || async { dovecot.messages("support", "Oversized").len() == 1 },
    )
    .await;
    wait_for_incidents_and_inbox_seen(&store, &dovecot, 1, Duration::from_secs(20)).await;
    // No UID EXPUNGE the server does not offer: the original stays, marked seen, and is not
    // taken again.
    assert_eq!(dovecot.messages("support", "INBOX").len(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&store, "SELECT count(*) FROM ingest_log").await, 2);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM ingest_log WHERE outcome = 'rejected'"
        )
        .await,
        1
    );
    let log = daemon.log_text();
    assert_eq!(occurrences(&log, "WARN mailbox failed"), 0, "{log}");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}

#[tokio::test]
async fn large_messages_between_small_ones_are_each_ingested_once_in_order() {
    // Over BATCH_BYTES (4 MB), under max_message_bytes: each large message is committed on
    // its own, while the small ones around it are read ahead and committed in batches.
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    dovecot.create_folder("support", "Done");
    let intake = Intake::custom(
        Backend::Sqlite,
        &mailbox(
            "support",
            dovecot.imap_port,
            "after_ingest = \"move\"\nmove_to = \"Done\"",
        ),
    )
    .await;
    let large = |index: usize| {
        let mut raw = format!(
            "From: scanner@contoso.com\r\nTo: support@example.com\r\nSubject: Scan {index}\r\n\
             Message-ID: <scan-{index}@contoso.com>\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..70_000 {
            raw.extend_from_slice(&[b'x'; 76]);
            raw.extend_from_slice(b"\r\n");
        }
        raw
    };
    let mut expected = Vec::new();
    for index in 0..12 {
        if index == 3 || index == 8 {
            dovecot.deliver("support", "INBOX", &large(index));
            expected.push(format!("Scan {index}"));
        } else {
            dovecot.deliver("support", "INBOX", &mail(index, "small@contoso.com"));
            expected.push(format!("Problem number {index}"));
        }
    }
    let store = intake.store().await;
    let daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        12,
        Duration::from_secs(60),
    )
    .await;
    wait_until(
        Duration::from_secs(20),
        "every message to be moved",
        || async { dovecot.messages("support", "Done").len() == 12 },
    )
    .await;
    assert!(dovecot.messages("support", "INBOX").is_empty());
    let subjects: Vec<String> = on_pool!(&store, pool => {
        sqlx::query_scalar("SELECT subject FROM ingest_log WHERE outcome = 'created' ORDER BY id")
            .fetch_all(pool).await.expect("the log")
    });
    assert_eq!(
        subjects, expected,
        "one created row per message, in mailbox order"
    );
    assert_eq!(count(&store, "SELECT count(*) FROM ingest_log").await, 12);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM messages WHERE length(raw) > 5000000 AND raw_is_complete"
        )
        .await,
        2,
        "the large messages are stored whole"
    );
    drop(daemon);
    store.close().await;
}

#[tokio::test]
async fn tls_is_verified_and_a_private_ca_is_accepted() {
    let dovecot = Dovecot::start(&[
        ("untrusted", PASSWORD),
        ("trusted", PASSWORD),
        ("upgraded", PASSWORD),
    ]);
    let ca = dovecot.ca_file.display().to_string();
    let body = format!(
        "{}{}{}",
        mailbox("untrusted", dovecot.imaps_port, "security = \"tls\"")
            .replace("security = \"plain\"\n", ""),
        mailbox(
            "trusted",
            dovecot.imaps_port,
            &format!("security = \"tls\"\nca_file = \"{ca}\"")
        )
        .replace("security = \"plain\"\n", ""),
        mailbox(
            "upgraded",
            dovecot.imap_port,
            &format!("security = \"starttls\"\nca_file = \"{ca}\"")
        )
        .replace("security = \"plain\"\n", ""),
    );
    let intake = Intake::custom(Backend::Sqlite, &body).await;
    for user in ["untrusted", "trusted", "upgraded"] {
        dovecot.deliver(user, "INBOX", &mail(1, &format!("{user}@contoso.com")));
    }
    let store = intake.store().await;
    let daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        2,
        Duration::from_secs(20),
    )
    .await;
    let mailboxes: Vec<String> = on_pool!(&store, pool => {
        sqlx::query_scalar("SELECT mailbox FROM incidents ORDER BY mailbox").fetch_all(pool).await.expect("rows")
    });
    assert_eq!(mailboxes, vec!["trusted", "upgraded"]);
    wait_for_folder_error(
        &store,
        "untrusted",
        &["TLS", "certificate"],
        Duration::from_secs(10),
    )
    .await;
    assert!(
        !dovecot.log().contains("user=<untrusted>"),
        "no password was sent to an unverified server"
    );
    drop(daemon);
    store.close().await;
}

#[tokio::test]
async fn sighup_adds_a_mailbox_and_refuses_a_broken_config() {
    let dovecot = Dovecot::start(&[("support", PASSWORD), ("sales", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, &mailbox("support", dovecot.imap_port, "")).await;
    dovecot.deliver("sales", "INBOX", &mail(1, "s@contoso.com"));
    let store = intake.store().await;
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    wait_until(Duration::from_secs(20), "the first mailbox", || async {
        daemon.log_text().contains("mailbox connected")
    })
    .await;

    intake.write_config("[clients]\nauto_aprove = false\n");
    daemon.signal("HUP");
    wait_until(
        Duration::from_secs(10),
        "the broken config to be refused",
        || async { daemon.log_text().contains("reload refused") },
    )
    .await;
    assert!(daemon.is_running());
    assert!(
        daemon.log_text().contains("clients.auto_aprove"),
        "the log names the key"
    );

    intake.write_config(&format!(
        "{}{}",
        mailbox("support", dovecot.imap_port, ""),
        mailbox("sales", dovecot.imap_port, "")
    ));
    daemon.signal("HUP");
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents WHERE mailbox = 'sales'",
        1,
        Duration::from_secs(20),
    )
    .await;
    let log = daemon.log_text();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(
        occurrences(&log, "mailbox connected mailbox=support"),
        1,
        "support was not restarted:\n{log}"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}

/// Two instances on one database: one ingests, the other stands by; when the first is killed
/// (its lease left behind) the second takes over, and nothing is ingested twice. PostgreSQL
/// waits out the lease; on SQLite the run lock shows the first dead, so no lease is waited out.
async fn two_instances_one_ingests_and_the_other_takes_over(backend: Backend) {
    let (standing_by, takeover_limit) = match backend {
        Backend::Postgres => (
            "another instance holds this folder",
            Duration::from_secs(75),
        ),
        // Under the lease's 45 s: only the run lock can make it.
        Backend::Sqlite => (
            "another intake run serves this database",
            Duration::from_secs(30),
        ),
    };
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(backend, &mailbox("support", dovecot.imap_port, "")).await;
    let store = intake.store().await;
    let mut first = Daemon::start(&intake.config, intake.path("first.log"));
    wait_connected(&first).await;
    let mut second = Daemon::start(&intake.config, intake.path("second.log"));
    wait_until(
        Duration::from_secs(20),
        "the second instance to stand by",
        || async { second.log_text().contains(standing_by) },
    )
    .await;
    for index in 0..20 {
        dovecot.deliver("support", "INBOX", &mail(index, "a@contoso.com"));
    }
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        20,
        Duration::from_secs(20),
    )
    .await;
    assert!(
        !second.log_text().contains("mailbox connected"),
        "only one instance ingests"
    );

    // The holder dies without releasing its lease.
    first.kill();
    for index in 20..25 {
        dovecot.deliver("support", "INBOX", &mail(index, "a@contoso.com"));
    }
    wait_for_count(&store, "SELECT count(*) FROM incidents", 25, takeover_limit).await;
    let log = second.log_text();
    assert!(log.contains("mailbox connected"));
    if backend == Backend::Sqlite {
        assert!(
            log.contains("taking over at once the folders a stopped instance still held")
                && log.contains("support/INBOX"),
            "the dead instance's lease is taken over at once:\n{log}"
        );
    }
    assert_eq!(
        count(&store, "SELECT count(*) FROM ingest_log").await,
        25,
        "nothing twice"
    );
    assert_eq!(second.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}

#[tokio::test]
async fn two_instances_on_postgres_share_a_folder_and_take_over() {
    two_instances_one_ingests_and_the_other_takes_over(Backend::Postgres).await;
}

#[tokio::test]
async fn a_second_instance_on_sqlite_stands_by_and_takes_over_at_once() {
    two_instances_one_ingests_and_the_other_takes_over(Backend::Sqlite).await;
}

#[tokio::test]
async fn systemd_notify_protocol() {
    let dovecot = Dovecot::start(&[("support", PASSWORD)]);
    let intake = Intake::custom(Backend::Sqlite, &mailbox("support", dovecot.imap_port, "")).await;
    let socket_path = intake.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let socket_text = socket_path.display().to_string();
    let mut daemon = Daemon::start_with_env(
        &intake.config,
        intake.path("daemon.log"),
        &[
            ("NOTIFY_SOCKET", socket_text.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut received = String::new();
    let mut buffer = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(received.contains("READY=1") && received.matches("WATCHDOG=1").count() >= 2) {
        assert!(
            std::time::Instant::now() < deadline,
            "got only:\n{received}"
        );
        if let Ok(length) = socket.recv(&mut buffer) {
            received.push_str(&String::from_utf8_lossy(&buffer[..length]));
            received.push('\n');
        }
    }
    assert!(received.contains("STATUS=1 folders watched"), "{received}");
    daemon.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !received.contains("STOPPING=1") {
        assert!(
            std::time::Instant::now() < deadline,
            "no STOPPING=1 in:\n{received}"
        );
        if let Ok(length) = socket.recv(&mut buffer) {
            received.push_str(&String::from_utf8_lossy(&buffer[..length]));
        }
    }
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

/// SASL XOAUTH2, as Gmail and Microsoft 365 want it, against Dovecot's XOAUTH2 mechanism
/// (which checks the bearer token as it would a password). The token file is read again at
/// each connection: a refreshed token is picked up without a restart.
#[tokio::test]
async fn xoauth2_login_and_a_refreshed_token_file() {
    let dovecot = Dovecot::start(&[("support", PASSWORD), ("sales", "fresh-token")]);
    let intake = Intake::custom(Backend::Sqlite, "").await;
    let token = intake.path("sales.token");
    std::fs::write(&token, "expired-token\n").expect("the token file");
    intake.write_config(&format!(
        "{}[[mailbox]]\nname = \"sales\"\naddress = \"sales@example.com\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"plain\"\nusername = \"sales\"\nauth = \"xoauth2\"\n\
         password_file = \"{}\"\nidle = false\npoll_interval = \"1s\"\n",
        mailbox("support", dovecot.imap_port, "auth = \"xoauth2\""),
        dovecot.imap_port,
        token.display()
    ));
    dovecot.deliver("support", "INBOX", &mail(1, "a@contoso.com"));
    dovecot.deliver("sales", "INBOX", &mail(2, "b@contoso.com"));
    let daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    let store = intake.store().await;
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents WHERE mailbox = 'support'",
        1,
        Duration::from_secs(20),
    )
    .await;
    wait_for_folder_error(
        &store,
        "sales",
        &["AUTHENTICATE XOAUTH2"],
        Duration::from_secs(20),
    )
    .await;
    let log = daemon.log_text();
    assert!(
        !log.contains("expired-token"),
        "the token is never logged:\n{log}"
    );

    std::fs::write(&token, "fresh-token\n").expect("the refreshed token");
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents WHERE mailbox = 'sales'",
        1,
        Duration::from_secs(30),
    )
    .await;
    drop(daemon);
    store.close().await;
}

#[tokio::test]
async fn a_password_with_quotes_backslashes_and_accents_logs_in() {
    let password = "Pä\"ss\\wört ñ 1";
    let dovecot = Dovecot::start(&[("support", password)]);
    let intake = Intake::custom(Backend::Sqlite, "").await;
    let file = intake.path("support.password");
    std::fs::write(&file, format!("{password}\n")).expect("the password file");
    intake.write_config(&mailbox("support", dovecot.imap_port, "").replace(
        &format!("password = \"{PASSWORD}\""),
        &format!("password_file = \"{}\"", file.display()),
    ));
    dovecot.deliver("support", "INBOX", &mail(1, "a@contoso.com"));
    let mut daemon = Daemon::start(&intake.config, intake.path("daemon.log"));
    let store = intake.store().await;
    wait_for_count(
        &store,
        "SELECT count(*) FROM incidents",
        1,
        Duration::from_secs(20),
    )
    .await;
    let log = daemon.log_text();
    assert!(
        !log.contains("wört"),
        "the password is never logged:\n{log}"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    store.close().await;
}
