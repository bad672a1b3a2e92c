//! Raw RFC 5322 bytes → `Inbound`: the identifiers, sender, bodies, attachments and the header
//! signals the decision core needs.
//!
//! Never fails and never decides: a message that cannot be read still becomes an `Inbound`
//! carrying a `ParseProblem`, so its raw bytes are stored and staff can see why.
//! mail-parser is lenient and has panicked on odd input in past releases: it runs under
//! `catch_unwind`, and a panic becomes `ParseProblem::ParserFailed`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};

/// One address with the display name it was written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Lower-cased, for matching.
    pub address: String,
    /// As the sender wrote it, decoded.
    pub name: Option<String>,
}

impl Mailbox {
    pub fn domain(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map(|(_, domain)| domain)
            .unwrap_or("")
    }

    /// `Name <address>`, or the bare address, for the `from`/`to` columns.
    pub fn display(&self) -> String {
        match &self.name {
            Some(name) if !name.is_empty() => format!("{name} <{}>", self.address),
            _ => self.address.clone(),
        }
    }
}

/// Which header gave the sender. From is what a person sees; the others are fallbacks for
/// broken mailers, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderSource {
    From,
    Sender,
    ReplyTo,
    ReturnPath,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub sha256: String,
    pub content: Vec<u8>,
}

/// Where a message came from, for the incident and the audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Human-readable source: `stdin`, a file path, `imap:support/INBOX uid 42`.
    pub source: String,
    /// The configured mailbox name, when known.
    pub mailbox: Option<String>,
    /// The IMAP UID within its folder, when it came from IMAP.
    pub uid: Option<u32>,
    /// The department the mailbox serves.
    pub department: Option<String>,
    /// False when only the headers were fetched (an oversized message left on the server).
    pub raw_is_complete: bool,
    /// The whole message's size as the server declared it, when only part was fetched.
    pub declared_size_bytes: Option<u64>,
    /// Set when nobody is to be mailed for this message, and why.
    pub quiet: Option<Quiet>,
}

/// Why a message is taken in without mailing anyone (no registration, no acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// It was in its IMAP folder before intake first watched that folder, and the mailbox
    /// says `existing_mail = "quiet"` (`mailbox_folders.quiet_through_uid`).
    ExistingMail,
    /// `intake ingest --no-mail`: old mail imported from files or a Maildir.
    Imported,
}

impl Quiet {
    /// For the `ingest_log` reason.
    pub fn describe(self) -> &'static str {
        match self {
            Quiet::ExistingMail => {
                "in the folder before intake first watched it (existing_mail = \"quiet\"): no mail sent"
            }
            Quiet::Imported => "imported with --no-mail: no mail sent",
        }
    }
}

/// Why a message could not be read as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseProblem {
    /// Larger than `[limits] max_message_bytes`: only the headers were read.
    TooLarge { size_bytes: u64, limit_bytes: u64 },
    /// No header at all: not an RFC 5322 message.
    NotAMessage,
    /// The parser itself failed (panicked).
    ParserFailed(String),
}

/// Header facts that mark automatic mail (RFC 3834, RFC 3464 and common practice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoSignals {
    /// `Auto-Submitted` value, lower-cased.
    pub auto_submitted: Option<String>,
    /// `Precedence` value, lower-cased.
    pub precedence: Option<String>,
    /// `X-Autoreply`, `X-Autorespond` or `X-Autoresponder` present.
    pub x_autoreply: bool,
    /// Top-level `multipart/report`, with its `report-type` lower-cased.
    pub report_type: Option<String>,
    /// `Return-Path: <>`.
    pub null_return_path: bool,
    /// `List-Id`, `List-Unsubscribe` or `List-Post` present: a mailing list message.
    pub mailing_list: bool,
}

/// An incoming message as the rest of intake sees it.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    pub size_bytes: u64,
    /// SHA-256 of the raw bytes, hex.
    pub raw_sha256: String,
    /// Without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// For delivery reports: the Message-ID of the message that bounced.
    pub reported_message_id: Option<String>,
    pub sender: Option<Mailbox>,
    pub sender_source: Option<SenderSource>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    /// The `Date` header, when it parses.
    pub sent_at: Option<DateTime<Utc>>,
    pub attachments: Vec<Attachment>,
    pub signals: AutoSignals,
    /// `X-Spam-Flag: YES` or `X-Spam-Status: Yes` from an upstream filter.
    pub upstream_spam: bool,
    pub problem: Option<ParseProblem>,
}

impl Inbound {
    /// Reads `raw`. Messages over `max_message_bytes` are read for their headers only.
    pub fn parse(raw: &[u8], max_message_bytes: u64) -> Inbound {
        Inbound::parse_sized(raw, raw.len() as u64, max_message_bytes)
    }

