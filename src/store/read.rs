//! Read-only queries for the command line, through the views staff also use.

use crate::on_pool;

use super::{Store, StoreError, Timestamp};

/// One row of `incident_overview`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct IncidentRow {
    pub hash: String,
    pub folder: String,
    pub status: String,
    pub subject: String,
    pub client_email: String,
    pub organisation: String,
    pub mailbox: Option<String>,
    pub message_count: i64,
    pub created_at: Timestamp,
}

/// Which incidents `incidents` lists.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub folder: Option<String>,
    pub status: Option<String>,
    pub client_email: Option<String>,
    pub organisation: Option<String>,
    pub since: Option<Timestamp>,
}

pub async fn incidents(
    store: &Store,
    filter: &IncidentFilter,
    limit: i64,
) -> Result<Vec<IncidentRow>, StoreError> {
    let rows = on_pool!(store, pool => {
        sqlx::query_as::<_, IncidentRow>(concat!(
            "SELECT hash, folder, status, subject, client_email, organisation, mailbox, \
             message_count, created_at FROM incident_overview \
             WHERE ($1 IS NULL OR folder = $1) \
               AND ($2 IS NULL OR lower(client_email) = \
                    (SELECT lower(email) FROM clients WHERE id = ",
            client_named!("$2"),
            ")) \
               AND ($3 IS NULL OR lower(organisation) = lower($3)) \
               AND ($4 IS NULL OR created_at >= $4) \
               AND ($5 IS NULL OR status = $5) \
             ORDER BY created_at DESC, incident_id DESC LIMIT $6",
        ))
        .bind(&filter.folder)
        .bind(&filter.client_email)
        .bind(&filter.organisation)
        .bind(filter.since)
        .bind(&filter.status)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows)
}

/// One message of an incident, from `recent_messages`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct MessageRow {
    pub received_at: Timestamp,
    pub direction: String,
    pub from_address: Option<String>,
    pub subject: Option<String>,
    pub attachment_count: i64,
}

/// An incident by hash (any case) and its messages, oldest first.
pub async fn incident(
    store: &Store,
    hash: &str,
) -> Result<Option<(IncidentRow, Vec<MessageRow>)>, StoreError> {
    let found = on_pool!(store, pool => {
        let incident = sqlx::query_as::<_, IncidentRow>(
            "SELECT hash, folder, status, subject, client_email, organisation, mailbox, \
             message_count, created_at FROM incident_overview WHERE hash = upper($1)",
        )
        .bind(hash)
        .fetch_optional(pool)
        .await?;
        match incident {
            Some(incident) => {
                let messages = sqlx::query_as::<_, MessageRow>(
                    "SELECT received_at, direction, from_address, subject, attachment_count \
                     FROM recent_messages WHERE incident_hash = $1 ORDER BY message_id",
                )
                .bind(&incident.hash)
                .fetch_all(pool)
                .await?;
                Some((incident, messages))
            }
            None => None,
        }
    });
    Ok(found)
}

/// One row of `outbound_overview`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct OutboundRow {
    pub outbound_id: i64,
    pub state: String,
    pub template: String,
    pub recipient: String,
    pub incident_hash: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

pub async fn outbound(
    store: &Store,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<OutboundRow>, StoreError> {
    let rows = on_pool!(store, pool => {
        sqlx::query_as::<_, OutboundRow>(
            "SELECT outbound_id, state, template, recipient, incident_hash, attempts, \
             next_attempt_at, last_error, created_at FROM outbound_overview \
             WHERE ($1 IS NULL OR state = $1) ORDER BY outbound_id DESC LIMIT $2",
        )
        .bind(state)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows)
}

/// One row of `ingest_overview`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct LogRow {
    pub logged_at: Timestamp,
    pub outcome: String,
    pub mailbox: Option<String>,
    pub sender: Option<String>,
    pub incident_hash: Option<String>,
    pub subject: Option<String>,
    pub reason: Option<String>,
}

pub async fn ingest_log(
    store: &Store,
    outcome: Option<&str>,
    sender: Option<&str>,
    limit: i64,
) -> Result<Vec<LogRow>, StoreError> {
    let rows = on_pool!(store, pool => {
        sqlx::query_as::<_, LogRow>(
            "SELECT logged_at, outcome, mailbox, sender, incident_hash, subject, reason \
             FROM ingest_overview WHERE ($1 IS NULL OR outcome = $1) \
             AND ($3 IS NULL OR lower(sender) = lower($3)) \
             ORDER BY log_id DESC LIMIT $2",
        )
        .bind(outcome)
        .bind(limit)
        .bind(sender)
        .fetch_all(pool)
        .await?
    });
    Ok(rows)
}
