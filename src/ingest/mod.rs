//! The decision core: `decide(&Inbound, &Facts, &Policy) -> Decision`.
//!
//! Synchronous, no I/O, never fails: bad input is a `Decision::Reject`, not an error. What the
//! database knows arrives as `Facts` (gathered by `store::facts`), and the `Decision` goes to
//! `store::apply`, which writes it in one transaction. A tidy test keeps I/O crates out of here.

pub mod automatic;
pub mod hash;
pub mod thread;

use std::collections::BTreeSet;

use crate::config::{DepartmentAccess, PendingMail, Settings};
use crate::message::{Inbound, ParseProblem, Quiet};

pub use automatic::AutoKind;

pub type ClientId = i64;
pub type IncidentId = i64;
pub type OrganisationId = i64;

/// Where an incident is filed; the `incidents.folder` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    Inbox,
    Spam,
    Held,
}

impl Folder {
    pub fn as_str(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Spam => "spam",
            Folder::Held => "held",
        }
    }
}

/// `clients.approval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Pending,
    Approved,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Pending => "pending",
            Approval::Approved => "approved",
        }
    }

    pub fn parse(text: &str) -> Option<Approval> {
        match text {
            "pending" => Some(Approval::Pending),
            "approved" => Some(Approval::Approved),
            _ => None,
        }
    }
}

/// `clients.standing`, kept apart from approval so that lifting a ban restores the approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Normal,
    Banned,
    Spam,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Normal => "normal",
            Standing::Banned => "banned",
            Standing::Spam => "spam",
        }
    }

    pub fn parse(text: &str) -> Option<Standing> {
        match text {
            "normal" => Some(Standing::Normal),
            "banned" => Some(Standing::Banned),
            "spam" => Some(Standing::Spam),
            _ => None,
        }
    }
}

/// `incidents.status`: staff set it (in a viewer, or any tool that edits the row); a
/// customer's reply sets it back to `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentStatus {
    Open,
    /// Staff answered and wait for the customer.
    Waiting,
    Resolved,
    Closed,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Waiting => "waiting",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentStatus> {
        match text {
            "open" => Some(IncidentStatus::Open),
            "waiting" => Some(IncidentStatus::Waiting),
            "resolved" => Some(IncidentStatus::Resolved),
            "closed" => Some(IncidentStatus::Closed),
            _ => None,
        }
    }
}

/// What the database knows about the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFacts {
    pub id: ClientId,
    pub organisation: OrganisationId,
    pub approval: Approval,
    pub standing: Standing,
}

/// An incident a message may continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentFacts {
    pub id: IncidentId,
    pub hash: String,
    pub client: Option<ClientId>,
    pub organisation: OrganisationId,
    pub status: IncidentStatus,
}

/// Which department a new incident is filed under, and who may write there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentFacts {
    /// The department of the mailbox the message came to.
    pub received: Option<String>,
    /// The organisation the rules below belong to: the known client's, else the owner of the
    /// sender's domain, else the default organisation.
    pub organisation: Option<OrganisationId>,
    /// That organisation's routing: its new incidents go to this department.
    pub route: Option<String>,
    /// Departments granted to that organisation, lower-cased.
    pub organisation_grants: BTreeSet<String>,
    /// Departments granted to the known client, lower-cased.
    pub client_grants: BTreeSet<String>,
}

/// Why an incident waits in the held folder; the `incidents.held_reason` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// Until staff approve the client (the approval trigger releases it).
    PendingApproval,
    /// Until the client or their organisation is granted the department.
    DepartmentAccess,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::PendingApproval => "pending_approval",
            HoldReason::DepartmentAccess => "department_access",
        }
    }
}

/// Everything the store knows that bears on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// A message with the same dedup key was recorded before.
    pub already_seen: bool,
    pub client: Option<ClientFacts>,
    /// The organisation owning the sender's domain, if any.
    pub domain_owner: Option<OrganisationId>,
    pub default_organisation: OrganisationId,
    /// The incident of a stored message named in In-Reply-To or References.
    pub thread_by_header: Option<IncidentFacts>,
    /// The incident named by a `[#HASH]` subject tag.
    pub thread_by_tag: Option<IncidentFacts>,
    pub departments: DepartmentFacts,
    /// Set when the message is taken in without mailing anyone, and why (known from where it
    /// came: the pipeline sets it from `Origin::quiet`).
    pub quiet: Option<Quiet>,
}

/// The settings the core obeys.
#[derive(Debug, Clone)]
pub struct Policy {
    pub auto_register: bool,
    pub auto_approve: bool,
    pub pending_mail: PendingMail,
    pub auto_create_from_domain: bool,
    pub free_mail_domains: BTreeSet<String>,
    pub upstream_spam_verdict: bool,
    /// Our own mailbox and sender addresses, lower-cased.
    pub own_addresses: BTreeSet<String>,
    pub registration_mail: bool,
    pub acknowledgement_mail: bool,
    pub department_access: DepartmentAccess,
}

