//! Is this mail written by a machine? RFC 3834 auto-replies, RFC 3464 delivery reports, bulk
//! and list mail, and null or MAILER-DAEMON senders.
//!
//! Pure: reads the header signals `message` extracted. Automatic mail is never answered and never
//! registers its sender; that is how intake avoids loops with other auto-responders.

use crate::message::{AutoSignals, Mailbox};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoKind {
    AutoReply,
    Bounce,
}

/// The kind of automatic mail and the header that showed it, or `None` for a person's mail.
pub fn classify(signals: &AutoSignals, sender: Option<&Mailbox>) -> Option<(AutoKind, String)> {
    let sender_local = sender
        .and_then(|mailbox| mailbox.address.split_once('@'))
        .map(|(local, _)| local.to_string());
    if signals.report_type.as_deref() == Some("delivery-status") {
        return Some((
            AutoKind::Bounce,
            "delivery status notification (multipart/report)".to_string(),
        ));
    }
    if sender_local.as_deref() == Some("mailer-daemon") {
        return Some((AutoKind::Bounce, "sender is MAILER-DAEMON".to_string()));
    }
    if let Some(report_type) = &signals.report_type {
        return Some((
            AutoKind::AutoReply,
            format!("automatic report (multipart/report; report-type={report_type})"),
        ));
    }
    if let Some(value) = &signals.auto_submitted
        && value != "no"
    {
        return Some((AutoKind::AutoReply, format!("Auto-Submitted: {value}")));
    }
    if signals.x_autoreply {
        return Some((AutoKind::AutoReply, "X-Autoreply header".to_string()));
    }
    if let Some(value) = &signals.precedence
        && matches!(value.as_str(), "bulk" | "junk" | "list" | "auto_reply")
    {
        return Some((AutoKind::AutoReply, format!("Precedence: {value}")));
    }
    if signals.null_return_path {
        return Some((
            AutoKind::AutoReply,
            "null sender (Return-Path: <>)".to_string(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(address: &str) -> Mailbox {
        Mailbox {
            address: address.to_string(),
            name: None,
        }
    }

    #[test]
    fn table() {
        let person = AutoSignals::default();
        let signals = |edit: fn(&mut AutoSignals)| {
            let mut signals = AutoSignals::default();
            edit(&mut signals);
            signals
        };
        let cases: Vec<(AutoSignals, &str, Option<AutoKind>)> = vec![
            (person.clone(), "alice@contoso.com", None),
            (
                signals(|s| s.auto_submitted = Some("no".into())),
                "alice@contoso.com",
                None,
            ),
            (
                signals(|s| s.auto_submitted = Some("auto-replied".into())),
                "alice@contoso.com",
                Some(AutoKind::AutoReply),
            ),
            (
                signals(|s| s.auto_submitted = Some("auto-generated".into())),
                "alice@contoso.com",
                Some(AutoKind::AutoReply),
            ),
            (
                signals(|s| s.x_autoreply = true),
                "alice@contoso.com",
                Some(AutoKind::AutoReply),
            ),
            (
                signals(|s| s.precedence = Some("bulk".into())),
                "news@contoso.com",
                Some(AutoKind::AutoReply),
            ),
            (
                signals(|s| s.precedence = Some("list".into())),
                "news@contoso.com",
                Some(AutoKind::AutoReply),
            ),
            (
                signals(|s| s.precedence = Some("first-class".into())),
                "alice@contoso.com",
                None,
            ),
            (
                signals(|s| s.report_type = Some("delivery-status".into())),
                "postmaster@contoso.com",
                Some(AutoKind::Bounce),
            ),
            (
                signals(|s| s.report_type = Some("disposition-notification".into())),
                "alice@contoso.com",
                Some(AutoKind::AutoReply),
            ),
            (
                person.clone(),
                "mailer-daemon@contoso.com",
                Some(AutoKind::Bounce),
            ),
            (
                signals(|s| s.null_return_path = true),
                "alice@contoso.com",
                Some(AutoKind::AutoReply),
            ),
            (signals(|s| s.mailing_list = true), "list@contoso.com", None),
        ];
        for (signals, address, expected) in cases {
            let got = classify(&signals, Some(&sender(address))).map(|(kind, _)| kind);
            assert_eq!(got, expected, "{signals:?} from {address}");
        }
    }
}
