//! `intake org`: organisations and the email domains that place new clients in them.

use clap::Subcommand;

use crate::config::Settings;
use crate::store::Store;
use crate::store::admin::{self, AdminError};

use super::{Migrations, Output, actor, open_store};

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// List organisations, the default first, with their domains and counts.
    List,
    /// Create an organisation, optionally owning domains.
    Add {
        name: String,
        /// A domain it owns (repeatable); each must not belong to another organisation.
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// Move existing clients of those domains into it.
        #[arg(long)]
        move_clients: bool,
    },
    /// Rename an organisation (the default one is named in the configuration).
    Rename { name: String, new_name: String },
    /// Give a domain to an organisation: new senders from it are placed there.
    AddDomain {
        name: String,
        domain: String,
        /// Move existing clients of that domain into the organisation.
        #[arg(long)]
        move_clients: bool,
    },
    /// Take a domain away from whichever organisation owns it; its clients stay.
    RemoveDomain { domain: String },
    /// Delete an organisation; its clients and incidents move to the default organisation.
    Delete { name: String },
    /// Disable: it keeps its clients and incidents, but its domains place new senders in the
    /// default organisation. The default organisation cannot be disabled.
    Disable { name: String },
    /// Enable a disabled organisation again.
    Enable { name: String },
    /// Set the description or the display order.
    Edit {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Lists sort by it, then by name.
        #[arg(long)]
        order: Option<i32>,
    },
    /// Let every client of the organisation open incidents in a department
    /// (`department_access = "restricted"`); releases what was held for it.
    Grant { name: String, department: String },
    /// Take an organisation's department grant back (new mail is held again).
    Revoke { name: String, department: String },
    /// Send the organisation's new incidents to one department's mailbox, whatever mailbox
    /// received them.
    Route {
        name: String,
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        department: Option<String>,
        /// Stop routing: incidents stay with the mailbox that received them.
        #[arg(long)]
        clear: bool,
    },
}

pub async fn run(settings: &Settings, command: &OrgCommand, output: Output) -> anyhow::Result<()> {
    let store = open_store(settings, Migrations::ApplyIfBehind).await?;
    let result = execute(settings, &store, command, output).await;
    store.close().await;
    result
}

