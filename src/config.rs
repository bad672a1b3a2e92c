//! Configuration: TOML text → `RawConfig` (serde, unknown keys rejected) → validated `Settings`.
//!
//! Never touches the network or the database; secrets are read later, where they are used.
//! Every error names the file, the key path and what was expected, for example
//! `intake.toml: mailbox[1].port: expected 1-65535`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize, Serializer};

use crate::ingest::hash::HashFormat;

/// Where the daemon looks for its configuration when neither `-c` nor `$INTAKE_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/intake/intake.toml";

/// A configuration that failed to load: always names the file, and the key when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}{detail}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub detail: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, expectation: impl fmt::Display) -> Self {
        let key = key.into();
        let detail = if key.is_empty() {
            expectation.to_string()
        } else {
            format!(": {expectation}")
        };
        ConfigError {
            file: file.display().to_string(),
            key,
            detail,
        }
    }
}

/// A secret value. It prints as `***` in logs, debug output and `check-config`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself: call only where it is handed to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// What happens to mail from a client whose approval is still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingMail {
    /// The incident goes to the inbox like any other.
    Accept,
    /// The incident waits in the `held` folder until staff approve the client.
    Hold,
}

/// Which departments a client may open incidents in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DepartmentAccess {
    /// Any client may write to any department.
    Open,
    /// Only departments granted to the client or their organisation; other mail is held.
    Restricted,
}

/// How intake proves who it is to an IMAP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapAuth {
    /// IMAP LOGIN with the username and password.
    Password,
    /// SASL XOAUTH2 (Gmail, Microsoft 365): the password source holds an OAuth 2.0 access
    /// token, read again at each connection so that a refresher can keep it current.
    Xoauth2,
}

/// How a connection to a mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain connection upgraded with STARTTLS before login.
    Starttls,
    /// No encryption: refused unless the host is a loopback address.
    Plain,
}

/// What the IMAP poller does with a message once it is committed to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterIngest {
    Seen,
    Move,
    Delete,
}

/// What happens to mail already in a folder the first time intake watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExistingMail {
    /// Ingested like any mail, but nobody is mailed for it: no registration, no
    /// acknowledgement (a mailbox used by hand until now may hold years of mail).
    Quiet,
    /// Ingested and answered like mail that arrives later.
    Acknowledge,
}

/// Where a password comes from. Only the inline form holds the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
    Inline(Secret),
}

impl PasswordSource {
    /// Reads the password now: files and environment variables may change between reloads.
    pub fn read(&self) -> std::io::Result<Secret> {
        match self {
            PasswordSource::File(path) => {
                // Named: "No such file or directory" alone leaves an operator guessing which.
                let text = std::fs::read_to_string(path).map_err(|error| {
                    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
                })?;
                Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
            }
            PasswordSource::Env(name) => std::env::var(name).map(Secret::new).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("environment variable {name} is not set"),
                )
            }),
            PasswordSource::Inline(secret) => Ok(secret.clone()),
        }
    }
}

