//! `intake log`: what became of recent messages, from `ingest_overview`.

use clap::Args;

use crate::config::Settings;
use crate::store::read;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only this outcome, e.g. dropped_banned, rejected or error.
    #[arg(long, value_parser = [
        "created", "appended", "duplicate", "dropped_banned", "spam", "auto_reply", "bounce",
        "rejected", "error",
    ])]
    outcome: Option<String>,
    /// Only mail from this address (what a banned client sent, say).
    #[arg(long)]
    sender: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

pub async fn run(settings: &Settings, args: &LogArgs, output: super::Output) -> anyhow::Result<()> {
    let store = super::open_store(settings, super::Migrations::ApplyIfBehind).await?;
    let rows = read::ingest_log(
        &store,
        args.outcome.as_deref(),
        args.sender.as_deref(),
        args.limit,
    )
    .await;
    store.close().await;
    let rows = rows?;
    if output == super::Output::Json {
        return super::print_json(&rows);
    }
    let table: Vec<[String; 7]> = rows
        .into_iter()
        .map(|row| {
            [
                row.logged_at.to_iso(),
                row.outcome,
                row.mailbox.unwrap_or_default(),
                row.sender.unwrap_or_default(),
                row.incident_hash.unwrap_or_default(),
                row.subject.unwrap_or_default(),
                row.reason.unwrap_or_default(),
            ]
        })
        .collect();
    super::print_table(
        &[
            "LOGGED AT",
            "OUTCOME",
            "MAILBOX",
            "SENDER",
            "INCIDENT",
            "SUBJECT",
            "REASON",
        ],
        &table,
    );
    Ok(())
}
