//! Writes a `Decision` in the caller's transaction: the client registration, the incident, the
//! message with its raw bytes and attachments, the `ingest_log` row and the `outbound` rows.
//!
//! Invariant: every call leaves exactly one `ingest_log` row, and keeps the raw bytes of every
//! message it has not already stored byte for byte. A unique-key race with another writer
//! becomes `StoreError::Conflict`, and the pipeline runs the whole transaction again.
//!
//! The `ingest_log` and `outbound` rows go into `Deferred`, which the caller writes before it
//! commits: nothing in the transaction reads them back, so a batch of messages writes them in
//! a few multi-row statements instead of one or two per message.

use std::collections::BTreeMap;

use crate::ingest::hash::HashFormat;
use crate::ingest::{
    ClientId, ClientPlan, Decision, Facts, Folder, HoldReason, IncidentId, NewClient,
    OrganisationId, OrganisationPlan, Outcome,
};
use crate::message::{Inbound, Mailbox, Origin};
use crate::{insert_id, on_tx};

use super::blobs::{Blob, Column};
use super::{StoreError, Timestamp, Tx};

/// Hash collisions are rare (over 10^9 combinations); this many in a row means a bug.
const MAX_HASH_ATTEMPTS: usize = 16;

/// What one message became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub incident_id: Option<IncidentId>,
    pub incident_hash: Option<String>,
    pub message_id: Option<i64>,
}

/// The message being applied, as read, with the bytes it came from.
pub struct Received<'a> {
    pub inbound: &'a Inbound,
    pub raw: &'a [u8],
    pub origin: &'a Origin,
}

/// Rows left for the end of the transaction; `write` them before committing.
#[derive(Default)]
pub struct Deferred {
    logs: Vec<LogRow>,
    mail: Vec<MailRow>,
}

/// One `ingest_log` row.
struct LogRow {
    logged_at: Timestamp,
    source: String,
    mailbox: Option<String>,
    message_id_header: Option<String>,
    sender: Option<String>,
    subject: String,
    outcome: Outcome,
    reason: Option<String>,
    incident_id: Option<IncidentId>,
    message_id: Option<i64>,
}

/// One `outbound` row, queued and due now.
struct MailRow {
    template: &'static str,
    recipient: String,
    client_id: Option<ClientId>,
    incident_id: Option<IncidentId>,
    reply_to_message_id: Option<i64>,
    queued_at: Timestamp,
}

/// Rows per multi-row statement: 100 log rows bind 1,000 values, far below either backend's
/// limit (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 100;

impl Deferred {
    /// The message's one `ingest_log` row: what it became, where it came from.
    fn log(&mut self, origin: &Origin, inbound: &Inbound, applied: &Applied, now: Timestamp) {
        self.logs.push(LogRow {
            logged_at: now,
            source: origin.source.clone(),
            mailbox: origin.mailbox.clone(),
            message_id_header: inbound.message_id.clone(),
            sender: inbound
                .sender
                .as_ref()
                .map(|mailbox| mailbox.address.clone()),
            subject: inbound.subject.clone(),
            outcome: applied.outcome,
            reason: applied.reason.clone(),
            incident_id: applied.incident_id,
            message_id: applied.message_id,
        });
    }

    /// Queues a mail to the message's sender (none without a sender); `about`: the incident
    /// and the message it answers.
    fn mail_sender(
        &mut self,
        inbound: &Inbound,
        template: &'static str,
        client_id: ClientId,
        about: Option<(IncidentId, i64)>,
        now: Timestamp,
    ) {
        let Some(sender) = &inbound.sender else {
            return;
        };
        self.mail.push(MailRow {
            template,
            recipient: sender.address.clone(),
            client_id: Some(client_id),
            incident_id: about.map(|(incident, _)| incident),
            reply_to_message_id: about.map(|(_, message)| message),
            queued_at: now,
        });
    }

