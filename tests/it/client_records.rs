//! Clients as helpdesk staff know them: spam and ban acting on what exists, references,
//! additional addresses, notes, sending a mail again. On both backends, with the real binary,
//! and with the same changes made by SQL where a viewer could make them.

use crate::harness::{Backend, Intake, parse_ingest_line, query, query_fails};

fn mail(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

fn ingest(intake: &Intake, from: &str, subject: &str, message_id: &str) -> (String, String) {
    let line =
        parse_ingest_line(&intake.run_ok(&["ingest"], Some(&mail(from, subject, message_id))));
    (line.outcome, line.hash.unwrap_or_default())
}

fn folder(intake: &Intake, backend: Backend, hash: &str) -> String {
    query(
        intake,
        backend,
        &format!("SELECT folder FROM incidents WHERE hash = '{hash}'"),
    )
    .join(",")
}

async fn spam_moves_incidents_out_and_back(backend: Backend) {
    let intake = Intake::new(
        backend,
        "[clients]\nauto_approve = false\npending_mail = \"hold\"",
    )
    .await;
    let (_, first) = ingest(&intake, "xena@contoso.com", "One", "s1@contoso.com");
    intake.run_ok(&["client", "approve", "xena@contoso.com"], None);
    let (_, second) = ingest(&intake, "xena@contoso.com", "Two", "s2@contoso.com");
    let (_, held) = ingest(&intake, "yuri@contoso.com", "Three", "s3@contoso.com");
    assert_eq!(
        [&first, &second, &held].map(|hash| folder(&intake, backend, hash)),
        ["inbox", "inbox", "held"]
    );

    // With the CLI: everything goes to spam, new mail too; back, each to where it was.
    intake.run_ok(
        &["client", "spam", "xena@contoso.com", "yuri@contoso.com"],
        None,
    );
    assert_eq!(
        [&first, &second, &held].map(|hash| folder(&intake, backend, hash)),
        ["spam", "spam", "spam"]
    );
    let (outcome, later) = ingest(&intake, "xena@contoso.com", "Four", "s4@contoso.com");
    assert_eq!(
        (outcome.as_str(), folder(&intake, backend, &later).as_str()),
        ("spam", "spam")
    );
    intake.run_ok(
        &["client", "not-spam", "xena@contoso.com", "yuri@contoso.com"],
        None,
    );
    assert_eq!(
        [&first, &second, &later, &held].map(|hash| folder(&intake, backend, hash)),
        ["inbox", "inbox", "inbox", "held"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            &format!("SELECT held_reason FROM incidents WHERE hash = '{held}'")
        ),
        vec!["pending_approval"]
    );

    // The same in a viewer; an approval made while spam is honoured on the way back.
    let update = |sql: &str| {
        query(&intake, backend, sql);
    };
    update("UPDATE clients SET standing = 'spam' WHERE email = 'yuri@contoso.com'");
    assert_eq!(folder(&intake, backend, &held), "spam");
    update("UPDATE clients SET approval = 'approved' WHERE email = 'yuri@contoso.com'");
    assert_eq!(folder(&intake, backend, &held), "spam");
    update("UPDATE clients SET standing = 'spam' WHERE email = 'yuri@contoso.com'");
    update("UPDATE clients SET standing = 'normal' WHERE email = 'yuri@contoso.com'");
    assert_eq!(folder(&intake, backend, &held), "inbox");
    // Nothing is left half-moved.
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT count(*) FROM incidents WHERE folder_before_spam IS NOT NULL"
        ),
        vec!["0"]
    );

    // Ban leaves existing incidents where they are; later mail is dropped and shown by `log`.
    intake.run_ok(&["client", "ban", "xena@contoso.com"], None);
    assert_eq!(folder(&intake, backend, &first), "inbox");
    let (outcome, _) = ingest(&intake, "xena@contoso.com", "Five", "s5@contoso.com");
    assert_eq!(outcome, "dropped_banned");
    let log = intake.run_json(&[
        "log",
        "--outcome",
        "dropped_banned",
        "--sender",
        "XENA@contoso.com",
    ]);
    assert_eq!(log.as_array().map(Vec::len), Some(1));
    assert_eq!(log[0]["sender"], "xena@contoso.com");
    assert_eq!(log[0]["subject"], "Five");
    intake.run_ok(&["client", "unban", "xena@contoso.com"], None);
    assert_eq!(folder(&intake, backend, &first), "inbox");
    let shown = intake.run_json(&["client", "show", "xena@contoso.com"]);
    assert_eq!(shown["client"]["approval"], "approved");

    // Spam, then banned: unban restores spam (incidents stay there); not-spam brings them
    // back. A ban lifted in a viewer (standing set to normal) brings them back too.
    intake.run_ok(&["client", "spam", "xena@contoso.com"], None);
    intake.run_ok(&["client", "ban", "xena@contoso.com"], None);
    assert_eq!(folder(&intake, backend, &first), "spam");
    let unbanned = intake.run_json(&["client", "unban", "xena@contoso.com"]);
    assert_eq!(unbanned[0]["after"], "spam");
    assert_eq!(folder(&intake, backend, &first), "spam");
    intake.run_ok(&["client", "not-spam", "xena@contoso.com"], None);
    assert_eq!(folder(&intake, backend, &first), "inbox");
    intake.run_ok(&["client", "spam", "xena@contoso.com"], None);
    intake.run_ok(&["client", "ban", "xena@contoso.com"], None);
    update("UPDATE clients SET standing = 'normal' WHERE email = 'xena@contoso.com'");
    assert_eq!(folder(&intake, backend, &first), "inbox");
}
on_both_backends!(
    spam_moves_incidents_out_and_back,
    spam_moves_incidents_out_and_back
);

