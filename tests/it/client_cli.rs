//! `intake client` and `intake org` driven as an operator drives them, on both backends, with
//! every effect read back through the database the way staff read it.

use crate::harness::{Backend, Intake, parse_ingest_line, query};

fn mail(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// Ingests one mail and returns (outcome, hash).
fn ingest(
    intake: &Intake,
    from: &str,
    subject: &str,
    message_id: &str,
) -> (String, Option<String>) {
    let line = intake.run_ok(&["ingest"], Some(&mail(from, subject, message_id)));
    let parsed = parse_ingest_line(&line);
    (parsed.outcome, parsed.hash)
}

async fn import_checks_every_row_first(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    intake.run_ok(&["org", "add", "Contoso", "--domain", "contoso.com"], None);

    let bad = intake.path("bad.csv");
    std::fs::write(
        &bad,
        "Email,First Name,Last Name,Organisation,Approval,Standing,Reference,Other Addresses\n\
         ada@contoso.com,Ada,Lovelace,Contoso,approved,normal\n\
         not-an-address,X,,,,\n\
         bob@contoso.com,Bob,,Nowhere Ltd,approved,normal\n\
         cy@contoso.com,Cy,,Contoso,maybe,normal\n\
         ADA@contoso.com,Ada,Again,Contoso,approved,normal\n\
         dee@contoso.com,Dee,,Contoso,approved,normal,,dee@home.example;not-an-address\n",
    )
    .expect("writing the CSV");
    let stderr = intake.run_refused(&["client", "import", bad.to_str().expect("utf-8 path")]);
    for expected in [
        "line 3: \"not-an-address\" is not an email address",
        "line 4: no organisation named \"Nowhere Ltd\"",
        "line 5: approval \"maybe\"",
        "line 6:",
        "line 7: \"not-an-address\" is not an email address",
        "nothing imported",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
    assert_eq!(intake.run_json(&["client", "list"]), serde_json::json!([]));

    // A good file with quoting a spreadsheet produces, then export gives the same shape back.
    let good = intake.path("good.csv");
    let rows = "email,first_name,last_name,organisation,approval,standing,reference,other_addresses\n\
                ada@contoso.com,Ada,\"Lovelace, Countess\",Contoso,approved,normal,ADA-1,\n\
                bob@example.net,Bob,,Default,pending,spam,BOB-2,bob@home.example; bob@work.example\n";
    std::fs::write(&good, rows).expect("writing the CSV");
    let imported = intake.run_json(&["client", "import", good.to_str().expect("utf-8 path")]);
    assert_eq!(imported["added"], 2);
    assert_eq!(imported["updated"], 0);
    assert_eq!(intake.run_ok(&["client", "export"], None), rows);

    // Importing again updates in place; an empty cell keeps what is there.
    std::fs::write(
        &good,
        "email,first_name,last_name,organisation,approval,standing\n\
         bob@example.net,,Builder,,approved,\n",
    )
    .expect("writing the CSV");
    let imported = intake.run_json(&["client", "import", good.to_str().expect("utf-8 path")]);
    assert_eq!(
        (imported["added"].clone(), imported["updated"].clone()),
        (0.into(), 1.into())
    );
    let export = intake.path("export.csv");
    intake.run_ok(
        &[
            "client",
            "export",
            "-o",
            export.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(
        std::fs::read_to_string(&export).expect("the export"),
        "email,first_name,last_name,organisation,approval,standing,reference,other_addresses\n\
         ada@contoso.com,Ada,\"Lovelace, Countess\",Contoso,approved,normal,ADA-1,\n\
         bob@example.net,Bob,Builder,Default,approved,spam,BOB-2,bob@home.example; bob@work.example\n"
    );
}
on_both_backends!(import_checks_every_row_first, import_checks_every_row_first);

async fn merge_moves_incidents_and_leaves_an_audit_row(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    let (_, first) = ingest(
        &intake,
        "Ada <ada@home.example>",
        "Printer",
        "m1@home.example",
    );
    let (_, second) = ingest(
        &intake,
        "Ada L <ada@work.example>",
        "Scanner",
        "m2@work.example",
    );
    let (first, second) = (first.expect("an incident"), second.expect("an incident"));

    intake.run_refused(&[
        "client",
        "merge",
        "ada@home.example",
        "--into",
        "ada@home.example",
    ]);
    intake.run_refused(&[
        "client",
        "merge",
        "nobody@home.example",
        "--into",
        "ada@work.example",
    ]);
    let merged = intake.run_json(&[
        "client",
        "merge",
        "ada@home.example",
        "--into",
        "ada@work.example",
    ]);
    assert_eq!(merged["incidents"], 1);

    let mut rows = query(
        &intake,
        backend,
        "SELECT hash, client_email, message_count FROM incident_overview",
    );
    rows.sort();
    let mut expected = vec![
        format!("{first}|ada@work.example|1"),
        format!("{second}|ada@work.example|1"),
    ];
    expected.sort();
    assert_eq!(rows, expected);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT email, incident_count FROM client_overview"
        ),
        vec!["ada@work.example|2"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT action, subject FROM admin_log \
             WHERE detail LIKE 'merged ada@home.example:%'"
        ),
        vec!["client merge|ada@work.example"]
    );
    // A reply to the merged incident lands on the target client.
    let reply = "From: ada@home.example\r\nTo: support@example.com\r\nSubject: Re: Printer\r\n\
                 Message-ID: <m3@home.example>\r\nIn-Reply-To: <m1@home.example>\r\n\r\nStill broken.\r\n";
    let line = parse_ingest_line(&intake.run_ok(&["ingest"], Some(reply.as_bytes())));
    assert_eq!(
        (line.outcome.as_str(), line.hash),
        ("appended", Some(first))
    );
}
on_both_backends!(
    merge_moves_incidents_and_leaves_an_audit_row,
    merge_moves_incidents_and_leaves_an_audit_row
);

async fn delete_asks_then_removes_everything_but_the_audit_trail(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    ingest(&intake, "gone@example.net", "One", "d1@example.net");
    ingest(&intake, "gone@example.net", "Two", "d2@example.net");
    ingest(&intake, "stays@example.net", "Three", "d3@example.net");

    // No terminal to ask on and no --yes: nothing happens.
    let output = intake.run(&["client", "delete", "gone@example.net"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--yes"));
    assert_eq!(
        query(&intake, backend, "SELECT count(*) FROM incidents"),
        vec!["3"]
    );

    let deleted = intake.run_json(&["client", "delete", "gone@example.net", "--yes"]);
    assert_eq!(
        deleted,
        serde_json::json!([{"email": "gone@example.net", "deleted": {"incidents": 2, "messages": 2}}])
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT client_email FROM incident_overview"
        ),
        vec!["stays@example.net"]
    );
    assert_eq!(
        query(&intake, backend, "SELECT email FROM clients ORDER BY email"),
        vec!["stays@example.net"]
    );
    // What arrived stays on record: three ingest_log rows, and who deleted what.
    assert_eq!(
        query(&intake, backend, "SELECT count(*) FROM ingest_log"),
        vec!["3"]
    );
    assert_eq!(
        query(&intake, backend, "SELECT action, subject FROM admin_log"),
        vec!["client delete|gone@example.net"]
    );
}
on_both_backends!(
    delete_asks_then_removes_everything_but_the_audit_trail,
    delete_asks_then_removes_everything_but_the_audit_trail
);

async fn ban_spam_and_approval_act_on_new_mail(backend: Backend) {
    let intake = Intake::new(
        backend,
        "[clients]\nauto_approve = false\npending_mail = \"hold\"",
    )
    .await;
    let (outcome, held) = ingest(&intake, "pat@contoso.com", "Help", "b1@contoso.com");
    assert_eq!(outcome, "created");
    let held = held.expect("an incident");
    assert_eq!(
        query(
            &intake,
            backend,
            &format!("SELECT folder FROM incidents WHERE hash = '{held}'")
        ),
        vec!["held"]
    );
    ingest(&intake, "quinn@contoso.com", "Hello", "b2@contoso.com");

    // Ban: the next mail is dropped and kept; unban gives back the pending approval.
    intake.run_ok(&["client", "ban", "pat@contoso.com"], None);
    let (outcome, hash) = ingest(&intake, "pat@contoso.com", "Again", "b3@contoso.com");
    assert_eq!((outcome.as_str(), hash), ("dropped_banned", None));
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT l.outcome, CASE WHEN length(m.raw) > 0 THEN 'raw kept' END \
             FROM ingest_log l JOIN messages m ON m.id = l.message_id WHERE l.subject = 'Again'"
        ),
        vec!["dropped_banned|raw kept"]
    );
    intake.run_ok(&["client", "unban", "pat@contoso.com"], None);
    let client = intake.run_json(&["client", "show", "pat@contoso.com"]);
    assert_eq!(
        (
            client["client"]["approval"].clone(),
            client["client"]["standing"].clone()
        ),
        ("pending".into(), "normal".into())
    );

    // Approve a whole organisation: held incidents released, one approval mail each.
    let approved = intake.run_json(&["client", "approve", "--org", "contoso.com"]);
    assert_eq!(approved.as_array().map(Vec::len), Some(2));
    assert_eq!(
        query(
            &intake,
            backend,
            &format!("SELECT folder FROM incidents WHERE hash = '{held}'")
        ),
        vec!["inbox"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT recipient FROM outbound WHERE template = 'approval' ORDER BY recipient"
        ),
        vec!["pat@contoso.com", "quinn@contoso.com"]
    );
    // Approving again changes nothing and queues nothing.
    intake.run_ok(&["client", "approve", "pat@contoso.com"], None);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT count(*) FROM outbound WHERE template = 'approval'"
        ),
        vec!["2"]
    );

    // Spam: new mail opens in the spam folder; not-spam sends the next one to the inbox.
    intake.run_ok(&["client", "spam", "quinn@contoso.com"], None);
    let (outcome, spam) = ingest(&intake, "quinn@contoso.com", "Buy now", "b4@contoso.com");
    assert_eq!(outcome, "spam");
    assert_eq!(
        query(
            &intake,
            backend,
            &format!(
                "SELECT folder FROM incidents WHERE hash = '{}'",
                spam.expect("an incident")
            )
        ),
        vec!["spam"]
    );
    intake.run_ok(&["client", "not-spam", "quinn@contoso.com"], None);
    let (outcome, _) = ingest(&intake, "quinn@contoso.com", "Sorry", "b5@contoso.com");
    assert_eq!(outcome, "created");

    // An unknown address in a mass action refuses the whole action.
    let stderr = intake.run_refused(&["client", "ban", "pat@contoso.com", "nobody@contoso.com"]);
    assert!(stderr.contains("nobody@contoso.com"), "{stderr}");
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT standing FROM clients WHERE email = 'pat@contoso.com'"
        ),
        vec!["normal"]
    );
}
on_both_backends!(
    ban_spam_and_approval_act_on_new_mail,
    ban_spam_and_approval_act_on_new_mail
);

