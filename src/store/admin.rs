//! Staff changes to clients and organisations, as `intake client` and `intake org` make them.
//!
//! Each change is one transaction that also writes an `admin_log` row. Mass actions check every
//! target first and change nothing when one is unknown. What follows from a change is left to
//! the database where staff could make the same change in a viewer: the triggers release held
//! incidents and queue approval mail when `approval` turns `approved`, and ingest reads
//! `standing` afresh for every message.

use serde::Serialize;

use crate::ingest::{Approval, Standing, domain_and_parents};
use crate::{on_pool, on_tx};

use super::apply::enqueue;
use super::{Store, StoreError, Timestamp, Tx, references};

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The change does not make sense as asked (an unknown client, the default organisation,
    /// a domain another organisation owns): nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        AdminError::Store(StoreError::from(error))
    }
}

/// One row of `client_overview`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ClientRow {
    pub reference: Option<String>,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub organisation: String,
    pub approval: String,
    pub standing: String,
    /// Additional addresses, comma-separated.
    pub other_addresses: Option<String>,
    pub note: Option<String>,
    pub incident_count: i64,
    pub open_incident_count: i64,
    pub last_incident_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// Which clients `clients` lists; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    pub organisation: Option<String>,
    pub approval: Option<String>,
    pub standing: Option<String>,
}

/// SQL: the `client_overview` columns of a `ClientRow`.
macro_rules! client_row_select {
    () => {
        "SELECT reference, email, first_name, last_name, display_name, organisation, approval, \
         standing, other_addresses, note, incident_count, open_incident_count, last_incident_at, \
         created_at FROM client_overview "
    };
}

/// SQL: the email of the client whose additional address `$1` is.
const ADDRESS_OWNER: &str = "SELECT c.email FROM client_addresses a \
     JOIN clients c ON c.id = a.client_id WHERE a.address = lower($1)";

/// SQL: whether reference `$1` was ever issued (a row) and to which client now (or none).
const REFERENCE_HOLDER: &str = "SELECT c.id, c.email FROM client_references r \
     LEFT JOIN clients c ON c.reference = r.reference WHERE r.reference = $1";

