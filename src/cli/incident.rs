//! `intake incident list`: incidents as staff see them in `incident_overview`.

use clap::Subcommand;

use crate::config::Settings;
use crate::store::read;

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// List incidents, newest first.
    List {
        /// Only this folder: inbox, spam or held.
        #[arg(long, value_parser = ["inbox", "spam", "held"])]
        folder: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub async fn run(settings: &Settings, command: &IncidentCommand) -> anyhow::Result<()> {
    let store = super::open_store(settings, super::Migrations::ApplyIfBehind).await?;
    match command {
        IncidentCommand::List { folder, limit } => {
            let rows = read::incidents(&store, folder.as_deref(), *limit).await?;
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
    }
    store.close().await;
    Ok(())
}
