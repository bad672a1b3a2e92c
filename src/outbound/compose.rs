//! Builds the MIME message for one outbound row with lettre: our headers, the rendered bodies,
//! and the RFC 3834 marks that keep other robots from answering it.
//!
//! Pure. Every piece of user-controlled text that reaches a header (names, subjects, Message-IDs
//! taken from the customer's mail) goes through `header_safe` or `message_id_safe` first, so no
//! CR, LF or other control character can start a header of its own.

use std::sync::LazyLock;
use std::time::SystemTime;

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use regex::Regex;

use super::templates::Rendered;

/// Everything about one mail that is not its rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub template: String,
    pub recipient: String,
    pub recipient_name: Option<String>,
    /// Ours, without angle brackets; fixed before the first attempt.
    pub message_id: String,
    /// Where replies should go when it is not the From address: the incident's mailbox.
    pub reply_to: Option<String>,
    /// The customer's Message-ID this answers, without angle brackets.
    pub in_reply_to: Option<String>,
    /// The customer's References, oldest first, without angle brackets.
    pub references: Vec<String>,
    pub incident_hash: Option<String>,
}

/// Why a row cannot become a message; nothing a retry would change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid recipient address {0:?}")]
    Recipient(String),
    #[error("invalid Reply-To address {0:?}")]
    ReplyTo(String),
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// At most this many Message-IDs in References: the first and the latest ones (RFC 5322 §3.6.4
/// allows trimming; mail clients thread on the last).
const MAX_REFERENCES: usize = 20;

/// `text` as one header-safe line: control characters (CR, LF, NUL, ...) and the Unicode line
/// and paragraph separators become spaces, runs of white space one space.
pub fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A Message-ID fit to repeat in our headers: printable ASCII without spaces or brackets.
pub fn message_id_safe(id: &str) -> Option<&str> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    (!id.is_empty()
        && id.len() <= 250
        && id
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'<' | b'>')))
    .then_some(id)
}

/// The acknowledgement's subject carries this incident's `[#HASH]` exactly once, so the answer
/// threads back even when an operator's template forgot it; tags of other incidents (a customer
/// quoting one) and stacked reply prefixes ("Re: Re: AW:") are dropped, since they would only
/// confuse the answer.
pub fn subject_for(letter: &Letter, rendered_subject: &str) -> String {
    static OTHER_TAG: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\[#[^\]\s]{1,40}\]").unwrap_or_else(|_| unreachable!("a valid pattern"))
    });
    static REPLY_PREFIXES: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?:(?:re|fwd?|aw|wg|sv|vs|antw)\s*:\s*){2,}")
            .unwrap_or_else(|_| unreachable!("a valid pattern"))
    });
    let subject = header_safe(rendered_subject);
    let (Some(hash), "acknowledgement") = (&letter.incident_hash, letter.template.as_str()) else {
        return subject;
    };
    let tag = format!("[#{hash}]");
    let without_others = OTHER_TAG.replace_all(&subject, |found: &regex::Captures<'_>| {
        if found[0] == tag {
            found[0].to_string()
        } else {
            String::new()
        }
    });
    let subject = header_safe(&REPLY_PREFIXES.replace(&without_others, "Re: "));
    if subject.contains(&tag) {
        subject
    } else {
        format!("{subject} {tag}")
    }
}

