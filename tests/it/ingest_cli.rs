//! `intake ingest` and friends as an operator or an MTA uses them: stdin, files, Maildir, exit
//! codes, policies that need their own configuration, races between concurrent deliveries.

use std::process::{Command, Stdio};

use intake::on_pool;
use intake::store::Store;

use crate::harness::{Backend, Intake, parse_ingest_line, run_binary};

fn mail(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

async fn scalar_i64(store: &Store, sql: &'static str) -> i64 {
    on_pool!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|error| panic!("{sql}: {error}"))
    })
}

async fn strings(store: &Store, sql: &'static str) -> Vec<String> {
    on_pool!(store, pool => {
        sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await.unwrap_or_else(|error| panic!("{sql}: {error}"))
    })
}

on_both_backends!(stdin_files_and_maildir, |backend| async move {
    let intake = Intake::new(backend, "").await;
    let stdout = intake.run_ok(
        &["ingest"],
        Some(&mail("a@contoso.com", "From a pipe", "p1@x")),
    );
    assert!(stdout.starts_with("created "), "{stdout}");
    assert!(stdout.trim_end().ends_with(" stdin"), "{stdout}");

    let maildir = intake.path("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    std::fs::write(
        maildir.join("new/1700000001.M1.host"),
        mail("b@contoso.com", "New one", "m1@x"),
    )
    .expect("write");
    std::fs::write(
        maildir.join("cur/1700000000.M0.host:2,S"),
        mail("c@contoso.com", "Seen one", "m2@x"),
    )
    .expect("write");
    std::fs::write(maildir.join("tmp/partial"), b"From: half").expect("write");
    let single = intake.path("single.eml");
    std::fs::write(&single, mail("d@contoso.com", "A file", "f1@x")).expect("write");
    let missing = intake.path("missing.eml");

    let output = intake.run(
        &[
            "ingest",
            "--mailbox",
            "support",
            maildir.to_str().expect("utf-8 path"),
            missing.to_str().expect("utf-8 path"),
            single.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(
        output.status.code(),
        Some(66),
        "an unreadable input is EX_NOINPUT"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcomes: Vec<String> = stdout
        .lines()
        .map(|line| parse_ingest_line(line).outcome)
        .collect();
    assert_eq!(outcomes, vec!["created", "created", "created"], "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.eml"));

    let store = intake.store().await;
    let subjects = strings(&store, "SELECT subject FROM incidents ORDER BY id").await;
    assert_eq!(
        subjects,
        vec!["From a pipe", "New one", "Seen one", "A file"],
        "new/ before cur/, tmp/ never"
    );
    let departments = strings(
        &store,
        "SELECT department FROM incidents WHERE mailbox = 'support' ORDER BY id",
    )
    .await;
    assert_eq!(departments, vec!["Support", "Support", "Support"]);
    assert_eq!(
        scalar_i64(&store, "SELECT count(*) FROM ingest_log").await,
        4
    );

    let listing = intake.run_ok(&["incident", "list"], None);
    assert!(listing.starts_with("HASH"), "{listing}");
    assert!(
        listing.contains("A file") && listing.contains("contoso.com"),
        "{listing}"
    );
    store.close().await;
});

on_both_backends!(
    oversized_message_is_rejected_and_kept,
    |backend| async move {
        let intake = Intake::new(backend, "").await;
        // 30 MB: over the default 25 MiB limit.
        let mut raw = b"From: big@contoso.com\r\nTo: support@example.com\r\nSubject: Huge scan\r\n\
Message-ID: <huge@contoso.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee scan.\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
        let line = [b'Q'; 76];
        while raw.len() < 30_000_000 {
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"--b--\r\n");
        let stdout = intake.run_ok(&["ingest"], Some(&raw));
        assert!(stdout.starts_with("rejected - "), "{stdout}");

        let store = intake.store().await;
        let (outcome, reason): (String, String) = on_pool!(&store, pool => {
            sqlx::query_as("SELECT outcome, reason FROM ingest_log").fetch_one(pool).await.expect("log row")
        });
        assert_eq!(outcome, "rejected");
        assert!(reason.contains("max_message_bytes = 26214400"), "{reason}");
        let (stored, subject): (Vec<u8>, String) = on_pool!(&store, pool => {
            sqlx::query_as("SELECT raw, subject FROM messages").fetch_one(pool).await.expect("message row")
        });
        assert!(stored == raw, "the raw bytes are kept whole");
        assert_eq!(subject, "Huge scan", "the headers are still read");
        assert_eq!(
            scalar_i64(&store, "SELECT count(*) FROM incidents").await,
            0
        );
        assert_eq!(
            scalar_i64(&store, "SELECT count(*) FROM clients").await,
            0,
            "no registration"
        );
        store.close().await;
    }
);

on_both_backends!(
    pending_clients_are_held_until_approved,
    |backend| async move {
        let intake = Intake::new(
            backend,
            "[clients]\nauto_approve = false\npending_mail = \"hold\"\n",
        )
        .await;
        intake.run_ok(&["ingest"], Some(&mail("new@contoso.com", "First", "h1@x")));
        intake.run_ok(
            &["ingest"],
            Some(&mail("new@contoso.com", "Second", "h2@x")),
        );
        let store = intake.store().await;
        assert_eq!(
            strings(&store, "SELECT approval FROM clients").await,
            vec!["pending"]
        );
        assert_eq!(
            strings(&store, "SELECT folder FROM incidents ORDER BY id").await,
            vec!["held", "held"]
        );
        assert_eq!(
            strings(&store, "SELECT template FROM outbound ORDER BY id").await,
            vec!["registration", "acknowledgement", "acknowledgement"]
        );

        // Staff approve the client in a database viewer: held incidents move to the inbox.
        on_pool!(&store, pool => {
            sqlx::query("UPDATE clients SET approval = 'approved' WHERE email = 'new@contoso.com'")
                .execute(pool).await.expect("approve");
        });
        assert_eq!(
            strings(&store, "SELECT folder FROM incidents ORDER BY id").await,
            vec!["inbox", "inbox"]
        );
        assert_eq!(
            scalar_i64(
                &store,
                "SELECT count(*) FROM incidents WHERE held_reason IS NOT NULL"
            )
            .await,
            0
        );
        intake.run_ok(&["ingest"], Some(&mail("new@contoso.com", "Third", "h3@x")));
        assert_eq!(
            strings(&store, "SELECT folder FROM incidents ORDER BY id").await,
            vec!["inbox", "inbox", "inbox"]
        );
        store.close().await;
    }
);

on_both_backends!(
    registration_off_rejects_strangers_but_keeps_threads,
    |backend| async move {
        let intake = Intake::new(backend, "[clients]\nauto_register = false\n").await;
        let stdout = intake.run_ok(
            &["ingest"],
            Some(&mail("stranger@contoso.com", "Hi", "s1@x")),
        );
        assert!(stdout.starts_with("rejected - "), "{stdout}");
        let store = intake.store().await;
        assert_eq!(scalar_i64(&store, "SELECT count(*) FROM clients").await, 0);
        assert_eq!(
            scalar_i64(&store, "SELECT count(*) FROM messages").await,
            1,
            "raw bytes kept"
        );
        let reason = strings(&store, "SELECT reason FROM ingest_log").await;
        assert!(reason[0].contains("auto_register is off"), "{reason:?}");

        // A known client (added by staff) opens an incident; a stranger's reply joins it unregistered.
        on_pool!(&store, pool => {
            sqlx::query("INSERT INTO clients (email, organisation_id) SELECT 'known@contoso.com', id FROM organisations WHERE is_default")
                .execute(pool).await.expect("add client");
        });
        let stdout = intake.run_ok(
            &["ingest"],
            Some(&mail("known@contoso.com", "Broken", "k1@x")),
        );
        assert!(stdout.starts_with("created "), "{stdout}");
        let reply =
            b"From: colleague@elsewhere.example\r\nSubject: Re: Broken\r\nMessage-ID: <k2@x>\r\n\
In-Reply-To: <k1@x>\r\n\r\nMe too.\r\n";
        let stdout = intake.run_ok(&["ingest"], Some(reply));
        assert!(stdout.starts_with("appended "), "{stdout}");
        assert_eq!(scalar_i64(&store, "SELECT count(*) FROM clients").await, 1);
        store.close().await;
    }
);

on_both_backends!(
    concurrent_deliveries_record_each_message_once,
    |backend| async move {
        let intake = Intake::new(backend, "").await;
        // Create the schema first, so the racers race on rows, not on migrations.
        intake.run_ok(&["migrate"], None);
        let same = mail("racer@race.example", "Same message four times", "race@x");
        let file = intake.path("race.eml");
        std::fs::write(&file, &same).expect("write");
        let mut children = Vec::new();
        for index in 0..6 {
            // Four copies of one message and two other messages from the same new sender.
            let path = if index < 4 {
                file.clone()
            } else {
                let other = intake.path(&format!("other{index}.eml"));
                std::fs::write(
                    &other,
                    mail("racer@race.example", "Another", &format!("other{index}@x")),
                )
                .expect("write");
                other
            };
            children.push(
                Command::new(env!("CARGO_BIN_EXE_intake"))
                    .arg("-c")
                    .arg(&intake.config)
                    .arg("ingest")
                    .arg(&path)
                    .env("INTAKE_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn"),
            );
        }
        let mut outcomes = Vec::new();
        for child in children {
            let output = child.wait_with_output().expect("wait");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            outcomes.push(parse_ingest_line(&String::from_utf8_lossy(&output.stdout)).outcome);
        }
        outcomes.sort();
        assert_eq!(
            outcomes,
            vec![
                "created",
                "created",
                "created",
                "duplicate",
                "duplicate",
                "duplicate"
            ]
        );
        let store = intake.store().await;
        assert_eq!(
            scalar_i64(&store, "SELECT count(*) FROM incidents").await,
            3
        );
        assert_eq!(scalar_i64(&store, "SELECT count(*) FROM clients").await, 1);
        assert_eq!(
            scalar_i64(&store, "SELECT count(*) FROM organisations").await,
            2
        );
        assert_eq!(
            scalar_i64(&store, "SELECT count(*) FROM ingest_log").await,
            6
        );
        assert_eq!(
            scalar_i64(
                &store,
                "SELECT count(*) FROM outbound WHERE template = 'registration'"
            )
            .await,
            1
        );
        store.close().await;
    }
);

#[test]
fn database_unavailable_exits_tempfail() {
    let dir = tempfile::tempdir().expect("tempdir");
    for url in [
        "postgres://postgres@127.0.0.1:1/nothing_listens_here",
        "sqlite:///proc/intake-cannot-write-here/intake.db",
    ] {
        let config = dir.path().join("intake.toml");
        std::fs::write(&config, format!("[database]\nurl = \"{url}\"\n")).expect("write");
        let output = run_binary(&config, &["ingest"], Some(&mail("a@b.example", "x", "u@x")));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(75), "{url}: {stderr}");
        assert!(stderr.contains("database"), "{stderr}");
    }
}

#[test]
fn bad_config_exits_78_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[limits]\nmax_message_byte = 5\n").expect("write");
    let output = run_binary(&config, &["check-config"], None);
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.toml: limits.max_message_byte: unknown field"),
        "{stderr}"
    );

    let missing = dir.path().join("absent.toml");
    let output = run_binary(&missing, &["ingest"], Some(b"From: a@b.example\r\n\r\nx"));
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("absent.toml"));
}

