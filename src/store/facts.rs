//! What the database knows about one message: has it been seen, who sent it, which incident
//! it answers. Read inside the same transaction that `apply` then writes, so the decision is
//! made on data nobody else can change underneath it.

use crate::ingest::hash::HashFormat;
use crate::ingest::{
    Approval, ClientFacts, DOMAIN_CANDIDATES, DepartmentFacts, Facts, IncidentFacts,
    IncidentStatus, Standing, domain_and_parents,
};
use crate::message::Inbound;
use crate::on_tx;

use super::{StoreError, Tx};

/// At most this many Message-IDs from References are looked up: long threads are answered by
/// their newest messages, and a hostile header must not cost thousands of queries.
const MAX_THREAD_CANDIDATES: usize = 20;

// The owner query binds exactly this many domains.
const _: () = assert!(DOMAIN_CANDIDATES == 4);

/// `received_department`: the department of the mailbox the message came to. `need_grants`:
/// read department grants (only `department_access = "restricted"` uses them).
pub async fn gather(
    tx: &mut Tx,
    inbound: &Inbound,
    received_department: Option<&str>,
    need_grants: bool,
    hash_format: &HashFormat,
) -> Result<Facts, StoreError> {
    let dedup_key = inbound.dedup_key();
    let sender = inbound
        .sender
        .as_ref()
        .map(|mailbox| mailbox.address.clone());
    let domains = inbound
        .sender
        .as_ref()
        .map(|mailbox| domain_and_parents(mailbox.domain()))
        .unwrap_or_default();
    let domain = |index: usize| domains.get(index).cloned();
    let candidates: Vec<String> = inbound
        .thread_candidates()
        .into_iter()
        .take(MAX_THREAD_CANDIDATES)
        .collect();
    let tag = hash_format.tag_in(&inbound.subject);

    on_tx!(tx, conn => {
        // One round trip for the single-row facts: on PostgreSQL each statement costs one.
        // The client is found by main email or additional address; the domain owner by the
        // nearest owned domain (a disabled owner places in the default); the routing is that of
        // the client's organisation, else the owner's, else the default's.
        type Row = (bool, Option<i64>, Option<i64>, Option<i64>, Option<String>, Option<String>, Option<i64>, Option<String>);
        let (already_seen, default_organisation, client_id, client_organisation, approval, standing, domain_owner, route): Row =
            sqlx::query_as(
                "WITH def AS (SELECT id FROM organisations WHERE is_default), \
                 owner AS (SELECT CASE WHEN o.status = 'enabled' THEN o.id \
                                  ELSE (SELECT id FROM def) END AS id \
                   FROM organisation_domains d JOIN organisations o ON o.id = d.organisation_id \
                   WHERE d.domain IN ($3, $4, $5, $6) ORDER BY length(d.domain) DESC LIMIT 1), \
                 sender AS (SELECT c.id, c.organisation_id, c.approval, c.standing FROM clients c \
                   WHERE c.id = coalesce((SELECT id FROM clients WHERE lower(email) = $2), \
                     (SELECT client_id FROM client_addresses WHERE address = $2))) \
                 SELECT EXISTS (SELECT 1 FROM messages WHERE dedup_key = $1), \
                 (SELECT id FROM def), s.id, s.organisation_id, s.approval, s.standing, \
                 (SELECT id FROM owner), \
                 (SELECT route_department FROM organisations WHERE id = \
                    coalesce(s.organisation_id, (SELECT id FROM owner), (SELECT id FROM def))) \
                 FROM (SELECT 1 AS one) AS one LEFT JOIN sender s ON true",
            )
            .bind(&dedup_key)
            .bind(&sender)
            .bind(domain(0))
            .bind(domain(1))
            .bind(domain(2))
            .bind(domain(3))
            .fetch_one(&mut *conn)
            .await?;
        let default_organisation = default_organisation.ok_or_else(|| {
            StoreError::Failed("no default organisation: run `intake migrate`".to_string())
        })?;
        let client = match (client_id, client_organisation, approval, standing) {
            (Some(id), Some(organisation), Some(approval), Some(standing)) => Some(ClientFacts {
                id,
                organisation,
                approval: Approval::parse(&approval).ok_or_else(|| {
                    StoreError::Failed(format!("client {id} has approval {approval:?}"))
                })?,
                standing: Standing::parse(&standing).ok_or_else(|| {
                    StoreError::Failed(format!("client {id} has standing {standing:?}"))
                })?,
            }),
            _ => None,
        };

        let mut thread_by_header = None;
        for candidate in &candidates {
            let row: Option<IncidentRow> = sqlx::query_as(
                "SELECT i.id, i.hash, i.client_id, i.organisation_id, i.status \
                 FROM messages m JOIN incidents i ON i.id = m.incident_id \
                 WHERE m.message_id_header = $1 ORDER BY m.id LIMIT 1",
            )
            .bind(candidate)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                thread_by_header = Some(incident_facts(row)?);
                break;
            }
        }

        let mut thread_by_tag = None;
        if let Some(hash) = &tag {
            let row: Option<IncidentRow> = sqlx::query_as(
                "SELECT id, hash, client_id, organisation_id, status FROM incidents WHERE hash = $1",
            )
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?;
            thread_by_tag = row.map(incident_facts).transpose()?;
        }

        // The organisation whose routing and grants apply: the client's, else the one their
        // domain places them in, else the default.
        let organisation = client
            .as_ref()
            .map(|client| client.organisation)
            .or(domain_owner)
            .unwrap_or(default_organisation);
        let mut departments = DepartmentFacts {
            received: received_department.map(str::to_string),
            organisation: Some(organisation),
            route,
            ..DepartmentFacts::default()
        };
        if need_grants {
            let grants: Vec<(String, bool)> = sqlx::query_as(
                "SELECT lower(department), client_id IS NOT NULL FROM department_grants \
                 WHERE organisation_id = $1 OR client_id = $2",
            )
            .bind(organisation)
            .bind(client.as_ref().map(|client| client.id))
            .fetch_all(&mut *conn)
            .await?;
            for (department, for_client) in grants {
                if for_client {
                    departments.client_grants.insert(department);
                } else {
                    departments.organisation_grants.insert(department);
                }
            }
        }

        Ok(Facts {
            already_seen,
            client,
            domain_owner,
            default_organisation,
            thread_by_header,
            thread_by_tag,
            departments,
            // Known from where the message came: the caller sets it.
            quiet: None,
        })
    })
}

/// id, hash, client_id, organisation_id, status of an incident.
type IncidentRow = (i64, String, Option<i64>, i64, String);

fn incident_facts(row: IncidentRow) -> Result<IncidentFacts, StoreError> {
    let (id, hash, client, organisation, status) = row;
    let status = IncidentStatus::parse(&status)
        .ok_or_else(|| StoreError::Failed(format!("incident {hash} has status {status:?}")))?;
    Ok(IncidentFacts {
        id,
        hash,
        client,
        organisation,
        status,
    })
}
