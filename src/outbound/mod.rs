//! The outbound worker: claims due rows of the `outbound` queue, applies the loop rules, renders
//! the operator's templates, sends over a pooled lettre SMTP transport, and records the outcome.
//!
//! Each row: claim (`sending`, attempt counted) → suppressed if a rule forbids it → render →
//! compose → send within `smtp.timeout` → `sent` (with its copy stored as an outbound message)
//! or `retry` after a capped exponential backoff with jitter (4xx, connection error, timeout)
//! or `dead` (5xx, an unusable recipient, `max_attempts` reached). A worker that dies mid-send
//! leaves a claim that expires; the row is then due again and goes out with the same
//! Message-ID, so a mail that did leave before the crash is recognisable as a duplicate.

pub mod compose;
pub mod templates;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lettre::message::Mailbox;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{OutboundSettings, Security, Settings};
use crate::store::outbound::{self as queue, Claimed, Due, NotSent, RowFacts, SentCopy};
use crate::store::{Store, StoreError, Timestamp};
use compose::{Letter, compose, header_safe, message_id_safe};
use templates::{Context, TemplateError, Templates};

/// Rows claimed at once. Small: a claim is held while each of them is sent in turn.
const BATCH: i64 = 10;
/// Local parts of addresses that are machines: never written to.
const MACHINE_LOCAL_PARTS: [&str; 5] = [
    "mailer-daemon",
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
];

/// Why outbound mail cannot be set up: `intake run` and `check-config` exit 78.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("template {0}")]
    Template(#[from] TemplateError),
    #[error("{file}: {key}: {detail}")]
    Smtp {
        file: String,
        key: &'static str,
        detail: String,
    },
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub sent: usize,
    pub retry: usize,
    pub dead: usize,
    pub suppressed: usize,
}

impl Report {
    fn add(&mut self, outcome: &Attempt) {
        match outcome {
            Attempt::Sent(_) => self.sent += 1,
            Attempt::NotSent(NotSent::Retry { .. }) => self.retry += 1,
            Attempt::NotSent(NotSent::Dead { .. }) => self.dead += 1,
            Attempt::NotSent(NotSent::Suppressed { .. }) => self.suppressed += 1,
        }
    }

    pub fn attempted(&self) -> usize {
        self.sent + self.retry + self.dead + self.suppressed
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} sent, {} to retry, {} dead, {} suppressed",
            self.sent, self.retry, self.dead, self.suppressed
        )
    }
}

/// The outcome of one attempt, before it is written.
enum Attempt {
    Sent(Box<SentCopy>),
    NotSent(NotSent),
}

/// Everything the worker needs, built from the settings; rebuilt on reload.
pub struct Outbound {
    settings: OutboundSettings,
    timeout: Duration,
    from: Mailbox,
    from_domain: String,
    templates: Templates,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    own_addresses: BTreeSet<String>,
    mailbox_addresses: BTreeMap<String, String>,
}

impl Outbound {
    /// `None` when there is no `[smtp]`: mail then stays queued.
    pub fn from_settings(settings: &Settings) -> Result<Option<Outbound>, SetupError> {
        let Some(smtp) = &settings.smtp else {
            return Ok(None);
        };
        let file = settings.source.display().to_string();
        let smtp_error = |key: &'static str, detail: String| SetupError::Smtp {
            file: file.clone(),
            key,
            detail,
        };
        let templates = Templates::load(&settings.outbound.templates_dir)?;
        let from: Mailbox = smtp.from.parse().map_err(|error| {
            smtp_error("smtp.from", format!("not a usable From address: {error}"))
        })?;
        let from_domain = from.email.domain().to_string();