#[test]
fn check_config_prints_effective_config_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("intake.toml");
    std::fs::write(
        &config,
        "[database]\nurl = \"postgres://intake:s3cret-db@db.example/intake\"\n\
         [[mailbox]]\nname = \"support\"\naddress = \"support@example.com\"\nhost = \"imap.example.com\"\n\
         username = \"support\"\npassword = \"s3cret-imap\"\n",
    )
    .expect("write");
    let output = run_binary(&config, &["check-config"], None);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(
        stdout.contains("postgres://intake:***@db.example/intake"),
        "{stdout}"
    );
    assert!(stdout.contains("max_message_bytes = 26214400"), "{stdout}");
}

on_both_backends!(
    schema_check_is_read_only_once_migrated,
    |backend| async move {
        let intake = Intake::new(backend, "").await;
        let store = intake.store().await;
        assert!(
            !store.is_migrated().await,
            "an empty database is not migrated"
        );
        // A short-lived command on an empty database still brings the schema up to date.
        intake.run_ok(&["incident", "list"], None);
        assert!(store.is_migrated().await);
        assert_eq!(
            scalar_i64(
                &store,
                "SELECT count(*) FROM organisations WHERE is_default"
            )
            .await,
            1
        );
        // Renaming the default organisation in the configuration still reaches the database.
        let renamed = std::fs::read_to_string(&intake.config)
            .expect("config")
            .replace(
                "[[mailbox]]",
                "[organisations]\ndefault = \"Everyone else\"\n\n[[mailbox]]",
            );
        std::fs::write(&intake.config, renamed).expect("config");
        intake.run_ok(&["ingest"], Some(&mail("x@gmail.com", "Hi", "rename@x")));
        assert_eq!(
            strings(&store, "SELECT name FROM organisations WHERE is_default").await,
            vec!["Everyone else"]
        );
        store.close().await;
    }
);