impl Policy {
    pub fn from_settings(settings: &Settings) -> Policy {
        Policy {
            auto_register: settings.clients.auto_register,
            auto_approve: settings.clients.auto_approve,
            pending_mail: settings.clients.pending_mail,
            auto_create_from_domain: settings.organisations.auto_create_from_domain,
            free_mail_domains: settings.organisations.free_mail_domains.clone(),
            upstream_spam_verdict: settings.incidents.upstream_spam_verdict,
            own_addresses: settings.own_addresses(),
            registration_mail: settings.outbound.registration,
            acknowledgement_mail: settings.outbound.acknowledgement,
            department_access: settings.clients.department_access,
        }
    }
}

/// Which organisation a newly registered client joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganisationPlan {
    /// The organisation that owns the sender's domain.
    Existing(OrganisationId),
    /// A new organisation named after the domain, which it will own.
    CreateForDomain(String),
    /// The default organisation (free-mail domains, or auto-creation off).
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub approval: Approval,
    pub organisation: OrganisationPlan,
    /// Queue the `registration` mail.
    pub send_registration: bool,
}

/// Who the message is recorded against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPlan {
    Known(ClientId),
    Register(NewClient),
    /// A sender who stays unregistered (auto-registration off, or our own address).
    Unregistered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    TooLarge { size_bytes: u64, limit_bytes: u64 },
    NotAMessage,
    ParserFailed(String),
    NoSender,
    UnknownSender,
    OwnAddress,
}

impl RejectReason {
    pub fn describe(&self) -> String {
        match self {
            RejectReason::TooLarge {
                size_bytes,
                limit_bytes,
            } => format!(
                "message is {size_bytes} bytes, over [limits] max_message_bytes = {limit_bytes}"
            ),
            RejectReason::NotAMessage => {
                "not an RFC 5322 message: no standard header such as From, Subject or Date"
                    .to_string()
            }
            RejectReason::ParserFailed(why) => format!("the mail parser failed: {why}"),
            RejectReason::NoSender => {
                "no sender: no address in From, Sender, Reply-To or Return-Path".to_string()
            }
            RejectReason::UnknownSender => {
                "unknown sender and [clients] auto_register is off".to_string()
            }
            RejectReason::OwnAddress => {
                "sent from one of our own addresses and not a reply: refused to avoid a mail loop"
                    .to_string()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Create {
        folder: Folder,
        /// Set exactly when `folder` is `Held`.
        held_for: Option<HoldReason>,
        /// The department the incident is filed under.
        department: Option<String>,
        /// True when the organisation's routing chose `department` (its mailbox takes the
        /// incident), false when it is the receiving mailbox's.
        routed: bool,
        client: ClientPlan,
        acknowledge: bool,
        notes: Vec<String>,
    },
    Append {
        incident: IncidentId,
        client: ClientPlan,
        /// The incident was waiting, resolved or closed and a customer wrote again: it is open
        /// again, as in any helpdesk, so staff see the reply in their open incidents.
        reopen: bool,
        notes: Vec<String>,
    },
    DropBanned {
        client: ClientId,
    },
    Automatic {
        kind: AutoKind,
        append_to: Option<IncidentId>,
        why: String,
    },
    Duplicate,
    Reject {
        reason: RejectReason,
    },
}

/// The `ingest_log.outcome` value, the log field and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Appended,
    Duplicate,
    DroppedBanned,
    Spam,
    AutoReply,
    Bounce,
    Rejected,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Created,
        Outcome::Appended,
        Outcome::Duplicate,
        Outcome::DroppedBanned,
        Outcome::Spam,
        Outcome::AutoReply,
        Outcome::Bounce,
        Outcome::Rejected,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Appended => "appended",
            Outcome::Duplicate => "duplicate",
            Outcome::DroppedBanned => "dropped_banned",
            Outcome::Spam => "spam",
            Outcome::AutoReply => "auto_reply",
            Outcome::Bounce => "bounce",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Create {
                folder: Folder::Spam,
                ..
            } => Outcome::Spam,
            Decision::Create { .. } => Outcome::Created,
            Decision::Append { .. } => Outcome::Appended,
            Decision::DropBanned { .. } => Outcome::DroppedBanned,
            Decision::Automatic {
                kind: AutoKind::AutoReply,
                ..
            } => Outcome::AutoReply,
            Decision::Automatic {
                kind: AutoKind::Bounce,
                ..
            } => Outcome::Bounce,
            Decision::Duplicate => Outcome::Duplicate,
            Decision::Reject {
                reason: RejectReason::ParserFailed(_),
            } => Outcome::Error,
            Decision::Reject { .. } => Outcome::Rejected,
        }
    }