pub fn compose(
    letter: &Letter,
    rendered: &Rendered,
    from: &Mailbox,
    date: SystemTime,
) -> Result<Message, ComposeError> {
    let address = letter
        .recipient
        .parse()
        .map_err(|_| ComposeError::Recipient(letter.recipient.clone()))?;
    let name = letter
        .recipient_name
        .as_deref()
        .map(header_safe)
        .filter(|name| !name.is_empty());
    let mut builder = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(name, address))
        .subject(subject_for(letter, &rendered.subject))
        .date(date)
        .message_id(Some(format!("<{}>", letter.message_id)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".to_string(),
        ))
        // Microsoft Exchange: no out-of-office or other automatic answer to this mail.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".to_string(),
        ));
    if let Some(reply_to) = &letter.reply_to
        && !reply_to.eq_ignore_ascii_case(from.email.as_ref())
    {
        let address = reply_to
            .parse()
            .map_err(|_| ComposeError::ReplyTo(reply_to.clone()))?;
        builder = builder.reply_to(Mailbox::new(None, address));
    }
    if let Some(parent) = letter.in_reply_to.as_deref().and_then(message_id_safe) {
        let mut chain: Vec<&str> = letter
            .references
            .iter()
            .filter_map(|id| message_id_safe(id))
            .filter(|id| *id != parent)
            .collect();
        chain.push(parent);
        if chain.len() > MAX_REFERENCES {
            let keep_from = chain.len() - (MAX_REFERENCES - 1);
            chain = std::iter::once(chain[0])
                .chain(chain[keep_from..].iter().copied())
                .collect();
        }
        builder = builder.in_reply_to(format!("<{parent}>")).references(
            chain
                .iter()
                .map(|id| format!("<{id}>"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let message = match &rendered.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(rendered.text.clone())),
    };
    message.map_err(|error| ComposeError::Build(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> Letter {
        Letter {
            template: "acknowledgement".to_string(),
            recipient: "ada@example.com".to_string(),
            recipient_name: Some("Ada\r\nBcc: victim@example.org".to_string()),
            message_id: "abc.1@help.example.com".to_string(),
            reply_to: Some("sales@example.com".to_string()),
            in_reply_to: Some("orig@customer.example".to_string()),
            references: vec!["first@customer.example".to_string()],
            incident_hash: Some("ABC-123-45678".to_string()),
        }
    }

    fn rendered(subject: &str) -> Rendered {
        Rendered {
            subject: subject.to_string(),
            text: "Body\n".to_string(),
            html: None,
        }
    }

    fn from() -> Mailbox {
        "Example Support <support@example.com>"
            .parse()
            .expect("valid from")
    }

    fn headers_of(message: &Message) -> String {
        let raw = String::from_utf8(message.formatted()).expect("ascii message");
        raw.split("\r\n\r\n").next().unwrap_or_default().to_string()
    }

    #[test]
    fn header_safe_removes_line_breaks_and_controls() {
        assert_eq!(header_safe("a\r\nBcc: x@y\u{0}\u{2028}z\t"), "a Bcc: x@y z");
        assert_eq!(header_safe("  plain  "), "plain");
        assert_eq!(message_id_safe("<a@b>"), Some("a@b"));
        assert_eq!(message_id_safe("a b@c"), None);
        assert_eq!(message_id_safe("a\r\nBcc: x@y"), None);
    }

    #[test]
    fn acknowledgement_headers() {
        let message = compose(
            &letter(),
            &rendered("Re: help"),
            &from(),
            SystemTime::UNIX_EPOCH,
        )
        .expect("composes");
        let headers = headers_of(&message);
        for expected in [
            "Auto-Submitted: auto-replied",
            "X-Auto-Response-Suppress: All",
            "Message-ID: <abc.1@help.example.com>",
            "In-Reply-To: <orig@customer.example>",
            "References: <first@customer.example> <orig@customer.example>",
            "Reply-To: sales@example.com",
            "Subject: Re: help [#ABC-123-45678]",
            "Date: Thu, 01 Jan 1970 00:00:00 +0000",
        ] {
            assert!(headers.contains(expected), "{expected} in\n{headers}");
        }
        let injected = headers
            .lines()
            .filter(|line| line.to_ascii_lowercase().starts_with("bcc"))
            .count();
        assert_eq!(injected, 0, "{headers}");
    }

    #[test]
    fn injected_subject_stays_one_header() {
        let message = compose(
            &Letter {
                reply_to: None,
                in_reply_to: Some("x\r\nBcc: victim@example.org".to_string()),
                ..letter()
            },
            &rendered("Hi\r\nBcc: victim@example.org\nX-Evil: 1"),
            &from(),
            SystemTime::UNIX_EPOCH,
        )
        .expect("composes");
        let headers = headers_of(&message);
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        assert!(!headers.contains("\r\nX-Evil:"), "{headers}");
        assert!(!headers.contains("In-Reply-To"), "{headers}");
        assert!(!headers.contains("Reply-To"), "{headers}");
    }

    #[test]
    fn the_hash_tag_is_added_once() {
        let with_tag = subject_for(&letter(), "Re: x [#ABC-123-45678]");
        assert_eq!(with_tag, "Re: x [#ABC-123-45678]");
        let registration = Letter {
            template: "registration".to_string(),
            ..letter()
        };
        assert_eq!(subject_for(&registration, "Welcome"), "Welcome");
        assert_eq!(
            subject_for(
                &letter(),
                "Re: Re: AW: [#XYZ-999-00000] Printer [#ABC-123-45678]"
            ),
            "Re: Printer [#ABC-123-45678]"
        );
        assert_eq!(
            subject_for(&letter(), "Re: [#XYZ-999-00000] Printer"),
            "Re: Printer [#ABC-123-45678]"
        );
    }

    #[test]
    fn long_reference_chains_are_trimmed() {
        let many = Letter {
            references: (0..40).map(|n| format!("m{n}@x")).collect(),
            ..letter()
        };
        let message =
            compose(&many, &rendered("s"), &from(), SystemTime::UNIX_EPOCH).expect("composes");
        // Folded or not, the header is everything after its name in the header block.
        let headers = headers_of(&message);
        let references = headers.split("References: ").nth(1).unwrap_or_default();
        assert!(references.contains("<m0@x>"), "{references}");
        assert!(references.contains("<orig@customer.example>"));
        assert!(!references.contains("<m5@x>"), "{references}");
    }

    #[test]
    fn a_bad_recipient_is_an_error() {
        let bad = Letter {
            recipient: "not an address".to_string(),
            ..letter()
        };
        assert!(matches!(
            compose(&bad, &rendered("s"), &from(), SystemTime::UNIX_EPOCH),
            Err(ComposeError::Recipient(_))
        ));
    }
}