    /// Reads `raw`, which may be only the headers of a message of `size_bytes`.
    pub fn parse_sized(raw: &[u8], size_bytes: u64, max_message_bytes: u64) -> Inbound {
        let raw_sha256 = sha256_hex(raw);
        let too_large = size_bytes > max_message_bytes;
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            let parser = MessageParser::default();
            let message = if too_large {
                parser.parse_headers(raw)
            } else {
                parser.parse(raw)
            };
            message.map(|message| read_message(&message, !too_large))
        }));
        let mut inbound = match parsed {
            Ok(Some(inbound)) => inbound,
            Ok(None) => Inbound {
                problem: Some(ParseProblem::NotAMessage),
                ..Inbound::default()
            },
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                Inbound {
                    problem: Some(ParseProblem::ParserFailed(why)),
                    ..Inbound::default()
                }
            }
        };
        inbound.size_bytes = size_bytes;
        inbound.raw_sha256 = raw_sha256;
        if too_large && inbound.problem.is_none() {
            inbound.problem = Some(ParseProblem::TooLarge {
                size_bytes,
                limit_bytes: max_message_bytes,
            });
        }
        inbound
    }

    /// What makes two copies of a message the same: the Message-ID, or the content when the
    /// sender gave none.
    pub fn dedup_key(&self) -> String {
        match &self.message_id {
            Some(id) => dedup_key_for_message_id(id),
            None => format!("sha256:{}", self.raw_sha256),
        }
    }

    /// Message-IDs this message answers, most recent first: In-Reply-To, then References from
    /// the end, then the message a delivery report is about.
    pub fn thread_candidates(&self) -> Vec<String> {
        let mut candidates: Vec<String> = Vec::new();
        let ordered = self
            .in_reply_to
            .iter()
            .chain(self.references.iter().rev())
            .chain(self.reported_message_id.iter());
        for id in ordered {
            if !candidates.contains(id) {
                candidates.push(id.clone());
            }
        }
        candidates
    }
}