    /// The `ingest_log.reason` text: why, in words staff understand.
    pub fn reason(&self) -> Option<String> {
        let joined = |notes: &[String]| (!notes.is_empty()).then(|| notes.join("; "));
        match self {
            Decision::Create { notes, .. } | Decision::Append { notes, .. } => joined(notes),
            Decision::DropBanned { .. } => Some("sender is banned".to_string()),
            Decision::Automatic { why, .. } => Some(why.clone()),
            Decision::Duplicate => {
                Some("already recorded (same Message-ID or content)".to_string())
            }
            Decision::Reject { reason } => Some(reason.describe()),
        }
    }
}

/// Decides what happens to one message. The order of the checks is the policy:
/// duplicates first (a re-delivery must never do anything twice), then unreadable mail, then
/// bans (stronger than anything the message says), then automatic mail (never answered), then
/// threading, then new incidents.
pub fn decide(inbound: &Inbound, facts: &Facts, policy: &Policy) -> Decision {
    if facts.already_seen {
        return Decision::Duplicate;
    }
    match &inbound.problem {
        Some(ParseProblem::TooLarge {
            size_bytes,
            limit_bytes,
        }) => {
            return Decision::Reject {
                reason: RejectReason::TooLarge {
                    size_bytes: *size_bytes,
                    limit_bytes: *limit_bytes,
                },
            };
        }
        Some(ParseProblem::NotAMessage) => {
            return Decision::Reject {
                reason: RejectReason::NotAMessage,
            };
        }
        Some(ParseProblem::ParserFailed(why)) => {
            return Decision::Reject {
                reason: RejectReason::ParserFailed(why.clone()),
            };
        }
        None => {}
    }
    if let Some(client) = &facts.client
        && client.standing == Standing::Banned
    {
        return Decision::DropBanned { client: client.id };
    }

    let writer = thread::Writer {
        client: facts.client.as_ref().map(|client| client.id),
        organisation: facts
            .client
            .as_ref()
            .map(|client| client.organisation)
            .or(facts.domain_owner),
    };
    let tag_thread = facts
        .thread_by_tag
        .as_ref()
        .filter(|incident| thread::tag_may_thread(writer, incident, facts.default_organisation));

    if let Some((kind, why)) = automatic::classify(&inbound.signals, inbound.sender.as_ref()) {
        let append_to = facts
            .thread_by_header
            .as_ref()
            .or(tag_thread)
            .map(|incident| incident.id);
        return Decision::Automatic {
            kind,
            append_to,
            why,
        };
    }

    let Some(sender) = &inbound.sender else {
        return Decision::Reject {
            reason: RejectReason::NoSender,
        };
    };
    let from_ourselves = policy.own_addresses.contains(&sender.address);
    if from_ourselves {
        // Our own address is never registered nor answered; a reply in a thread is kept there.
        return match &facts.thread_by_header {
            Some(incident) => Decision::Append {
                incident: incident.id,
                client: ClientPlan::Unregistered,
                reopen: false,
                notes: vec!["sent from one of our own addresses".to_string()],
            },
            None => Decision::Reject {
                reason: RejectReason::OwnAddress,
            },
        };
    }

    let client_plan = match &facts.client {
        Some(client) => ClientPlan::Known(client.id),
        None if policy.auto_register => ClientPlan::Register(NewClient {
            approval: if policy.auto_approve {
                Approval::Approved
            } else {
                Approval::Pending
            },
            organisation: organisation_for(sender.domain(), facts, policy),
            send_registration: policy.registration_mail && facts.quiet.is_none(),
        }),
        None => ClientPlan::Unregistered,
    };

    if let Some(incident) = &facts.thread_by_header {
        return customer_reply(incident, client_plan, facts.quiet, Vec::new());
    }
    let mut notes = Vec::new();
    if let Some(incident) = tag_thread {
        let tagged = format!("threaded by subject tag [#{}]", incident.hash);
        return customer_reply(incident, client_plan, facts.quiet, vec![tagged]);
    }
    if let Some(incident) = &facts.thread_by_tag {
        notes.push(format!(
            "subject tag [#{}] ignored: sender is neither the incident's client nor in its organisation",
            incident.hash
        ));
    }

    if client_plan == ClientPlan::Unregistered {
        return Decision::Reject {
            reason: RejectReason::UnknownSender,
        };
    }

    let (approval, standing) = match (&facts.client, &client_plan) {
        (Some(client), _) => (client.approval, client.standing),
        (None, ClientPlan::Register(new_client)) => (new_client.approval, Standing::Normal),
        (None, _) => (Approval::Approved, Standing::Normal),
    };
    let (department, routed, granted) = department_for(facts, &client_plan);
    if let (true, Some(department)) = (routed, &department) {
        notes.push(format!("routed to {department} by the organisation"));
    }
    let (folder, held_for) = if standing == Standing::Spam {
        notes.push("client is marked spam".to_string());
        (Folder::Spam, None)
    } else if inbound.upstream_spam && policy.upstream_spam_verdict {
        notes.push("upstream spam filter said spam (X-Spam-Flag / X-Spam-Status)".to_string());
        (Folder::Spam, None)
    } else if policy.department_access == DepartmentAccess::Restricted
        && let Some(department) = department.as_deref().filter(|_| !granted)
    {
        notes.push(format!(
            "no access to the department {department} (department_access = \"restricted\")"
        ));
        (Folder::Held, Some(HoldReason::DepartmentAccess))
    } else if approval == Approval::Pending && policy.pending_mail == PendingMail::Hold {
        notes.push("client is pending approval".to_string());
        (Folder::Held, Some(HoldReason::PendingApproval))
    } else {
        (Folder::Inbox, None)
    };
    // Spam is never answered (backscatter), nor is list mail (it would reach every member):
    // neither gets an acknowledgement or a registration mail.
    let acknowledge = policy.acknowledgement_mail
        && folder != Folder::Spam
        && !inbound.signals.mailing_list
        && facts.quiet.is_none();
    if let Some(quiet) = facts.quiet {
        notes.push(quiet.describe().to_string());
    }
    let client_plan = match client_plan {
        ClientPlan::Register(new_client) => ClientPlan::Register(NewClient {
            send_registration: new_client.send_registration
                && folder != Folder::Spam
                && !inbound.signals.mailing_list,
            ..new_client
        }),
        other => other,
    };
    Decision::Create {
        folder,
        held_for,
        department,
        routed,
        client: client_plan,
        acknowledge,
        notes,
    }
}