pub async fn clients(
    store: &Store,
    filter: &ClientFilter,
    limit: i64,
) -> Result<Vec<ClientRow>, StoreError> {
    Ok(on_pool!(store, pool => {
        sqlx::query_as::<_, ClientRow>(concat!(
            client_row_select!(),
            "WHERE ($1 IS NULL OR lower(organisation) = lower($1)) \
               AND ($2 IS NULL OR approval = $2) AND ($3 IS NULL OR standing = $3) \
             ORDER BY lower(email) LIMIT $4",
        ))
        .bind(&filter.organisation)
        .bind(&filter.approval)
        .bind(&filter.standing)
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

/// One client by email, additional address or reference.
pub async fn client(store: &Store, who: &str) -> Result<Option<ClientRow>, StoreError> {
    Ok(on_pool!(store, pool => {
        sqlx::query_as::<_, ClientRow>(concat!(
            client_row_select!(),
            "WHERE client_id = ",
            client_named!("$1"),
        ))
        .bind(who)
        .fetch_optional(pool)
        .await?
    }))
}

/// A client as staff enter it: with `client add` or a CSV row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientEntry {
    pub email: String,
    /// Drawn at random when a new client has none.
    pub reference: Option<String>,
    /// Additional addresses, lower-cased; `None` keeps an existing client's as they are.
    pub other_addresses: Option<Vec<String>>,
    /// The staff note of a new client (`client add --note`); the CSV shape carries none.
    pub note: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// An organisation's name; none places the client by their email's domain.
    pub organisation: Option<String>,
    pub approval: Option<Approval>,
    pub standing: Option<Standing>,
}

/// Adds one client; `registration_mail` queues the registration template to them.
pub async fn add_client(
    store: &Store,
    actor: &str,
    entry: &ClientEntry,
    registration_mail: bool,
) -> Result<(), AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    if client_by_email(&mut tx, &entry.email).await?.is_some() {
        return Err(AdminError::Refused(format!(
            "{} is already a client",
            entry.email
        )));
    }
    let organisation = placement(&mut tx, entry).await?;
    let id = insert_client(&mut tx, entry, organisation, now).await?;
    if registration_mail {
        enqueue(
            &mut tx,
            "registration",
            &entry.email,
            Some(id),
            None,
            None,
            now,
        )
        .await?;
    }
    let detail = if registration_mail {
        "registration mail queued"
    } else {
        "no registration mail"
    };
    log(
        &mut tx,
        actor,
        "client add",
        &entry.email,
        Some(detail),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The clients a mass action applies to.
#[derive(Debug, Clone)]
pub enum Targets {
    Emails(Vec<String>),
    Organisation(String),
}

/// What a mass action can set.
#[derive(Debug, Clone, Copy)]
pub enum ClientChange {
    Approval(Approval),
    Standing(Standing),
    /// Lift a ban: back to the standing the client had before it (normal or spam).
    Unban,
}

impl ClientChange {
    fn action(self) -> &'static str {
        match self {
            ClientChange::Approval(Approval::Approved) => "client approve",
            ClientChange::Approval(Approval::Pending) => "client disapprove",
            ClientChange::Standing(Standing::Banned) => "client ban",
            ClientChange::Standing(Standing::Spam) => "client spam",
            ClientChange::Standing(Standing::Normal) => "client not-spam",
            ClientChange::Unban => "client unban",
        }
    }
}

/// One client a mass action looked at, and whether it changed them.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub email: String,
    pub before: String,
    pub after: String,
}

/// Sets approval or standing on every target. An unknown email refuses the whole action.
/// Approval and standing are separate columns, so unbanning restores the earlier approval.
pub async fn change_clients(
    store: &Store,
    actor: &str,
    targets: &Targets,
    change: ClientChange,
) -> Result<Vec<Changed>, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let found = resolve_targets(&mut tx, targets).await?;
    let mut changed = Vec::with_capacity(found.len());
    for (id, email) in found {
        let (before, after): (String, String) = on_tx!(&mut tx, conn => match change {
            ClientChange::Approval(approval) => {
                let before: String =
                    sqlx::query_scalar("SELECT approval FROM clients WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?;
                sqlx::query(
                    "UPDATE clients SET approval = $1, updated_at = $2 \
                     WHERE id = $3 AND approval <> $1",
                )
                .bind(approval.as_str())
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                (before, approval.as_str().to_string())
            }
            ClientChange::Standing(standing) => {
                let before: String =
                    sqlx::query_scalar("SELECT standing FROM clients WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?;
                sqlx::query(
                    "UPDATE clients SET standing = $1, updated_at = $2 \
                     WHERE id = $3 AND standing <> $1",
                )
                .bind(standing.as_str())
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                (before, standing.as_str().to_string())
            }
            ClientChange::Unban => {
                let before: String =
                    sqlx::query_scalar("SELECT standing FROM clients WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?;
                sqlx::query(
                    "UPDATE clients SET standing = coalesce(standing_before_ban, 'normal'), \
                     updated_at = $1 WHERE id = $2 AND standing = 'banned'",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                let after: String =
                    sqlx::query_scalar("SELECT standing FROM clients WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?;
                (before, after)
            }
        });
        if before != after {
            let detail = format!("{before} -> {after}");
            log(&mut tx, actor, change.action(), &email, Some(&detail), now).await?;
        }
        changed.push(Changed {
            email,
            before,
            after: after.to_string(),
        });
    }
    tx.commit().await?;
    Ok(changed)
}

/// What `delete_client` removed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Deleted {
    pub incidents: i64,
    pub messages: i64,
}

/// The main emails of the clients `targets` names, refused whole when one is unknown: what a
/// destructive action will touch, to show staff before it runs.
pub async fn resolve_clients(store: &Store, targets: &Targets) -> Result<Vec<String>, AdminError> {
    let mut tx = store.begin().await?;
    let found = resolve_targets(&mut tx, targets).await?;
    tx.rollback().await?;
    Ok(found.into_iter().map(|(_, email)| email).collect())
}

/// Removes clients with their incidents, those incidents' messages, their queued mail,
/// addresses and grants, all in one transaction. `ingest_log` keeps its rows (their incident
/// link cleared): the audit trail outlives them.
pub async fn delete_clients(
    store: &Store,
    actor: &str,
    emails: &[String],
) -> Result<Vec<(String, Deleted)>, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let found = resolve_targets(&mut tx, &Targets::Emails(emails.to_vec())).await?;
    let mut report = Vec::with_capacity(found.len());
    for (id, email) in found {
        let deleted = on_tx!(&mut tx, conn => {
            let (incidents, messages): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM incidents WHERE client_id = $1), \
                 (SELECT count(*) FROM messages m JOIN incidents i ON i.id = m.incident_id \
                  WHERE i.client_id = $1)",
            )
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM incidents WHERE client_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM clients WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Deleted { incidents, messages }
        });
        let detail = format!(
            "{} incidents and {} messages deleted",
            deleted.incidents, deleted.messages
        );
        log(&mut tx, actor, "client delete", &email, Some(&detail), now).await?;
        report.push((email, deleted));
    }
    tx.commit().await?;
    Ok(report)
}

/// What `merge_clients` moved.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Merged {
    pub incidents: i64,
    pub outbound: i64,
    /// The source's additional addresses moved to the target, and its main email with
    /// `as_address`.
    pub addresses: i64,
}

/// Moves the source's incidents (with their messages), outbound mail and additional addresses
/// to the target and removes the source. The target keeps its own name, organisation,
/// approval and standing. With `as_address` the source's email becomes one of the target's
/// additional addresses, so their later mail lands on the target.
pub async fn merge_clients(
    store: &Store,
    actor: &str,
    source: &str,
    target: &str,
    as_address: bool,
) -> Result<Merged, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (source_id, source_email) = find_client(&mut tx, source)
        .await?
        .ok_or_else(|| no_client(source))?;
    let (target_id, target_email) = find_client(&mut tx, target)
        .await?
        .ok_or_else(|| no_client(target))?;
    if source_id == target_id {
        return Err(AdminError::Refused(format!(
            "{source} and {target} are the same client"
        )));
    }
    let merged = on_tx!(&mut tx, conn => {
        let incidents = sqlx::query(
            "UPDATE incidents SET client_id = $1, updated_at = $3 WHERE client_id = $2",
        )
        .bind(target_id)
        .bind(source_id)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        let outbound = sqlx::query(
            "UPDATE outbound SET client_id = $1, updated_at = $3 WHERE client_id = $2",
        )
        .bind(target_id)
        .bind(source_id)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        let mut addresses = sqlx::query("UPDATE client_addresses SET client_id = $1 WHERE client_id = $2")
            .bind(target_id)
            .bind(source_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(source_id)
            .execute(&mut *conn)
            .await?;
        if as_address {
            sqlx::query(
                "INSERT INTO client_addresses (address, client_id, created_at) VALUES ($1, $2, $3)",
            )
            .bind(source_email.to_lowercase())
            .bind(target_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            addresses += 1;
        }
        Merged {
            incidents: i64::try_from(incidents).unwrap_or(i64::MAX),
            outbound: i64::try_from(outbound).unwrap_or(i64::MAX),
            addresses: i64::try_from(addresses).unwrap_or(i64::MAX),
        }
    });
    let detail = format!(
        "merged {source_email}: {} incidents and {} outbound mails moved, {source_email} {}",
        merged.incidents,
        merged.outbound,
        if as_address {
            "kept as an additional address"
        } else {
            "removed"
        }
    );
    log(
        &mut tx,
        actor,
        "client merge",
        &target_email,
        Some(&detail),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(merged)
}

/// Gives a client one more address. Refused when the address is someone's main email (merge
/// that client instead) or another client's additional address.
pub async fn add_address(
    store: &Store,
    actor: &str,
    who: &str,
    address: &str,
) -> Result<String, AdminError> {
    let now = Timestamp::now();
    let address = address.trim().to_lowercase();
    let mut tx = store.begin().await?;
    let (id, email) = find_client(&mut tx, who)
        .await?
        .ok_or_else(|| no_client(who))?;
    if let Some(owner) = address_owner(&mut tx, &address).await? {
        return Err(AdminError::Refused(format!(
            "{address} is already an address of {owner}"
        )));
    }
    if let Some(other) = client_by_email(&mut tx, &address).await? {
        return Err(AdminError::Refused(if other == id {
            format!("{address} is already the main email of {email}")
        } else {
            format!(
                "{address} is a client of its own: `intake client merge {address} --into {email} --as-address` \
                 moves their incidents too"
            )
        }));
    }
    on_tx!(&mut tx, conn => {
        sqlx::query("INSERT INTO client_addresses (address, client_id, created_at) VALUES ($1, $2, $3)")
            .bind(&address)
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    });
    log(
        &mut tx,
        actor,
        "client add-address",
        &email,
        Some(&address),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(email)
}

/// Removes an additional address; returns whose it was. Their incidents stay theirs.
pub async fn remove_address(
    store: &Store,
    actor: &str,
    address: &str,
) -> Result<String, AdminError> {
    let now = Timestamp::now();
    let address = address.trim().to_lowercase();
    let mut tx = store.begin().await?;
    let owner = address_owner(&mut tx, &address).await?.ok_or_else(|| {
        AdminError::Refused(format!("{address} is no client's additional address"))
    })?;
    on_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM client_addresses WHERE address = $1")
            .bind(&address)
            .execute(&mut *conn)
            .await?;
    });
    log(
        &mut tx,
        actor,
        "client remove-address",
        &owner,
        Some(&address),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(owner)
}

/// What `edit_client` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ClientEdit {
    pub reference: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub organisation: Option<String>,
    /// `Some(None)` clears the note.
    pub note: Option<Option<String>>,
}

/// Changes a client's reference, names, organisation or note. A new reference must never have
/// been issued before; the old one stays retired. Moving a client to another organisation
/// leaves their existing incidents filed under the organisation they were opened for.
pub async fn edit_client(
    store: &Store,
    actor: &str,
    who: &str,
    edit: &ClientEdit,
) -> Result<String, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (id, email) = find_client(&mut tx, who)
        .await?
        .ok_or_else(|| no_client(who))?;
    if let Some(reference) = &edit.reference {
        refuse_issued(&mut tx, reference, Some(id)).await?;
    }
    let organisation = match &edit.organisation {
        Some(name) => Some(organisation_id(&mut tx, name).await?),
        None => None,
    };
    on_tx!(&mut tx, conn => {
        sqlx::query(
            "UPDATE clients SET reference = coalesce($1, reference), \
             first_name = coalesce($2, first_name), last_name = coalesce($3, last_name), \
             organisation_id = coalesce($4, organisation_id), \
             note = CASE WHEN $5 THEN $6 ELSE note END, updated_at = $7 WHERE id = $8",
        )
        .bind(&edit.reference)
        .bind(&edit.first_name)
        .bind(&edit.last_name)
        .bind(organisation)
        .bind(edit.note.is_some())
        .bind(edit.note.clone().flatten())
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    });
    let mut changed = Vec::new();
    if let Some(reference) = &edit.reference {
        changed.push(format!("reference {reference}"));
    }
    if edit.first_name.is_some() || edit.last_name.is_some() {
        changed.push("name".to_string());
    }
    if let Some(name) = &edit.organisation {
        changed.push(format!("organisation {name}"));
    }
    if edit.note.is_some() {
        changed.push("note".to_string());
    }
    log(
        &mut tx,
        actor,
        "client edit",
        &email,
        Some(&changed.join(", ")),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(email)
}

/// Queues a registration or approval mail to a client again, through the outbound queue and
/// its rules (a banned or spam client's row ends `suppressed`, the hourly limit applies).
/// Approval mail to a client still pending is refused. Returns the outbound row's id.
pub async fn send_template(
    store: &Store,
    actor: &str,
    who: &str,
    template: &str,
) -> Result<(String, i64), AdminError> {
    if !matches!(template, "registration" | "approval") {
        return Err(AdminError::Refused(format!(
            "{template:?} is not a template a client can be sent again: registration or approval"
        )));
    }
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (id, email) = find_client(&mut tx, who)
        .await?
        .ok_or_else(|| no_client(who))?;
    let approval: String = on_tx!(&mut tx, conn => {
        sqlx::query_scalar("SELECT approval FROM clients WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?
    });
    if template == "approval" && approval != "approved" {
        return Err(AdminError::Refused(format!(
            "{email} is {approval}: approve them (which sends the approval mail) instead"
        )));
    }
    let row = enqueue(&mut tx, template, &email, Some(id), None, None, now).await?;
    let detail = format!("{template} mail queued (outbound {row})");
    log(&mut tx, actor, "client send", &email, Some(&detail), now).await?;
    tx.commit().await?;
    Ok((email, row))
}

/// The client whose additional address `address` is, if any.
pub async fn additional_address_owner(
    store: &Store,
    address: &str,
) -> Result<Option<String>, StoreError> {
    Ok(on_pool!(store, pool => {
        sqlx::query_scalar(ADDRESS_OWNER)
        .bind(address)
        .fetch_optional(pool)
        .await?
    }))
}

/// Who holds a reference: `None` when it was never issued, `Some(None)` when its client is
/// gone (it stays retired), `Some(Some(email))` otherwise.
pub async fn reference_holder(
    store: &Store,
    reference: &str,
) -> Result<Option<Option<String>>, StoreError> {
    let holder: Option<(Option<i64>, Option<String>)> = on_pool!(store, pool => {
        sqlx::query_as(REFERENCE_HOLDER)
            .bind(reference)
            .fetch_optional(pool)
            .await?
    });
    Ok(holder.map(|(_, email)| email))
}

/// Who a department grant is for.
#[derive(Debug, Clone)]
pub enum Grantee {
    /// A client, by email, additional address or reference.
    Client(String),
    /// An organisation, by name: every client of it.
    Organisation(String),
}

/// (client id, organisation id, name for the log): exactly one of the ids is set.
async fn resolve_grantee(
    tx: &mut Tx,
    grantee: &Grantee,
) -> Result<(Option<i64>, Option<i64>, String), AdminError> {
    Ok(match grantee {
        Grantee::Client(who) => {
            let (id, email) = find_client(tx, who).await?.ok_or_else(|| no_client(who))?;
            (Some(id), None, email)
        }
        Grantee::Organisation(name) => {
            let (id, _) = organisation(tx, name).await?;
            (None, Some(id), name.clone())
        }
    })
}

/// Lets a client or an organisation open incidents in `department` (with
/// `department_access = "restricted"`); what was held for it is released by the trigger.
/// Returns how many incidents were released.
pub async fn grant(
    store: &Store,
    actor: &str,
    grantee: &Grantee,
    department: &str,
) -> Result<i64, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (client, organisation, subject) = resolve_grantee(&mut tx, grantee).await?;
    let released = on_tx!(&mut tx, conn => {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM department_grants WHERE lower(department) = lower($1) \
             AND coalesce(client_id, 0) = coalesce($2, 0) AND coalesce(organisation_id, 0) = coalesce($3, 0))",
        )
        .bind(department)
        .bind(client)
        .bind(organisation)
        .fetch_one(&mut *conn)
        .await?;
        if exists {
            return Err(AdminError::Refused(format!(
                "{subject} already has access to {department}"
            )));
        }
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM incidents i JOIN clients c ON c.id = i.client_id \
             WHERE i.folder = 'held' AND i.held_reason = 'department_access' \
             AND lower(i.department) = lower($1) AND (c.id = $2 OR c.organisation_id = $3)",
        )
        .bind(department)
        .bind(client)
        .bind(organisation)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO department_grants (department, client_id, organisation_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(department)
        .bind(client)
        .bind(organisation)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        held
    });
    let action = if client.is_some() {
        "client grant"
    } else {
        "org grant"
    };
    let detail = format!("{department}; {released} held incidents released");
    log(&mut tx, actor, action, &subject, Some(&detail), now).await?;
    tx.commit().await?;
    Ok(released)
}

