//! Read-only queries for the command line, through the views staff also use.

use crate::on_pool;

use super::{Store, StoreError, Timestamp};

/// One row of `incident_overview`.
#[derive(Debug, Clone, sqlx::FromRow)]
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

pub async fn incidents(
    store: &Store,
    folder: Option<&str>,
    limit: i64,
) -> Result<Vec<IncidentRow>, StoreError> {
    let rows = on_pool!(store, pool => {
        sqlx::query_as::<_, IncidentRow>(
            "SELECT hash, folder, status, subject, client_email, organisation, mailbox, \
             message_count, created_at FROM incident_overview \
             WHERE ($1 IS NULL OR folder = $1) ORDER BY created_at DESC, incident_id DESC LIMIT $2",
        )
        .bind(folder)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows)
}

/// One row of `outbound_overview`.
#[derive(Debug, Clone, sqlx::FromRow)]
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
#[derive(Debug, Clone, sqlx::FromRow)]
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
    limit: i64,
) -> Result<Vec<LogRow>, StoreError> {
    let rows = on_pool!(store, pool => {
        sqlx::query_as::<_, LogRow>(
            "SELECT logged_at, outcome, mailbox, sender, incident_hash, subject, reason \
             FROM ingest_overview WHERE ($1 IS NULL OR outcome = $1) \
             ORDER BY log_id DESC LIMIT $2",
        )
        .bind(outcome)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows)
}