async fn references_are_unique_stable_and_never_reused(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    for (index, sender) in ["ann@contoso.com", "bea@contoso.com", "cid@fabrikam.com"]
        .iter()
        .enumerate()
    {
        ingest(&intake, sender, "Hi", &format!("r{index}@example.com"));
    }
    let references = query(
        &intake,
        backend,
        "SELECT reference FROM client_overview ORDER BY email",
    );
    assert_eq!(references.len(), 3);
    for reference in &references {
        assert!(
            reference.starts_with("C-") && reference.len() == 7,
            "{reference}"
        );
    }
    let mut unique = references.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT client_reference FROM incident_overview ORDER BY client_email"
        ),
        references
    );

    // Every command takes a reference; the incidents view shows it.
    let shown = intake.run_json(&["client", "show", &references[0].to_lowercase()]);
    assert_eq!(shown["client"]["email"], "ann@contoso.com");
    let listed = intake.run_json(&["incident", "list", "--client", &references[1]]);
    assert_eq!(listed[0]["client_email"], "bea@contoso.com");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // Export, import into a fresh database, export again: the same references and addresses.
    intake.run_ok(
        &[
            "client",
            "add-address",
            "bea@contoso.com",
            "bea@home.example",
        ],
        None,
    );
    let exported = intake.run_ok(&["client", "export"], None);
    assert!(exported.contains(",bea@home.example\n"), "{exported}");
    let fresh = Intake::new(backend, "").await;
    let file = fresh.path("clients.csv");
    std::fs::write(&file, &exported).expect("writing the CSV");
    fresh.run_ok(&["org", "add", "contoso.com"], None);
    fresh.run_ok(&["org", "add", "fabrikam.com"], None);
    fresh.run_ok(&["client", "import", file.to_str().expect("utf-8")], None);
    assert_eq!(fresh.run_ok(&["client", "export"], None), exported);
    // Importing the same file again changes nothing.
    intake.run_ok(&["client", "import", file.to_str().expect("utf-8")], None);
    assert_eq!(intake.run_ok(&["client", "export"], None), exported);

    // Staff may change a reference; the old one is retired for good.
    intake.run_ok(
        &["client", "edit", &references[0], "--reference", "ann-1"],
        None,
    );
    assert_eq!(
        intake.run_json(&["client", "show", "ANN-1"])["client"]["email"],
        "ann@contoso.com"
    );
    let stderr = intake.run_refused(&[
        "client",
        "add",
        "dan@contoso.com",
        "--reference",
        &references[0],
    ]);
    assert!(stderr.contains("never reused"), "{stderr}");
    intake.run_refused(&["client", "edit", "bea@contoso.com", "--reference", "ANN-1"]);
    intake.run_ok(&["client", "delete", "cid@fabrikam.com", "--yes"], None);
    intake.run_refused(&[
        "client",
        "add",
        "cid@fabrikam.com",
        "--reference",
        &references[2],
    ]);
    // A viewer edit meets the same rule.
    let stderr = query_fails(
        &intake,
        backend,
        &format!(
            "UPDATE clients SET reference = '{}' WHERE email = 'bea@contoso.com'",
            references[2]
        ),
    );
    assert!(stderr.contains("never reused"), "{stderr}");
    // A client added in a viewer gets a reference too.
    query(
        &intake,
        backend,
        "INSERT INTO clients (email, organisation_id) \
         SELECT 'viewer@contoso.com', id FROM organisations WHERE is_default",
    );
    let added = query(
        &intake,
        backend,
        "SELECT reference FROM clients WHERE email = 'viewer@contoso.com'",
    );
    assert!(added[0].starts_with("C-0"), "{added:?}");
    assert_eq!(
        query(
            &intake,
            backend,
            &format!(
                "SELECT count(*) FROM client_references WHERE reference = '{}'",
                added[0]
            )
        ),
        vec!["1"]
    );
    // A row naming another client's reference is a bad row.
    let bad = intake.path("bad.csv");
    std::fs::write(
        &bad,
        "email,reference\nbea@contoso.com,ANN-1\nnew@contoso.com,C-1\nnew2@contoso.com,c-1\n",
    )
    .expect("writing the CSV");
    let stderr = intake.run_refused(&["client", "import", bad.to_str().expect("utf-8")]);
    assert!(
        stderr.contains("line 2: the reference ANN-1 belongs to ann@contoso.com"),
        "{stderr}"
    );
    assert!(stderr.contains("line 4: C-1 appears twice"), "{stderr}");
}
on_both_backends!(
    references_are_unique_stable_and_never_reused,
    references_are_unique_stable_and_never_reused
);

