//! `intake incident list|show`: incidents as staff see them in `incident_overview`.

use clap::Subcommand;

use crate::config::Settings;
use crate::store::read::{self, IncidentFilter};
use crate::store::{Store, Timestamp};

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// List incidents, newest first.
    List {
        /// Only this folder: inbox, spam or held.
        #[arg(long, value_parser = ["inbox", "spam", "held"])]
        folder: Option<String>,
        /// Only those with this status (staff set it; a customer's reply sets it back to open).
        #[arg(long, value_parser = ["open", "waiting", "resolved", "closed"])]
        status: Option<String>,
        /// Only this client's (by email, additional address or reference).
        #[arg(long)]
        client: Option<String>,
        /// Only this organisation's (by name).
        #[arg(long)]
        org: Option<String>,
        /// Only those opened since this day or time (2026-11-20 or 2026-11-20T08:00:00Z).
        #[arg(long, value_parser = parse_since)]
        since: Option<Timestamp>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One incident and its messages, oldest first.
    Show {
        /// The incident hash, as in a subject tag.
        hash: String,
    },
}

fn parse_since(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Timestamp(time.with_timezone(&chrono::Utc)));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| Timestamp(midnight.and_utc()))
        .ok_or_else(|| format!("expected a day such as 2026-11-20 or a time such as 2026-11-20T08:00:00Z, not {text:?}"))
}

pub async fn run(
    settings: &Settings,
    command: &IncidentCommand,
    output: super::Output,
) -> anyhow::Result<()> {
    let store = super::open_store(settings, super::Migrations::ApplyIfBehind).await?;
    let result = execute(&store, command, output).await;
    store.close().await;
    result
}

async fn execute(
    store: &Store,
    command: &IncidentCommand,
    output: super::Output,
) -> anyhow::Result<()> {
    match command {
        IncidentCommand::List {
            folder,
            status,
            client,
            org,
            since,
            limit,
        } => {
            let filter = IncidentFilter {
                folder: folder.clone(),
                status: status.clone(),
                client_email: client.clone(),
                organisation: org.clone(),
                since: *since,
            };
            let rows = read::incidents(store, &filter, *limit).await?;
            if output == super::Output::Json {
                return super::print_json(&rows);
            }
            let table: Vec<[String; 7]> = rows
                .into_iter()
                .map(|row| {
                    [
                        row.hash,
                        row.folder,
                        row.status,
                        row.client_email,
                        row.organisation,
                        row.message_count.to_string(),
                        row.subject,
                    ]
                })
                .collect();
            super::print_table(
                &[
                    "HASH",
                    "FOLDER",
                    "STATUS",
                    "CLIENT",
                    "ORGANISATION",
                    "MESSAGES",
                    "SUBJECT",
                ],
                &table,
            );
        }
        IncidentCommand::Show { hash } => {
            let Some((incident, messages)) = read::incident(store, hash).await? else {
                anyhow::bail!("no incident {hash}");
            };
            if output == super::Output::Json {
                return super::print_json(
                    &serde_json::json!({ "incident": incident, "messages": messages }),
                );
            }
            for (label, value) in [
                ("Hash", incident.hash),
                ("Subject", incident.subject),
                ("Folder", incident.folder),
                ("Status", incident.status),
                ("Client", incident.client_email),
                ("Organisation", incident.organisation),
                ("Mailbox", incident.mailbox.unwrap_or_default()),
                ("Opened", incident.created_at.to_iso()),
            ] {
                println!(
                    "{:<13} {}",
                    format!("{label}:"),
                    super::terminal_safe(&value)
                );
            }
            println!();
            let table: Vec<[String; 5]> = messages
                .into_iter()
                .map(|message| {
                    [
                        message.received_at.to_iso(),
                        message.direction,
                        message.from_address.unwrap_or_default(),
                        message.attachment_count.to_string(),
                        message.subject.unwrap_or_default(),
                    ]
                })
                .collect();
            super::print_table(
                &["RECEIVED", "DIRECTION", "FROM", "ATTACHMENTS", "SUBJECT"],
                &table,
            );
        }
    }
    Ok(())
}