on_both_backends!(large_messages_keep_every_byte, |backend| async move {
    // Over store::blobs::IN_PLACE_FROM and STAGED_FROM: on SQLite the raw message and the
    // decoded attachment are written in place, on PostgreSQL staged in parts, rather than
    // bound. Both must read back byte for byte.
    use base64::Engine;
    let intake = Intake::new(backend, "").await;
    let content: Vec<u8> = (0..1_500_000u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&content);
    let mut raw = b"From: scanner@contoso.com\r\nTo: support@example.com\r\n\
            Subject: The scan\r\nMessage-ID: <scan@contoso.com>\r\n\
            Date: Mon, 23 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
            Content-Type: text/plain\r\n\r\nThe scan is attached.\r\n--b\r\n\
            Content-Type: application/octet-stream; name=\"scan.bin\"\r\n\
            Content-Disposition: attachment; filename=\"scan.bin\"\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    for line in encoded.as_bytes().chunks(76) {
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"--b--\r\n");
    let stdout = intake.run_ok(&["ingest"], Some(&raw));
    assert!(stdout.starts_with("created "), "{stdout}");

    let store = intake.store().await;
    let (kept, sizes): (Vec<Vec<u8>>, Vec<i64>) = on_pool!(&store, pool => {
        sqlx::query_as::<_, (Vec<u8>, i64)>("SELECT raw, size_bytes FROM messages ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("messages")
    })
    .into_iter()
    .unzip();
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0] == raw,
        "raw bytes differ ({} read, {} sent)",
        kept[0].len(),
        raw.len()
    );
    assert_eq!(sizes, vec![raw.len() as i64]);
    let attachments: Vec<(String, i64, Vec<u8>)> = on_pool!(&store, pool => {
        sqlx::query_as("SELECT filename, size_bytes, content FROM attachments")
            .fetch_all(pool)
            .await
            .expect("attachments")
    });
    assert_eq!(attachments.len(), 1);
    let (filename, size, stored) = &attachments[0];
    assert_eq!(filename, "scan.bin");
    assert_eq!(*size, content.len() as i64);
    assert!(stored == &content, "decoded attachment differs");
    store.close().await;
});