/// Staff who change a row in a database viewer get what the CLI gives.
async fn a_change_in_the_database_behaves_like_the_cli(backend: Backend) {
    let intake = Intake::new(
        backend,
        "[clients]\nauto_approve = false\npending_mail = \"hold\"",
    )
    .await;
    let (_, held) = ingest(&intake, "rae@example.org", "Help", "s1@example.org");
    let held = held.expect("an incident");
    query(
        &intake,
        backend,
        "UPDATE clients SET approval = 'approved' WHERE email = 'rae@example.org'",
    );
    assert_eq!(
        query(
            &intake,
            backend,
            &format!("SELECT folder FROM incidents WHERE hash = '{held}'")
        ),
        vec!["inbox"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT recipient FROM outbound WHERE template = 'approval'"
        ),
        vec!["rae@example.org"]
    );
    query(
        &intake,
        backend,
        "UPDATE clients SET standing = 'spam' WHERE email = 'rae@example.org'",
    );
    assert_eq!(
        ingest(&intake, "rae@example.org", "x", "s2@example.org").0,
        "spam"
    );
    query(
        &intake,
        backend,
        "UPDATE clients SET standing = 'banned' WHERE email = 'rae@example.org'",
    );
    assert_eq!(
        ingest(&intake, "rae@example.org", "y", "s3@example.org").0,
        "dropped_banned"
    );
}
on_both_backends!(
    a_change_in_the_database_behaves_like_the_cli,
    a_change_in_the_database_behaves_like_the_cli
);