/// Takes a grant back. Incidents already opened stay where they are; new mail is held again.
pub async fn revoke(
    store: &Store,
    actor: &str,
    grantee: &Grantee,
    department: &str,
) -> Result<(), AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (client, organisation, subject) = resolve_grantee(&mut tx, grantee).await?;
    let removed = on_tx!(&mut tx, conn => {
        sqlx::query(
            "DELETE FROM department_grants WHERE lower(department) = lower($1) \
             AND coalesce(client_id, 0) = coalesce($2, 0) AND coalesce(organisation_id, 0) = coalesce($3, 0)",
        )
        .bind(department)
        .bind(client)
        .bind(organisation)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if removed == 0 {
        return Err(AdminError::Refused(format!(
            "{subject} has no grant for {department}"
        )));
    }
    let action = if client.is_some() {
        "client revoke"
    } else {
        "org revoke"
    };
    log(&mut tx, actor, action, &subject, Some(department), now).await?;
    tx.commit().await?;
    Ok(())
}

/// What `import_clients` did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Imported {
    pub added: u64,
    pub updated: u64,
}

/// Adds or updates every entry in one transaction: all of them or none. The caller has
/// validated the rows; an organisation that vanished since refuses the whole import. An empty
/// field leaves an existing client's value as it is.
pub async fn import_clients(
    store: &Store,
    actor: &str,
    entries: &[ClientEntry],
) -> Result<Imported, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let mut imported = Imported::default();
    for entry in entries {
        let id = match client_by_email(&mut tx, &entry.email).await? {
            None => {
                let organisation = placement(&mut tx, entry).await?;
                imported.added += 1;
                insert_client(&mut tx, entry, organisation, now).await?
            }
            Some(id) => {
                let organisation = match &entry.organisation {
                    Some(name) => Some(organisation_id(&mut tx, name).await?),
                    None => None,
                };
                if let Some(reference) = &entry.reference {
                    refuse_issued(&mut tx, reference, Some(id)).await?;
                }
                on_tx!(&mut tx, conn => {
                    sqlx::query(
                        "UPDATE clients SET first_name = coalesce($1, first_name), \
                         last_name = coalesce($2, last_name), \
                         organisation_id = coalesce($3, organisation_id), \
                         approval = coalesce($4, approval), standing = coalesce($5, standing), \
                         updated_at = $6, reference = coalesce($8, reference) WHERE id = $7",
                    )
                    .bind(&entry.first_name)
                    .bind(&entry.last_name)
                    .bind(organisation)
                    .bind(entry.approval.map(Approval::as_str))
                    .bind(entry.standing.map(Standing::as_str))
                    .bind(now)
                    .bind(id)
                    .bind(&entry.reference)
                    .execute(&mut *conn)
                    .await?;
                });
                imported.updated += 1;
                id
            }
        };
        if let Some(addresses) = &entry.other_addresses {
            set_addresses(&mut tx, id, addresses, now).await?;
        }
    }
    let detail = format!(
        "{} clients added, {} updated",
        imported.added, imported.updated
    );
    log(&mut tx, actor, "client import", "csv", Some(&detail), now).await?;
    tx.commit().await?;
    Ok(imported)
}

