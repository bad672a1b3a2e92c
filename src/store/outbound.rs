//! The outbound queue's rows: claiming due mail, reading what a template needs, and moving a
//! row to sent, retry, dead or suppressed.
//!
//! A claim sets `state = 'sending'` and `claimed_until`; every later write is fenced on the
//! row still being in that claim (`state = 'sending' AND attempts = ?`), so a worker whose
//! claim expired and was taken over can never overwrite the new holder's outcome. PostgreSQL
//! workers claim with `FOR UPDATE SKIP LOCKED`; SQLite serialises writers (`BEGIN IMMEDIATE`).

use crate::on_pool;

use super::{Store, StoreError, Timestamp, Tx};

/// A row this worker holds until `claimed_until`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub template: String,
    pub recipient: String,
    pub client_id: Option<i64>,
    pub incident_id: Option<i64>,
    pub reply_to_message_id: Option<i64>,
    /// Including this attempt.
    pub attempts: i32,
    pub message_id_header: Option<String>,
}

/// Which rows a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Queued, or waiting to retry and past `next_attempt_at`: the worker in `intake run`.
    Now,
    /// Also rows waiting to retry, if not touched since `since`: `intake queue flush`, once
    /// per row per flush.
    EverythingUntouchedSince(Timestamp),
}

/// Claims up to `limit` rows, oldest first, and counts this attempt. A row whose claim expired
/// (its worker died mid-send) is due again.
pub async fn claim(
    store: &Store,
    due: Due,
    claimed_until: Timestamp,
    limit: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let now = Timestamp::now();
    let (everything, since) = match due {
        Due::Now => (false, now),
        Due::EverythingUntouchedSince(since) => (true, since),
    };
    // The same statement on both backends; PostgreSQL also skips rows another worker is
    // claiming at this instant.
    macro_rules! claim_sql {
        ($lock:literal) => {
            concat!(
                "UPDATE outbound SET state = 'sending', attempts = attempts + 1, \
                 claimed_until = $5, updated_at = $1 WHERE id IN (SELECT id FROM outbound \
                 WHERE (state IN ('queued', 'retry') \
                        AND (next_attempt_at <= $1 OR ($2 AND updated_at < $3))) \
                    OR (state = 'sending' AND claimed_until < $1) \
                 ORDER BY id LIMIT $4",
                $lock,
                ") RETURNING id, template, recipient, client_id, incident_id, \
                 reply_to_message_id, attempts, message_id_header"
            )
        };
    }
    let mut tx = store.begin().await?;
    let claimed = match &mut tx {
        Tx::Sqlite(transaction) => {
            sqlx::query_as::<_, Claimed>(claim_sql!(""))
                .bind(now)
                .bind(everything)
                .bind(since)
                .bind(limit)
                .bind(claimed_until)
                .fetch_all(&mut **transaction)
                .await?
        }
        Tx::Postgres(transaction) => {
            sqlx::query_as::<_, Claimed>(claim_sql!(" FOR UPDATE SKIP LOCKED"))
                .bind(now)
                .bind(everything)
                .bind(since)
                .bind(limit)
                .bind(claimed_until)
                .fetch_all(&mut **transaction)
                .await?
        }
    };
    tx.commit().await?;
    let mut claimed = claimed;
    claimed.sort_by_key(|row| row.id);
    Ok(claimed)
}

/// Fixes the row's Message-ID before its first attempt; later attempts keep the first one.
pub async fn fix_message_id(
    store: &Store,
    row: &Claimed,
    candidate: &str,
) -> Result<String, StoreError> {
    let fixed: Option<String> = on_pool!(store, pool => {
        sqlx::query_scalar(
            "UPDATE outbound SET message_id_header = COALESCE(message_id_header, $2) \
             WHERE id = $1 RETURNING message_id_header",
        )
        .bind(row.id)
        .bind(candidate)
        .fetch_optional(pool)
        .await?
    });
    fixed.ok_or_else(|| StoreError::Failed(format!("outbound row {} disappeared", row.id)))
}