/// The validated configuration every other module reads.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    #[serde(skip)]
    pub source: PathBuf,
    pub state_dir: PathBuf,
    pub database: DatabaseSettings,
    pub clients: ClientSettings,
    pub organisations: OrganisationSettings,
    pub incidents: IncidentSettings,
    pub limits: LimitSettings,
    #[serde(rename = "mailbox")]
    pub mailboxes: Vec<MailboxSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSettings>,
    pub outbound: OutboundSettings,
    pub metrics: MetricsSettings,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseSettings {
    /// The connection URL; its password, if any, is masked when printed.
    #[serde(serialize_with = "serialize_masked_url")]
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientSettings {
    pub auto_register: bool,
    pub auto_approve: bool,
    pub pending_mail: PendingMail,
    pub department_access: DepartmentAccess,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrganisationSettings {
    pub auto_create_from_domain: bool,
    pub default: String,
    pub free_mail_domains: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentSettings {
    pub hash_format: HashFormat,
    pub upstream_spam_verdict: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitSettings {
    pub max_message_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxSettings {
    pub name: String,
    pub department: String,
    pub address: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub auth: ImapAuth,
    pub password: PasswordSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub folders: Vec<String>,
    pub after_ingest: AfterIngest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_to: Option<String>,
    pub existing_mail: ExistingMail,
    /// Where a message over `max_message_bytes` is moved after its headers are recorded.
    pub oversized_folder: String,
    pub idle: bool,
    #[serde(serialize_with = "serialize_duration")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub from: String,
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboundSettings {
    pub registration: bool,
    pub acknowledgement: bool,
    pub approval: bool,
    pub max_auto_per_recipient_per_hour: u32,
    /// Absolute, or made absolute against the configuration file's directory.
    pub templates_dir: PathBuf,
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles with each further one.
    #[serde(serialize_with = "serialize_duration")]
    pub retry_delay: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub max_retry_delay: Duration,
    /// How often the worker in `intake run` looks for due mail besides being woken.
    #[serde(serialize_with = "serialize_duration")]
    pub poll_interval: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `/health` fails when a folder's last successful check is older than its own period
    /// (`poll_interval`, or the IDLE renewal) plus this.
    #[serde(serialize_with = "serialize_duration")]
    pub stale_after: Duration,
}

impl Settings {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::new(path, "", format!("cannot read file: {error}")))?;
        Settings::parse(&text, path)
    }

    /// Validates configuration text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let raw = parse_raw(text, path)?;
        raw.validate(path)
    }

    /// Every address that is ours: mail from them is never answered nor registered.
    /// Which mailbox serves each department (lower-cased name → mailbox name; the first
    /// mailbox named for a department serves it).
    pub fn department_mailboxes(&self) -> BTreeMap<String, String> {
        let mut routes = BTreeMap::new();
        for mailbox in &self.mailboxes {
            routes
                .entry(mailbox.department.to_lowercase())
                .or_insert_with(|| mailbox.name.clone());
        }
        routes
    }

    pub fn own_addresses(&self) -> BTreeSet<String> {
        let mut addresses: BTreeSet<String> = self
            .mailboxes
            .iter()
            .map(|mailbox| mailbox.address.to_lowercase())
            .collect();
        if let Some(smtp) = &self.smtp
            && let Some(address) = bare_address(&smtp.from)
        {
            addresses.insert(address);
        }
        addresses
    }

    /// The configuration as `intake check-config` prints it, secrets masked.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# cannot print: {error}\n"))
    }
}

/// The address inside `Name <address>` or a bare `address`, lowercased.
pub fn bare_address(text: &str) -> Option<String> {
    let inner = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    let inner = inner.trim();
    let (local, domain) = inner.split_once('@')?;
    if local.is_empty() || domain.is_empty() || inner.contains(char::is_whitespace) {
        return None;
    }
    Some(inner.to_lowercase())
}

/// Free-mail domains never get an organisation of their own: their users land in the default one.
pub const BUILTIN_FREE_MAIL_DOMAINS: &[&str] = &[
    "aol.com",
    "gmail.com",
    "googlemail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.de",
    "hotmail.fr",
    "icloud.com",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "outlook.com",
    "outlook.de",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "t-online.de",
    "tutanota.com",
    "web.de",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.de",
    "yahoo.fr",
    "yandex.com",
    "yandex.ru",
    "zoho.com",
];

// ---------------------------------------------------------------------------------------------
// Raw, unvalidated input.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    clients: RawClients,
    #[serde(default)]
    organisations: RawOrganisations,
    #[serde(default)]
    incidents: RawIncidents,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    mailbox: Vec<RawMailbox>,
    smtp: Option<RawSmtp>,
    #[serde(default)]
    outbound: RawOutbound,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClients {
    auto_register: Option<bool>,
    auto_approve: Option<bool>,
    pending_mail: Option<PendingMail>,
    department_access: Option<DepartmentAccess>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisations {
    auto_create_from_domain: Option<bool>,
    default: Option<String>,
    free_mail_domains: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncidents {
    hash_format: Option<String>,
    upstream_spam_verdict: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    name: String,
    department: Option<String>,
    address: String,
    host: String,
    port: Option<i64>,
    security: Option<Security>,
    username: String,
    auth: Option<ImapAuth>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    ca_file: Option<PathBuf>,
    folders: Option<Vec<String>>,
    after_ingest: Option<AfterIngest>,
    move_to: Option<String>,
    existing_mail: Option<ExistingMail>,
    oversized_folder: Option<String>,
    idle: Option<bool>,
    poll_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<i64>,
    security: Option<Security>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    ca_file: Option<PathBuf>,
    from: String,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    registration: Option<bool>,
    acknowledgement: Option<bool>,
    approval: Option<bool>,
    max_auto_per_recipient_per_hour: Option<u32>,
    templates_dir: Option<PathBuf>,
    max_attempts: Option<u32>,
    retry_delay: Option<String>,
    max_retry_delay: Option<String>,
    poll_interval: Option<String>,
    portal_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
    stale_after: Option<String>,
}

fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text)
        .map_err(|error| ConfigError::new(path, "", describe_toml_error(text, &error)))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = key_path(error.path());
        ConfigError::new(path, key, describe_toml_error(text, error.inner()))
    })
}