/// Every client in the CSV shape of `import_clients`, by email.
pub async fn export_clients(store: &Store) -> Result<Vec<ClientEntry>, StoreError> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = on_pool!(store, pool => {
        sqlx::query_as(
            "SELECT email, first_name, last_name, organisation, approval, standing, reference, \
             other_addresses FROM client_overview ORDER BY lower(email)",
        )
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(
                email,
                first_name,
                last_name,
                organisation,
                approval,
                standing,
                reference,
                others,
            )| {
                ClientEntry {
                    email,
                    reference,
                    note: None,
                    // The view joins them with ", ".
                    other_addresses: others
                        .map(|others| others.split(", ").map(str::to_string).collect::<Vec<_>>()),
                    first_name,
                    last_name,
                    organisation: Some(organisation),
                    approval: Approval::parse(&approval),
                    standing: Standing::parse(&standing),
                }
            },
        )
        .collect())
}

/// One row of `organisation_overview`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OrganisationRow {
    pub name: String,
    pub status: String,
    pub is_default: bool,
    pub description: Option<String>,
    pub display_order: i32,
    pub route_department: Option<String>,
    pub domains: Option<String>,
    pub client_count: i64,
    pub incident_count: i64,
    pub created_at: Timestamp,
}

pub async fn organisations(store: &Store) -> Result<Vec<OrganisationRow>, StoreError> {
    Ok(on_pool!(store, pool => {
        sqlx::query_as::<_, OrganisationRow>(
            "SELECT name, status, is_default, description, display_order, route_department, domains, \
             client_count, incident_count, created_at FROM organisation_overview \
             ORDER BY is_default DESC, display_order, lower(name)",
        )
        .fetch_all(pool)
        .await?
    }))
}