/// `messages.dedup_key` of a message with this Message-ID (no angle brackets), ours or not: a
/// copy of our own mail that comes back in is then a `duplicate`.
pub fn dedup_key_for_message_id(message_id: &str) -> String {
    format!("message-id:{message_id}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut text = String::with_capacity(64);
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

fn read_message(message: &Message<'_>, with_body: bool) -> Inbound {
    // mail-parser reads any "name: value" line as a header; garbage has no standard one.
    let has_standard_header = message
        .headers()
        .iter()
        .any(|header| !matches!(header.name, HeaderName::Other(_)));
    if !has_standard_header {
        return Inbound {
            problem: Some(ParseProblem::NotAMessage),
            ..Inbound::default()
        };
    }
    let (sender, sender_source) = sender_of(message);
    let header_text = |name: &str| -> Option<String> {
        message
            .header_raw(name)
            .map(|value| value.trim().to_lowercase())
    };
    let report_type = message
        .content_type()
        .filter(|content_type| {
            content_type.ctype().eq_ignore_ascii_case("multipart")
                && content_type
                    .subtype()
                    .is_some_and(|subtype| subtype.eq_ignore_ascii_case("report"))
        })
        .map(|content_type| {
            content_type
                .attribute("report-type")
                .unwrap_or("")
                .to_lowercase()
        });
    let signals = AutoSignals {
        auto_submitted: header_text("Auto-Submitted"),
        precedence: header_text("Precedence"),
        x_autoreply: ["X-Autoreply", "X-Autorespond", "X-Autoresponder"]
            .iter()
            .any(|name| message.header_raw(*name).is_some()),
        report_type,
        null_return_path: message
            .header_raw("Return-Path")
            .is_some_and(|value| value.trim() == "<>"),
        mailing_list: ["List-Id", "List-Unsubscribe", "List-Post"]
            .iter()
            .any(|name| message.header_raw(*name).is_some()),
    };
    let upstream_spam = header_text("X-Spam-Flag").is_some_and(|value| value == "yes")
        || header_text("X-Spam-Status").is_some_and(|value| value.starts_with("yes"));

    let mut inbound = Inbound {
        message_id: message
            .message_id()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty()),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        sender,
        sender_source,
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        subject: message.subject().unwrap_or("").trim().to_string(),
        sent_at: message
            .date()
            .and_then(|date| DateTime::from_timestamp(date.to_timestamp(), 0)),
        signals,
        upstream_spam,
        ..Inbound::default()
    };
    if with_body {
        inbound.text_body = message.body_text(0).map(|text| text.into_owned());
        // mail-parser renders a text part as HTML when there is no HTML part; keep only a real one.
        if message.html_part(0).is_some_and(|part| part.is_text_html()) {
            inbound.html_body = message.body_html(0).map(|html| html.into_owned());
        }
        inbound.attachments = attachments_of(message);
        if inbound.signals.report_type.is_some() {
            inbound.reported_message_id = reported_message_id(message);
        }
    }
    strip_nul(&mut inbound);
    inbound
}

/// PostgreSQL text cannot hold NUL, and no person means one: drop it from every decoded string.
/// The raw bytes keep it.
fn strip_nul(inbound: &mut Inbound) {
    let clean = |text: &mut String| {
        if text.contains('\0') {
            text.retain(|c| c != '\0');
        }
    };
    clean(&mut inbound.subject);
    for text in [
        &mut inbound.text_body,
        &mut inbound.html_body,
        &mut inbound.message_id,
    ]
    .into_iter()
    .flatten()
    {
        clean(text);
    }
    for id in inbound
        .in_reply_to
        .iter_mut()
        .chain(inbound.references.iter_mut())
    {
        clean(id);
    }
    let mailboxes = inbound
        .sender
        .iter_mut()
        .chain(inbound.to.iter_mut())
        .chain(inbound.cc.iter_mut());
    for mailbox in mailboxes {
        clean(&mut mailbox.address);
        if let Some(name) = &mut mailbox.name {
            clean(name);
        }
    }
    for attachment in &mut inbound.attachments {
        clean(&mut attachment.filename);
        clean(&mut attachment.content_type);
    }
}

/// From, else Sender, else Reply-To, else Return-Path: broken mailers omit From, and a message
/// without any of them is rejected by the core.
fn sender_of(message: &Message<'_>) -> (Option<Mailbox>, Option<SenderSource>) {
    let candidates = [
        (mailboxes(message.from()), SenderSource::From),
        (mailboxes(message.sender()), SenderSource::Sender),
        (mailboxes(message.reply_to()), SenderSource::ReplyTo),
    ];
    for (found, source) in candidates {
        if let Some(first) = found.into_iter().next() {
            return (Some(first), Some(source));
        }
    }
    if let Some(address) = message.return_address().and_then(normalise_address) {
        return (
            Some(Mailbox {
                address,
                name: None,
            }),
            Some(SenderSource::ReturnPath),
        );
    }
    (None, None)
}

fn normalise_address(address: &str) -> Option<String> {
    let address = address.trim().trim_matches(['<', '>']).trim();
    let (local, domain) = address.split_once('@')?;
    if local.is_empty() || domain.is_empty() || address.contains(char::is_whitespace) {
        return None;
    }
    Some(address.to_lowercase())
}

fn mailboxes(address: Option<&Address<'_>>) -> Vec<Mailbox> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|addr| {
            let normalised = normalise_address(addr.address()?)?;
            Some(Mailbox {
                address: normalised,
                name: addr
                    .name()
                    .map(|name| name.trim().to_string())
                    .filter(|name| !name.is_empty()),
            })
        })
        .collect()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<String> = match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    };
    ids.into_iter()
        .map(|id| id.trim().trim_matches(['<', '>']).to_string())
        .filter(|id| !id.is_empty())
        .collect()
}

fn attachments_of(message: &Message<'_>) -> Vec<Attachment> {
    message
        .attachments()
        .map(|part| {
            let content = part.contents().to_vec();
            let content_type = part
                .content_type()
                .map(|content_type| match content_type.subtype() {
                    Some(subtype) => format!("{}/{}", content_type.ctype(), subtype),
                    None => content_type.ctype().to_string(),
                })
                .unwrap_or_else(|| match part.body {
                    PartType::Message(_) => "message/rfc822".to_string(),
                    PartType::Text(_) => "text/plain".to_string(),
                    _ => "application/octet-stream".to_string(),
                })
                .to_lowercase();
            let filename = part
                .attachment_name()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| {
                    match part.body {
                        PartType::Message(_) => "attached-message.eml",
                        _ => "unnamed",
                    }
                    .to_string()
                });
            Attachment {
                filename,
                content_type,
                sha256: sha256_hex(&content),
                content,
            }
        })
        .collect()
}

