//! Staff read the database with the tools they already have: the `sqlite3` command-line client
//! on the SQLite file and `psql` on PostgreSQL, through the views, with no intake code between.

use crate::harness::{Backend, Intake, parse_ingest_line, query};

fn mail(from: &str, subject: &str, message_id: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n{extra}\r\nHello.\r\n"
    )
    .into_bytes()
}

async fn read_through_views(backend: Backend) {
    let intake = Intake::new(
        backend,
        "[clients]\npending_mail = \"hold\"\nauto_approve = false",
    )
    .await;
    let created = intake.run_ok(
        &["ingest", "--mailbox", "support"],
        Some(&mail(
            "Ada Lovelace <ada@contoso.com>",
            "Printer on fire",
            "v1@contoso.com",
            "",
        )),
    );
    let hash = parse_ingest_line(&created).hash.expect("an incident");
    intake.run_ok(
        &["ingest"],
        Some(&mail(
            "robot@vendor.example",
            "Out of office",
            "v2@vendor.example",
            "Auto-Submitted: auto-replied\r\n",
        )),
    );

    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT hash, folder, client_email, client_name, organisation, subject, message_count \
             FROM incident_overview"
        ),
        vec![format!(
            "{hash}|held|ada@contoso.com|Ada Lovelace|contoso.com|Printer on fire|1"
        )]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT hash, held_reason FROM held_folder"
        ),
        vec![format!("{hash}|pending_approval")]
    );
    assert!(query(&intake, backend, "SELECT hash FROM spam_folder").is_empty());
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT email, approval, standing, incident_count FROM client_overview"
        ),
        vec!["ada@contoso.com|pending|normal|1"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT direction, incident_hash, from_address, subject FROM recent_messages \
             ORDER BY message_id"
        ),
        vec![
            format!("inbound|{hash}|ada@contoso.com|Printer on fire"),
            "inbound||robot@vendor.example|Out of office".to_string(),
        ]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT outcome, sender, incident_hash FROM ingest_overview ORDER BY log_id"
        ),
        vec![
            format!("created|ada@contoso.com|{hash}"),
            "auto_reply|robot@vendor.example|".to_string(),
        ]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT state, template, recipient, client_name, incident_hash FROM outbound_overview \
             ORDER BY outbound_id"
        ),
        vec![
            "queued|registration|ada@contoso.com|Ada Lovelace|".to_string(),
            format!("queued|acknowledgement|ada@contoso.com|Ada Lovelace|{hash}"),
        ]
    );

    // The same from the shell: `intake log`, newest first, and filtered by outcome.
    let log = intake.run_ok(&["log"], None);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].starts_with("LOGGED AT"), "{log}");
    assert!(lines[1].contains("auto_reply") && lines[1].contains("robot@vendor.example"));
    assert!(
        lines[2].contains("created") && lines[2].contains(&hash),
        "{log}"
    );
    let filtered = intake.run_ok(&["log", "--outcome", "created", "--limit", "5"], None);
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
    assert!(filtered.contains("ada@contoso.com") && !filtered.contains("robot"));

    // `intake incident list` filters and `incident show`.
    let list = |args: &[&str]| {
        let mut all = vec!["incident", "list"];
        all.extend_from_slice(args);
        intake.run_ok(&all, None).lines().count() - 1
    };
    assert_eq!(list(&["--client", "ADA@contoso.com"]), 1);
    assert_eq!(list(&["--client", "nobody@contoso.com"]), 0);
    assert_eq!(list(&["--org", "contoso.com", "--folder", "held"]), 1);
    assert_eq!(list(&["--org", "contoso.com", "--folder", "inbox"]), 0);
    assert_eq!(list(&["--since", "2000-01-01"]), 1);
    assert_eq!(list(&["--since", "2999-01-01T00:00:00Z"]), 0);
    let bad = intake.run(&["incident", "list", "--since", "last tuesday"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected a day such as"));

    let shown = intake.run_ok(&["incident", "show", &hash.to_lowercase()], None);
    assert!(shown.contains(&format!("Hash:         {hash}")), "{shown}");
    assert!(shown.contains("Subject:      Printer on fire"), "{shown}");
    assert!(shown.contains("Client:       ada@contoso.com"), "{shown}");
    let message = shown
        .lines()
        .find(|line| line.contains("inbound"))
        .unwrap_or_else(|| panic!("no message line in\n{shown}"));
    assert!(message.contains("ada@contoso.com") && message.contains("Printer on fire"));
    let missing = intake.run(&["incident", "show", "ZZZ-000-00000"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no incident ZZZ-000-00000"));
}

#[tokio::test]
async fn sqlite3_reads_an_incident_through_the_views() {
    read_through_views(Backend::Sqlite).await;
}

#[tokio::test]
async fn psql_reads_an_incident_through_the_views() {
    read_through_views(Backend::Postgres).await;
}