/// The client a mail is for, as templates and the loop rules need it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientFacts {
    pub email: String,
    pub display_name: Option<String>,
    pub approval: String,
    pub standing: String,
    pub organisation: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IncidentFacts {
    pub hash: String,
    pub subject: String,
    pub mailbox: Option<String>,
}

/// The customer's message an acknowledgement answers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParentFacts {
    pub message_id_header: Option<String>,
    pub references_header: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RowFacts {
    pub client: Option<ClientFacts>,
    pub incident: Option<IncidentFacts>,
    pub parent: Option<ParentFacts>,
    /// The mailbox the client last wrote to, for mail that is not about one incident.
    pub last_mailbox: Option<String>,
}

pub async fn facts(store: &Store, row: &Claimed) -> Result<RowFacts, StoreError> {
    let facts = on_pool!(store, pool => {
        let client = match row.client_id {
            Some(id) => sqlx::query_as::<_, ClientFacts>(
                "SELECT c.email, \
                 COALESCE(NULLIF(trim(COALESCE(c.first_name, '') || ' ' || COALESCE(c.last_name, '')), ''), \
                          c.display_name) AS display_name, \
                 c.approval, c.standing, o.name AS organisation \
                 FROM clients c JOIN organisations o ON o.id = c.organisation_id WHERE c.id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?,
            None => None,
        };
        let incident = match row.incident_id {
            Some(id) => sqlx::query_as::<_, IncidentFacts>(
                "SELECT hash, subject, mailbox FROM incidents WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?,
            None => None,
        };
        let parent = match row.reply_to_message_id {
            Some(id) => sqlx::query_as::<_, ParentFacts>(
                "SELECT message_id_header, references_header FROM messages WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?,
            None => None,
        };
        let last_mailbox: Option<String> = match (row.client_id, &incident) {
            (Some(id), None) => sqlx::query_scalar(
                "SELECT mailbox FROM incidents WHERE client_id = $1 AND mailbox IS NOT NULL \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?,
            _ => None,
        };
        RowFacts { client, incident, parent, last_mailbox }
    });
    Ok(facts)
}

/// Automatic mail to the row's recipient sent since `since`, or older rows being sent now (by
/// any worker): the oldest mail goes out first, later ones meet the limit.
pub async fn recent_to(store: &Store, row: &Claimed, since: Timestamp) -> Result<i64, StoreError> {
    let now = Timestamp::now();
    let count = on_pool!(store, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbound WHERE lower(recipient) = lower($1) AND id <> $2 \
             AND ((state = 'sent' AND sent_at > $3) \
                  OR (state = 'sending' AND id < $2 AND claimed_until > $4))",
        )
        .bind(&row.recipient)
        .bind(row.id)
        .bind(since)
        .bind(now)
        .fetch_one(pool)
        .await?
    });
    Ok(count)
}

/// What was sent, to store as an outbound message on the incident.
#[derive(Debug, Clone)]
pub struct SentCopy {
    pub message_id_header: String,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub from_address: String,
    pub from_name: Option<String>,
    pub to: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
    pub raw: Vec<u8>,
}

/// Why a fenced update found nothing to change.
fn lost_claim(row: &Claimed) -> StoreError {
    StoreError::Failed(format!(
        "outbound row {} is no longer held by this worker (its claim expired)",
        row.id
    ))
}

/// The server took the mail: `sent`, with its copy stored on the incident.
pub async fn mark_sent(store: &Store, row: &Claimed, copy: &SentCopy) -> Result<(), StoreError> {
    let now = Timestamp::now();
    let dedup_key = crate::message::dedup_key_for_message_id(&copy.message_id_header);
    let sha256 = crate::message::sha256_hex(&copy.raw);
    let mut tx = store.begin().await?;
    let inserted = crate::insert_id!(
        &mut tx,
        "INSERT INTO messages (incident_id, direction, message_id_header, in_reply_to, \
         references_header, from_address, from_name, to_addresses, subject, text_body, \
         html_body, sent_at, received_at, size_bytes, raw_sha256, raw_is_complete, raw, \
         dedup_key) \
         VALUES ($1, 'outbound', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $16, \
         $14, $15) ON CONFLICT DO NOTHING",
        |query| query
            .bind(row.incident_id)
            .bind(&copy.message_id_header)
            .bind(&copy.in_reply_to)
            .bind(&copy.references)
            .bind(&copy.from_address)
            .bind(&copy.from_name)
            .bind(&copy.to)
            .bind(&copy.subject)
            .bind(&copy.text_body)
            .bind(&copy.html_body)
            .bind(now)
            .bind(copy.raw.len() as i64)
            .bind(&sha256)
            .bind(&copy.raw)
            .bind(&dedup_key)
            .bind(true)
    );
    let updated = crate::on_tx!(&mut tx, conn => {
        // A copy already stored: an earlier attempt was sent but not recorded (a crash).
        let stored = match inserted {
            Some(id) => Some(id),
            None => sqlx::query_scalar::<_, i64>("SELECT id FROM messages WHERE dedup_key = $1")
                .bind(&dedup_key)
                .fetch_optional(&mut *conn)
                .await?,
        };
        sqlx::query(
            "UPDATE outbound SET state = 'sent', sent_at = $3, updated_at = $3, \
             claimed_until = NULL, last_error = NULL, subject = $4, message_id = $5 \
             WHERE id = $1 AND state = 'sending' AND attempts = $2",
        )
        .bind(row.id)
        .bind(row.attempts)
        .bind(now)
        .bind(&copy.subject)
        .bind(stored)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if updated == 0 {
        tx.rollback().await?;
        return Err(lost_claim(row));
    }
    tx.commit().await
}

/// The outcome of an attempt that did not send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSent {
    Retry { at: Timestamp, why: String },
    Dead { why: String },
    Suppressed { why: String },
}

pub async fn mark_not_sent(
    store: &Store,
    row: &Claimed,
    outcome: &NotSent,
) -> Result<(), StoreError> {
    let now = Timestamp::now();
    let (state, next, why) = match outcome {
        NotSent::Retry { at, why } => ("retry", *at, why),
        NotSent::Dead { why } => ("dead", now, why),
        NotSent::Suppressed { why } => ("suppressed", now, why),
    };
    let updated = on_pool!(store, pool => {
        sqlx::query(
            "UPDATE outbound SET state = $3, next_attempt_at = $4, last_error = $5, \
             claimed_until = NULL, updated_at = $6 \
             WHERE id = $1 AND state = 'sending' AND attempts = $2",
        )
        .bind(row.id)
        .bind(row.attempts)
        .bind(state)
        .bind(next)
        .bind(why)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if updated == 0 {
        return Err(lost_claim(row));
    }
    Ok(())
}

/// Gives back a claim not yet attempted (the worker is stopping): due again at once, and the
/// attempt is not counted.
pub async fn release(store: &Store, row: &Claimed) -> Result<(), StoreError> {
    let now = Timestamp::now();
    on_pool!(store, pool => {
        sqlx::query(
            "UPDATE outbound SET state = CASE WHEN attempts > 1 THEN 'retry' ELSE 'queued' END, \
             attempts = attempts - 1, claimed_until = NULL, next_attempt_at = $3, updated_at = $3 \
             WHERE id = $1 AND state = 'sending' AND attempts = $2",
        )
        .bind(row.id)
        .bind(row.attempts)
        .bind(now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Staff ask for another try: a `dead`, `retry` or `suppressed` row is queued again with its
/// attempts reset (the send-time rules still apply). `false` when the row is in another state.
pub async fn requeue(store: &Store, id: i64) -> Result<bool, StoreError> {
    let now = Timestamp::now();
    let updated = on_pool!(store, pool => {
        sqlx::query(
            "UPDATE outbound SET state = 'queued', attempts = 0, next_attempt_at = $2, \
             claimed_until = NULL, updated_at = $2 \
             WHERE id = $1 AND state IN ('dead', 'retry', 'suppressed')",
        )
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(updated == 1)
}

/// How many outbound rows are in each state, for the metrics.
pub async fn depth_by_state(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(on_pool!(store, pool => {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT state, count(*) FROM outbound GROUP BY state ORDER BY state",
        )
        .fetch_all(pool)
        .await?
    }))
}