        let tls = || -> Result<TlsParameters, SetupError> {
            let mut builder = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.ca_file {
                let pem = std::fs::read(path).map_err(|error| {
                    smtp_error(
                        "smtp.ca_file",
                        format!("cannot read {}: {error}", path.display()),
                    )
                })?;
                let certificate = Certificate::from_pem(&pem).map_err(|error| {
                    smtp_error(
                        "smtp.ca_file",
                        format!("{} holds no usable certificate: {error}", path.display()),
                    )
                })?;
                builder = builder.add_root_certificate(certificate);
            }
            builder
                .build_rustls()
                .map_err(|error| smtp_error("smtp.ca_file", format!("TLS set-up failed: {error}")))
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
                .port(smtp.port)
                .timeout(Some(smtp.timeout))
                .pool_config(PoolConfig::new().max_size(4));
        builder = match smtp.security {
            Security::Tls => builder.tls(Tls::Wrapper(tls()?)),
            Security::Starttls => builder.tls(Tls::Required(tls()?)),
            Security::Plain => builder.tls(Tls::None),
        };
        if let (Some(username), Some(password)) = (&smtp.username, &smtp.password) {
            let secret = password.read().map_err(|error| {
                smtp_error(
                    "smtp.password",
                    format!("cannot read the password: {error}"),
                )
            })?;
            builder = builder.credentials(Credentials::new(
                username.clone(),
                secret.expose().to_string(),
            ));
        }
        Ok(Some(Outbound {
            settings: settings.outbound.clone(),
            timeout: smtp.timeout,
            from,
            from_domain,
            templates,
            transport: builder.build(),
            own_addresses: settings.own_addresses(),
            mailbox_addresses: settings
                .mailboxes
                .iter()
                .map(|mailbox| (mailbox.name.clone(), mailbox.address.clone()))
                .collect(),
        }))
    }

