//! The fixture corpus: every `tests/fixtures/corpus/*.eml`, in name order, through the real
//! `intake ingest` into one database, on SQLite and on PostgreSQL.
//!
//! Each fixture has a sidecar `.expect` listing the rows it must leave, described as text.
//! Lines starting `before:` are SQL run first, the way staff edit rows in a viewer. In an
//! `.eml`, `{{hash:NAME}}` becomes the hash of the incident fixture NAME created.
//! A mismatch writes `NAME.actual` beside the fixture; `INTAKE_BLESS=1` rewrites the sidecars
//! (read every changed line before committing them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use intake::on_pool;
use intake::store::Store;

use crate::harness::{Backend, Intake, parse_ingest_line};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

#[tokio::test]
async fn corpus_on_sqlite() {
    run_corpus(Backend::Sqlite).await;
}

#[tokio::test]
async fn corpus_on_postgres() {
    run_corpus(Backend::Postgres).await;
}

struct Sidecar {
    before: Vec<String>,
    expected: Vec<String>,
}

fn read_sidecar(path: &Path) -> Sidecar {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut sidecar = Sidecar {
        before: Vec::new(),
        expected: Vec::new(),
    };
    for line in text.lines() {
        if let Some(sql) = line.strip_prefix("before:") {
            sidecar.before.push(sql.trim().to_string());
        } else if !line.trim().is_empty() && !line.starts_with('#') {
            sidecar.expected.push(line.to_string());
        }
    }
    sidecar
}

async fn run_corpus(backend: Backend) {
    let intake = Intake::new(backend, "").await;
    let store = intake.store().await;
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("the corpus folder")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 30, "the corpus went missing");

    let bless = std::env::var("INTAKE_BLESS").is_ok_and(|value| value == "1");
    let mut labels: BTreeMap<String, String> = BTreeMap::new(); // hash → fixture name
    let mut hashes: BTreeMap<String, String> = BTreeMap::new(); // fixture name → hash
    let mut failures = Vec::new();
    let mut marks = Marks::default();

    for fixture in &fixtures {
        let name = fixture
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("a fixture name")
            .to_string();
        let sidecar_path = fixture.with_extension("expect");
        let sidecar = read_sidecar(&sidecar_path);
        for sql in &sidecar.before {
            execute(&store, sql).await;
        }

        let mut raw = std::fs::read(fixture).expect("reading a fixture");
        for (fixture_name, hash) in &hashes {
            let placeholder = format!("{{{{hash:{fixture_name}}}}}");
            raw = replace_bytes(&raw, placeholder.as_bytes(), hash.as_bytes());
        }
        let input = intake.path(&format!("{name}.eml"));
        std::fs::write(&input, &raw).expect("writing the fixture copy");
        let input_text = input.display().to_string();
        let stdout = intake.run_ok(&["ingest", &input_text], None);
        let line = parse_ingest_line(stdout.lines().next().unwrap_or_default());
        if matches!(line.outcome.as_str(), "created" | "spam")
            && let Some(hash) = &line.hash
        {
            labels.insert(hash.clone(), name.clone());
            hashes.insert(name.clone(), hash.clone());
        }

        let actual = describe(&store, &labels, &raw, &mut marks).await;
        assert_eq!(
            actual.first().map(String::as_str),
            Some(format!("outcome: {}", line.outcome).as_str()),
            "{name}: the printed outcome and the ingest_log row disagree"
        );
        if bless {
            let mut text: String = sidecar
                .before
                .iter()
                .map(|sql| format!("before: {sql}\n"))
                .collect();
            for line in &actual {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(&sidecar_path, text).expect("writing a sidecar");
        } else if actual != sidecar.expected {
            let actual_path = fixture.with_extension("actual");
            std::fs::write(&actual_path, actual.join("\n") + "\n").expect("writing .actual");
            failures.push(format!(
                "{name} ({backend:?}): expected\n  {}\ngot\n  {}\n(written to {})",
                sidecar.expected.join("\n  "),
                actual.join("\n  "),
                actual_path.display()
            ));
        }
    }
    store.close().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The highest ids seen so far, so each fixture reports only the rows it added.
#[derive(Default)]
struct Marks {
    outbound: i64,
    organisations: i64,
}

fn replace_bytes(haystack: &[u8], needle: &[u8], replacement: &[u8]) -> Vec<u8> {
    let mut result = Vec::with_capacity(haystack.len());
    let mut index = 0;
    while index < haystack.len() {
        if haystack[index..].starts_with(needle) {
            result.extend_from_slice(replacement);
            index += needle.len();
        } else {
            result.push(haystack[index]);
            index += 1;
        }
    }
    result
}

async fn execute(store: &Store, sql: &str) {
    let sql = sql.to_string();
    on_pool!(store, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .unwrap_or_else(|error| panic!("before: {sql}: {error}"));
    });
}

fn quote(text: &str) -> String {
    format!("{text:?}")
}

fn collapse(text: &str, limit: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = words.join(" ");
    joined.chars().take(limit).collect()
}

type LogRow = (
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);
type MessageRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    String,
    Option<i64>,
    Vec<u8>,
);