/// The Message-ID inside a delivery report's returned message or headers (RFC 3464).
fn reported_message_id(message: &Message<'_>) -> Option<String> {
    for part in message.parts.iter() {
        if let PartType::Message(nested) = &part.body
            && let Some(id) = nested.message_id()
        {
            return Some(id.trim().to_string());
        }
        let is_headers = part.content_type().is_some_and(|content_type| {
            content_type.ctype().eq_ignore_ascii_case("text")
                && content_type
                    .subtype()
                    .is_some_and(|subtype| subtype.eq_ignore_ascii_case("rfc822-headers"))
        });
        if is_headers {
            // The part holds headers only; end them so the parser sees a complete header block.
            let mut block = part.contents().to_vec();
            block.extend_from_slice(b"\r\n\r\n");
            if let Some(headers) = MessageParser::default().parse_headers(&block)
                && let Some(id) = headers.message_id()
            {
                return Some(id.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message() {
        let raw = b"From: \"Alice Example\" <Alice@Contoso.COM>\r\nTo: support@example.com\r\n\
Subject: =?UTF-8?B?UHLDvGZ1bmc=?=\r\nMessage-ID: <abc@contoso.com>\r\n\
In-Reply-To: <one@example.com>\r\nReferences: <zero@example.com> <one@example.com>\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello\r\n";
        let inbound = Inbound::parse(raw, 1 << 20);
        assert_eq!(inbound.problem, None);
        let sender = inbound.sender.clone().expect("sender");
        assert_eq!(sender.address, "alice@contoso.com");
        assert_eq!(sender.name.as_deref(), Some("Alice Example"));
        assert_eq!(sender.domain(), "contoso.com");
        assert_eq!(inbound.subject, "Prüfung");
        assert_eq!(inbound.message_id.as_deref(), Some("abc@contoso.com"));
        assert_eq!(
            inbound.thread_candidates(),
            vec!["one@example.com", "zero@example.com"]
        );
        assert_eq!(inbound.text_body.as_deref().map(str::trim), Some("Hello"));
        assert_eq!(inbound.html_body, None);
        assert_eq!(inbound.dedup_key(), "message-id:abc@contoso.com");
    }

    #[test]
    fn sender_fallbacks() {
        let cases: &[(&[u8], Option<&str>, Option<SenderSource>)] = &[
            (
                b"From: a@x.org\r\nSender: b@x.org\r\n\r\nhi",
                Some("a@x.org"),
                Some(SenderSource::From),
            ),
            (
                b"From: undisclosed\r\nSender: b@x.org\r\n\r\nhi",
                Some("b@x.org"),
                Some(SenderSource::Sender),
            ),
            (
                b"Subject: s\r\nReply-To: c@x.org\r\n\r\nhi",
                Some("c@x.org"),
                Some(SenderSource::ReplyTo),
            ),
            (
                b"Return-Path: <d@x.org>\r\nSubject: s\r\n\r\nhi",
                Some("d@x.org"),
                Some(SenderSource::ReturnPath),
            ),
            (b"Subject: nobody\r\n\r\nhi", None, None),
        ];
        for (raw, address, source) in cases {
            let inbound = Inbound::parse(raw, 1 << 20);
            assert_eq!(
                inbound.sender.as_ref().map(|s| s.address.as_str()),
                *address
            );
            assert_eq!(inbound.sender_source, *source);
        }
    }

    #[test]
    fn oversized_message_keeps_headers_only() {
        let mut raw =
            b"From: big@x.org\r\nSubject: huge\r\nMessage-ID: <big@x.org>\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 5000));
        let inbound = Inbound::parse(&raw, 1024);
        assert_eq!(
            inbound.problem,
            Some(ParseProblem::TooLarge {
                size_bytes: raw.len() as u64,
                limit_bytes: 1024
            })
        );
        assert_eq!(inbound.subject, "huge");
        assert_eq!(inbound.text_body, None);
    }

    #[test]
    fn no_message_id_dedups_by_content() {
        let inbound = Inbound::parse(b"From: a@x.org\r\n\r\nhi", 1 << 20);
        assert!(inbound.dedup_key().starts_with("sha256:"));
        assert_eq!(inbound.dedup_key().len(), "sha256:".len() + 64);
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    #[test]
    fn delivery_report_names_the_bounced_message() {
        let raw = include_bytes!("../tests/fixtures/corpus/15-dsn-bounce.eml");
        let inbound = Inbound::parse(raw, 1 << 20);
        assert_eq!(
            inbound.signals.report_type.as_deref(),
            Some("delivery-status")
        );
        assert_eq!(
            inbound.reported_message_id.as_deref(),
            Some("03-multi@contoso.com")
        );
    }

    #[test]
    fn garbage_is_not_a_message() {
        let raw = include_bytes!("../tests/fixtures/corpus/23-garbage.eml");
        assert_eq!(
            Inbound::parse(raw, 1 << 20).problem,
            Some(ParseProblem::NotAMessage)
        );
    }
}