    /// Writes the rows left so far, in the order they were left, and forgets them.
    pub async fn write(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let style = Placeholders::of(tx);
        for rows in self.logs.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO ingest_log (logged_at, source, mailbox, message_id_header, sender, \
                 subject, outcome, reason, incident_id, message_id) VALUES {}",
                style.rows(rows.len(), 10, "")
            );
            on_tx!(tx, conn => {
                // Not kept prepared: the text changes with the number of rows.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                for row in rows {
                    query = query
                        .bind(row.logged_at)
                        .bind(&row.source)
                        .bind(&row.mailbox)
                        .bind(&row.message_id_header)
                        .bind(&row.sender)
                        .bind(&row.subject)
                        .bind(row.outcome.as_str())
                        .bind(&row.reason)
                        .bind(row.incident_id)
                        .bind(row.message_id);
                }
                query.execute(&mut *conn).await?;
            });
        }
        for rows in self.mail.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO outbound (template, recipient, client_id, incident_id, \
                 reply_to_message_id, next_attempt_at, created_at, updated_at, state, attempts) \
                 VALUES {}",
                style.rows(rows.len(), 8, "'queued', 0")
            );
            on_tx!(tx, conn => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                for row in rows {
                    query = query
                        .bind(row.template)
                        .bind(&row.recipient)
                        .bind(row.client_id)
                        .bind(row.incident_id)
                        .bind(row.reply_to_message_id)
                        .bind(row.queued_at)
                        .bind(row.queued_at)
                        .bind(row.queued_at);
                }
                query.execute(&mut *conn).await?;
            });
        }
        self.logs.clear();
        self.mail.clear();
        Ok(())
    }
}

/// How a multi-row statement marks its values. PostgreSQL numbers them (`$1`); SQLite gets
/// plain `?`, bound in order: sqlx looks up the name of every numbered SQLite parameter, a
/// scan of all of them each time, which made a 1,000-value insert cost more than its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    Numbered,
    InOrder,
}

impl Placeholders {
    fn of(tx: &Tx) -> Placeholders {
        match tx {
            Tx::Sqlite(_) => Placeholders::InOrder,
            Tx::Postgres(_) => Placeholders::Numbered,
        }
    }

