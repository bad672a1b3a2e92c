//! `intake client`: clients from a shell, one at a time or in bulk (several emails, or
//! `--org NAME`), and as CSV in and out.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::ingest::{Approval, Standing};
use crate::store::admin::{self, AdminError, ClientChange, ClientEntry, ClientFilter, Targets};
use crate::store::{Store, references};

use super::{Migrations, Output, actor, open_store};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List clients by email, with their organisation, approval and standing.
    List {
        /// Only this organisation's clients.
        #[arg(long)]
        org: Option<String>,
        #[arg(long, value_parser = ["pending", "approved"])]
        approval: Option<String>,
        #[arg(long, value_parser = ["normal", "banned", "spam"])]
        standing: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 500)]
        limit: i64,
    },
    /// One client and their incidents, by email, additional address or reference.
    Show { client: String },
    /// Register a client by hand; approved and in good standing unless told otherwise.
    Add {
        email: String,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        /// Organisation by name; without it, the owner of the email's domain or the default.
        #[arg(long)]
        org: Option<String>,
        /// Register as pending: their mail is held until `intake client approve`.
        #[arg(long)]
        pending: bool,
        /// Do not queue the registration mail ([outbound] registration decides otherwise).
        #[arg(long)]
        no_registration_mail: bool,
        /// The client reference (C-48213); drawn at random when left out. Never one issued
        /// before.
        #[arg(long)]
        reference: Option<String>,
        /// A note for staff.
        #[arg(long)]
        note: Option<String>,
    },
    /// Change a client's reference, name or organisation.
    Edit {
        client: String,
        #[arg(long)]
        reference: Option<String>,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        /// Move the client; their existing incidents keep the organisation they were opened for.
        #[arg(long)]
        org: Option<String>,
    },
    /// Set the staff note on a client (shown in `client show` and `client_overview`).
    Note {
        client: String,
        /// The note; leave out with --clear.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        text: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// Let a client open incidents in a department (`department_access = "restricted"`);
    /// releases what was held for it.
    Grant { client: String, department: String },
    /// Take a client's department grant back (new mail is held again).
    Revoke { client: String, department: String },
    /// Give a client one more address: mail from it is theirs.
    AddAddress { client: String, address: String },
    /// Remove an additional address (their incidents stay theirs).
    RemoveAddress { address: String },
    /// Queue the registration or approval mail to a client again, through the outbound queue
    /// and its rules.
    Send {
        client: String,
        #[arg(value_parser = ["registration", "approval"])]
        template: String,
    },
    /// Approve: releases their held incidents and queues the approval mail.
    Approve(Selection),
    /// Back to pending: their new mail is held until approved again.
    Disapprove(Selection),
    /// Drop their future mail (kept in the audit trail); existing incidents stay where they
    /// are; approval and standing are kept for `unban`.
    Ban(Selection),
    /// Lift a ban: approval and standing (normal, or spam) as they were before it.
    Unban(Selection),
    /// Move all their incidents to the spam folder, file new mail there, send them nothing.
    Spam(Selection),
    /// Standing back to normal: their incidents return to the folders they had.
    NotSpam(Selection),
    /// Remove clients with all their incidents and messages.
    Delete {
        #[command(flatten)]
        selection: Selection,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Move SOURCE's incidents and messages to TARGET and remove SOURCE.
    Merge {
        source: String,
        #[arg(long)]
        into: String,
        /// Keep SOURCE's email as an additional address of TARGET.
        #[arg(long)]
        as_address: bool,
    },
    /// Add or update clients from a CSV file (email, first_name, last_name, organisation,
    /// approval, standing, reference): every row is checked first, and nothing is imported if
    /// one is bad.
    Import {
        file: PathBuf,
        /// The organisation of every row that names none.
        #[arg(long)]
        org: Option<String>,
    },
    /// Write every client as CSV in the shape `import` reads, to stdout or a file.
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// The clients a mass action applies to.
#[derive(Debug, Args)]
pub struct Selection {
    /// Client emails or references.
    #[arg(required_unless_present = "org", conflicts_with = "org")]
    emails: Vec<String>,
    /// Every client of this organisation instead.
    #[arg(long)]
    org: Option<String>,
}

impl Selection {
    fn targets(&self) -> Targets {
        match &self.org {
            Some(name) => Targets::Organisation(name.clone()),
            None => Targets::Emails(self.emails.clone()),
        }
    }
}

pub async fn run(
    settings: &Settings,
    command: &ClientCommand,
    output: Output,
) -> anyhow::Result<()> {
    // Read the CSV before touching the database: a bad file costs no connection.
    let import = match command {
        ClientCommand::Import { file, .. } => Some(read_csv_file(file)?),
        _ => None,
    };
    let store = open_store(settings, Migrations::ApplyIfBehind).await?;
    let result = execute(settings, &store, command, import, output).await;
    store.close().await;
    result
}

async fn execute(
    settings: &Settings,
    store: &Store,
    command: &ClientCommand,
    import: Option<Vec<(usize, CsvRow)>>,
    output: Output,
) -> anyhow::Result<()> {
    let actor = actor();
    match command {
        ClientCommand::List {
            org,
            approval,
            standing,
            limit,
        } => {
            let filter = ClientFilter {
                organisation: org.clone(),
                approval: approval.clone(),
                standing: standing.clone(),
            };
            let rows = admin::clients(store, &filter, *limit).await?;
            if output == Output::Json {
                return super::print_json(&rows);
            }
            let table: Vec<[String; 8]> = rows
                .into_iter()
                .map(|row| {
                    [
                        row.reference.unwrap_or_default(),
                        row.email,
                        full_name(&row.first_name, &row.last_name, &row.display_name),
                        row.organisation,
                        row.approval,
                        row.standing,
                        row.incident_count.to_string(),
                        row.open_incident_count.to_string(),
                    ]
                })
                .collect();
            super::print_table(
                &[
                    "REF",
                    "EMAIL",
                    "NAME",
                    "ORGANISATION",
                    "APPROVAL",
                    "STANDING",
                    "INCIDENTS",
                    "OPEN",
                ],
                &table,
            );
        }
        ClientCommand::Show { client: who } => {
            let Some(client) = admin::client(store, who).await? else {
                return Err(AdminError::Refused(format!(
                    "no client with the address or reference {who}"
                ))
                .into());
            };
            let filter = crate::store::read::IncidentFilter {
                client_email: Some(client.email.clone()),
                ..Default::default()
            };
            let incidents = crate::store::read::incidents(store, &filter, 1000).await?;
            if output == Output::Json {
                return super::print_json(&serde_json::json!({
                    "client": client,
                    "incidents": incidents,
                }));
            }
            for (label, value) in [
                ("Reference", client.reference.clone().unwrap_or_default()),
                ("Email", client.email.clone()),
                ("Also", client.other_addresses.clone().unwrap_or_default()),
                (
                    "Name",
                    full_name(&client.first_name, &client.last_name, &client.display_name),
                ),
                ("Organisation", client.organisation.clone()),
                ("Approval", client.approval.clone()),
                ("Standing", client.standing.clone()),
                ("Registered", client.created_at.to_iso()),
                ("Note", client.note.clone().unwrap_or_default()),
            ] {
                if !value.is_empty() {
                    println!(
                        "{:<13} {}",
                        format!("{label}:"),
                        super::terminal_safe(&value)
                    );
                }
            }
            println!();
            let table: Vec<[String; 4]> = incidents
                .into_iter()
                .map(|row| [row.hash, row.folder, row.status, row.subject])
                .collect();
            super::print_table(&["HASH", "FOLDER", "STATUS", "SUBJECT"], &table);
        }
        ClientCommand::Add {
            email,
            first_name,
            last_name,
            org,
            pending,
            no_registration_mail,
            reference,
            note,
        } => {
            let reference = reference.as_deref().map(valid_reference).transpose()?;
            let entry = ClientEntry {
                email: valid_email(email).map_err(AdminError::Refused)?,
                reference,
                other_addresses: None,
                note: note.as_deref().and_then(non_empty),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                organisation: org.clone(),
                approval: Some(if *pending {
                    Approval::Pending
                } else {
                    Approval::Approved
                }),
                standing: Some(Standing::Normal),
            };
            let mail = settings.outbound.registration && !no_registration_mail;
            admin::add_client(store, &actor, &entry, mail).await?;
            let client = admin::client(store, &entry.email).await?;
            if output == Output::Json {
                return super::print_json(&client);
            }
            if let Some(client) = client {
                println!(
                    "{} ({}) added to {} ({}{})",
                    client.email,
                    client.reference.as_deref().unwrap_or("-"),
                    client.organisation,
                    client.approval,
                    if mail {
                        ", registration mail queued"
                    } else {
                        ""
                    }
                );
            }
        }
        ClientCommand::Approve(selection)
        | ClientCommand::Disapprove(selection)
        | ClientCommand::Ban(selection)
        | ClientCommand::Unban(selection)
        | ClientCommand::Spam(selection)
        | ClientCommand::NotSpam(selection) => {
            let what = match command {
                ClientCommand::Approve(_) => ClientChange::Approval(Approval::Approved),
                ClientCommand::Disapprove(_) => ClientChange::Approval(Approval::Pending),
                ClientCommand::Ban(_) => ClientChange::Standing(Standing::Banned),
                ClientCommand::Spam(_) => ClientChange::Standing(Standing::Spam),
                ClientCommand::NotSpam(_) => ClientChange::Standing(Standing::Normal),
                // Unban: the only other command this arm takes.
                _ => ClientChange::Unban,
            };
            change(store, &actor, selection, what, output).await?;
        }
        ClientCommand::Delete { selection, yes } => {
            let emails = admin::resolve_clients(store, &selection.targets()).await?;
            if !*yes && !confirm(&emails)? {
                anyhow::bail!("nothing was deleted");
            }
            let deleted = admin::delete_clients(store, &actor, &emails).await?;
            if output == Output::Json {
                let report: Vec<_> = deleted
                    .iter()
                    .map(|(email, deleted)| serde_json::json!({ "email": email, "deleted": deleted }))
                    .collect();
                return super::print_json(&report);
            }
            for (email, deleted) in deleted {
                println!(
                    "{email} deleted with {} incidents and {} messages",
                    deleted.incidents, deleted.messages
                );
            }
        }
        ClientCommand::Merge {
            source,
            into,
            as_address,
        } => {
            let merged = admin::merge_clients(store, &actor, source, into, *as_address).await?;
            if output == Output::Json {
                return super::print_json(&merged);
            }
            println!(
                "{source} merged into {into}: {} incidents moved{}",
                merged.incidents,
                if *as_address {
                    format!(", {source} kept as an additional address")
                } else {
                    String::new()
                }
            );
        }
        ClientCommand::Edit {
            client,
            reference,
            first_name,
            last_name,
            org,
        } => {
            let edit = admin::ClientEdit {
                reference: reference.as_deref().map(valid_reference).transpose()?,
                first_name: first_name.as_deref().map(str::trim).map(str::to_string),
                last_name: last_name.as_deref().map(str::trim).map(str::to_string),
                organisation: org.clone(),
                note: None,
            };
            let email = admin::edit_client(store, &actor, client, &edit).await?;
            return show_one(store, &email, output).await;
        }
        ClientCommand::Note { client, text, .. } => {
            let edit = admin::ClientEdit {
                note: Some(text.as_deref().and_then(non_empty)),
                ..Default::default()
            };
            let email = admin::edit_client(store, &actor, client, &edit).await?;
            return show_one(store, &email, output).await;
        }
        ClientCommand::Grant { client, department }
        | ClientCommand::Revoke { client, department } => {
            return super::grant_or_revoke(
                store,
                &actor,
                &admin::Grantee::Client(client.clone()),
                &super::department(settings, department),
                matches!(command, ClientCommand::Grant { .. }),
                output,
            )
            .await;
        }
        ClientCommand::AddAddress { client, address } => {
            let address = valid_email(address).map_err(AdminError::Refused)?;
            let email = admin::add_address(store, &actor, client, &address).await?;
            if output == Output::Json {
                return super::print_json(
                    &serde_json::json!({ "client": email, "address": address.to_lowercase() }),
                );
            }
            println!("{} is now an address of {email}", address.to_lowercase());
        }
        ClientCommand::RemoveAddress { address } => {
            let email = admin::remove_address(store, &actor, address).await?;
            if output == Output::Json {
                return super::print_json(
                    &serde_json::json!({ "client": email, "removed": address.to_lowercase() }),
                );
            }
            println!(
                "{} is no longer an address of {email}",
                address.to_lowercase()
            );
        }
        ClientCommand::Send { client, template } => {
            let (email, id) = admin::send_template(store, &actor, client, template).await?;
            if output == Output::Json {
                return super::print_json(
                    &serde_json::json!({ "client": email, "template": template, "outbound": id }),
                );
            }
            println!(
                "{template} mail to {email} queued (outbound {id}); `intake queue list` shows what becomes of it"
            );
        }
        ClientCommand::Import { file, org } => {
            let rows = import.unwrap_or_default();
            let entries = validate(store, &rows, org.as_deref())
                .await?
                .map_err(|problems| bad_rows(file, &problems))?;
            let imported = admin::import_clients(store, &actor, &entries).await?;
            if output == Output::Json {
                return super::print_json(&imported);
            }
            println!(
                "{}: {} clients added, {} updated",
                file.display(),
                imported.added,
                imported.updated
            );
        }
        ClientCommand::Export { output: path } => {
            let entries = admin::export_clients(store).await?;
            match path {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    write_csv(file, &entries)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                None => write_csv(std::io::stdout().lock(), &entries)?,
            }
        }
    }
    Ok(())
}

async fn change(
    store: &Store,
    actor: &str,
    selection: &Selection,
    change: ClientChange,
    output: Output,
) -> anyhow::Result<()> {
    let changed = admin::change_clients(store, actor, &selection.targets(), change).await?;
    if output == Output::Json {
        return super::print_json(&changed);
    }
    for client in changed {
        if client.before == client.after {
            println!("{}: already {}", client.email, client.after);
        } else {
            println!("{}: {} -> {}", client.email, client.before, client.after);
        }
    }
    Ok(())
}

async fn show_one(store: &Store, email: &str, output: Output) -> anyhow::Result<()> {
    let client = admin::client(store, email).await?;
    if output == Output::Json {
        return super::print_json(&client);
    }
    if let Some(client) = client {
        let line = format!(
            "{} ({}): {}, {}{}",
            client.email,
            client.reference.as_deref().unwrap_or("-"),
            full_name(&client.first_name, &client.last_name, &client.display_name),
            client.organisation,
            client
                .note
                .map(|note| format!("; note: {note}"))
                .unwrap_or_default()
        );
        println!("{}", super::terminal_safe(&line));
    }
    Ok(())
}

fn valid_reference(text: &str) -> Result<String, AdminError> {
    references::normalise(text).ok_or_else(|| {
        AdminError::Refused(format!(
            "{text:?} is not a client reference: 2 to 32 letters, digits and dashes, such as C-48213"
        ))
    })
}

fn full_name(first: &Option<String>, last: &Option<String>, display: &Option<String>) -> String {
    let joined = [first.as_deref(), last.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if joined.trim().is_empty() {
        display.clone().unwrap_or_default()
    } else {
        joined
    }
}

/// Asks on the terminal; without one, `--yes` is required.
fn confirm(emails: &[String]) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "deleting {} clients with all their incidents: pass --yes to confirm",
            emails.len()
        );
    }
    eprint!(
        "Delete {} with all their incidents and messages? [y/N] ",
        emails.join(", ")
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The CSV columns, in order; the header row names them.
const CSV_HEADER: [&str; 8] = [
    "email",
    "first_name",
    "last_name",
    "organisation",
    "approval",
    "standing",
    "reference",
    "other_addresses",
];

/// A CSV record as read, before validation.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct CsvRow {
    email: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    approval: String,
    #[serde(default)]
    standing: String,
    #[serde(default)]
    reference: String,
    /// Additional addresses separated by `;`, `,` or spaces.
    #[serde(default)]
    other_addresses: String,
}

/// Every record with its line number. Column names are matched without regard to case,
/// spaces or underscores ("First name" is `first_name`); a record that cannot be read at all
/// fails the whole file, with its line.
fn read_csv_file(path: &Path) -> anyhow::Result<Vec<(usize, CsvRow)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(file);
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: reading the header row", path.display()))?
        .iter()
        .map(|name| name.to_lowercase().replace([' ', '-'], "_"))
        .collect();
    let unknown: Vec<&String> = headers
        .iter()
        .filter(|name| !CSV_HEADER.contains(&name.as_str()))
        .collect();
    if !headers.iter().any(|name| name == "email") || !unknown.is_empty() {
        anyhow::bail!(
            "{}: line 1: expected the columns {} (email required), found {}",
            path.display(),
            CSV_HEADER.join(", "),
            headers.join(", ")
        );
    }
    let headers = csv::StringRecord::from(headers);
    let mut rows = Vec::new();
    for record in reader.records() {
        let mut record = record.map_err(|error| {
            let line = error
                .position()
                .map(|position| position.line())
                .unwrap_or(0);
            anyhow::anyhow!("{}: line {line}: {error}", path.display())
        })?;
        // Spreadsheets leave trailing empty cells out: a short row has them empty.
        while record.len() < headers.len() {
            record.push_field("");
        }
        let line = record
            .position()
            .map(|position| position.line())
            .unwrap_or(0);
        let row: CsvRow = record
            .deserialize(Some(&headers))
            .map_err(|error| anyhow::anyhow!("{}: line {line}: {error}", path.display()))?;
        rows.push((usize::try_from(line).unwrap_or(usize::MAX), row));
    }
    Ok(rows)
}