/// The rows the latest message left, as sidecar lines.
async fn describe(
    store: &Store,
    labels: &BTreeMap<String, String>,
    raw: &[u8],
    marks: &mut Marks,
) -> Vec<String> {
    let mut lines = Vec::new();
    let (outcome, reason, incident_id, message_id, sender): LogRow = on_pool!(store, pool => {
        sqlx::query_as(
            "SELECT outcome, reason, incident_id, message_id, sender FROM ingest_log \
             ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(pool)
        .await
        .expect("an ingest_log row for every message")
    });
    let label = |hash: &str| {
        labels
            .get(hash)
            .cloned()
            .unwrap_or_else(|| "unknown".to_string())
    };
    lines.push(format!("outcome: {outcome}"));
    lines.push(format!(
        "reason: {}",
        reason.unwrap_or_else(|| "-".to_string())
    ));

    if let Some(incident_id) = incident_id {
        let (hash, folder, status, subject, messages): (String, String, String, String, i64) = on_pool!(store, pool => {
            sqlx::query_as(
                "SELECT hash, folder, status, subject, \
                 (SELECT count(*) FROM messages m WHERE m.incident_id = i.id) \
                 FROM incidents i WHERE id = $1",
            )
            .bind(incident_id)
            .fetch_one(pool)
            .await
            .expect("the logged incident exists")
        });
        lines.push(format!(
            "incident: {} folder={folder} status={status} messages={messages} subject={}",
            label(&hash),
            quote(&subject)
        ));
    } else {
        lines.push("incident: none".to_string());
    }

    match &sender {
        Some(sender) => {
            let client: Option<(String, Option<String>, String, String, String)> = on_pool!(store, pool => {
                sqlx::query_as(
                    "SELECT c.email, c.display_name, c.approval, c.standing, o.name \
                     FROM clients c JOIN organisations o ON o.id = c.organisation_id \
                     WHERE lower(c.email) = $1",
                )
                .bind(sender)
                .fetch_optional(pool)
                .await
                .expect("querying the client")
            });
            match client {
                Some((email, name, approval, standing, organisation)) => lines.push(format!(
                    "client: {email} name={} approval={approval} standing={standing} organisation={}",
                    quote(name.as_deref().unwrap_or("")),
                    quote(&organisation)
                )),
                None => lines.push(format!("client: none for {sender}")),
            }
        }
        None => lines.push("client: no sender".to_string()),
    }

    if let Some(message_id) = message_id {
        let (from, subject, text, html, raw_bytes, complete, on_incident, stored_raw): MessageRow = on_pool!(store, pool => {
            sqlx::query_as(
                "SELECT from_address, subject, text_body, \
                 CASE WHEN html_body IS NULL THEN 'no' ELSE 'yes' END, \
                 CAST(length(raw) AS BIGINT), \
                 CASE WHEN raw_is_complete THEN 'complete' ELSE 'headers only' END, \
                 incident_id, raw FROM messages WHERE id = $1",
            )
            .bind(message_id)
            .fetch_one(pool)
            .await
            .expect("the logged message exists")
        });
        let on = match on_incident {
            Some(id) => {
                let hash: String = on_pool!(store, pool => {
                    sqlx::query_scalar("SELECT hash FROM incidents WHERE id = $1")
                        .bind(id)
                        .fetch_one(pool)
                        .await
                        .expect("the message's incident")
                });
                label(&hash)
            }
            None => "none".to_string(),
        };
        let same_bytes = if stored_raw == raw {
            "same as the file"
        } else {
            "DIFFERENT from the file"
        };
        lines.push(format!(
            "message: from={} on={on} subject={} html={html} raw={raw_bytes} bytes {complete}, {same_bytes}",
            from.as_deref().unwrap_or("-"),
            quote(subject.as_deref().unwrap_or(""))
        ));
        if let Some(text) = text {
            lines.push(format!("text: {}", collapse(&text, 80)));
        }
        let attachments: Vec<(String, String, i64, String)> = on_pool!(store, pool => {
            sqlx::query_as(
                "SELECT filename, content_type, size_bytes, sha256 FROM attachments \
                 WHERE message_id = $1 ORDER BY id",
            )
            .bind(message_id)
            .fetch_all(pool)
            .await
            .expect("querying attachments")
        });
        for (filename, content_type, size, sha256) in attachments {
            lines.push(format!(
                "attachment: {} {content_type} {size} bytes sha256={}",
                quote(&filename),
                &sha256[..12]
            ));
        }
    } else {
        lines.push("message: none".to_string());
    }

    let organisations: Vec<(i64, String, Option<String>)> = on_pool!(store, pool => {
        sqlx::query_as(
            "SELECT o.id, o.name, d.domain FROM organisations o \
             LEFT JOIN organisation_domains d ON d.organisation_id = o.id \
             WHERE o.id > $1 ORDER BY o.id, d.domain",
        )
        .bind(marks.organisations)
        .fetch_all(pool)
        .await
        .expect("querying organisations")
    });
    for (id, name, domain) in organisations {
        marks.organisations = marks.organisations.max(id);
        lines.push(format!(
            "new organisation: {} owns {}",
            quote(&name),
            domain.unwrap_or_else(|| "no domain".to_string())
        ));
    }
    let outbound: Vec<(i64, String, String, String)> = on_pool!(store, pool => {
        sqlx::query_as(
            "SELECT id, template, recipient, state FROM outbound WHERE id > $1 ORDER BY id",
        )
        .bind(marks.outbound)
        .fetch_all(pool)
        .await
        .expect("querying outbound")
    });
    for (id, template, recipient, state) in outbound {
        marks.outbound = marks.outbound.max(id);
        lines.push(format!("outbound: {template} to {recipient} ({state})"));
    }
    // Hashes are random: write them as the placeholder the fixtures use.
    lines
        .into_iter()
        .map(|line| {
            labels.iter().fold(line, |line, (hash, name)| {
                line.replace(hash, &format!("{{{{hash:{name}}}}}"))
            })
        })
        .collect()
}
