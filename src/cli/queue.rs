//! `intake queue`: the outbound queue from a shell.

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::outbound::{Outbound, Report};
use crate::store::outbound::{self, Due};
use crate::store::read;
use crate::store::{Store, StoreError, Timestamp};

use super::{Migrations, open_store};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Send every queued mail now, including mail waiting to retry (each at most once), and
    /// print what became of it. Safe while `intake run` is running: rows are claimed.
    Flush,
    /// List outbound mail, newest first, with its state, attempts and last error.
    List {
        /// Only this state.
        #[arg(long, value_parser = ["queued", "sending", "sent", "retry", "dead", "suppressed"])]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Queue dead, retrying or suppressed mail again, attempts reset; `intake run` or
    /// `intake queue flush` sends it (the loop rules and rate limit still apply).
    Retry {
        /// Outbound ids, as `queue list` shows them.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

pub async fn run(
    settings: &Settings,
    command: &QueueCommand,
    output: super::Output,
) -> anyhow::Result<()> {
    match command {
        QueueCommand::Flush => {
            let report = flush(settings).await?;
            println!("{report}");
        }
        QueueCommand::List { state, limit } => {
            let store = open_store(settings, Migrations::ApplyIfBehind).await?;
            let rows = read::outbound(&store, state.as_deref(), *limit).await;
            store.close().await;
            let rows = rows?;
            if output == super::Output::Json {
                return super::print_json(&rows);
            }
            let table: Vec<[String; 8]> = rows
                .into_iter()
                .map(|row| {
                    [
                        row.outbound_id.to_string(),
                        row.state,
                        row.template,
                        row.recipient,
                        row.incident_hash.unwrap_or_default(),
                        row.attempts.to_string(),
                        row.next_attempt_at.to_iso(),
                        row.last_error.unwrap_or_default(),
                    ]
                })
                .collect();
            super::print_table(
                &[
                    "ID",
                    "STATE",
                    "TEMPLATE",
                    "RECIPIENT",
                    "INCIDENT",
                    "ATTEMPTS",
                    "NEXT ATTEMPT",
                    "LAST ERROR",
                ],
                &table,
            );
        }
        QueueCommand::Retry { ids } => {
            let store = open_store(settings, Migrations::ApplyIfBehind).await?;
            let requeued = requeue(&store, ids).await;
            store.close().await;
            let refused: Vec<String> = requeued?
                .into_iter()
                .filter(|(_, queued)| !queued)
                .map(|(id, _)| id.to_string())
                .collect();
            if !refused.is_empty() {
                anyhow::bail!(
                    "not queued again (no such id, or not dead, retry or suppressed): {}",
                    refused.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Each id with whether it was queued again; the queued ones are printed as they go.
async fn requeue(store: &Store, ids: &[i64]) -> Result<Vec<(i64, bool)>, StoreError> {
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        let queued = outbound::requeue(store, *id).await?;
        if queued {
            println!("{id} queued");
        }
        done.push((*id, queued));
    }
    Ok(done)
}

async fn flush(settings: &Settings) -> anyhow::Result<Report> {
    let outbound = Outbound::from_settings(settings)?.ok_or_else(|| {
        ConfigError::new(
            &settings.source,
            "smtp",
            "expected an [smtp] section to send queued mail",
        )
    })?;
    let store = open_store(settings, Migrations::ApplyIfBehind).await?;
    let started = Timestamp::now();
    let result = outbound
        .flush(
            &store,
            Due::EverythingUntouchedSince(started),
            &CancellationToken::new(),
        )
        .await;
    store.close().await;
    result.context("flushing the outbound queue")
}