/// The department a new incident is filed under, whether the organisation's routing chose
/// it, and whether the sender may write there. The organisation rules in `facts` count only
/// when they are for the organisation the client belongs to or joins (not one created now).
fn department_for(facts: &Facts, client_plan: &ClientPlan) -> (Option<String>, bool, bool) {
    let rules = &facts.departments;
    let organisation = match (&facts.client, client_plan) {
        (Some(client), _) => Some(client.organisation),
        (None, ClientPlan::Register(new_client)) => match &new_client.organisation {
            OrganisationPlan::Existing(id) => Some(*id),
            OrganisationPlan::Default => Some(facts.default_organisation),
            OrganisationPlan::CreateForDomain(_) => None,
        },
        (None, _) => None,
    };
    let rules_apply = organisation.is_some() && organisation == rules.organisation;
    let route = rules.route.clone().filter(|_| rules_apply);
    let routed = route.is_some();
    let department = route.or_else(|| rules.received.clone());
    let granted = department.as_deref().is_some_and(|department| {
        let department = department.to_lowercase();
        (facts.client.is_some() && rules.client_grants.contains(&department))
            || (rules_apply && rules.organisation_grants.contains(&department))
    });
    (department, routed, granted)
}

/// Existing owner of the domain, else a new organisation for it unless it is free-mail, else the
/// default organisation.
fn organisation_for(domain: &str, facts: &Facts, policy: &Policy) -> OrganisationPlan {
    if let Some(owner) = facts.domain_owner {
        return OrganisationPlan::Existing(owner);
    }
    if policy.auto_create_from_domain
        && !domain.is_empty()
        && !policy.free_mail_domains.contains(domain)
    {
        return OrganisationPlan::CreateForDomain(domain.to_string());
    }
    OrganisationPlan::Default
}

/// How many domains `domain_and_parents` yields at most: `a.b.eu.contoso.com` is looked up as
/// itself and its three nearest parents.
pub const DOMAIN_CANDIDATES: usize = 4;

/// The domain and its parents down to two labels, nearest first: `eu.contoso.com` gives
/// `eu.contoso.com`, `contoso.com`. An organisation owning a parent owns its sub-domains
/// unless another owns the sub-domain itself.
pub fn domain_and_parents(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|start| labels[start..].join("."))
        .take(DOMAIN_CANDIDATES)
        .collect()
}

