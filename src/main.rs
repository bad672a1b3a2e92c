//! argv → config → logging → subcommand → exit code.
//!
//! Exit codes follow sysexits: 78 (EX_CONFIG) for a bad configuration, 75 (EX_TEMPFAIL) when the
//! database is unavailable, 66 (EX_NOINPUT) for an unreadable input, 65 (EX_DATAERR) for a
//! change refused (an unknown client, bad CSV rows), 70 (EX_SOFTWARE) otherwise.

use std::process::ExitCode;

use clap::Parser;
use intake::cli::{self, Cli, Command};
use intake::config::{ConfigError, Settings};
use intake::outbound::{Outbound, SetupError};
use intake::store::StoreError;
use intake::store::admin::AdminError;

const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_SOFTWARE: u8 = 70;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    intake::memory::tune_allocator();
    let cli = Cli::parse();
    init_logging();
    // One runtime thread. intake's async work is waiting on IMAP, SMTP and the database; its
    // CPU work (parsing a batch) runs on blocking threads, and SQLite on sqlx's own thread.
    // Handing a statement to sqlx's SQLite thread and back took 95 µs with a multi-thread
    // runtime and 26 µs with this one (a PostgreSQL round trip 210 µs and 140 µs): the
    // multi-thread runtime parks and wakes its workers for every reply (BENCHMARKS.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(intake::cpu::on_blocking_thread_start)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("intake: cannot start the async runtime: {error}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("intake: {error:#}");
            ExitCode::from(exit_code_for(&error))
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let settings = cli::load_settings(cli)?;
    match &cli.command {
        Command::CheckConfig => {
            check_templates(&settings)?;
            print!("{}", settings.to_toml());
            eprintln!("intake: {} is valid", settings.source.display());
        }
        Command::Run => {
            // Before the database: a broken template or SMTP setting stops the start (78).
            let outbound = Outbound::from_settings(&settings)?;
            // A metrics address in use stops the start before anything else is done.
            let listener = match settings.metrics.listen {
                Some(address) => Some(intake::monitor::bind(address).await.map_err(|error| {
                    ConfigError::new(
                        &settings.source,
                        "metrics.listen",
                        format!("cannot listen on {address}: {error}"),
                    )
                })?),
                None => None,
            };
            if intake::store::Store::is_sqlite_url(&settings.database.url) {
                // Before the pool starts its connection threads: they inherit the CPU.
                match intake::cpu::share_with_sqlite() {
                    Ok(Some(cpu)) => tracing::debug!(cpu, "the runtime and SQLite share a CPU"),
                    Ok(None) => tracing::debug!("one CPU to run on: no thread placement"),
                    Err(error) => tracing::info!(
                        %error,
                        "threads not placed on CPUs (sched_setaffinity refused): intake runs, slower on SQLite"
                    ),
                }
            }
            let store = cli::open_store(&settings, cli::Migrations::Apply).await?;
            intake::daemon::run(&cli.config, settings, store, outbound, listener).await?;
        }
        Command::Migrate => {
            let store = cli::open_store(&settings, cli::Migrations::Apply).await?;
            println!("database is up to date ({})", store.backend());
            store.close().await;
        }
        Command::Ingest(args) => {
            if let cli::ingest::IngestStatus::SomeUnreadable =
                cli::ingest::run(&settings, args).await?
            {
                return Ok(ExitCode::from(EX_NOINPUT));
            }
        }
        Command::Incident(command) => cli::incident::run(&settings, command, cli.output()).await?,
        Command::Queue(command) => cli::queue::run(&settings, command, cli.output()).await?,
        Command::Log(args) => cli::log::run(&settings, args, cli.output()).await?,
        Command::Client(command) => cli::client::run(&settings, command, cli.output()).await?,
        Command::Org(command) => cli::org::run(&settings, command, cli.output()).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// With `[smtp]`, everything `intake run` would set up for sending; without it, the templates
/// when their directory exists (an operator preparing them before enabling mail).
fn check_templates(settings: &Settings) -> anyhow::Result<()> {
    if settings.smtp.is_some() {
        Outbound::from_settings(settings)?;
        eprintln!(
            "intake: templates in {} are valid",
            settings.outbound.templates_dir.display()
        );
    } else if settings.outbound.templates_dir.is_dir() {
        intake::outbound::templates::Templates::load(&settings.outbound.templates_dir)
            .map_err(SetupError::from)?;
        eprintln!(
            "intake: templates in {} are valid (no [smtp]: nothing will be sent)",
            settings.outbound.templates_dir.display()
        );
    } else {
        eprintln!(
            "intake: no [smtp] configured: outbound mail stays queued, templates not checked"
        );
    }
    Ok(())
}

fn exit_code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<ConfigError>().is_some()
            || cause.downcast_ref::<SetupError>().is_some()
        {
            return EX_CONFIG;
        }
        if let Some(StoreError::Unavailable(_)) = cause.downcast_ref::<StoreError>() {
            return EX_TEMPFAIL;
        }
        match cause.downcast_ref::<AdminError>() {
            Some(AdminError::Refused(_)) => return EX_DATAERR,
            Some(AdminError::Store(StoreError::Unavailable(_))) => return EX_TEMPFAIL,
            _ => {}
        }
    }
    EX_SOFTWARE
}

/// Readable lines on a terminal; structured fields in the journal when systemd connects stderr
/// to it (`JOURNAL_STREAM`). `INTAKE_LOG` (or `RUST_LOG`) filters, default `info`.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("INTAKE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_syslog_identifier("intake".to_string()));
    let terminal = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(terminal)
        .init();
}