/// `mailbox[1].port` rather than serde_path_to_error's `mailbox[0].port`: operators count from 1.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut text = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{}]", index + 1)),
            Segment::Map { key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Enum { variant } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    text
}

fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{message} (line {line})")
        }
        None => message,
    }
}

impl RawConfig {
    fn validate(self, file: &Path) -> Result<Settings, ConfigError> {
        let error = |key: &str, expectation: &str| ConfigError::new(file, key, expectation);
        let state_dir = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/intake"));
        if !state_dir.is_absolute() {
            return Err(error("state_dir", "expected an absolute path"));
        }
        let url = match self.database.url {
            Some(url) => url,
            None => format!("sqlite://{}", state_dir.join("intake.db").display()),
        };
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(error(
                "database.url",
                "expected a sqlite:// or postgres:// URL",
            ));
        }

        let default_organisation = self
            .organisations
            .default
            .unwrap_or_else(|| "Default".to_string());
        if default_organisation.trim().is_empty() {
            return Err(error("organisations.default", "expected a non-empty name"));
        }
        let free_mail_domains = match self.organisations.free_mail_domains {
            Some(domains) => {
                let mut set = BTreeSet::new();
                for (index, domain) in domains.iter().enumerate() {
                    let domain = domain.trim().to_lowercase();
                    if domain.is_empty() || domain.contains('@') || !domain.contains('.') {
                        return Err(error(
                            &format!("organisations.free_mail_domains[{}]", index + 1),
                            "expected a domain such as gmail.com",
                        ));
                    }
                    set.insert(domain);
                }
                set
            }
            None => BUILTIN_FREE_MAIL_DOMAINS
                .iter()
                .map(|domain| domain.to_string())
                .collect(),
        };

        let hash_format_text = self
            .incidents
            .hash_format
            .unwrap_or_else(|| "AAA-999-99999".to_string());
        let hash_format = HashFormat::parse(&hash_format_text)
            .map_err(|why| error("incidents.hash_format", &why))?;

        let max_message_bytes = self.limits.max_message_bytes.unwrap_or(26_214_400);
        if max_message_bytes < 1024 {
            return Err(error(
                "limits.max_message_bytes",
                "expected at least 1024 bytes",
            ));
        }

        let mut mailboxes = Vec::new();
        let mut names = BTreeSet::new();
        for (index, raw) in self.mailbox.into_iter().enumerate() {
            let prefix = format!("mailbox[{}]", index + 1);
            let mailbox = raw.validate(file, &prefix)?;
            if !names.insert(mailbox.name.clone()) {
                return Err(error(
                    &format!("{prefix}.name"),
                    &format!("expected a unique name; \"{}\" is used twice", mailbox.name),
                ));
            }
            mailboxes.push(mailbox);
        }
        check_folder_loops(file, &mailboxes)?;

        let smtp = self.smtp.map(|raw| raw.validate(file)).transpose()?;