/// What `edit_organisation` may change; `None` leaves a field as it is, `Some(None)` clears.
#[derive(Debug, Clone, Default)]
pub struct OrganisationEdit {
    pub description: Option<Option<String>>,
    pub display_order: Option<i32>,
    /// `enabled` or `disabled`.
    pub status: Option<&'static str>,
    pub route_department: Option<Option<String>>,
}

/// Changes an organisation's description, display order, status or routing. The default
/// organisation cannot be disabled (a trigger holds a viewer edit to the same rule).
pub async fn edit_organisation(
    store: &Store,
    actor: &str,
    name: &str,
    edit: &OrganisationEdit,
) -> Result<(), AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (id, is_default) = organisation(&mut tx, name).await?;
    if is_default && edit.status == Some("disabled") {
        return Err(AdminError::Refused(format!(
            "{name:?} is the default organisation, which cannot be disabled"
        )));
    }
    on_tx!(&mut tx, conn => {
        sqlx::query(
            "UPDATE organisations SET \
             description = CASE WHEN $1 THEN $2 ELSE description END, \
             display_order = coalesce($3, display_order), status = coalesce($4, status), \
             route_department = CASE WHEN $5 THEN $6 ELSE route_department END, \
             updated_at = $7 WHERE id = $8",
        )
        .bind(edit.description.is_some())
        .bind(edit.description.clone().flatten())
        .bind(edit.display_order)
        .bind(edit.status)
        .bind(edit.route_department.is_some())
        .bind(edit.route_department.clone().flatten())
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    });
    let mut changed = Vec::new();
    if let Some(status) = edit.status {
        changed.push(status.to_string());
    }
    if edit.description.is_some() {
        changed.push("description".to_string());
    }
    if let Some(order) = edit.display_order {
        changed.push(format!("display order {order}"));
    }
    match &edit.route_department {
        Some(Some(department)) => changed.push(format!("routed to {department}")),
        Some(None) => changed.push("routing cleared".to_string()),
        None => {}
    }
    log(
        &mut tx,
        actor,
        "org edit",
        name,
        Some(&changed.join(", ")),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates an organisation owning `domains` (each must be free).
pub async fn add_organisation(
    store: &Store,
    actor: &str,
    name: &str,
    domains: &[String],
    move_clients: bool,
) -> Result<u64, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let existing = on_tx!(&mut tx, conn => {
        sqlx::query_scalar::<_, String>("SELECT name FROM organisations WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
    });
    if let Some(existing) = existing {
        return Err(AdminError::Refused(format!(
            "an organisation named {existing:?} exists already"
        )));
    }
    let id: i64 = on_tx!(&mut tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO organisations (name, created_at, updated_at) VALUES ($1, $2, $2) \
             RETURNING id",
        )
        .bind(name)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?
    });
    log(&mut tx, actor, "org add", name, None, now).await?;
    let mut moved = 0;
    for domain in domains {
        moved += claim_domain(&mut tx, actor, id, name, domain, move_clients, now).await?;
    }
    tx.commit().await?;
    Ok(moved)
}