    /// `($1, $2), ($3, $4)` (or `(?, ?), (?, ?)`) for `rows` rows of `columns` values, each
    /// row ending in the SQL constants `constants` when not empty.
    fn rows(self, rows: usize, columns: usize, constants: &str) -> String {
        (0..rows)
            .map(|row| {
                let mut values: Vec<String> = (1..=columns)
                    .map(|column| match self {
                        Placeholders::Numbered => format!("${}", row * columns + column),
                        Placeholders::InOrder => "?".to_string(),
                    })
                    .collect();
                if !constants.is_empty() {
                    values.push(constants.to_string());
                }
                format!("({})", values.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Applies `decision`; its `ingest_log` and `outbound` rows are left in `deferred`.
pub async fn apply(
    tx: &mut Tx,
    received: &Received<'_>,
    decision: &Decision,
    facts: &Facts,
    hash_format: &HashFormat,
    routes: &BTreeMap<String, String>,
    deferred: &mut Deferred,
) -> Result<Applied, StoreError> {
    let now = Timestamp::now();
    let inbound = received.inbound;
    let mut incident_id = None;
    // Known without a query: from the insert, or from the facts that chose the incident.
    let mut incident_hash = None;
    let message_id;
    match decision {
        Decision::Create {
            folder,
            held_for,
            department,
            routed,
            client,
            acknowledge,
            ..
        } => {
            let (client_id, organisation_id) = resolve_client(tx, client, inbound, facts, now)
                .await?
                .ok_or_else(|| StoreError::Failed("a new incident needs a client".to_string()))?;
            let (new_incident, hash) = create_incident(
                tx,
                hash_format,
                (client_id, organisation_id),
                (*folder, *held_for),
                Filing {
                    department: department.as_deref(),
                    routed: *routed,
                    routes,
                },
                received,
                now,
            )
            .await?;
            incident_id = Some(new_incident);
            incident_hash = Some(hash);
            let stored = insert_message(tx, received, incident_id, true, now).await?;
            message_id = Some(stored);
            insert_attachments(tx, stored, inbound).await?;
            if registration_due(client) {
                deferred.mail_sender(inbound, "registration", client_id, None, now);
            }
            if *acknowledge {
                let about = Some((new_incident, stored));
                deferred.mail_sender(inbound, "acknowledgement", client_id, about, now);
            }
        }
        Decision::Append {
            incident,
            client,
            reopen,
            ..
        } => {
            let resolved = resolve_client(tx, client, inbound, facts, now).await?;
            if let (true, Some((client_id, _))) = (registration_due(client), resolved) {
                deferred.mail_sender(inbound, "registration", client_id, None, now);
            }
            incident_id = Some(*incident);
            incident_hash = hash_in_facts(facts, *incident);
            let stored = insert_message(tx, received, incident_id, true, now).await?;
            message_id = Some(stored);
            insert_attachments(tx, stored, inbound).await?;
            touch_incident(tx, *incident, *reopen, now).await?;
        }
        Decision::Automatic { append_to, .. } => {
            incident_id = *append_to;
            incident_hash = append_to.and_then(|incident| hash_in_facts(facts, incident));
            let stored = insert_message(tx, received, incident_id, true, now).await?;
            message_id = Some(stored);
            if let Some(incident) = append_to {
                insert_attachments(tx, stored, inbound).await?;
                touch_incident(tx, *incident, false, now).await?;
            }
        }
        Decision::DropBanned { .. } | Decision::Reject { .. } => {
            message_id = Some(insert_message(tx, received, None, true, now).await?);
        }
        Decision::Duplicate => {
            let dedup_key = inbound.dedup_key();
            let original: Option<(i64, String, Option<i64>, Option<String>)> = on_tx!(tx, conn => {
                sqlx::query_as(
                    "SELECT m.id, m.raw_sha256, m.incident_id, i.hash FROM messages m \
                     LEFT JOIN incidents i ON i.id = m.incident_id WHERE m.dedup_key = $1",
                )
                .bind(&dedup_key)
                .fetch_optional(&mut *conn)
                .await?
            });
            match original {
                Some((original_id, sha256, original_incident, hash))
                    if sha256 == inbound.raw_sha256 =>
                {
                    message_id = Some(original_id);
                    incident_id = original_incident;
                    incident_hash = hash;
                }
                // Same Message-ID, different bytes: keep this copy too, so nothing is lost.
                Some((_, _, original_incident, hash)) => {
                    message_id = Some(insert_message(tx, received, None, false, now).await?);
                    incident_id = original_incident;
                    incident_hash = hash;
                }
                None => {
                    message_id = Some(insert_message(tx, received, None, false, now).await?);
                }
            }
        }
    }

    let applied = Applied {
        outcome: decision.outcome(),
        reason: decision.reason(),
        incident_id,
        incident_hash,
        message_id,
    };
    deferred.log(received.origin, inbound, &applied, now);
    Ok(applied)
}

/// The hash of an incident the facts named (by header or by tag).
fn hash_in_facts(facts: &Facts, incident: IncidentId) -> Option<String> {
    [&facts.thread_by_header, &facts.thread_by_tag]
        .into_iter()
        .flatten()
        .find(|candidate| candidate.id == incident)
        .map(|candidate| candidate.hash.clone())
}

/// Whether the plan registers the sender and sends them the registration mail.
fn registration_due(plan: &ClientPlan) -> bool {
    matches!(plan, ClientPlan::Register(new_client) if new_client.send_registration)
}

/// The client and organisation the message is recorded against, registering a new client
/// when the plan says so. The caller queues the registration mail.
async fn resolve_client(
    tx: &mut Tx,
    plan: &ClientPlan,
    inbound: &Inbound,
    facts: &Facts,
    now: Timestamp,
) -> Result<Option<(ClientId, OrganisationId)>, StoreError> {
    match plan {
        ClientPlan::Known(id) => {
            let organisation = facts
                .client
                .as_ref()
                .filter(|client| client.id == *id)
                .map(|client| client.organisation)
                .ok_or_else(|| StoreError::Failed(format!("client {id} is not the sender")))?;
            Ok(Some((*id, organisation)))
        }
        ClientPlan::Unregistered => Ok(None),
        ClientPlan::Register(new_client) => {
            let sender = inbound.sender.as_ref().ok_or_else(|| {
                StoreError::Failed("cannot register a message without a sender".to_string())
            })?;
            let organisation = organisation_for(tx, new_client, facts, now).await?;
            let client_id = insert_client(tx, sender, organisation, new_client, now).await?;
            Ok(Some((client_id, organisation)))
        }
    }
}

/// Inserts a new client with a reference never issued before, in one statement per draw: the
/// insert itself skips a reference already issued, and only a failed insert asks why.
async fn insert_client(
    tx: &mut Tx,
    sender: &Mailbox,
    organisation: OrganisationId,
    new_client: &NewClient,
    now: Timestamp,
) -> Result<ClientId, StoreError> {
    for reference in super::references::draws() {
        let inserted = insert_id!(
            tx,
            "INSERT INTO clients (email, display_name, organisation_id, approval, standing, \
             created_at, updated_at, reference) \
             SELECT $1, $2, $3, $4, 'normal', $5, $5, $6 \
             WHERE NOT EXISTS (SELECT 1 FROM client_references WHERE reference = $6) \
             ON CONFLICT DO NOTHING",
            |query| query
                .bind(&sender.address)
                .bind(&sender.name)
                .bind(organisation)
                .bind(new_client.approval.as_str())
                .bind(now)
                .bind(&reference)
        );
        if let Some(client_id) = inserted {
            return Ok(client_id);
        }
        if !super::references::issued(tx, &reference).await? {
            return Err(StoreError::Conflict(format!(
                "{} was registered concurrently",
                sender.address
            )));
        }
    }
    Err(super::references::exhausted())
}

async fn organisation_for(
    tx: &mut Tx,
    new_client: &NewClient,
    facts: &Facts,
    now: Timestamp,
) -> Result<OrganisationId, StoreError> {
    match &new_client.organisation {
        OrganisationPlan::Existing(id) => Ok(*id),
        OrganisationPlan::Default => Ok(facts.default_organisation),
        OrganisationPlan::CreateForDomain(domain) => on_tx!(tx, conn => {
            // Named after the domain; an existing organisation of that name takes the domain.
            sqlx::query(
                "INSERT INTO organisations (name, created_at, updated_at) VALUES ($1, $2, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(domain)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            let named: i64 =
                sqlx::query_scalar("SELECT id FROM organisations WHERE lower(name) = lower($1)")
                    .bind(domain)
                    .fetch_one(&mut *conn)
                    .await?;
            sqlx::query(
                "INSERT INTO organisation_domains (domain, organisation_id, created_at) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(domain)
            .bind(named)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            // Whoever owns the domain now, it may have been claimed concurrently.
            let owner: i64 = sqlx::query_scalar(
                "SELECT organisation_id FROM organisation_domains WHERE domain = $1",
            )
            .bind(domain)
            .fetch_one(&mut *conn)
            .await?;
            Ok(owner)
        }),
    }
}

/// Where a new incident is filed: its department, and whether the organisation's routing
/// chose it (then the mailbox serving that department takes the incident).
struct Filing<'a> {
    department: Option<&'a str>,
    routed: bool,
    routes: &'a BTreeMap<String, String>,
}

/// `owner`: the client and the organisation the incident is opened for.
async fn create_incident(
    tx: &mut Tx,
    hash_format: &HashFormat,
    (client_id, organisation_id): (ClientId, OrganisationId),
    (folder, held_for): (Folder, Option<HoldReason>),
    filing: Filing<'_>,
    received: &Received<'_>,
    now: Timestamp,
) -> Result<(IncidentId, String), StoreError> {
    let held_reason = held_for.map(HoldReason::as_str);
    let mailbox = match (filing.routed, filing.department) {
        (true, Some(department)) => {
            let mailbox = filing.routes.get(&department.to_lowercase()).cloned();
            if mailbox.is_none() {
                tracing::warn!(%department, "organisation routes to a department no [[mailbox]] serves; the incident keeps its mailbox");
            }
            mailbox.or_else(|| received.origin.mailbox.clone())
        }
        _ => received.origin.mailbox.clone(),
    };
    let department = filing.department;
    let subject = if received.inbound.subject.is_empty() {
        "(no subject)"
    } else {
        received.inbound.subject.as_str()
    };
    for _ in 0..MAX_HASH_ATTEMPTS {
        let hash = hash_format.generate(&mut rand::rng());
        let inserted = insert_id!(
            tx,
            "INSERT INTO incidents (hash, client_id, organisation_id, mailbox, department, \
             folder, held_reason, status, subject, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $9) \
             ON CONFLICT DO NOTHING",
            |query| query
                .bind(&hash)
                .bind(client_id)
                .bind(organisation_id)
                .bind(&mailbox)
                .bind(department)
                .bind(folder.as_str())
                .bind(held_reason)
                .bind(subject)
                .bind(now)
        );
        if let Some(id) = inserted {
            return Ok((id, hash));
        }
    }
    Err(StoreError::Failed(format!(
        "no free incident hash after {MAX_HASH_ATTEMPTS} attempts: widen [incidents] hash_format"
    )))
}

/// Inserts the message with its raw bytes. `original` claims the dedup key; a second copy of a
/// message already stored does not.
async fn insert_message(
    tx: &mut Tx,
    received: &Received<'_>,
    incident_id: Option<IncidentId>,
    original: bool,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let inbound = received.inbound;
    let dedup_key = original.then(|| inbound.dedup_key());
    let join = |mailboxes: &[Mailbox]| {
        (!mailboxes.is_empty()).then(|| {
            mailboxes
                .iter()
                .map(|mailbox| mailbox.display())
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    let angle = |ids: &[String]| {
        (!ids.is_empty()).then(|| {
            ids.iter()
                .map(|id| format!("<{id}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    let sent_at = inbound.sent_at.map(Timestamp);
    let raw_is_complete = received.origin.raw_is_complete;
    let raw = Blob::for_value(tx, received.raw);
    raw.before_insert(tx, received.raw).await?;
    let sql = format!(
        "INSERT INTO messages (incident_id, direction, message_id_header, in_reply_to, \
         references_header, from_address, from_name, to_addresses, cc_addresses, subject, \
         text_body, html_body, sent_at, received_at, size_bytes, raw_sha256, raw_is_complete, \
         raw, dedup_key) \
         VALUES ($1, 'inbound', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, {}, $18) ON CONFLICT DO NOTHING",
        raw.sql("$17")
    );
    let inserted = insert_id!(tx, sql, |query| {
        let query = query
            .bind(incident_id)
            .bind(&inbound.message_id)
            .bind(angle(&inbound.in_reply_to))
            .bind(angle(&inbound.references))
            .bind(
                inbound
                    .sender
                    .as_ref()
                    .map(|mailbox| mailbox.address.clone()),
            )
            .bind(
                inbound
                    .sender
                    .as_ref()
                    .and_then(|mailbox| mailbox.name.clone()),
            )
            .bind(join(&inbound.to))
            .bind(join(&inbound.cc))
            .bind(&inbound.subject)
            .bind(&inbound.text_body)
            .bind(&inbound.html_body)
            .bind(sent_at)
            .bind(now)
            .bind(inbound.size_bytes as i64)
            .bind(&inbound.raw_sha256)
            .bind(raw_is_complete);
        if raw.binds_length() {
            query.bind(received.raw.len() as i64)
        } else {
            query.bind(received.raw)
        }
        .bind(&dedup_key)
    });
    let id = inserted.ok_or_else(|| {
        StoreError::Conflict(format!(
            "message {} was stored concurrently",
            inbound.dedup_key()
        ))
    })?;
    raw.after_insert(tx, Column::MessageRaw, id, received.raw)
        .await?;
    Ok(id)
}

async fn insert_attachments(
    tx: &mut Tx,
    message_id: i64,
    inbound: &Inbound,
) -> Result<(), StoreError> {
    for attachment in &inbound.attachments {
        let content = Blob::for_value(tx, &attachment.content);
        content.before_insert(tx, &attachment.content).await?;
        let sql = format!(
            "INSERT INTO attachments (message_id, filename, content_type, size_bytes, sha256, \
             content) VALUES ($1, $2, $3, $4, $5, {})",
            content.sql("$6")
        );
        let inserted = insert_id!(tx, sql, |query| {
            let query = query
                .bind(message_id)
                .bind(&attachment.filename)
                .bind(&attachment.content_type)
                .bind(attachment.content.len() as i64)
                .bind(&attachment.sha256);
            if content.binds_length() {
                query.bind(attachment.content.len() as i64)
            } else {
                query.bind(&attachment.content)
            }
        });
        let id = inserted.ok_or_else(|| {
            StoreError::Failed(format!(
                "attachment of message {message_id} was not inserted"
            ))
        })?;
        content
            .after_insert(tx, Column::AttachmentContent, id, &attachment.content)
            .await?;
    }
    Ok(())
}

/// A message was appended: the incident was updated now, and `reopen` sets it back to `open`.
async fn touch_incident(
    tx: &mut Tx,
    incident: IncidentId,
    reopen: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    let sql = if reopen {
        "UPDATE incidents SET updated_at = $1, status = 'open' WHERE id = $2"
    } else {
        "UPDATE incidents SET updated_at = $1 WHERE id = $2"
    };
    on_tx!(tx, conn => {
        sqlx::query(sql)
            .bind(now)
            .bind(incident)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Queues one outbound mail, due now, and returns the row's id: staff actions in
/// `store::admin` queue through here, ingest through `Deferred` (same columns, many rows).
/// The worker applies the loop rules and limits when it sends.
pub(super) async fn enqueue(
    tx: &mut Tx,
    template: &str,
    recipient: &str,
    client_id: Option<ClientId>,
    incident_id: Option<IncidentId>,
    reply_to_message_id: Option<i64>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let inserted = insert_id!(
        tx,
        "INSERT INTO outbound (template, recipient, client_id, incident_id, reply_to_message_id, \
         state, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6, $6)",
        |query| query
            .bind(template)
            .bind(recipient)
            .bind(client_id)
            .bind(incident_id)
            .bind(reply_to_message_id)
            .bind(now)
    );
    inserted
        .ok_or_else(|| StoreError::Failed(format!("{template} mail to {recipient} was not queued")))
}

/// Records a message that could not be applied (a failure that is not the database being
/// away): its raw bytes and an `error` row, so staff see it and the source may let it go.
pub async fn record_failure(
    tx: &mut Tx,
    raw: &[u8],
    inbound: &Inbound,
    origin: &Origin,
    why: &str,
) -> Result<Applied, StoreError> {
    let now = Timestamp::now();
    let dedup_key = inbound.dedup_key();
    let reason = format!("could not be recorded: {why}");
    let sender = inbound
        .sender
        .as_ref()
        .map(|mailbox| mailbox.address.clone());
    let blob = Blob::for_value(tx, raw);
    blob.before_insert(tx, raw).await?;
    let sql = format!(
        "INSERT INTO messages (direction, message_id_header, from_address, subject, received_at, \
         size_bytes, raw_sha256, raw_is_complete, raw, dedup_key) \
         VALUES ('inbound', $1, $2, $3, $4, $5, $6, $7, {}, $9) \
         ON CONFLICT DO NOTHING",
        blob.sql("$8")
    );
    let message_id = insert_id!(tx, sql, |query| {
        let query = query
            .bind(&inbound.message_id)
            .bind(&sender)
            .bind(&inbound.subject)
            .bind(now)
            .bind(raw.len() as i64)
            .bind(&inbound.raw_sha256)
            .bind(origin.raw_is_complete);
        if blob.binds_length() {
            query.bind(raw.len() as i64)
        } else {
            query.bind(raw)
        }
        .bind(&dedup_key)
    });
    if let Some(id) = message_id {
        blob.after_insert(tx, Column::MessageRaw, id, raw).await?;
    }
    let applied = Applied {
        outcome: Outcome::Error,
        reason: Some(reason),
        incident_id: None,
        incident_hash: None,
        message_id,
    };
    let mut log = Deferred::default();
    log.log(origin, inbound, &applied, now);
    log.write(tx).await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Approval;
    use crate::store::Store;

    /// On SQLite the id comes from `last_insert_rowid`, not `RETURNING`: it must be the client's
    /// row even though the insert's trigger inserts into `client_references` after it, and there
    /// must be none when the insert was skipped.
    #[tokio::test]
    async fn a_sqlite_insert_gives_its_own_row_id_and_none_when_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("ids.db").display());
        let store = Store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrate");
        let mut tx = store.begin().await.expect("begin");
        let now = Timestamp::now();
        let organisation: i64 = on_tx!(&mut tx, conn => {
            // References issued before: the trigger's rows get rowids the clients do not.
            for reference in ["C-OLD1", "C-OLD2", "C-OLD3"] {
                sqlx::query("INSERT INTO client_references (reference) VALUES ($1)")
                    .bind(reference)
                    .execute(&mut *conn)
                    .await
                    .expect("reference");
            }
            sqlx::query_scalar("INSERT INTO organisations (name, created_at, updated_at) \
                                VALUES ('Ids', $1, $1) RETURNING id")
                .bind(now)
                .fetch_one(&mut *conn)
                .await
                .expect("organisation")
        });
        let new_client = NewClient {
            approval: Approval::Approved,
            organisation: OrganisationPlan::Existing(organisation),
            send_registration: false,
        };
        let mut ids = Vec::new();
        for address in ["first@ids.example", "second@ids.example"] {
            let sender = Mailbox {
                address: address.to_string(),
                name: None,
            };
            let id = insert_client(&mut tx, &sender, organisation, &new_client, now)
                .await
                .expect("client");
            let stored: i64 = on_tx!(&mut tx, conn => {
                sqlx::query_scalar("SELECT id FROM clients WHERE email = $1")
                    .bind(address)
                    .fetch_one(&mut *conn)
                    .await
                    .expect("stored client")
            });
            assert_eq!(id, stored, "{address}");
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1]);

        let again = async {
            Ok::<_, StoreError>(insert_id!(
                &mut tx,
                "INSERT INTO clients (email, organisation_id, approval, standing, created_at, \
                 updated_at, reference) VALUES ($1, $2, 'approved', 'normal', $3, $3, 'C-AGAIN') \
                 ON CONFLICT DO NOTHING",
                |query| query.bind("first@ids.example").bind(organisation).bind(now)
            ))
        }
        .await
        .expect("insert");
        assert_eq!(again, None, "a skipped insert gives no id");
        let queued = enqueue(
            &mut tx,
            "registration",
            "first@ids.example",
            Some(ids[0]),
            None,
            None,
            now,
        )
        .await
        .expect("queued");
        let stored: i64 = on_tx!(&mut tx, conn => {
            sqlx::query_scalar("SELECT max(id) FROM outbound")
                .fetch_one(&mut *conn)
                .await
                .expect("outbound row")
        });
        assert_eq!(queued, stored);
        tx.rollback().await.expect("rollback");
    }

    #[test]
    fn placeholders_mark_every_value_row_by_row() {
        assert_eq!(Placeholders::Numbered.rows(1, 2, ""), "($1, $2)");
        assert_eq!(
            Placeholders::Numbered.rows(2, 3, ""),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(
            Placeholders::Numbered.rows(2, 2, "'queued', 0"),
            "($1, $2, 'queued', 0), ($3, $4, 'queued', 0)"
        );
        assert_eq!(
            Placeholders::InOrder.rows(2, 2, "'queued', 0"),
            "(?, ?, 'queued', 0), (?, ?, 'queued', 0)"
        );
    }
}
