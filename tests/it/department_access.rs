//! `[clients] department_access = "restricted"`: mail to a department the client may not use
//! is held with the reason, never dropped; a grant (CLI or a viewer's row) releases it.

use crate::harness::{Backend, Intake, parse_ingest_line, query};

const CONFIG: &str = "[clients]\ndepartment_access = \"restricted\"\nauto_approve = false\n\
    pending_mail = \"hold\"\n\
    [[mailbox]]\nname = \"sales\"\ndepartment = \"Sales\"\naddress = \"sales@example.com\"\n\
    host = \"127.0.0.1\"\nport = 1143\nsecurity = \"plain\"\nusername = \"sales\"\n\
    password = \"not-used\"\n";

fn ingest(intake: &Intake, mailbox: &str, from: &str, message_id: &str) -> String {
    let raw = format!(
        "From: {from}\r\nTo: {mailbox}@example.com\r\nSubject: Question\r\n\
         Message-ID: <{message_id}>\r\n\r\nHello.\r\n"
    );
    let line = intake.run_ok(&["ingest", "--mailbox", mailbox], Some(raw.as_bytes()));
    let line = parse_ingest_line(&line);
    assert_eq!(line.outcome, "created");
    line.hash.expect("an incident")
}

fn filed(intake: &Intake, backend: Backend, hash: &str) -> String {
    query(
        intake,
        backend,
        &format!("SELECT folder, held_reason FROM incidents WHERE hash = '{hash}'"),
    )
    .join(",")
}

async fn restricted_access_holds_and_grants_release(backend: Backend) {
    let intake = Intake::new(backend, CONFIG).await;
    intake.run_ok(&["org", "add", "Contoso", "--domain", "contoso.com"], None);
    intake.run_ok(&["org", "grant", "Contoso", "support"], None);

    // Granted to the organisation: only the approval holds it. Not granted: held for access.
    let to_support = ingest(&intake, "support", "ann@contoso.com", "d1@contoso.com");
    let to_sales = ingest(&intake, "sales", "ann@contoso.com", "d2@contoso.com");
    assert_eq!(
        filed(&intake, backend, &to_support),
        "held|pending_approval"
    );
    assert_eq!(filed(&intake, backend, &to_sales), "held|department_access");
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT reason FROM ingest_log WHERE message_id IN \
             (SELECT id FROM messages WHERE message_id_header LIKE '%d2@contoso.com%')"
        ),
        vec!["no access to the department Sales (department_access = \"restricted\")"]
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT hash FROM held_folder WHERE held_reason = 'department_access'"
        ),
        vec![to_sales.clone()]
    );

    // A grant to the client releases it to wait for approval; approval releases both.
    let granted = intake.run_ok(
        &["--json", "client", "grant", "ann@contoso.com", "SALES"],
        None,
    );
    let granted: serde_json::Value = serde_json::from_str(&granted).expect("JSON");
    assert_eq!(
        (granted["granted"].clone(), granted["released"].clone()),
        ("Sales".into(), 1.into())
    );
    assert_eq!(filed(&intake, backend, &to_sales), "held|pending_approval");
    intake.run_ok(&["client", "approve", "ann@contoso.com"], None);
    assert_eq!(filed(&intake, backend, &to_support), "inbox|");
    assert_eq!(filed(&intake, backend, &to_sales), "inbox|");
    let again = ingest(&intake, "sales", "ann@contoso.com", "d3@contoso.com");
    assert_eq!(filed(&intake, backend, &again), "inbox|");

    // A grant added in a viewer works the same.
    intake.run_ok(
        &["client", "add", "bob@example.org", "--no-registration-mail"],
        None,
    );
    let bobs = ingest(&intake, "sales", "bob@example.org", "d4@example.org");
    assert_eq!(filed(&intake, backend, &bobs), "held|department_access");
    query(
        &intake,
        backend,
        "INSERT INTO department_grants (department, organisation_id) \
         SELECT 'Sales', id FROM organisations WHERE name = 'Default'",
    );
    assert_eq!(filed(&intake, backend, &bobs), "inbox|");

    // Revoked: new mail is held again; what was released stays released.
    intake.run_ok(&["client", "revoke", "ann@contoso.com", "Sales"], None);
    let held_again = ingest(&intake, "sales", "ann@contoso.com", "d5@contoso.com");
    assert_eq!(
        filed(&intake, backend, &held_again),
        "held|department_access"
    );
    assert_eq!(filed(&intake, backend, &again), "inbox|");
    let output = intake.run(&["client", "revoke", "ann@contoso.com", "Sales"], None);
    assert_eq!(output.status.code(), Some(65));

    let mut grants = query(
        &intake,
        backend,
        "SELECT department, granted_to, coalesce(client_email, ''), organisation FROM department_access",
    );
    grants.sort();
    assert_eq!(
        grants,
        vec![
            "Sales|organisation||Default",
            "Support|organisation||Contoso"
        ]
    );
}
on_both_backends!(
    restricted_access_holds_and_grants_release,
    restricted_access_holds_and_grants_release
);