async fn organisations_own_domains(backend: Backend) {
    let intake = Intake::new(backend, "[organisations]\nauto_create_from_domain = false").await;
    ingest(&intake, "ann@fabrikam.com", "One", "o1@fabrikam.com");
    ingest(&intake, "ben@eu.fabrikam.com", "Two", "o2@eu.fabrikam.com");
    ingest(&intake, "cat@fabrikam.org", "Three", "o3@fabrikam.org");
    let placed = |email: &str| {
        query(
            &intake,
            backend,
            &format!("SELECT organisation FROM client_overview WHERE email = '{email}'"),
        )
    };
    assert_eq!(placed("ann@fabrikam.com"), vec!["Default"]);

    intake.run_ok(
        &[
            "org",
            "add",
            "Fabrikam",
            "--domain",
            "fabrikam.com",
            "--move-clients",
        ],
        None,
    );
    assert_eq!(placed("ann@fabrikam.com"), vec!["Fabrikam"]);
    assert_eq!(placed("ben@eu.fabrikam.com"), vec!["Default"]);
    // Without --move-clients the domain places new senders only.
    intake.run_ok(&["org", "add-domain", "Fabrikam", "fabrikam.org"], None);
    assert_eq!(placed("cat@fabrikam.org"), vec!["Default"]);
    ingest(&intake, "dan@fabrikam.org", "Four", "o4@fabrikam.org");
    assert_eq!(placed("dan@fabrikam.org"), vec!["Fabrikam"]);

    // A domain belongs to one organisation.
    intake.run_ok(&["org", "add", "Northwind"], None);
    let stderr = intake.run_refused(&["org", "add-domain", "Northwind", "fabrikam.com"]);
    assert!(stderr.contains("Fabrikam"), "{stderr}");
    intake.run_ok(&["org", "remove-domain", "fabrikam.com"], None);
    intake.run_ok(
        &[
            "org",
            "add-domain",
            "Northwind",
            "fabrikam.com",
            "--move-clients",
        ],
        None,
    );
    assert_eq!(placed("ann@fabrikam.com"), vec!["Northwind"]);

    let orgs = intake.run_json(&["org", "list"]);
    let names: Vec<&str> = orgs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|org| org["name"].as_str())
        .collect();
    assert_eq!(names, vec!["Default", "Fabrikam", "Northwind"]);

    // Renaming and deleting: the default stays, and an organisation's people fall back to it.
    intake.run_ok(&["org", "rename", "Fabrikam", "Fabrikam Inc"], None);
    intake.run_refused(&["org", "delete", "Default"]);
    intake.run_refused(&["org", "rename", "Default", "Everyone"]);
    let dissolved = intake.run_json(&["org", "delete", "Fabrikam Inc"]);
    assert_eq!(dissolved["clients"], 1);
    assert_eq!(placed("dan@fabrikam.org"), vec!["Default"]);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT name, domains, client_count FROM organisation_overview ORDER BY name"
        ),
        vec!["Default||3", "Northwind|fabrikam.com|1"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT action, subject FROM admin_log ORDER BY id"
        ),
        vec![
            "org add|Fabrikam",
            "org add-domain|Fabrikam",
            "org add-domain|Fabrikam",
            "org add|Northwind",
            "org remove-domain|Fabrikam",
            "org add-domain|Northwind",
            "org rename|Fabrikam",
            "org delete|Fabrikam Inc",
        ]
    );
}
on_both_backends!(organisations_own_domains, organisations_own_domains);