async fn additional_addresses_and_merge_as_address(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    intake.run_ok(&["org", "add", "Contoso", "--domain", "contoso.com"], None);
    intake.run_ok(
        &[
            "client",
            "add",
            "ada@contoso.com",
            "--no-registration-mail",
            "--note",
            "VIP",
        ],
        None,
    );
    intake.run_ok(
        &[
            "client",
            "add-address",
            "ada@contoso.com",
            "Ada@Home.example",
        ],
        None,
    );
    let (outcome, hash) = ingest(&intake, "ada@home.example", "From home", "a1@home.example");
    assert_eq!(outcome, "created");
    assert_eq!(
        query(
            &intake,
            backend,
            &format!(
                "SELECT client_email, organisation FROM incident_overview WHERE hash = '{hash}'"
            )
        ),
        vec!["ada@contoso.com|Contoso"]
    );
    assert_eq!(
        query(&intake, backend, "SELECT count(*) FROM clients"),
        vec!["1"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT other_addresses, note FROM client_overview"
        ),
        vec!["ada@home.example|VIP"]
    );

    // An address belongs to one client only.
    intake.run_ok(
        &["client", "add", "bob@contoso.com", "--no-registration-mail"],
        None,
    );
    let stderr = intake.run_refused(&[
        "client",
        "add-address",
        "bob@contoso.com",
        "ada@home.example",
    ]);
    assert!(stderr.contains("ada@contoso.com"), "{stderr}");
    let stderr = intake.run_refused(&[
        "client",
        "add-address",
        "bob@contoso.com",
        "ada@contoso.com",
    ]);
    assert!(stderr.contains("--as-address"), "{stderr}");
    intake.run_refused(&["client", "add", "ada@home.example"]);
    let csv = intake.path("clash.csv");
    std::fs::write(&csv, "email\nada@home.example\n").expect("writing the CSV");
    let stderr = intake.run_refused(&["client", "import", csv.to_str().expect("utf-8")]);
    assert!(
        stderr.contains("line 2: ada@home.example is an additional address of ada@contoso.com"),
        "{stderr}"
    );
    query_fails(
        &intake,
        backend,
        "INSERT INTO client_addresses (address, client_id) \
         SELECT 'bob@contoso.com', id FROM clients WHERE email = 'ada@contoso.com'",
    );

    // merge --as-address: bob's mail now lands on ada, with bob's incidents.
    let (_, bobs) = ingest(&intake, "bob@contoso.com", "Bob's", "b1@contoso.com");
    let merged = intake.run_json(&[
        "client",
        "merge",
        "bob@contoso.com",
        "--into",
        "ada@contoso.com",
        "--as-address",
    ]);
    assert_eq!(
        (merged["incidents"].clone(), merged["addresses"].clone()),
        (1.into(), 1.into())
    );
    let (outcome, hash) = ingest(&intake, "Bob <bob@contoso.com>", "Again", "b2@contoso.com");
    assert_eq!(outcome, "created");
    let mut rows = query(
        &intake,
        backend,
        &format!(
            "SELECT hash, client_email FROM incident_overview WHERE hash IN ('{bobs}', '{hash}') ORDER BY hash"
        ),
    );
    rows.sort();
    let mut expected = vec![
        format!("{bobs}|ada@contoso.com"),
        format!("{hash}|ada@contoso.com"),
    ];
    expected.sort();
    assert_eq!(rows, expected);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT other_addresses FROM client_overview"
        ),
        vec!["ada@home.example, bob@contoso.com"]
    );

    // Removing an address: its next mail is a new client's.
    intake.run_ok(&["client", "remove-address", "ada@home.example"], None);
    ingest(&intake, "ada@home.example", "Later", "a2@home.example");
    assert_eq!(
        query(&intake, backend, "SELECT count(*) FROM clients"),
        vec!["2"]
    );

    // Notes, from the CLI or a viewer.
    intake.run_ok(
        &["client", "note", "ada@contoso.com", "Prefers phone"],
        None,
    );
    assert_eq!(
        intake.run_json(&["client", "show", "ada@contoso.com"])["client"]["note"],
        "Prefers phone"
    );
    intake.run_ok(&["client", "note", "ada@contoso.com", "--clear"], None);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT count(*) FROM clients WHERE note IS NOT NULL"
        ),
        vec!["0"]
    );
}
on_both_backends!(
    additional_addresses_and_merge_as_address,
    additional_addresses_and_merge_as_address
);