#[tokio::test]
async fn moving_raw_last_keeps_stored_messages() {
    // migrations/sqlite/0011_raw_last.sql on a database that already holds a message.
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("migrations")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    let (before, after): (Vec<_>, Vec<_>) = files.into_iter().partition(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name < "0011")
    });
    assert!(
        after
            .first()
            .is_some_and(|path| path.ends_with("0011_raw_last.sql")),
        "{after:?}"
    );
    for path in &before {
        let sql = std::fs::read_to_string(path).expect("migration");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
    let raw: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    sqlx::query(
        "INSERT INTO messages (direction, subject, size_bytes, raw_sha256, raw, dedup_key) \
         VALUES ('inbound', 'Before', 100000, 'abc', $1, 'k1')",
    )
    .bind(&raw)
    .execute(&mut connection)
    .await
    .expect("a message stored before");
    let sql = std::fs::read_to_string(&after[0]).expect("migration");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut connection)
        .await
        .expect("0011 applies");
    let (subject, kept, dedup_key): (String, Vec<u8>, String) =
        sqlx::query_as("SELECT subject, raw, dedup_key FROM messages")
            .fetch_one(&mut connection)
            .await
            .expect("the message");
    assert_eq!((subject.as_str(), dedup_key.as_str()), ("Before", "k1"));
    assert!(kept == raw, "raw bytes kept");
    let last: String = sqlx::query_scalar(
        "SELECT name FROM pragma_table_info('messages') ORDER BY cid DESC LIMIT 1",
    )
    .fetch_one(&mut connection)
    .await
    .expect("columns");
    assert_eq!(last, "raw");
}

