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
            print_table(
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

/// Left-aligned columns, the last one unpadded.
fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(|header| header.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        println!("{}", text.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