async fn execute(
    settings: &Settings,
    store: &Store,
    command: &OrgCommand,
    output: Output,
) -> anyhow::Result<()> {
    let actor = actor();
    match command {
        OrgCommand::List => {
            let rows = admin::organisations(store).await?;
            if output == Output::Json {
                return super::print_json(&rows);
            }
            // Disabled organisations are listed apart, after the others.
            let (enabled, disabled): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|row| row.status == "enabled");
            let table = |rows: Vec<admin::OrganisationRow>| -> Vec<[String; 6]> {
                rows.into_iter()
                    .map(|row| {
                        [
                            row.name,
                            if row.is_default { "yes" } else { "" }.to_string(),
                            row.client_count.to_string(),
                            row.incident_count.to_string(),
                            row.domains.unwrap_or_default(),
                            row.route_department.unwrap_or_default(),
                        ]
                    })
                    .collect()
            };
            let header = [
                "NAME",
                "DEFAULT",
                "CLIENTS",
                "INCIDENTS",
                "DOMAINS",
                "ROUTED TO",
            ];
            super::print_table(&header, &table(enabled));
            if !disabled.is_empty() {
                println!(
                    "\nDisabled (their domains place new senders in the default organisation):"
                );
                super::print_table(&header, &table(disabled));
            }
        }
        OrgCommand::Add {
            name,
            domains,
            move_clients,
        } => {
            let name = valid_name(name)?;
            let domains = domains
                .iter()
                .map(|domain| valid_domain(domain))
                .collect::<Result<Vec<_>, _>>()?;
            let moved =
                admin::add_organisation(store, &actor, &name, &domains, *move_clients).await?;
            let what = if domains.is_empty() {
                format!("{name} added")
            } else {
                format!("{name} added with {}", domains.join(", "))
            };
            report(output, &name, &what, moved)?;
        }
        OrgCommand::Rename { name, new_name } => {
            let new_name = valid_name(new_name)?;
            admin::rename_organisation(store, &actor, name, &new_name).await?;
            if output == Output::Json {
                return super::print_json(&serde_json::json!({ "name": new_name }));
            }
            println!("{name} is now {new_name}");
        }
        OrgCommand::AddDomain {
            name,
            domain,
            move_clients,
        } => {
            let domain = valid_domain(domain)?;
            let moved = admin::add_domain(store, &actor, name, &domain, *move_clients).await?;
            report(
                output,
                name,
                &format!("{domain} now belongs to {name}"),
                moved,
            )?;
        }
        OrgCommand::RemoveDomain { domain } => {
            let domain = valid_domain(domain)?;
            let owner = admin::remove_domain(store, &actor, &domain).await?;
            if output == Output::Json {
                return super::print_json(
                    &serde_json::json!({ "domain": domain, "organisation": owner }),
                );
            }
            println!("{domain} no longer belongs to {owner}");
        }
        OrgCommand::Disable { name } | OrgCommand::Enable { name } => {
            let status = if matches!(command, OrgCommand::Disable { .. }) {
                "disabled"
            } else {
                "enabled"
            };
            let edit = admin::OrganisationEdit {
                status: Some(status),
                ..Default::default()
            };
            admin::edit_organisation(store, &actor, name, &edit).await?;
            if output == Output::Json {
                return super::print_json(
                    &serde_json::json!({ "organisation": name, "status": status }),
                );
            }
            println!("{name} is {status}");
        }
        OrgCommand::Edit {
            name,
            description,
            order,
        } => {
            let edit = admin::OrganisationEdit {
                description: description
                    .as_deref()
                    .map(|text| Some(text.trim().to_string()).filter(|text| !text.is_empty())),
                display_order: *order,
                ..Default::default()
            };
            admin::edit_organisation(store, &actor, name, &edit).await?;
            if output == Output::Json {
                return super::print_json(&serde_json::json!({ "organisation": name }));
            }
            println!("{name} updated");
        }
        OrgCommand::Route {
            name, department, ..
        } => {
            let department = department
                .as_deref()
                .filter(|text| !text.trim().is_empty())
                .map(|text| super::department(settings, text));
            let edit = admin::OrganisationEdit {
                route_department: Some(department.clone()),
                ..Default::default()
            };
            admin::edit_organisation(store, &actor, name, &edit).await?;
            if output == Output::Json {
                return super::print_json(
                    &serde_json::json!({ "organisation": name, "route_department": department }),
                );
            }
            match department {
                Some(department) => println!("new incidents of {name} go to {department}"),
                None => println!("{name}'s incidents stay with the mailbox that received them"),
            }
        }
        OrgCommand::Grant { name, department } | OrgCommand::Revoke { name, department } => {
            return super::grant_or_revoke(
                store,
                &actor,
                &admin::Grantee::Organisation(name.clone()),
                &super::department(settings, department),
                matches!(command, OrgCommand::Grant { .. }),
                output,
            )
            .await;
        }
        OrgCommand::Delete { name } => {
            let dissolved = admin::delete_organisation(store, &actor, name).await?;
            if output == Output::Json {
                return super::print_json(&dissolved);
            }
            println!(
                "{name} deleted: {} clients and {} incidents moved to the default organisation",
                dissolved.clients, dissolved.incidents
            );
        }
    }
    Ok(())
}

fn report(output: Output, name: &str, what: &str, moved: u64) -> anyhow::Result<()> {
    if output == Output::Json {
        return super::print_json(
            &serde_json::json!({ "organisation": name, "clients_moved": moved }),
        );
    }
    println!("{what}; {moved} existing clients moved");
    Ok(())
}

fn valid_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AdminError::Refused(
            "an organisation needs a name".to_string(),
        ));
    }
    Ok(name.to_string())
}

/// A domain as organisations own it: lower case, letters, digits, dots and hyphens.
pub fn valid_domain(domain: &str) -> Result<String, AdminError> {
    let domain = domain.trim().trim_start_matches('@').to_lowercase();
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if domain.contains('.') && labels_ok {
        Ok(domain)
    } else {
        Err(AdminError::Refused(format!(
            "{domain:?} is not a domain such as contoso.com"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_and_checked() {
        assert_eq!(
            valid_domain(" @Contoso.COM ").ok().as_deref(),
            Some("contoso.com")
        );
        assert_eq!(
            valid_domain("eu.contoso.com").ok().as_deref(),
            Some("eu.contoso.com")
        );
        for bad in [
            "",
            "contoso",
            "contoso..com",
            "-a.com",
            "a_b.com",
            "a%.com",
            ".com",
        ] {
            assert!(valid_domain(bad).is_err(), "{bad:?} accepted");
        }
    }
}