        let templates_dir = self
            .outbound
            .templates_dir
            .unwrap_or_else(|| PathBuf::from("/etc/intake/templates"));
        let templates_dir = if templates_dir.is_absolute() {
            templates_dir
        } else {
            let base = file
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::path::absolute(base.join(&templates_dir)).unwrap_or(templates_dir)
        };
        let duration = |key: &str, value: Option<&str>, default: &str| {
            parse_duration(file, key, value.unwrap_or(default))
        };
        let outbound = OutboundSettings {
            registration: self.outbound.registration.unwrap_or(true),
            acknowledgement: self.outbound.acknowledgement.unwrap_or(true),
            approval: self.outbound.approval.unwrap_or(true),
            max_auto_per_recipient_per_hour: self
                .outbound
                .max_auto_per_recipient_per_hour
                .unwrap_or(5),
            templates_dir,
            max_attempts: self.outbound.max_attempts.unwrap_or(10),
            retry_delay: duration(
                "outbound.retry_delay",
                self.outbound.retry_delay.as_deref(),
                "1m",
            )?,
            max_retry_delay: duration(
                "outbound.max_retry_delay",
                self.outbound.max_retry_delay.as_deref(),
                "1h",
            )?,
            poll_interval: duration(
                "outbound.poll_interval",
                self.outbound.poll_interval.as_deref(),
                "10s",
            )?,
            portal_url: self.outbound.portal_url,
        };
        if outbound.max_attempts == 0 {
            return Err(error("outbound.max_attempts", "expected at least 1"));
        }
        if outbound.max_retry_delay < outbound.retry_delay {
            return Err(error(
                "outbound.max_retry_delay",
                "expected at least outbound.retry_delay",
            ));
        }
        if let Some(url) = &outbound.portal_url
            && (url.chars().any(char::is_control) || url.trim().is_empty())
        {
            return Err(error(
                "outbound.portal_url",
                "expected a single-line URL such as \"https://help.example.com\"",
            ));
        }

        let listen = match self.metrics.listen {
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                error(
                    "metrics.listen",
                    "expected an address such as 127.0.0.1:9477",
                )
            })?),
            None => None,
        };
        let stale_after = duration(
            "metrics.stale_after",
            self.metrics.stale_after.as_deref(),
            "5m",
        )?;

        Ok(Settings {
            source: file.to_path_buf(),
            state_dir,
            database: DatabaseSettings { url },
            clients: ClientSettings {
                auto_register: self.clients.auto_register.unwrap_or(true),
                auto_approve: self.clients.auto_approve.unwrap_or(true),
                pending_mail: self.clients.pending_mail.unwrap_or(PendingMail::Accept),
                department_access: self
                    .clients
                    .department_access
                    .unwrap_or(DepartmentAccess::Open),
            },
            organisations: OrganisationSettings {
                auto_create_from_domain: self.organisations.auto_create_from_domain.unwrap_or(true),
                default: default_organisation.trim().to_string(),
                free_mail_domains,
            },
            incidents: IncidentSettings {
                hash_format,
                upstream_spam_verdict: self.incidents.upstream_spam_verdict.unwrap_or(true),
            },
            limits: LimitSettings { max_message_bytes },
            mailboxes,
            smtp,
            outbound,
            metrics: MetricsSettings {
                listen,
                stale_after,
            },
        })
    }
}

fn validate_port(
    file: &Path,
    key: &str,
    port: Option<i64>,
    default: u16,
) -> Result<u16, ConfigError> {
    match port {
        None => Ok(default),
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| ConfigError::new(file, key, "expected 1-65535")),
    }
}

fn password_source(
    file: &Path,
    prefix: &str,
    inline: Option<String>,
    from_file: Option<PathBuf>,
    from_env: Option<String>,
) -> Result<Option<PasswordSource>, ConfigError> {
    let given = [inline.is_some(), from_file.is_some(), from_env.is_some()]
        .iter()
        .filter(|given| **given)
        .count();
    if given > 1 {
        return Err(ConfigError::new(
            file,
            format!("{prefix}.password"),
            "expected only one of password, password_file, password_env",
        ));
    }
    Ok(match (inline, from_file, from_env) {
        (Some(secret), _, _) => Some(PasswordSource::Inline(Secret::new(secret))),
        (_, Some(path), _) => Some(PasswordSource::File(path)),
        (_, _, Some(name)) => Some(PasswordSource::Env(name)),
        _ => None,
    })
}

