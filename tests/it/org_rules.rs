//! Organisations as helpdesk staff know them: sub-domains, disabled organisations, the default
//! that stays enabled, and routing an organisation's incidents to one department. Both
//! backends, the real binary, and a viewer's SQL where it could make the same change.

use crate::harness::{Backend, Intake, parse_ingest_line, query, query_fails};

fn ingest(intake: &Intake, mailbox: &str, from: &str, message_id: &str) -> String {
    let raw = format!(
        "From: {from}\r\nTo: {mailbox}@example.com\r\nSubject: Hello\r\n\
         Message-ID: <{message_id}>\r\n\r\nHello.\r\n"
    );
    let line = intake.run_ok(&["ingest", "--mailbox", mailbox], Some(raw.as_bytes()));
    parse_ingest_line(&line).hash.unwrap_or_default()
}

fn organisation_of(intake: &Intake, backend: Backend, email: &str) -> String {
    query(
        intake,
        backend,
        &format!("SELECT organisation || '/' || organisation_status FROM client_overview WHERE email = '{email}'"),
    )
    .join(",")
}

async fn sub_domains_and_disabled_organisations(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    intake.run_ok(&["org", "add", "Contoso", "--domain", "contoso.com"], None);
    ingest(&intake, "support", "a@eu.contoso.com", "o1@eu.contoso.com");
    assert_eq!(
        organisation_of(&intake, backend, "a@eu.contoso.com"),
        "Contoso/enabled"
    );
    // A sub-domain owned itself goes to its own organisation.
    intake.run_ok(
        &["org", "add", "Contoso EU", "--domain", "eu.contoso.com"],
        None,
    );
    ingest(&intake, "support", "b@eu.contoso.com", "o2@eu.contoso.com");
    ingest(&intake, "support", "c@us.contoso.com", "o3@us.contoso.com");
    assert_eq!(
        organisation_of(&intake, backend, "b@eu.contoso.com"),
        "Contoso EU/enabled"
    );
    assert_eq!(
        organisation_of(&intake, backend, "c@us.contoso.com"),
        "Contoso/enabled"
    );

    // Disabled: clients and incidents stay; its domains no longer place new senders.
    intake.run_ok(&["org", "disable", "Contoso"], None);
    ingest(&intake, "support", "d@contoso.com", "o4@contoso.com");
    ingest(&intake, "support", "e@us.contoso.com", "o5@us.contoso.com");
    intake.run_ok(
        &["client", "add", "f@contoso.com", "--no-registration-mail"],
        None,
    );
    for email in ["d@contoso.com", "e@us.contoso.com", "f@contoso.com"] {
        assert_eq!(
            organisation_of(&intake, backend, email),
            "Default/enabled",
            "{email}"
        );
    }
    assert_eq!(
        organisation_of(&intake, backend, "a@eu.contoso.com"),
        "Contoso/disabled"
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT name, status, client_count, incident_count FROM organisation_overview \
             WHERE name = 'Contoso'"
        ),
        vec!["Contoso|disabled|2|2"]
    );
    let listing = intake.run_ok(&["org", "list"], None);
    let (enabled, disabled) = listing
        .split_once("Disabled")
        .unwrap_or_else(|| panic!("disabled organisations listed apart:\n{listing}"));
    assert!(
        enabled.contains("Contoso EU") && !disabled.contains("Contoso EU"),
        "{listing}"
    );
    assert!(disabled.contains("Contoso"), "{listing}");

    // The default organisation cannot be disabled, from the CLI or a viewer.
    let output = intake.run(&["org", "disable", "Default"], None);
    assert_eq!(output.status.code(), Some(65));
    let stderr = query_fails(
        &intake,
        backend,
        "UPDATE organisations SET status = 'disabled' WHERE name = 'Default'",
    );
    assert!(stderr.contains("cannot be disabled"), "{stderr}");

    // Enabled again, it places new senders once more.
    intake.run_ok(&["org", "enable", "Contoso"], None);
    ingest(&intake, "support", "g@contoso.com", "o6@contoso.com");
    assert_eq!(
        organisation_of(&intake, backend, "g@contoso.com"),
        "Contoso/enabled"
    );
    intake.run_ok(
        &[
            "org",
            "edit",
            "Contoso",
            "--description",
            "Our largest customer",
            "--order",
            "1",
        ],
        None,
    );
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT description, display_order FROM organisation_overview WHERE name = 'Contoso'"
        ),
        vec!["Our largest customer|1"]
    );
}
on_both_backends!(
    sub_domains_and_disabled_organisations,
    sub_domains_and_disabled_organisations
);

async fn an_organisation_routes_its_incidents_to_a_department(backend: Backend) {
    let intake = Intake::new(
        backend,
        "[[mailbox]]\nname = \"sales\"\ndepartment = \"Sales\"\naddress = \"sales@example.com\"\n\
         host = \"127.0.0.1\"\nport = 1143\nsecurity = \"plain\"\nusername = \"sales\"\n\
         password = \"not-used\"\n",
    )
    .await;
    intake.run_ok(
        &["org", "add", "Fabrikam", "--domain", "fabrikam.com"],
        None,
    );
    intake.run_ok(&["org", "route", "Fabrikam", "--department", "sales"], None);
    let routed = ingest(&intake, "support", "x@fabrikam.com", "r1@fabrikam.com");
    let other = ingest(&intake, "support", "y@example.org", "r2@example.org");
    let filed = |hash: &str| {
        query(
            &intake,
            backend,
            &format!("SELECT mailbox, department FROM incidents WHERE hash = '{hash}'"),
        )
    };
    assert_eq!(filed(&routed), vec!["sales|Sales"]);
    assert_eq!(filed(&other), vec!["support|Support"]);
    assert_eq!(
        query(
            &intake,
            backend,
            "SELECT route_department FROM organisation_overview WHERE name = 'Fabrikam'"
        ),
        vec!["Sales"]
    );

    intake.run_ok(&["org", "route", "Fabrikam", "--clear"], None);
    let unrouted = ingest(&intake, "support", "x@fabrikam.com", "r3@fabrikam.com");
    assert_eq!(filed(&unrouted), vec!["support|Support"]);
}
on_both_backends!(
    an_organisation_routes_its_incidents_to_a_department,
    an_organisation_routes_its_incidents_to_a_department
);