/// Renames an ordinary organisation; the default one takes its name from the configuration.
pub async fn rename_organisation(
    store: &Store,
    actor: &str,
    name: &str,
    new_name: &str,
) -> Result<(), AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (id, is_default) = organisation(&mut tx, name).await?;
    if is_default {
        return Err(AdminError::Refused(format!(
            "{name:?} is the default organisation: its name is [organisations] default in the \
             configuration"
        )));
    }
    let clash = on_tx!(&mut tx, conn => {
        sqlx::query_scalar::<_, String>(
            "SELECT name FROM organisations WHERE lower(name) = lower($1) AND id <> $2",
        )
        .bind(new_name)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    });
    if let Some(clash) = clash {
        return Err(AdminError::Refused(format!(
            "an organisation named {clash:?} exists already"
        )));
    }
    on_tx!(&mut tx, conn => {
        sqlx::query("UPDATE organisations SET name = $1, updated_at = $2 WHERE id = $3")
            .bind(new_name)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    });
    let detail = format!("renamed to {new_name}");
    log(&mut tx, actor, "org rename", name, Some(&detail), now).await?;
    tx.commit().await?;
    Ok(())
}

/// Gives `domain` to the organisation; with `move_clients`, the clients whose address is at
/// that domain move to it. Returns how many moved.
pub async fn add_domain(
    store: &Store,
    actor: &str,
    name: &str,
    domain: &str,
    move_clients: bool,
) -> Result<u64, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (id, _) = organisation(&mut tx, name).await?;
    let moved = claim_domain(&mut tx, actor, id, name, domain, move_clients, now).await?;
    tx.commit().await?;
    Ok(moved)
}

/// Frees a domain; its clients stay where they are, new senders go by the remaining rules.
pub async fn remove_domain(store: &Store, actor: &str, domain: &str) -> Result<String, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let owner = on_tx!(&mut tx, conn => {
        let owner = sqlx::query_scalar::<_, String>(
            "SELECT o.name FROM organisation_domains d \
             JOIN organisations o ON o.id = d.organisation_id WHERE d.domain = $1",
        )
        .bind(domain)
        .fetch_optional(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM organisation_domains WHERE domain = $1")
            .bind(domain)
            .execute(&mut *conn)
            .await?;
        owner
    })
    .ok_or_else(|| AdminError::Refused(format!("no organisation owns the domain {domain}")))?;
    let detail = format!("domain {domain} removed");
    log(
        &mut tx,
        actor,
        "org remove-domain",
        &owner,
        Some(&detail),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(owner)
}

/// What `delete_organisation` moved to the default organisation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Dissolved {
    pub clients: u64,
    pub incidents: u64,
}

