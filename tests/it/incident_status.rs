//! Incident status as staff set it in a viewer, and what mail does to it: a customer's reply
//! opens a waiting, resolved or closed incident again; automatic mail does not. On both
//! backends, with the real binary, the status set by SQL as a viewer would.

use crate::harness::{Backend, Intake, parse_ingest_line, query};

fn mail(from: &str, subject: &str, message_id: &str, headers: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\n{headers}Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\n\
         Hello again.\r\n"
    )
    .into_bytes()
}

async fn a_customer_reply_reopens_what_staff_set_aside(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    let ingest = |subject: &str, message_id: &str, headers: &str| {
        let raw = mail("alice@contoso.com", subject, message_id, headers);
        let line = parse_ingest_line(&intake.run_ok(&["ingest"], Some(&raw)));
        (line.outcome, line.hash.unwrap_or_default())
    };
    let sql = |sql: &str| query(&intake, backend, sql);
    let (outcome, hash) = ingest("Printer on fire", "first@contoso.com", "");
    assert_eq!(outcome, "created");
    let set_status = |status: &str| {
        sql(&format!(
            "UPDATE incidents SET status = '{status}', updated_at = '2026-11-01T00:00:00.000Z' \
             WHERE hash = '{hash}'"
        ));
    };
    let status_and_touched = || {
        sql(&format!(
            "SELECT status || ' ' || CASE WHEN updated_at > '2026-11-01T00:00:00.000Z' \
             THEN 'touched' ELSE 'untouched' END FROM incidents WHERE hash = '{hash}'"
        ))
        .join(",")
    };
    let reason = |message_id: &str| {
        sql(&format!(
            "SELECT coalesce(reason, '') FROM ingest_log WHERE message_id_header = '{message_id}'"
        ))
        .join(",")
    };

    // Answering by header and by subject tag, whatever staff had set.
    let replies = [
        (
            "waiting",
            "Re: Printer on fire".to_string(),
            "In-Reply-To: <first@contoso.com>\r\n",
        ),
        ("resolved", format!("Re: [#{hash}] Printer on fire"), ""),
        (
            "closed",
            "Re: Printer on fire".to_string(),
            "References: <first@contoso.com>\r\n",
        ),
    ];
    for (index, (status, subject, headers)) in replies.iter().enumerate() {
        set_status(status);
        let message_id = format!("reply-{index}@contoso.com");
        assert_eq!(
            ingest(subject, &message_id, headers),
            ("appended".to_string(), hash.clone()),
            "a reply to a {status} incident"
        );
        assert_eq!(status_and_touched(), "open touched", "was {status}");
        assert!(
            reason(&message_id).contains(&format!("reopened: the incident was {status}")),
            "{}",
            reason(&message_id)
        );
    }

    // `intake incident list --status` finds it where staff would look.
    let listed = |status: &str| {
        intake
            .run_ok(&["incident", "list", "--status", status], None)
            .lines()
            .skip(1)
            .map(|line| {
                line.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(listed("open"), vec![hash.clone()]);
    set_status("resolved");
    assert_eq!(listed("open"), Vec::<String>::new());
    assert_eq!(listed("resolved"), vec![hash.clone()]);
    let bad = intake.run(&["incident", "list", "--status", "done"], None);
    assert!(!bad.status.success(), "an unknown status is refused");
    set_status("open");

    // An open incident stays open, and says nothing of reopening.
    let (outcome, _) = ingest(
        "Re: more",
        "more@contoso.com",
        "In-Reply-To: <first@contoso.com>\r\n",
    );
    assert_eq!(outcome, "appended");
    assert!(!reason("more@contoso.com").contains("reopened"));

    // An out-of-office answer in the thread is kept on the incident but opens nothing.
    set_status("waiting");
    let (outcome, _) = ingest(
        "Out of office: Printer on fire",
        "away@contoso.com",
        "In-Reply-To: <first@contoso.com>\r\nAuto-Submitted: auto-replied\r\n",
    );
    assert_eq!(outcome, "auto_reply");
    assert_eq!(
        sql(&format!(
            "SELECT i.status FROM messages m JOIN incidents i ON i.id = m.incident_id \
             WHERE m.message_id_header = 'away@contoso.com' AND i.hash = '{hash}'"
        )),
        vec!["waiting"]
    );
}

on_both_backends!(
    a_customer_reply_reopens_what_staff_set_aside,
    a_customer_reply_reopens_what_staff_set_aside
);