async fn add_and_show_a_client(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    intake.run_ok(&["org", "add", "Contoso"], None);
    intake.run_ok(
        &[
            "client",
            "add",
            "eve@contoso.com",
            "--first-name",
            "Eve",
            "--last-name",
            "Moneypenny",
            "--org",
            "Contoso",
            "--pending",
        ],
        None,
    );
    intake.run_ok(
        &["client", "add", "fay@example.net", "--no-registration-mail"],
        None,
    );
    intake.run_refused(&["client", "add", "EVE@contoso.com"]);
    intake.run_refused(&["client", "add", "gus@example.net", "--org", "Nowhere"]);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT recipient, template FROM outbound ORDER BY id"
        ),
        vec!["eve@contoso.com|registration"]
    );
    let table = intake.run_ok(&["client", "list", "--approval", "pending"], None);
    assert!(table.contains("Eve Moneypenny"), "{table}");
    assert!(!table.contains("fay@example.net"), "{table}");
    let shown = intake.run_json(&["client", "show", "eve@contoso.com"]);
    assert_eq!(shown["client"]["organisation"], "Contoso");
    assert_eq!(shown["client"]["first_name"], "Eve");
    let missing = intake.run(&["client", "show", "nobody@contoso.com"], None);
    assert!(!missing.status.success());
}
on_both_backends!(add_and_show_a_client, add_and_show_a_client);

/// A subject or name with escape sequences (RFC 2047 can carry any byte) reaches the
/// operator's terminal as U+FFFD, never as a control sequence; tables stay aligned for wide
/// characters.
#[tokio::test]
async fn tables_show_text_from_mail_safely() {
    let intake = Intake::new(Backend::Sqlite, "").await;
    let raw = "From: =?utf-8?q?Mallory=1B]0;owned=07?= <m@evil.example>\r\nTo: support@example.com\r\n\
               Subject: =?utf-8?q?Invoice=1B[2J?=\r\nMessage-ID: <esc@evil.example>\r\n\r\nHi.\r\n";
    intake.run_ok(&["ingest"], Some(raw.as_bytes()));
    ingest(
        &intake,
        "山田 <yamada@contoso.jp>",
        "こんにちは",
        "jp@contoso.jp",
    );
    for args in [
        &["incident", "list"][..],
        &["client", "list"][..],
        &["client", "show", "m@evil.example"][..],
        &["log"][..],
    ] {
        let out = intake.run_ok(args, None);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "{args:?}: {out:?}"
        );
        assert!(out.contains('\u{FFFD}'), "{args:?}: {out}");
    }
    let listing = intake.run_ok(&["client", "list"], None);
    let columns: Vec<usize> = listing
        .lines()
        .map(|line| {
            use unicode_width::UnicodeWidthStr;
            let end = line.find("approved").or_else(|| line.find("APPROVAL"));
            end.map(|end| line[..end].width()).unwrap_or(0)
        })
        .filter(|column| *column > 0)
        .collect();
    assert!(
        columns.len() == 3 && columns.windows(2).all(|pair| pair[0] == pair[1]),
        "{listing}"
    );
}