/// Deletes an ordinary organisation: its domains go, its clients and incidents move to the
/// default organisation.
pub async fn delete_organisation(
    store: &Store,
    actor: &str,
    name: &str,
) -> Result<Dissolved, AdminError> {
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let (id, is_default) = organisation(&mut tx, name).await?;
    if is_default {
        return Err(AdminError::Refused(format!(
            "{name:?} is the default organisation, which cannot be deleted"
        )));
    }
    let dissolved = on_tx!(&mut tx, conn => {
        let default: i64 = sqlx::query_scalar("SELECT id FROM organisations WHERE is_default")
            .fetch_one(&mut *conn)
            .await?;
        let clients = sqlx::query(
            "UPDATE clients SET organisation_id = $1, updated_at = $3 WHERE organisation_id = $2",
        )
        .bind(default)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        let incidents = sqlx::query(
            "UPDATE incidents SET organisation_id = $1, updated_at = $3 WHERE organisation_id = $2",
        )
        .bind(default)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM organisations WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Dissolved { clients, incidents }
    });
    let detail = format!(
        "{} clients and {} incidents moved to the default organisation",
        dissolved.clients, dissolved.incidents
    );
    log(&mut tx, actor, "org delete", name, Some(&detail), now).await?;
    tx.commit().await?;
    Ok(dissolved)
}

async fn claim_domain(
    tx: &mut Tx,
    actor: &str,
    id: i64,
    name: &str,
    domain: &str,
    move_clients: bool,
    now: Timestamp,
) -> Result<u64, AdminError> {
    let owner = on_tx!(tx, conn => {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT o.id, o.name FROM organisation_domains d \
             JOIN organisations o ON o.id = d.organisation_id WHERE d.domain = $1",
        )
        .bind(domain)
        .fetch_optional(&mut *conn)
        .await?
    });
    match owner {
        Some((owner, owner_name)) if owner != id => {
            return Err(AdminError::Refused(format!(
                "the domain {domain} belongs to {owner_name:?}; remove it there first \
                 (intake org remove-domain {domain})"
            )));
        }
        Some(_) => {}
        None => {
            on_tx!(tx, conn => {
                sqlx::query(
                    "INSERT INTO organisation_domains (domain, organisation_id, created_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(domain)
                .bind(id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            });
        }
    }
    let moved = if move_clients {
        on_tx!(tx, conn => {
            // The domain is validated (letters, digits, dots, hyphens): no LIKE wildcards.
            sqlx::query(
                "UPDATE clients SET organisation_id = $1, updated_at = $3 \
                 WHERE lower(email) LIKE '%@' || $2 AND organisation_id <> $1",
            )
            .bind(id)
            .bind(domain)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        })
    } else {
        0
    };
    let detail = format!("domain {domain} added, {moved} clients moved");
    log(tx, actor, "org add-domain", name, Some(&detail), now).await?;
    Ok(moved)
}

/// A client's id and main email, found by main email, additional address or reference.
async fn find_client(tx: &mut Tx, who: &str) -> Result<Option<(i64, String)>, StoreError> {
    Ok(on_tx!(tx, conn => {
        sqlx::query_as(concat!(
            "SELECT id, email FROM clients WHERE id = ",
            client_named!("$1")
        ))
        .bind(who)
        .fetch_optional(&mut *conn)
        .await?
    }))
}

/// By main email only: what `add` and `import` key on.
async fn client_by_email(tx: &mut Tx, email: &str) -> Result<Option<i64>, StoreError> {
    Ok(on_tx!(tx, conn => {
        sqlx::query_scalar("SELECT id FROM clients WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?
    }))
}

fn no_client(who: &str) -> AdminError {
    AdminError::Refused(format!("no client with the address or reference {who}"))
}

/// The organisation's id and whether it is the default one.
async fn organisation(tx: &mut Tx, name: &str) -> Result<(i64, bool), AdminError> {
    let found: Option<(i64, bool)> = on_tx!(tx, conn => {
        sqlx::query_as("SELECT id, is_default FROM organisations WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
    });
    found.ok_or_else(|| AdminError::Refused(format!("no organisation named {name:?}")))
}

async fn organisation_id(tx: &mut Tx, name: &str) -> Result<i64, AdminError> {
    Ok(organisation(tx, name).await?.0)
}

/// A new client's organisation: the one named, else the owner of their domain, else the
/// default organisation (staff adding a client never create an organisation by accident).
async fn placement(tx: &mut Tx, entry: &ClientEntry) -> Result<i64, AdminError> {
    if let Some(name) = &entry.organisation {
        return organisation_id(tx, name).await;
    }
    let domains = entry
        .email
        .rsplit_once('@')
        .map(|(_, domain)| domain_and_parents(&domain.to_lowercase()))
        .unwrap_or_default();
    let domain = |index: usize| domains.get(index).cloned();
    // As ingest places a sender: the nearest owned domain; a disabled owner places nobody.
    Ok(on_tx!(tx, conn => {
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce( \
               (SELECT CASE WHEN o.status = 'enabled' THEN o.id END \
                FROM organisation_domains d JOIN organisations o ON o.id = d.organisation_id \
                WHERE d.domain IN ($1, $2, $3, $4) ORDER BY length(d.domain) DESC LIMIT 1), \
               (SELECT id FROM organisations WHERE is_default))",
        )
        .bind(domain(0))
        .bind(domain(1))
        .bind(domain(2))
        .bind(domain(3))
        .fetch_one(&mut *conn)
        .await?
    }))
}

async fn insert_client(
    tx: &mut Tx,
    entry: &ClientEntry,
    organisation: i64,
    now: Timestamp,
) -> Result<i64, AdminError> {
    let reference = match &entry.reference {
        Some(reference) => {
            refuse_issued(tx, reference, None).await?;
            reference.clone()
        }
        None => references::new_reference(tx).await?,
    };
    if address_owner(tx, &entry.email).await?.is_some() {
        return Err(AdminError::Refused(format!(
            "{} is already an additional address of a client",
            entry.email
        )));
    }
    Ok(on_tx!(tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO clients (email, first_name, last_name, organisation_id, approval, \
             standing, created_at, updated_at, reference, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9) RETURNING id",
        )
        .bind(&entry.email)
        .bind(&entry.first_name)
        .bind(&entry.last_name)
        .bind(organisation)
        .bind(entry.approval.unwrap_or(Approval::Approved).as_str())
        .bind(entry.standing.unwrap_or(Standing::Normal).as_str())
        .bind(now)
        .bind(&reference)
        .bind(&entry.note)
        .fetch_one(&mut *conn)
        .await?
    }))
}