/// The entries to import, or every problem found, by line.
async fn validate(
    store: &Store,
    rows: &[(usize, CsvRow)],
    default_organisation: Option<&str>,
) -> anyhow::Result<Result<Vec<ClientEntry>, Vec<String>>> {
    let organisations: HashMap<String, String> = admin::organisations(store)
        .await?
        .into_iter()
        .map(|row| (row.name.to_lowercase(), row.name))
        .collect();
    let default_organisation = match default_organisation {
        Some(name) => Some(
            organisations
                .get(&name.to_lowercase())
                .cloned()
                .ok_or_else(|| {
                    AdminError::Refused(format!(
                        "--org: no organisation named {name:?}; nothing imported"
                    ))
                })?,
        ),
        None => None,
    };
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut seen_references = BTreeSet::new();
    let mut entries = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        let mut reasons = Vec::new();
        let email = match valid_email(&row.email) {
            Ok(email) => {
                if !seen.insert(email.to_lowercase()) {
                    reasons.push(format!("{email} appears twice in the file"));
                }
                if let Some(owner) = admin::additional_address_owner(store, &email).await? {
                    reasons.push(format!(
                        "{email} is an additional address of {owner}, not a client of its own"
                    ));
                }
                email
            }
            Err(reason) => {
                reasons.push(reason);
                String::new()
            }
        };
        let organisation = match row.organisation.as_str() {
            "" => default_organisation.clone(),
            name => match organisations.get(&name.to_lowercase()) {
                Some(name) => Some(name.clone()),
                None => {
                    reasons.push(format!(
                        "no organisation named {name:?} (intake org add {name:?})"
                    ));
                    None
                }
            },
        };
        let approval = match row.approval.to_lowercase().as_str() {
            "" => None,
            text => Approval::parse(text).or_else(|| {
                reasons.push(format!("approval {text:?} is not one of pending, approved"));
                None
            }),
        };
        let standing = match row.standing.to_lowercase().as_str() {
            "" => None,
            text => Standing::parse(text).or_else(|| {
                reasons.push(format!(
                    "standing {text:?} is not one of normal, banned, spam"
                ));
                None
            }),
        };
        let reference = match row.reference.as_str() {
            "" => None,
            text => match references::normalise(text) {
                None => {
                    reasons.push(format!("{text:?} is not a client reference"));
                    None
                }
                Some(reference) => {
                    if !seen_references.insert(reference.clone()) {
                        reasons.push(format!("{reference} appears twice in the file"));
                    }
                    match admin::reference_holder(store, &reference).await? {
                        Some(Some(holder)) if !holder.eq_ignore_ascii_case(&email) => {
                            reasons.push(format!("the reference {reference} belongs to {holder}"))
                        }
                        Some(None) => reasons.push(format!(
                            "the reference {reference} was issued before and is never reused"
                        )),
                        _ => {}
                    }
                    Some(reference)
                }
            },
        };
        let other_addresses = if row.other_addresses.trim().is_empty() {
            None
        } else {
            let mut addresses = Vec::new();
            for text in row
                .other_addresses
                .split([';', ',', ' ', '\t'])
                .filter(|text| !text.is_empty())
            {
                let address = match valid_email(text) {
                    Ok(address) => address.to_lowercase(),
                    Err(reason) => {
                        reasons.push(reason);
                        continue;
                    }
                };
                if !seen.insert(address.clone()) {
                    reasons.push(format!("{address} appears twice in the file"));
                    continue;
                }
                if admin::client(store, &address)
                    .await?
                    .is_some_and(|owner| !owner.email.eq_ignore_ascii_case(&email))
                {
                    reasons.push(format!("{address} already belongs to another client"));
                }
                addresses.push(address);
            }
            Some(addresses)
        };
        if reasons.is_empty() {
            entries.push(ClientEntry {
                email,
                reference,
                other_addresses,
                note: None,
                first_name: non_empty(&row.first_name),
                last_name: non_empty(&row.last_name),
                organisation,
                approval,
                standing,
            });
        } else {
            problems.push(format!("line {line}: {}", reasons.join("; ")));
        }
    }
    Ok(if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    })
}