async fn sending_again_and_importing_into_an_organisation(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    intake.run_ok(&["org", "add", "Northwind"], None);
    let file = intake.path("people.csv");
    std::fs::write(
        &file,
        "email,first_name,organisation,approval\n\
         amy@example.net,Amy,,approved\n\
         ben@example.net,Ben,Default,pending\n",
    )
    .expect("writing the CSV");
    intake.run_refused(&[
        "client",
        "import",
        file.to_str().expect("utf-8"),
        "--org",
        "Nowhere",
    ]);
    intake.run_ok(
        &[
            "client",
            "import",
            file.to_str().expect("utf-8"),
            "--org",
            "Northwind",
        ],
        None,
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT email, organisation FROM client_overview ORDER BY email"
        ),
        vec!["amy@example.net|Northwind", "ben@example.net|Default"]
    );

    let sent = intake.run_json(&["client", "send", "amy@example.net", "registration"]);
    assert!(sent["outbound"].as_i64().is_some(), "{sent}");
    intake.run_json(&["client", "send", "amy@example.net", "approval"]);
    let stderr = intake.run_refused(&["client", "send", "ben@example.net", "approval"]);
    assert!(stderr.contains("pending"), "{stderr}");
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT template, recipient, state FROM outbound ORDER BY id"
        ),
        vec![
            "registration|amy@example.net|queued",
            "approval|amy@example.net|queued"
        ]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT action, subject FROM admin_log WHERE action = 'client send'"
        ),
        vec!["client send|amy@example.net", "client send|amy@example.net"]
    );
}
on_both_backends!(
    sending_again_and_importing_into_an_organisation,
    sending_again_and_importing_into_an_organisation
);
