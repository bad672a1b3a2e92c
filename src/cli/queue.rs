//! `intake queue`: the outbound queue from a shell.

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::outbound::{Outbound, Report};
use crate::store::outbound::Due;
use crate::store::{StoreError, Timestamp};

use super::{Migrations, open_store};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Send every queued mail now, including mail waiting to retry (each at most once), and
    /// print what became of it. Safe while `intake run` is running: rows are claimed.
    Flush,
}

pub async fn run(settings: &Settings, command: &QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::Flush => {
            let report = flush(settings).await?;
            println!("{report}");
        }
    }
    Ok(())
}

async fn flush(settings: &Settings) -> anyhow::Result<Report> {
    let outbound = Outbound::from_settings(settings)?.ok_or_else(|| {
        ConfigError::new(
            &settings.source,
            "smtp",
            "expected an [smtp] section to send queued mail",
        )
    })?;
    let store = open_store(settings, Migrations::ApplyIfBehind).await?;
    let started = Timestamp::now();
    let result = outbound
        .flush(
            &store,
            Due::EverythingUntouchedSince(started),
            &CancellationToken::new(),
        )
        .await;
    store.close().await;
    result
        .map_err(|error: StoreError| anyhow::Error::new(error))
        .context("flushing the outbound queue")
}