fn bad_rows(file: &Path, problems: &[String]) -> AdminError {
    AdminError::Refused(format!(
        "{}: {} bad rows, nothing imported:\n  {}",
        file.display(),
        problems.len(),
        problems.join("\n  ")
    ))
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// One address, `local@domain`, without spaces, brackets or a display name.
fn valid_email(text: &str) -> Result<String, String> {
    let text = text.trim();
    let well_formed = text.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
            && !local
                .chars()
                .any(|c| c.is_whitespace() || "<>(),;:\"[]\\".contains(c))
    });
    if well_formed {
        Ok(text.to_string())
    } else if text.is_empty() {
        Err("the email is empty".to_string())
    } else {
        Err(format!("{text:?} is not an email address"))
    }
}

fn write_csv(writer: impl Write, entries: &[ClientEntry]) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record(CSV_HEADER)?;
    for entry in entries {
        csv.write_record([
            entry.email.as_str(),
            entry.first_name.as_deref().unwrap_or(""),
            entry.last_name.as_deref().unwrap_or(""),
            entry.organisation.as_deref().unwrap_or(""),
            entry.approval.map(Approval::as_str).unwrap_or(""),
            entry.standing.map(Standing::as_str).unwrap_or(""),
            entry.reference.as_deref().unwrap_or(""),
            &entry
                .other_addresses
                .as_deref()
                .unwrap_or_default()
                .join("; "),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_plain_addresses() {
        assert_eq!(
            valid_email(" ada@contoso.com ").as_deref(),
            Ok("ada@contoso.com")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@contoso.com",
            "Ada <ada@contoso.com>",
            "a b@c.com",
            "ada@localhost",
            "ada@contoso..com.",
        ] {
            assert!(valid_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn full_name_falls_back_to_the_display_name() {
        let some = |text: &str| Some(text.to_string());
        assert_eq!(
            full_name(&some("Ada"), &some("Lovelace"), &some("A. L.")),
            "Ada Lovelace"
        );
        assert_eq!(full_name(&None, &None, &some("A. L.")), "A. L.");
        assert_eq!(full_name(&None, &some("Lovelace"), &None), "Lovelace");
    }
}