    /// Sends what is due, batch after batch, until nothing is left or `stop` is cancelled (the
    /// mail in hand is finished; the rest of the batch is given back).
    pub async fn flush(
        &self,
        store: &Store,
        due: Due,
        stop: &CancellationToken,
    ) -> Result<Report, StoreError> {
        let mut report = Report::default();
        loop {
            // Long enough for the whole batch to be sent one by one, each within the timeout:
            // a claim that expired under a live worker would let another send the same mail.
            let hold = self.timeout * (BATCH as u32) + Duration::from_secs(60);
            let claim_until = Timestamp(
                chrono::Utc::now()
                    + chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::hours(1)),
            );
            let rows = queue::claim(store, due, claim_until, BATCH).await?;
            if rows.is_empty() {
                return Ok(report);
            }
            for (index, row) in rows.iter().enumerate() {
                if stop.is_cancelled() {
                    release(store, &rows[index..]).await;
                    return Ok(report);
                }
                let outcome = match self.attempt(store, row).await {
                    Ok(outcome) => outcome,
                    // A query that fails for a reason other than the database being away:
                    // counted as a failed attempt on the row, so staff see it and it ends dead.
                    Err(StoreError::Failed(why)) => {
                        Attempt::NotSent(self.failed(row, format!("database error: {why}")))
                    }
                    Err(error) => {
                        // The database is away: give back what was not tried; the row in hand
                        // is due again when its claim expires.
                        release(store, &rows[index + 1..]).await;
                        return Err(error);
                    }
                };
                match self.record(store, row, &outcome).await {
                    Ok(()) => report.add(&outcome),
                    Err(StoreError::Failed(why)) => {
                        tracing::warn!(outbound = row.id, error = %why, "outcome not recorded");
                    }
                    Err(error) => {
                        release(store, &rows[index + 1..]).await;
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Writes the outcome on the row and logs it: one line per mail.
    async fn record(
        &self,
        store: &Store,
        row: &Claimed,
        outcome: &Attempt,
    ) -> Result<(), StoreError> {
        match outcome {
            Attempt::Sent(copy) => {
                queue::mark_sent(store, row, copy).await?;
                crate::monitor::sent(&row.template);
                tracing::info!(
                    outbound = row.id,
                    template = %row.template,
                    recipient = %row.recipient,
                    message_id = %copy.message_id_header,
                    "mail sent"
                );
            }
            Attempt::NotSent(not_sent) => {
                queue::mark_not_sent(store, row, not_sent).await?;
                if !matches!(not_sent, NotSent::Suppressed { .. }) {
                    crate::monitor::send_failure(&row.template);
                }
                let (state, why) = match not_sent {
                    NotSent::Retry { at, why } => (format!("retry at {}", at.to_iso()), why),
                    NotSent::Dead { why } => ("dead".to_string(), why),
                    NotSent::Suppressed { why } => ("suppressed".to_string(), why),
                };
                tracing::warn!(
                    outbound = row.id,
                    template = %row.template,
                    recipient = %row.recipient,
                    attempt = row.attempts,
                    state,
                    reason = %why,
                    "mail not sent"
                );
            }
        }
        Ok(())
    }

    async fn attempt(&self, store: &Store, row: &Claimed) -> Result<Attempt, StoreError> {
        let facts = queue::facts(store, row).await?;
        if let Some(why) = self.forbidden(row, &facts) {
            return Ok(Attempt::NotSent(NotSent::Suppressed { why }));
        }
        let hour_ago = Timestamp(chrono::Utc::now() - chrono::Duration::hours(1));
        let recent = queue::recent_to(store, row, hour_ago).await?;
        let limit = i64::from(self.settings.max_auto_per_recipient_per_hour);
        if recent >= limit {
            return Ok(Attempt::NotSent(NotSent::Suppressed {
                why: format!(
                    "rate limit: {recent} automatic mails to {} in the last hour \
                     (max_auto_per_recipient_per_hour = {limit})",
                    row.recipient
                ),
            }));
        }

        let message_id = match &row.message_id_header {
            Some(id) => id.clone(),
            None => {
                let candidate = format!(
                    "intake.{}.{:016x}@{}",
                    row.id,
                    rand::random::<u64>(),
                    self.from_domain
                );
                queue::fix_message_id(store, row, &candidate).await?
            }
        };
        let support_address = facts
            .incident
            .as_ref()
            .and_then(|incident| incident.mailbox.as_ref())
            .or(facts.last_mailbox.as_ref())
            .and_then(|mailbox| self.mailbox_addresses.get(mailbox))
            .cloned()
            .unwrap_or_else(|| self.from.email.to_string());
        let client = facts.client.as_ref();
        let context = Context {
            client_name: client
                .and_then(|client| client.display_name.clone())
                .unwrap_or_default(),
            client_email: client
                .map(|client| client.email.clone())
                .unwrap_or_else(|| row.recipient.clone()),
            client_approval: client
                .map(|client| client.approval.clone())
                .unwrap_or_default(),
            organisation: client
                .map(|client| client.organisation.clone())
                .unwrap_or_default(),
            incident_hash: facts
                .incident
                .as_ref()
                .map(|incident| incident.hash.clone()),
            incident_subject: facts
                .incident
                .as_ref()
                .map(|incident| incident.subject.clone()),
            support_address: support_address.clone(),
            portal_url: self.settings.portal_url.clone(),
        };
        let rendered = match self.templates.render(&row.template, &context) {
            Ok(rendered) => rendered,
            Err(error) => return Ok(Attempt::NotSent(self.failed(row, error.to_string()))),
        };
        let parent = facts.parent.as_ref();
        let letter = Letter {
            template: row.template.clone(),
            recipient: row.recipient.clone(),
            recipient_name: client.and_then(|client| client.display_name.clone()),
            message_id: message_id.clone(),
            reply_to: Some(support_address),
            in_reply_to: parent.and_then(|parent| parent.message_id_header.clone()),
            references: parent
                .and_then(|parent| parent.references_header.as_deref())
                .map(|references| {
                    references
                        .split_whitespace()
                        .filter_map(message_id_safe)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            incident_hash: context.incident_hash.clone(),
        };
        let message = match compose(&letter, &rendered, &self.from, SystemTime::now()) {
            Ok(message) => message,
            Err(error) => {
                return Ok(Attempt::NotSent(NotSent::Dead {
                    why: error.to_string(),
                }));
            }
        };
        let raw = message.formatted();
        let sent = tokio::time::timeout(
            self.timeout,
            self.transport.send_raw(message.envelope(), &raw),
        )
        .await;
        let why = match sent {
            Ok(Ok(_)) => {
                let headers = message.headers();
                return Ok(Attempt::Sent(Box::new(SentCopy {
                    message_id_header: message_id,
                    in_reply_to: headers.get_raw("In-Reply-To").map(str::to_string),
                    references: headers.get_raw("References").map(str::to_string),
                    from_address: self.from.email.to_string(),
                    from_name: self.from.name.clone(),
                    to: header_safe(&row.recipient),
                    subject: compose::subject_for(&letter, &rendered.subject),
                    text_body: rendered.text,
                    html_body: rendered.html,
                    raw,
                })));
            }
            Ok(Err(error)) if error.is_permanent() => {
                return Ok(Attempt::NotSent(NotSent::Dead {
                    why: format!("the server refused it: {error}"),
                }));
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        Ok(Attempt::NotSent(self.failed(row, why)))
    }

    /// A failure a later attempt may overcome: retry, unless the attempts are used up.
    fn failed(&self, row: &Claimed, why: String) -> NotSent {
        if i64::from(row.attempts) >= i64::from(self.settings.max_attempts) {
            return NotSent::Dead {
                why: format!("{why} (gave up after {} attempts)", row.attempts),
            };
        }
        let delay = backoff(
            self.settings.retry_delay,
            self.settings.max_retry_delay,
            i64::from(row.attempts),
        );
        let at = Timestamp(
            chrono::Utc::now()
                + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)),
        );
        NotSent::Retry { at, why }
    }

    /// The loop rules that hold at send time, whatever queued the row.
    fn forbidden(&self, row: &Claimed, facts: &RowFacts) -> Option<String> {
        let enabled = match row.template.as_str() {
            "registration" => self.settings.registration,
            "approval" => self.settings.approval,
            "acknowledgement" => self.settings.acknowledgement,
            other => return Some(format!("unknown template {other:?}")),
        };
        if !enabled {
            return Some(format!(
                "{} mail is turned off ([outbound] {} = false)",
                row.template, row.template
            ));
        }
        let recipient = row.recipient.trim().to_lowercase();
        if recipient.is_empty() || recipient == "<>" {
            return Some("null recipient".to_string());
        }
        if self.own_addresses.contains(&recipient) {
            return Some("the recipient is one of our own addresses".to_string());
        }
        let local = recipient.split('@').next().unwrap_or_default();
        if MACHINE_LOCAL_PARTS.contains(&local) {
            return Some(format!("the recipient {recipient} is a machine"));
        }
        match facts.client.as_ref().map(|client| client.standing.as_str()) {
            Some("banned") => Some("the client is banned".to_string()),
            Some("spam") => Some("the client is marked spam".to_string()),
            _ => None,
        }
    }
}

/// Gives back claimed rows not attempted, as far as the database lets us; what it refuses is
/// due again when its claim expires.
async fn release(store: &Store, rows: &[Claimed]) {
    for row in rows {
        if let Err(error) = queue::release(store, row).await {
            tracing::debug!(outbound = row.id, %error, "claim left to expire");
            return;
        }
    }
}

/// `first` doubled for each attempt after the first, capped at `cap`, then scaled by a random
/// factor in [0.5, 1] so that many failed mails do not all come back at the same instant.
pub fn backoff(first: Duration, cap: Duration, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = first
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(cap);
    base.mul_f64(rand::random_range(0.5..=1.0))
}

/// The worker inside `intake run`: flushes after each commit (a new incident) and every
/// `poll_interval` (rows queued by the database itself, retries coming due).
pub async fn run_worker(
    outbound: Arc<Outbound>,
    store: Store,
    mut committed: watch::Receiver<()>,
    stop: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    loop {
        match outbound.flush(&store, Due::Now, &stop).await {
            Ok(report) => {
                if last_error.take().is_some() {
                    tracing::info!("outbound queue reachable again");
                }
                if report.attempted() > 0 {
                    tracing::debug!(%report, "outbound flush");
                }
            }
            Err(error) => {
                let why = error.to_string();
                if last_error.as_deref() != Some(why.as_str()) {
                    tracing::error!(error = %why, "outbound queue unavailable; will try again");
                }
                last_error = Some(why);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            Ok(()) = committed.changed() => {}
            _ = tokio::time::sleep(outbound.settings.poll_interval) => {}
        }
    }
    outbound.transport.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let first = Duration::from_secs(60);
        let cap = Duration::from_secs(3600);
        for _ in 0..50 {
            let one = backoff(first, cap, 1);
            assert!(one >= Duration::from_secs(30) && one <= first, "{one:?}");
            let three = backoff(first, cap, 3);
            assert!(
                three >= Duration::from_secs(120) && three <= Duration::from_secs(240),
                "{three:?}"
            );
            let many = backoff(first, cap, 40);
            assert!(
                many >= cap / 2 && many <= cap,
                "{many:?} is capped with jitter"
            );
        }
    }
}