/// Refuses a reference issued before, unless it is already `client`'s own.
async fn refuse_issued(
    tx: &mut Tx,
    reference: &str,
    client: Option<i64>,
) -> Result<(), AdminError> {
    let holder: Option<Option<i64>> = on_tx!(tx, conn => {
        sqlx::query_as::<_, (Option<i64>, Option<String>)>(REFERENCE_HOLDER)
            .bind(reference)
            .fetch_optional(&mut *conn)
            .await?
    })
    .map(|(id, _)| id);
    match holder {
        None => Ok(()),
        Some(holder) if holder.is_some() && holder == client => Ok(()),
        Some(_) => Err(AdminError::Refused(format!(
            "the reference {reference} was issued before: references are never reused"
        ))),
    }
}

/// Makes `addresses` exactly the client's additional addresses; those kept keep their
/// `created_at`.
async fn set_addresses(
    tx: &mut Tx,
    client: i64,
    addresses: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    on_tx!(tx, conn => {
        let current: Vec<String> =
            sqlx::query_scalar("SELECT address FROM client_addresses WHERE client_id = $1")
                .bind(client)
                .fetch_all(&mut *conn)
                .await?;
        for gone in current.iter().filter(|address| !addresses.contains(address)) {
            sqlx::query("DELETE FROM client_addresses WHERE address = $1")
                .bind(gone)
                .execute(&mut *conn)
                .await?;
        }
        for new in addresses.iter().filter(|address| !current.contains(address)) {
            sqlx::query(
                "INSERT INTO client_addresses (address, client_id, created_at) VALUES ($1, $2, $3)",
            )
            .bind(new)
            .bind(client)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
    });
    Ok(())
}

/// The client whose additional address this is.
async fn address_owner(tx: &mut Tx, address: &str) -> Result<Option<String>, StoreError> {
    Ok(on_tx!(tx, conn => {
        sqlx::query_scalar(ADDRESS_OWNER)
        .bind(address)
        .fetch_optional(&mut *conn)
        .await?
    }))
}

/// The clients named, or every client of the organisation; unknown emails refuse them all.
async fn resolve_targets(tx: &mut Tx, targets: &Targets) -> Result<Vec<(i64, String)>, AdminError> {
    match targets {
        Targets::Emails(emails) => {
            let mut found = Vec::with_capacity(emails.len());
            let mut unknown = Vec::new();
            for email in emails {
                let row = find_client(tx, email).await?;
                match row {
                    Some(row) if !found.contains(&row) => found.push(row),
                    Some(_) => {}
                    None => unknown.push(email.as_str()),
                }
            }
            if !unknown.is_empty() {
                return Err(AdminError::Refused(format!(
                    "no client with the address or reference {}; nothing was changed",
                    unknown.join(", ")
                )));
            }
            Ok(found)
        }
        Targets::Organisation(name) => {
            let id = organisation_id(tx, name).await?;
            Ok(on_tx!(tx, conn => {
                sqlx::query_as(
                    "SELECT id, email FROM clients WHERE organisation_id = $1 ORDER BY lower(email)",
                )
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
            }))
        }
    }
}

async fn log(
    tx: &mut Tx,
    actor: &str,
    action: &str,
    subject: &str,
    detail: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO admin_log (logged_at, actor, action, subject, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now)
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}