/// A reply from the customer's side (not from one of our own addresses, not automatic) to
/// `incident`: appended, and the incident is open again if staff had set it aside. `client`
/// already mails nobody when `quiet` says so; the note tells staff why.
fn customer_reply(
    incident: &IncidentFacts,
    client: ClientPlan,
    quiet: Option<Quiet>,
    mut notes: Vec<String>,
) -> Decision {
    let reopen = incident.status != IncidentStatus::Open;
    if reopen {
        notes.push(format!(
            "reopened: the incident was {}",
            incident.status.as_str()
        ));
    }
    if let Some(quiet) = quiet {
        notes.push(quiet.describe().to_string());
    }
    Decision::Append {
        incident: incident.id,
        client,
        reopen,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AutoSignals, Mailbox};

    #[test]
    fn a_domain_is_looked_up_with_its_parents() {
        assert_eq!(
            domain_and_parents("eu.contoso.com"),
            ["eu.contoso.com", "contoso.com"]
        );
        assert_eq!(domain_and_parents("contoso.com"), ["contoso.com"]);
        assert_eq!(
            domain_and_parents("a.b.c.d.contoso.com"),
            [
                "a.b.c.d.contoso.com",
                "b.c.d.contoso.com",
                "c.d.contoso.com",
                "d.contoso.com"
            ]
        );
        assert!(domain_and_parents("localhost").is_empty());
    }

    const DEFAULT_ORG: OrganisationId = 1;
    const CONTOSO: OrganisationId = 2;

    fn policy() -> Policy {
        Policy {
            auto_register: true,
            auto_approve: true,
            pending_mail: PendingMail::Accept,
            auto_create_from_domain: true,
            free_mail_domains: ["gmail.com".to_string()].into_iter().collect(),
            upstream_spam_verdict: true,
            own_addresses: ["support@example.com".to_string()].into_iter().collect(),
            registration_mail: true,
            acknowledgement_mail: true,
            department_access: DepartmentAccess::Open,
        }
    }

    fn mail(from: &str) -> Inbound {
        Inbound {
            message_id: Some("m1@x".into()),
            sender: Some(Mailbox {
                address: from.into(),
                name: None,
            }),
            subject: "Printer on fire".into(),
            ..Inbound::default()
        }
    }

    fn facts() -> Facts {
        Facts {
            already_seen: false,
            client: None,
            domain_owner: None,
            default_organisation: DEFAULT_ORG,
            thread_by_header: None,
            thread_by_tag: None,
            departments: DepartmentFacts::default(),
            quiet: None,
        }
    }

    fn client(standing: Standing, approval: Approval) -> Option<ClientFacts> {
        Some(ClientFacts {
            id: 10,
            organisation: CONTOSO,
            approval,
            standing,
        })
    }

    fn incident_of(client: ClientId) -> Option<IncidentFacts> {
        Some(IncidentFacts {
            id: 500,
            hash: "KXW-482-91735".into(),
            client: Some(client),
            organisation: CONTOSO,
            status: IncidentStatus::Open,
        })
    }

    type Case = (
        &'static str,
        Inbound,
        Facts,
        Policy,
        &'static str,
        Option<Folder>,
    );

    /// Each case: name, message, facts, policy, expected outcome, expected folder of a new incident.
    fn check(cases: Vec<Case>) {
        for (name, inbound, facts, policy, outcome, folder) in cases {
            let decision = decide(&inbound, &facts, &policy);
            assert_eq!(decision.outcome().as_str(), outcome, "{name}: {decision:?}");
            let got_folder = match &decision {
                Decision::Create { folder, .. } => Some(*folder),
                _ => None,
            };
            assert_eq!(got_folder, folder, "{name}: {decision:?}");
        }
    }

    #[test]
    fn every_branch() {
        let known = |standing, approval| Facts {
            client: client(standing, approval),
            ..facts()
        };
        let hold = Policy {
            pending_mail: PendingMail::Hold,
            ..policy()
        };
        let pending_on_register = Policy {
            auto_approve: false,
            ..hold.clone()
        };
        let no_register = Policy {
            auto_register: false,
            ..policy()
        };
        let ignore_upstream = Policy {
            upstream_spam_verdict: false,
            ..policy()
        };
        let with = |edit: fn(&mut Inbound)| {
            let mut inbound = mail("alice@contoso.com");
            edit(&mut inbound);
            inbound
        };
        let approved = Approval::Approved;
        let normal = Standing::Normal;
        check(vec![
            (
                "new sender",
                mail("alice@contoso.com"),
                facts(),
                policy(),
                "created",
                Some(Folder::Inbox),
            ),
            (
                "known client",
                mail("alice@contoso.com"),
                known(normal, approved),
                policy(),
                "created",
                Some(Folder::Inbox),
            ),
            (
                "duplicate",
                mail("alice@contoso.com"),
                Facts {
                    already_seen: true,
                    ..known(Standing::Banned, approved)
                },
                policy(),
                "duplicate",
                None,
            ),
            (
                "banned",
                mail("alice@contoso.com"),
                known(Standing::Banned, approved),
                policy(),
                "dropped_banned",
                None,
            ),
            (
                "banned reply",
                mail("alice@contoso.com"),
                Facts {
                    thread_by_header: incident_of(10),
                    ..known(Standing::Banned, approved)
                },
                policy(),
                "dropped_banned",
                None,
            ),
            (
                "spam client",
                mail("alice@contoso.com"),
                known(Standing::Spam, approved),
                policy(),
                "spam",
                Some(Folder::Spam),
            ),
            (
                "spam client reply",
                mail("alice@contoso.com"),
                Facts {
                    thread_by_header: incident_of(10),
                    ..known(Standing::Spam, approved)
                },
                policy(),
                "appended",
                None,
            ),
            (
                "upstream spam",
                with(|m| m.upstream_spam = true),
                facts(),
                policy(),
                "spam",
                Some(Folder::Spam),
            ),
            (
                "upstream spam ignored",
                with(|m| m.upstream_spam = true),
                facts(),
                ignore_upstream,
                "created",
                Some(Folder::Inbox),
            ),
            (
                "pending accepted",
                mail("alice@contoso.com"),
                known(normal, Approval::Pending),
                policy(),
                "created",
                Some(Folder::Inbox),
            ),
            (
                "pending held",
                mail("alice@contoso.com"),
                known(normal, Approval::Pending),
                hold.clone(),
                "created",
                Some(Folder::Held),
            ),
            (
                "new sender held",
                mail("alice@contoso.com"),
                facts(),
                pending_on_register,
                "created",
                Some(Folder::Held),
            ),
            (
                "approved not held",
                mail("alice@contoso.com"),
                known(normal, approved),
                hold,
                "created",
                Some(Folder::Inbox),
            ),
            (
                "spam beats held",
                mail("alice@contoso.com"),
                known(Standing::Spam, Approval::Pending),
                policy(),
                "spam",
                Some(Folder::Spam),
            ),
            (
                "reply by header",
                mail("alice@contoso.com"),
                Facts {
                    thread_by_header: incident_of(10),
                    ..known(normal, approved)
                },
                policy(),
                "appended",
                None,
            ),
            (
                "reply by header from stranger",
                mail("bob@fabrikam.com"),
                Facts {
                    thread_by_header: incident_of(10),
                    ..facts()
                },
                policy(),
                "appended",
                None,
            ),
            (
                "reply by tag",
                mail("alice@contoso.com"),
                Facts {
                    thread_by_tag: incident_of(10),
                    ..known(normal, approved)
                },
                policy(),
                "appended",
                None,
            ),
            (
                "tag from colleague's domain",
                mail("carol@contoso.com"),
                Facts {
                    thread_by_tag: incident_of(10),
                    domain_owner: Some(CONTOSO),
                    ..facts()
                },
                policy(),
                "appended",
                None,
            ),
            (
                "tag hijack",
                mail("mallory@evil.com"),
                Facts {
                    thread_by_tag: incident_of(10),
                    ..facts()
                },
                policy(),
                "created",
                Some(Folder::Inbox),
            ),
            (
                "auto-reply",
                with(|m| {
                    m.signals = AutoSignals {
                        auto_submitted: Some("auto-replied".into()),
                        ..AutoSignals::default()
                    }
                }),
                facts(),
                policy(),
                "auto_reply",
                None,
            ),
            (
                "bounce without sender",
                with(|m| {
                    m.sender = None;
                    m.signals.report_type = Some("delivery-status".into())
                }),
                facts(),
                policy(),
                "bounce",
                None,
            ),
            (
                "too large",
                with(|m| {
                    m.problem = Some(ParseProblem::TooLarge {
                        size_bytes: 9,
                        limit_bytes: 1,
                    })
                }),
                facts(),
                policy(),
                "rejected",
                None,
            ),
            (
                "garbage",
                with(|m| m.problem = Some(ParseProblem::NotAMessage)),
                facts(),
                policy(),
                "rejected",
                None,
            ),
            (
                "parser panic",
                with(|m| m.problem = Some(ParseProblem::ParserFailed("boom".into()))),
                facts(),
                policy(),
                "error",
                None,
            ),
            (
                "no sender",
                with(|m| m.sender = None),
                facts(),
                policy(),
                "rejected",
                None,
            ),
            (
                "unknown sender, registration off",
                mail("alice@contoso.com"),
                facts(),
                no_register.clone(),
                "rejected",
                None,
            ),
            (
                "unknown sender replying, registration off",
                mail("alice@contoso.com"),
                Facts {
                    thread_by_header: incident_of(10),
                    ..facts()
                },
                no_register,
                "appended",
                None,
            ),
            (
                "own address",
                mail("support@example.com"),
                facts(),
                policy(),
                "rejected",
                None,
            ),
            (
                "own address in thread",
                mail("support@example.com"),
                Facts {
                    thread_by_header: incident_of(10),
                    ..facts()
                },
                policy(),
                "appended",
                None,
            ),
        ]);
    }

    #[test]
    fn registration_plans() {
        let plan =
            |from: &str, facts: Facts, policy: Policy| match decide(&mail(from), &facts, &policy) {
                Decision::Create {
                    client: ClientPlan::Register(new_client),
                    ..
                } => new_client,
                other => panic!("expected a registration, got {other:?}"),
            };
        let owned = Facts {
            domain_owner: Some(CONTOSO),
            ..facts()
        };
        assert_eq!(
            plan("a@contoso.com", owned, policy()).organisation,
            OrganisationPlan::Existing(CONTOSO)
        );
        assert_eq!(
            plan("a@fabrikam.com", facts(), policy()).organisation,
            OrganisationPlan::CreateForDomain("fabrikam.com".into())
        );
        assert_eq!(
            plan("a@gmail.com", facts(), policy()).organisation,
            OrganisationPlan::Default
        );
        let manual = Policy {
            auto_create_from_domain: false,
            ..policy()
        };
        assert_eq!(
            plan("a@fabrikam.com", facts(), manual).organisation,
            OrganisationPlan::Default
        );
        let pending = Policy {
            auto_approve: false,
            registration_mail: false,
            ..policy()
        };
        let new_client = plan("a@fabrikam.com", facts(), pending);
        assert_eq!(new_client.approval, Approval::Pending);
        assert!(!new_client.send_registration);
    }

    #[test]
    fn departments_routing_and_restricted_access() {
        let restricted = Policy {
            department_access: DepartmentAccess::Restricted,
            pending_mail: PendingMail::Hold,
            auto_approve: false,
            ..policy()
        };
        let at = |received: &str| DepartmentFacts {
            received: Some(received.into()),
            organisation: Some(CONTOSO),
            ..Default::default()
        };
        let filed = |facts: Facts, policy: &Policy| match decide(
            &mail("alice@contoso.com"),
            &facts,
            policy,
        ) {
            Decision::Create {
                folder,
                held_for,
                department,
                routed,
                ..
            } => (folder, held_for, department, routed),
            other => panic!("expected a new incident, got {other:?}"),
        };
        let known = |departments: DepartmentFacts| Facts {
            client: client(Standing::Normal, Approval::Approved),
            departments,
            ..facts()
        };
        let support = Some("Support".to_string());
        assert_eq!(
            filed(known(at("Support")), &policy()),
            (Folder::Inbox, None, support.clone(), false),
            "open: the receiving mailbox's department"
        );
        assert_eq!(
            filed(known(at("Support")), &restricted),
            (
                Folder::Held,
                Some(HoldReason::DepartmentAccess),
                support.clone(),
                false
            ),
            "restricted without a grant"
        );
        let mut client_grant = at("Support");
        client_grant.client_grants.insert("support".into());
        assert_eq!(filed(known(client_grant), &restricted).0, Folder::Inbox);
        let mut organisation_grant = at("Support");
        organisation_grant
            .organisation_grants
            .insert("support".into());
        assert_eq!(
            filed(known(organisation_grant.clone()), &restricted).0,
            Folder::Inbox
        );
        let elsewhere = DepartmentFacts {
            organisation: Some(DEFAULT_ORG),
            ..organisation_grant.clone()
        };
        assert_eq!(
            filed(known(elsewhere), &restricted).0,
            Folder::Held,
            "another organisation's grants do not count"
        );
        let routed = DepartmentFacts {
            route: Some("Sales".into()),
            ..at("Support")
        };
        assert_eq!(
            filed(known(routed), &policy()),
            (Folder::Inbox, None, Some("Sales".into()), true)
        );
        // A new sender joining the domain owner: its rules apply; no access outranks pending.
        let new_sender = |departments| Facts {
            domain_owner: Some(CONTOSO),
            departments,
            ..facts()
        };
        assert_eq!(
            filed(new_sender(at("Support")), &restricted).1,
            Some(HoldReason::DepartmentAccess)
        );
        assert_eq!(
            filed(new_sender(organisation_grant), &restricted).1,
            Some(HoldReason::PendingApproval)
        );
        let spam = Facts {
            client: client(Standing::Spam, Approval::Approved),
            departments: at("Support"),
            ..facts()
        };
        assert_eq!(filed(spam, &restricted).0, Folder::Spam);
    }

    #[test]
    fn a_customer_reply_reopens_what_staff_set_aside() {
        let known = Facts {
            client: client(Standing::Normal, Approval::Approved),
            ..facts()
        };
        let in_thread = |status, by_tag: bool| {
            let incident = incident_of(10).map(|incident| IncidentFacts { status, ..incident });
            if by_tag {
                Facts {
                    thread_by_tag: incident,
                    ..known.clone()
                }
            } else {
                Facts {
                    thread_by_header: incident,
                    ..known.clone()
                }
            }
        };
        let reopened = |inbound: &Inbound, facts: &Facts| match decide(inbound, facts, &policy()) {
            Decision::Append { reopen, notes, .. } => (reopen, notes.join("; ")),
            other => panic!("expected an appended reply, got {other:?}"),
        };
        let reply = mail("alice@contoso.com");
        for by_tag in [false, true] {
            for status in [
                IncidentStatus::Waiting,
                IncidentStatus::Resolved,
                IncidentStatus::Closed,
            ] {
                let (reopen, notes) = reopened(&reply, &in_thread(status, by_tag));
                assert!(reopen, "{status:?}, by tag {by_tag}");
                assert!(
                    notes.contains(&format!("reopened: the incident was {}", status.as_str())),
                    "{notes}"
                );
            }
            let (reopen, notes) = reopened(&reply, &in_thread(IncidentStatus::Open, by_tag));
            assert!(!reopen, "an open incident stays as it is");
            assert!(!notes.contains("reopened"), "{notes}");
        }
        // Our own mail in the thread (staff writing from the support address) reopens nothing.
        let ours = mail("support@example.com");
        let (reopen, _) = reopened(&ours, &in_thread(IncidentStatus::Resolved, false));
        assert!(!reopen, "our own mail does not reopen");
        // Neither does an out-of-office answer or a bounce: they are not the customer writing.
        let mut out_of_office = mail("alice@contoso.com");
        out_of_office.signals.auto_submitted = Some("auto-replied".into());
        let decision = decide(
            &out_of_office,
            &in_thread(IncidentStatus::Resolved, false),
            &policy(),
        );
        assert!(
            matches!(
                decision,
                Decision::Automatic {
                    append_to: Some(500),
                    ..
                }
            ),
            "{decision:?}"
        );
    }

    #[test]
    fn mail_from_before_the_first_watch_is_taken_in_without_mail() {
        // In the folder before intake first watched it, or imported with `--no-mail`: a new
        // incident and a new client, nobody mailed, and the reason in the notes.
        for quiet in [Quiet::ExistingMail, Quiet::Imported] {
            let facts = Facts {
                quiet: Some(quiet),
                ..facts()
            };
            match decide(&mail("alice@contoso.com"), &facts, &policy()) {
                Decision::Create {
                    acknowledge,
                    client: ClientPlan::Register(new_client),
                    notes,
                    folder,
                    ..
                } => {
                    assert_eq!(folder, Folder::Inbox);
                    assert!(!acknowledge, "no acknowledgement ({quiet:?})");
                    assert!(!new_client.send_registration, "no registration ({quiet:?})");
                    assert_eq!(notes, vec![quiet.describe()]);
                }
                other => panic!("expected a new incident and a new client, got {other:?}"),
            }
            // A reply from a new sender among that mail registers them without mail, too.
            let reply = Facts {
                thread_by_header: incident_of(10),
                ..facts
            };
            match decide(&mail("bob@contoso.com"), &reply, &policy()) {
                Decision::Append {
                    client: ClientPlan::Register(new_client),
                    notes,
                    ..
                } => {
                    assert!(!new_client.send_registration);
                    assert_eq!(notes, vec![quiet.describe()]);
                }
                other => panic!("expected an appended reply from a new client, got {other:?}"),
            }
        }
        assert!(
            Quiet::ExistingMail
                .describe()
                .contains("before intake first watched")
        );
        assert_eq!(
            Quiet::Imported.describe(),
            "imported with --no-mail: no mail sent"
        );
    }

    #[test]
    fn acknowledgements_and_notes() {
        let ack = |inbound: Inbound, facts: Facts| match decide(&inbound, &facts, &policy()) {
            Decision::Create { acknowledge, .. } => acknowledge,
            other => panic!("expected a new incident, got {other:?}"),
        };
        assert!(ack(mail("alice@contoso.com"), facts()));
        let mut list_mail = mail("alice@contoso.com");
        list_mail.signals.mailing_list = true;
        assert!(!ack(list_mail, facts()));
        let spam_client = Facts {
            client: client(Standing::Spam, Approval::Approved),
            ..facts()
        };
        assert!(!ack(mail("alice@contoso.com"), spam_client));

        let mut flagged = mail("frank@spammy.example");
        flagged.upstream_spam = true;
        match decide(&flagged, &facts(), &policy()) {
            Decision::Create {
                folder: Folder::Spam,
                acknowledge: false,
                client: ClientPlan::Register(new_client),
                ..
            } => {
                assert!(
                    !new_client.send_registration,
                    "no registration mail to a spam sender"
                )
            }
            other => panic!("expected a spam incident, got {other:?}"),
        }

        let hijack = decide(
            &mail("mallory@evil.com"),
            &Facts {
                thread_by_tag: incident_of(10),
                ..facts()
            },
            &policy(),
        );
        let reason = hijack.reason().expect("a hijack attempt is explained");
        assert!(reason.contains("[#KXW-482-91735] ignored"), "{reason}");
    }

    #[test]
    fn automatic_mail_appends_to_its_thread_and_never_registers() {
        let mut out_of_office = mail("alice@contoso.com");
        out_of_office.signals.auto_submitted = Some("auto-replied".into());
        let decision = decide(
            &out_of_office,
            &Facts {
                thread_by_header: incident_of(10),
                ..facts()
            },
            &policy(),
        );
        assert!(
            matches!(
                decision,
                Decision::Automatic {
                    kind: AutoKind::AutoReply,
                    append_to: Some(500),
                    ..
                }
            ),
            "{decision:?}"
        );
    }
}