#[tokio::test]
async fn a_staged_value_is_used_only_when_every_byte_arrived() {
    // PostgreSQL takes a large value in parts (store::blobs): the concatenation stands for the
    // value only when its length is the one bound, so a lost part fails the NOT NULL column.
    use intake::store::blobs::{Blob, STAGED_FROM};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = crate::harness::TestDb::new(Backend::Postgres, dir.path()).await;
    let store = Store::connect(&db.url).await.expect("store");
    let value: Vec<u8> = (0..STAGED_FROM * 5 / 2).map(|index| index as u8).collect();
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(Blob::for_value(&tx, &value[..STAGED_FROM - 1]), Blob::Bound);
    let blob = Blob::for_value(&tx, &value);
    assert_eq!(blob, Blob::Staged);
    assert!(blob.binds_length());
    blob.before_insert(&mut tx, &value).await.expect("staged");
    let sql = format!("SELECT {}", blob.sql("$1"));
    for (length, expected) in [
        (value.len() as i64, Some(value.clone())),
        (value.len() as i64 - 1, None),
    ] {
        let read: Option<Vec<u8>> = intake::on_tx!(&mut tx, conn => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(length)
                .fetch_one(&mut *conn)
                .await
                .expect("select")
        });
        assert!(read == expected, "length {length}");
    }
    // A second value in the same transaction replaces the first.
    blob.before_insert(&mut tx, &value[..STAGED_FROM])
        .await
        .expect("staged");
    let read: Option<Vec<u8>> = intake::on_tx!(&mut tx, conn => {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(STAGED_FROM as i64)
            .fetch_one(&mut *conn)
            .await
            .expect("select")
    });
    assert!(read.as_deref() == Some(&value[..STAGED_FROM]));
    tx.rollback().await.expect("rollback");
    store.close().await;
}

// Importing old mail: `--no-mail` takes a Maildir in without registering mail or
// acknowledgements, and says so in each ingest_log row; mail piped in later is answered.
on_both_backends!(an_import_with_no_mail_mails_nobody, |backend| async move {
    let intake = Intake::new(backend, "").await;
    let maildir = intake.path("Archive");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    for index in 0..3 {
        std::fs::write(
            maildir.join(format!("cur/170000000{index}.M{index}.host:2,S")),
            mail(
                &format!("old{index}@contoso.com"),
                "Answered by hand",
                &format!("old{index}@x"),
            ),
        )
        .expect("write");
    }
    let stdout = intake.run_ok(
        &["ingest", "--no-mail", maildir.to_str().expect("utf-8 path")],
        None,
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("created "))
            .count(),
        3,
        "{stdout}"
    );
    intake.run_ok(
        &["ingest"],
        Some(&mail("old1@contoso.com", "New question", "new1@x")),
    );

    let store = intake.store().await;
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT count(*) FROM ingest_log WHERE reason = 'imported with --no-mail: no mail sent'"
        )
        .await,
        3
    );
    assert_eq!(scalar_i64(&store, "SELECT count(*) FROM clients").await, 3);
    assert_eq!(
        strings(
            &store,
            "SELECT template || ' ' || recipient FROM outbound ORDER BY id"
        )
        .await,
        vec!["acknowledgement old1@contoso.com"],
        "only the later mail is answered; the importing registered its senders quietly"
    );
    store.close().await;
});
