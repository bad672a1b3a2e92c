//! The command line: a file per noun. Parses arguments with clap, opens the store, calls the
//! edges, prints for people, and leaves exit codes to `main.rs`.

pub mod client;
pub mod incident;
pub mod ingest;
pub mod log;
pub mod org;
pub mod queue;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use unicode_width::UnicodeWidthStr;

use crate::config::{DEFAULT_CONFIG_PATH, Settings};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(name = "intake", version, about = "Email-ingesting helpdesk daemon")]
pub struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, env = "INTAKE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Print listings and results as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch every configured mailbox until SIGTERM (SIGHUP reloads).
    Run,
    /// Ingest one message from stdin, or .eml files and Maildir folders (the MTA pipe mode).
    Ingest(ingest::IngestArgs),
    /// Apply database migrations and create the default organisation.
    Migrate,
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Incidents.
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
    /// What became of recent messages (the ingest_log table), newest first.
    Log(log::LogArgs),
    /// The outbound mail queue.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Clients: list, add, approve, ban, spam, merge, delete, import and export as CSV.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Organisations and the email domains they own.
    #[command(subcommand)]
    Org(org::OrgCommand),
}

/// How a command prints what it found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

impl Cli {
    pub fn output(&self) -> Output {
        if self.json {
            Output::Json
        } else {
            Output::Table
        }
    }
}

/// Pretty JSON on stdout.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Who is running a command, for `admin_log`: the user behind sudo, else the user.
pub fn actor() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|user| !user.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Loads the settings; the error names the file and key.
pub fn load_settings(cli: &Cli) -> Result<Settings, crate::config::ConfigError> {
    Settings::load(&cli.config)
}

/// How thoroughly `open_store` checks the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Run the migrator (takes its lock, verifies checksums): `migrate` and `run`.
    Apply,
    /// One read; migrate only when behind: commands run once per message or per look.
    ApplyIfBehind,
}

/// Opens the database, brings the schema up to date and makes sure the default organisation
/// exists.
pub async fn open_store(settings: &Settings, migrations: Migrations) -> anyhow::Result<Store> {
    let masked = crate::config::mask_url_password(&settings.database.url);
    let store = Store::connect(&settings.database.url)
        .await
        .with_context(|| format!("opening database {masked}"))?;
    if migrations == Migrations::Apply || !store.is_migrated().await {
        store
            .migrate()
            .await
            .with_context(|| format!("migrating database {masked}"))?;
    }
    store
        .ensure_default_organisation(&settings.organisations.default)
        .await
        .context("creating the default organisation")?;
    Ok(store)
}

/// Left-aligned columns, the last one unpadded.
pub fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|row| row.clone().map(|cell| terminal_safe(&cell)))
        .collect();
    let mut widths = headers.map(|header| header.width());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.width());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if index + 1 < N {
                // Padding by display width: a CJK character takes two columns.
                let pad = widths[index].saturating_sub(cell.width()) + 2;
                text.push_str(&" ".repeat(pad));
            }
        }
        println!("{}", text.trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Text from mail (a subject, a name) as a terminal may show it: control characters,
/// escape sequences among them, become U+FFFD, so a message cannot drive the operator's
/// terminal.
pub fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// A department as the configuration spells it, when a `[[mailbox]]` serves it; otherwise as
/// given, with a warning (a mailbox may be added later).
pub fn department(settings: &Settings, text: &str) -> String {
    let text = text.trim();
    match settings
        .mailboxes
        .iter()
        .map(|mailbox| &mailbox.department)
        .find(|known| known.eq_ignore_ascii_case(text))
    {
        Some(known) => known.clone(),
        None => {
            eprintln!(
                "intake: warning: no [[mailbox]] in {} serves the department {text:?} yet",
                settings.source.display()
            );
            text.to_string()
        }
    }
}

/// `client grant|revoke` and `org grant|revoke`.
pub async fn grant_or_revoke(
    store: &crate::store::Store,
    actor: &str,
    grantee: &crate::store::admin::Grantee,
    department: &str,
    grant: bool,
    output: Output,
) -> anyhow::Result<()> {
    use crate::store::admin::{self, Grantee};
    let who = match grantee {
        Grantee::Client(who) | Grantee::Organisation(who) => who,
    };
    if grant {
        let released = admin::grant(store, actor, grantee, department).await?;
        if output == Output::Json {
            return print_json(&serde_json::json!({
                "granted": department, "to": who, "released": released,
            }));
        }
        println!("{who} may now write to {department}; {released} held incidents released");
    } else {
        admin::revoke(store, actor, grantee, department).await?;
        if output == Output::Json {
            return print_json(&serde_json::json!({ "revoked": department, "from": who }));
        }
        println!("{who} no longer has access to {department}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_mail_cannot_drive_the_terminal() {
        assert_eq!(
            terminal_safe("Invoice\u{1b}]0;pwned\u{7}\r\nnext"),
            "Invoice\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}\u{FFFD}next"
        );
        assert_eq!(terminal_safe("山田 Ünïcode"), "山田 Ünïcode");
        assert_eq!("山田".width(), 4);
    }
}
