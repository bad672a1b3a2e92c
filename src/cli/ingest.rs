//! `intake ingest`: stdin, .eml files and Maildir folders through the same pipeline as IMAP.
//!
//! Exit status follows sysexits: 0 when every message was recorded (whatever its outcome),
//! 75 when the database is unavailable (the MTA keeps the message and retries), 66 when an
//! input file could not be read.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::config::Settings;
use crate::message::{Origin, Quiet};
use crate::pipeline::Pipeline;
use crate::store::StoreError;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The configured mailbox these messages were addressed to (sets mailbox and department).
    #[arg(long)]
    pub mailbox: Option<String>,
    /// Mail nobody about these messages (no registration, no acknowledgement): for importing
    /// old mail, such as a Maildir your team answered by hand.
    #[arg(long)]
    pub no_mail: bool,
    /// Files or Maildir folders; none reads one message from stdin.
    pub paths: Vec<PathBuf>,
}

/// What `ingest` did, for `main` to turn into an exit code.
pub enum IngestStatus {
    Done,
    SomeUnreadable,
}

pub async fn run(settings: &Settings, args: &IngestArgs) -> anyhow::Result<IngestStatus> {
    let (mailbox, department) = match &args.mailbox {
        Some(name) => {
            let configured = settings
                .mailboxes
                .iter()
                .find(|mailbox| &mailbox.name == name);
            let department = configured
                .map(|mailbox| mailbox.department.clone())
                .unwrap_or_else(|| name.clone());
            (Some(name.clone()), Some(department))
        }
        None => (None, None),
    };
    let origin_for = |source: String| Origin {
        source,
        mailbox: mailbox.clone(),
        uid: None,
        department: department.clone(),
        raw_is_complete: true,
        declared_size_bytes: None,
        quiet: args.no_mail.then_some(Quiet::Imported),
    };

    let store = super::open_store(settings, super::Migrations::ApplyIfBehind).await?;
    let pipeline = Pipeline::new(store, settings);
    let mut status = IngestStatus::Done;

    if args.paths.is_empty() {
        let mut raw = Vec::new();
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("reading the message from stdin")?;
        ingest_one(&pipeline, &raw, &origin_for("stdin".to_string())).await?;
    } else {
        for path in &args.paths {
            let files = match message_files(path) {
                Ok(files) => files,
                Err(error) => {
                    eprintln!("intake: cannot read {}: {error}", path.display());
                    status = IngestStatus::SomeUnreadable;
                    continue;
                }
            };
            for file in files {
                let raw = match std::fs::read(&file) {
                    Ok(raw) => raw,
                    Err(error) => {
                        eprintln!("intake: cannot read {}: {error}", file.display());
                        status = IngestStatus::SomeUnreadable;
                        continue;
                    }
                };
                ingest_one(&pipeline, &raw, &origin_for(file.display().to_string())).await?;
            }
        }
    }
    pipeline.store().close().await;
    Ok(status)
}

async fn ingest_one(pipeline: &Pipeline, raw: &[u8], origin: &Origin) -> Result<(), StoreError> {
    let applied = pipeline.ingest(raw, origin, None).await?;
    println!(
        "{} {} {}",
        applied.outcome.as_str(),
        applied.incident_hash.as_deref().unwrap_or("-"),
        origin.source
    );
    Ok(())
}

/// A file is one message. A Maildir gives the files in `new/` then `cur/`; any other folder
/// gives the files directly in it. Both in name order, which for Maildir is arrival order.
fn message_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let is_maildir = path.join("cur").is_dir() && path.join("new").is_dir();
    let folders = if is_maildir {
        vec![path.join("new"), path.join("cur")]
    } else {
        vec![path.to_path_buf()]
    };
    let mut files = Vec::new();
    for folder in folders {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&folder)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}