/// The certificates of a `ca_file`: read when the configuration is loaded (so a wrong path
/// stops the start, `check-config` and a reload, naming the key) and again at each
/// connection (the file may be replaced meanwhile).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Whether two names on one IMAP account are one folder: INBOX in any case is the inbox
/// (RFC 3501), other names are as the server spells them.
fn same_folder(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

/// Refuses what would take the same mail twice or for ever: a folder listed twice, a folder
/// watched by two mailboxes on one account, and mail moved (after ingest, or aside when
/// oversized) into a folder a mailbox on the same account watches, which would take it again,
/// and with `move` move it again, in a loop.
fn check_folder_loops(file: &Path, mailboxes: &[MailboxSettings]) -> Result<(), ConfigError> {
    let account = |mailbox: &MailboxSettings| {
        (
            mailbox.host.to_ascii_lowercase(),
            mailbox.port,
            mailbox.username.clone(),
        )
    };
    // The first of `among` on the account of `of` that watches `folder`.
    let watcher = |among: &'_ [MailboxSettings], folder: &str, of: &MailboxSettings| {
        among
            .iter()
            .filter(|other| account(other) == account(of))
            .find(|other| {
                other
                    .folders
                    .iter()
                    .any(|theirs| same_folder(theirs, folder))
            })
            .map(|other| other.name.clone())
    };
    for (index, mailbox) in mailboxes.iter().enumerate() {
        let key = |name: &str| format!("mailbox[{}].{name}", index + 1);
        for (position, folder) in mailbox.folders.iter().enumerate() {
            if mailbox.folders[..position]
                .iter()
                .any(|earlier| same_folder(earlier, folder))
            {
                return Err(ConfigError::new(
                    file,
                    key("folders"),
                    format!("expected each folder once; \"{folder}\" is listed twice"),
                ));
            }
            if let Some(earlier) = watcher(&mailboxes[..index], folder, mailbox) {
                return Err(ConfigError::new(
                    file,
                    key("folders"),
                    format!(
                        "expected folders no other mailbox watches; \"{folder}\" of {} on {} is \
                         watched by mailbox \"{earlier}\" too",
                        mailbox.username, mailbox.host
                    ),
                ));
            }
        }
        let targets = [
            (
                "move_to",
                mailbox
                    .move_to
                    .as_deref()
                    .filter(|_| mailbox.after_ingest == AfterIngest::Move),
            ),
            ("oversized_folder", Some(mailbox.oversized_folder.as_str())),
        ];
        for (name, target) in targets {
            if let Some(target) = target
                && let Some(other) = watcher(mailboxes, target, mailbox)
            {
                return Err(ConfigError::new(
                    file,
                    key(name),
                    format!(
                        "expected a folder no mailbox watches; mailbox \"{other}\" watches \
                         \"{target}\", so mail put there would be taken again",
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Plain text over the network is allowed only to this machine.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn parse_duration(file: &Path, key: &str, text: &str) -> Result<Duration, ConfigError> {
    let duration = humantime::parse_duration(text.trim()).map_err(|_| {
        ConfigError::new(file, key, "expected a duration such as \"60s\" or \"5m\"")
    })?;
    if duration < Duration::from_secs(1) {
        return Err(ConfigError::new(file, key, "expected at least 1s"));
    }
    Ok(duration)
}

impl RawMailbox {
    fn validate(self, file: &Path, prefix: &str) -> Result<MailboxSettings, ConfigError> {
        let key = |name: &str| format!("{prefix}.{name}");
        if self.name.trim().is_empty() {
            return Err(ConfigError::new(
                file,
                key("name"),
                "expected a non-empty name",
            ));
        }
        let address = bare_address(&self.address)
            .filter(|address| *address == self.address.trim().to_lowercase())
            .ok_or_else(|| {
                ConfigError::new(
                    file,
                    key("address"),
                    "expected an address such as support@example.com",
                )
            })?;
        let security = self.security.unwrap_or(Security::Tls);
        if security == Security::Plain && !is_loopback(&self.host) {
            return Err(ConfigError::new(
                file,
                key("security"),
                "expected \"tls\" or \"starttls\": \"plain\" is allowed only to a loopback host",
            ));
        }
        let default_port = if security == Security::Tls { 993 } else { 143 };
        let port = validate_port(file, &key("port"), self.port, default_port)?;
        let password = password_source(
            file,
            prefix,
            self.password,
            self.password_file,
            self.password_env,
        )?
        .ok_or_else(|| {
            ConfigError::new(
                file,
                key("password_file"),
                "expected one of password_file, password_env or password",
            )
        })?;
        if let Some(path) = &self.ca_file {
            read_ca_file(path).map_err(|detail| ConfigError::new(file, key("ca_file"), detail))?;
        }
        let folders = self.folders.unwrap_or_else(|| vec!["INBOX".to_string()]);
        if folders.is_empty() || folders.iter().any(|folder| folder.trim().is_empty()) {
            return Err(ConfigError::new(
                file,
                key("folders"),
                "expected a list of folder names such as [\"INBOX\"]",
            ));
        }
        let after_ingest = self.after_ingest.unwrap_or(AfterIngest::Seen);
        if after_ingest == AfterIngest::Move
            && self
                .move_to
                .as_deref()
                .is_none_or(|folder| folder.trim().is_empty())
        {
            return Err(ConfigError::new(
                file,
                key("move_to"),
                "expected a folder name when after_ingest = \"move\"",
            ));
        }
        let poll_interval = parse_duration(
            file,
            &key("poll_interval"),
            self.poll_interval.as_deref().unwrap_or("60s"),
        )?;
        Ok(MailboxSettings {
            department: self.department.unwrap_or_else(|| self.name.clone()),
            name: self.name,
            address,
            host: self.host,
            port,
            security,
            username: self.username,
            auth: self.auth.unwrap_or(ImapAuth::Password),
            password,
            ca_file: self.ca_file,
            folders,
            after_ingest,
            move_to: self.move_to,
            existing_mail: self.existing_mail.unwrap_or(ExistingMail::Quiet),
            oversized_folder: self
                .oversized_folder
                .filter(|folder| !folder.trim().is_empty())
                .unwrap_or_else(|| "Oversized".to_string()),
            idle: self.idle.unwrap_or(true),
            poll_interval,
        })
    }
}

impl RawSmtp {
    fn validate(self, file: &Path) -> Result<SmtpSettings, ConfigError> {
        let security = self.security.unwrap_or(Security::Starttls);
        if security == Security::Plain && !is_loopback(&self.host) {
            return Err(ConfigError::new(
                file,
                "smtp.security",
                "expected \"tls\" or \"starttls\": \"plain\" is allowed only to a loopback host",
            ));
        }
        let default_port = if security == Security::Tls { 465 } else { 587 };
        let port = validate_port(file, "smtp.port", self.port, default_port)?;
        let password = password_source(
            file,
            "smtp",
            self.password,
            self.password_file,
            self.password_env,
        )?;
        if password.is_some() && self.username.is_none() {
            return Err(ConfigError::new(
                file,
                "smtp.username",
                "expected a username when a password is given",
            ));
        }
        if bare_address(&self.from).is_none() {
            return Err(ConfigError::new(
                file,
                "smtp.from",
                "expected an address such as \"Example Support <support@example.com>\"",
            ));
        }
        if self.from.contains(['\r', '\n']) {
            return Err(ConfigError::new(
                file,
                "smtp.from",
                "expected a single line",
            ));
        }
        let timeout = parse_duration(
            file,
            "smtp.timeout",
            self.timeout.as_deref().unwrap_or("30s"),
        )?;
        Ok(SmtpSettings {
            host: self.host,
            port,
            security,
            username: self.username,
            password,
            ca_file: self.ca_file,
            from: self.from,
            timeout,
        })
    }
}

fn serialize_duration<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

fn serialize_masked_url<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&mask_url_password(url))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..authority_start],
                &authority[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, String> {
        Settings::parse(text, Path::new("intake.toml")).map_err(|error| error.to_string())
    }

    /// A PEM certificate (a self-signed CA) that a `ca_file` may name.
    const PRIVATE_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/private-ca.pem");

    const MAILBOX: &str = r#"
[[mailbox]]
name = "support"
address = "support@example.com"
host = "imap.example.com"
username = "support@example.com"
password_file = "/run/credentials/intake.service/support"
"#;

    #[test]
    fn an_unreadable_password_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("support-password");
        let missing = PasswordSource::File(path.clone())
            .read()
            .expect_err("no such file");
        assert!(
            missing.to_string().contains(&path.display().to_string()),
            "{missing}"
        );
        std::fs::write(&path, "s3cret\n").expect("the password file");
        let read = PasswordSource::File(path).read().expect("readable");
        assert_eq!(read.expose(), "s3cret");
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let settings = load("").expect("empty config is valid");
        assert_eq!(settings.database.url, "sqlite:///var/lib/intake/intake.db");
        assert!(settings.clients.auto_register);
        assert!(settings.clients.auto_approve);
        assert_eq!(settings.clients.pending_mail, PendingMail::Accept);
        assert_eq!(settings.organisations.default, "Default");
        assert!(
            settings
                .organisations
                .free_mail_domains
                .contains("gmail.com")
        );
        assert_eq!(settings.limits.max_message_bytes, 26_214_400);
    }

    #[test]
    fn a_mailbox_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "not a certificate\n").expect("a file");
        for (path, expected) in [
            (&missing, "No such file"),
            (&not_pem, "no PEM certificate in it"),
        ] {
            let text = format!("{MAILBOX}ca_file = \"{}\"\n", path.display());
            let error = load(&text).expect_err("an unusable ca_file");
            assert!(
                error.starts_with("intake.toml: mailbox[1].ca_file: ")
                    && error.contains(&path.display().to_string())
                    && error.contains(expected),
                "{error}"
            );
        }
        let text = format!("{MAILBOX}ca_file = \"{PRIVATE_CA}\"\n");
        let settings = load(&text).expect("a PEM certificate");
        assert_eq!(
            settings.mailboxes[0].ca_file.as_deref(),
            Some(Path::new(PRIVATE_CA))
        );
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let cases: &[(&str, &str)] = &[
            ("colour = 1", "intake.toml: colour: unknown field"),
            (
                "[clients]\nauto_aprove = true",
                "intake.toml: clients.auto_aprove: unknown field",
            ),
            (
                "[clients]\nauto_approve = \"yes\"",
                "intake.toml: clients.auto_approve: invalid type",
            ),
            (
                "[clients]\npending_mail = \"later\"",
                "intake.toml: clients.pending_mail: unknown variant",
            ),
            (
                "[limits]\nmax_message_bytes = 10",
                "intake.toml: limits.max_message_bytes: expected at least 1024",
            ),
            (
                "[incidents]\nhash_format = \"AB\"",
                "intake.toml: incidents.hash_format: expected",
            ),
            (
                "[database]\nurl = \"mysql://x\"",
                "intake.toml: database.url: expected a sqlite:// or postgres:// URL",
            ),
            (
                "state_dir = \"relative\"",
                "intake.toml: state_dir: expected an absolute path",
            ),
        ];
        for (text, expected) in cases {
            let error = load(text).expect_err(text);
            assert!(error.starts_with(expected), "{text:?} gave {error:?}");
        }
    }

    #[test]
    fn a_folder_is_never_taken_twice_or_moved_into_a_watched_folder() {
        let sales = MAILBOX.replace("\"support\"\n", "\"sales\"\n");
        let refused = [
            (
                format!("{MAILBOX}folders = [\"INBOX\", \"inbox\"]\n"),
                "mailbox[1].folders: expected each folder once; \"inbox\" is listed twice",
            ),
            (
                format!(
                    "{MAILBOX}folders = [\"INBOX\", \"Orders\"]\n{sales}folders = [\"Orders\"]\n"
                ),
                "mailbox[2].folders: expected folders no other mailbox watches; \"Orders\" of \
                 support@example.com on imap.example.com is watched by mailbox \"support\" too",
            ),
            (
                format!(
                    "{MAILBOX}folders = [\"INBOX\", \"Done\"]\nafter_ingest = \"move\"\nmove_to = \"Done\"\n"
                ),
                "mailbox[1].move_to: expected a folder no mailbox watches; mailbox \"support\" \
                 watches \"Done\", so mail put there would be taken again",
            ),
            (
                format!("{MAILBOX}after_ingest = \"move\"\nmove_to = \"Inbox\"\n"),
                "mailbox[1].move_to: expected a folder no mailbox watches; mailbox \"support\" \
                 watches \"Inbox\", so mail put there would be taken again",
            ),
            (
                format!("{MAILBOX}{sales}folders = [\"Oversized\"]\n"),
                "mailbox[1].oversized_folder: expected a folder no mailbox watches; mailbox \
                 \"sales\" watches \"Oversized\", so mail put there would be taken again",
            ),
            (
                format!("{MAILBOX}after_ingest = \"move\"\nmove_to = \" \"\n"),
                "mailbox[1].move_to: expected a folder name when after_ingest = \"move\"",
            ),
        ];
        for (text, expected) in refused {
            let error = load(&text).expect_err(&text);
            assert_eq!(error, format!("intake.toml: {expected}"), "{text}");
        }
        let accepted = [
            // Another account may have folders of the same names.
            format!(
                "{MAILBOX}{}",
                sales.replace("imap.example.com", "imap.example.org")
            ),
            format!(
                "{MAILBOX}{}",
                sales.replace("username = \"support@", "username = \"sales@")
            ),
            // move_to is read only with after_ingest = "move".
            format!("{MAILBOX}move_to = \"INBOX\"\n"),
            format!("{MAILBOX}after_ingest = \"move\"\nmove_to = \"INBOX/Done\"\n"),
        ];
        for text in accepted {
            load(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
        }
    }

    #[test]
    fn mailbox_errors_count_from_one() {
        let text = format!(
            "{MAILBOX}{}",
            MAILBOX.replace("support\"\n", "sales\"\n") + "port = 70000\n"
        );
        let error = load(&text).expect_err("bad port");
        assert_eq!(error, "intake.toml: mailbox[2].port: expected 1-65535");
        let text = format!("{MAILBOX}security = \"plain\"\n");
        let error = load(&text).expect_err("plain to remote host");
        assert!(
            error.starts_with("intake.toml: mailbox[1].security:"),
            "{error}"
        );
        let text = format!("{MAILBOX}{MAILBOX}");
        let error = load(&text).expect_err("duplicate name");
        assert!(
            error.starts_with("intake.toml: mailbox[2].name:"),
            "{error}"
        );
        let text = format!("{MAILBOX}poll_interval = \"often\"\n");
        let error = load(&text).expect_err("bad duration");
        assert!(
            error.starts_with("intake.toml: mailbox[1].poll_interval:"),
            "{error}"
        );
    }

    #[test]
    fn mailbox_defaults_and_own_addresses() {
        let settings = load(&format!(
            "{MAILBOX}\n[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Help <Help@Example.com>\"\n"
        ))
        .expect("valid");
        let mailbox = &settings.mailboxes[0];
        assert_eq!(mailbox.port, 993);
        assert_eq!(mailbox.department, "support");
        assert_eq!(mailbox.folders, vec!["INBOX".to_string()]);
        assert_eq!(mailbox.poll_interval, Duration::from_secs(60));
        let own: Vec<String> = settings.own_addresses().into_iter().collect();
        assert_eq!(
            own,
            vec![
                "help@example.com".to_string(),
                "support@example.com".to_string()
            ]
        );
    }

    #[test]
    fn example_config_shows_the_defaults_and_its_examples_are_valid() {
        let example = include_str!("../config/intake.example.toml");
        let path = Path::new("config/intake.example.toml");
        let shipped = Settings::parse(example, path).expect("the example as shipped");
        let defaults = Settings::parse("", path).expect("an empty file");
        assert_eq!(
            shipped.to_toml(),
            defaults.to_toml(),
            "the example must show the defaults"
        );

        // Uncomment every example key and section: they must be valid as written.
        let uncommented: String = example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(key, _)| {
                            !key.is_empty()
                                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        // The example's CA path is the operator's; a CA kept for the tests stands in for it.
        let uncommented = uncommented.replace("/etc/intake/ca.pem", PRIVATE_CA);
        let full = Settings::parse(&uncommented, path).expect("the uncommented example");
        assert_eq!(full.mailboxes.len(), 1);
        assert_eq!(full.mailboxes[0].department, "Support");
        assert!(full.smtp.is_some());
        assert!(full.metrics.listen.is_some());
        assert_eq!(full.organisations.free_mail_domains.len(), 2);
    }

    #[test]
    fn check_config_output_masks_secrets() {
        let text = format!(
            "[database]\nurl = \"postgres://intake:hunter2@db/intake\"\n{}",
            MAILBOX.replace(
                "password_file = \"/run/credentials/intake.service/support\"",
                "password = \"hunter2\""
            )
        );
        let printed = load(&text).expect("valid").to_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://intake:***@db/intake"),
            "{printed}"
        );
        assert!(printed.contains("***"));
    }
}
