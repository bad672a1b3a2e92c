//! `intake run`: one task per mailbox folder, signals, configuration reload and the systemd
//! notify protocol.
//!
//! SIGTERM or SIGINT: `STOPPING=1`, every task finishes the message in hand and logs out, then
//! the process exits 0; a second signal exits at once. SIGHUP: reload the file; an invalid one
//! is logged and the running configuration kept; otherwise `plan_reload` names the folder
//! tasks to stop and to start. Exactly-once never relies on a clean stop: each message commits
//! with its UID checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{MailboxSettings, Settings};
use crate::imap::{self, Activity, FolderTask};
use crate::monitor::{self, Monitor};
use crate::outbound::{self, Outbound};
use crate::pipeline::Pipeline;
use crate::run_lock::{self, Attempt};
use crate::store::folders::{self, FolderKey};
use crate::store::{Store, StoreError};

/// How long tasks get to finish the message in hand and log out.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How often the status line is refreshed when no watchdog asks for more.
const STATUS_INTERVAL: Duration = Duration::from_secs(30);
/// How often an instance standing by on a SQLite database tries its run lock: the takeover
/// delay after the serving instance stops.
const RUN_LOCK_RETRY: Duration = Duration::from_secs(1);

/// Folder tasks to stop and to start when the configuration changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    pub stop: Vec<FolderKey>,
    pub start: Vec<FolderKey>,
    /// A change that cannot take effect without a restart, for the log.
    pub ignored: Vec<String>,
}

/// Pure: compares two configurations. A folder whose mailbox settings changed is restarted;
/// the others keep running (the pipeline takes new rules in place, see `Pipeline::update`).
pub fn plan_reload(old: &Settings, new: &Settings) -> ReloadPlan {
    let old_folders = folders_of(old);
    let new_folders = folders_of(new);
    let mut plan = ReloadPlan::default();
    for (key, mailbox) in &old_folders {
        if new_folders.get(key) != Some(mailbox) {
            plan.stop.push(key.clone());
        }
    }
    for (key, mailbox) in &new_folders {
        if old_folders.get(key) != Some(mailbox) {
            plan.start.push(key.clone());
        }
    }
    if old.metrics.listen != new.metrics.listen {
        plan.ignored.push(
            "metrics.listen: a new address needs a restart; the running listener is kept"
                .to_string(),
        );
    }
    if old.database.url != new.database.url {
        plan.ignored.push(
            "database.url: a new database needs a restart; the running one is kept".to_string(),
        );
    }
    plan
}

fn folders_of(settings: &Settings) -> BTreeMap<FolderKey, &MailboxSettings> {
    settings
        .mailboxes
        .iter()
        .flat_map(|mailbox| {
            mailbox.folders.iter().map(move |folder| {
                (
                    FolderKey {
                        mailbox: mailbox.name.clone(),
                        folder: folder.clone(),
                    },
                    mailbox,
                )
            })
        })
        .collect()
}

struct Running {
    settings: Settings,
    monitor: Option<Arc<Monitor>>,
    pipeline: Pipeline,
    tasks: BTreeMap<FolderKey, CancellationToken>,
    may_lease: watch::Receiver<bool>,
    /// The outbound worker's stop token, when `[smtp]` is configured.
    outbound: Option<CancellationToken>,
}

/// Runs until SIGTERM or SIGINT. `Err` only when the database is gone at start. `outbound` is
/// built by the caller from the same settings, so a template error stops the start (exit 78).
pub async fn run(
    config_path: &Path,
    settings: Settings,
    store: Store,
    outbound: Option<Outbound>,
    metrics: Option<TcpListener>,
) -> Result<(), StoreError> {
    let holder = format!(
        "{}:{}:{:08x}",
        hostname(),
        std::process::id(),
        rand::random::<u32>()
    );
    let activity = Arc::new(Activity::default());
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let monitor = match metrics {
        Some(listener) => {
            let monitor = Monitor::install(store.clone(), &settings).map_err(StoreError::Failed)?;
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "serving /metrics and /health");
            }
            tokio::spawn(monitor::serve(
                listener,
                monitor.clone(),
                root.child_token(),
            ));
            Some(monitor)
        }
        None => None,
    };
    let (may_lease, may_lease_rx) = watch::channel(false);
    match store.sqlite_file() {
        Some(database) => {
            take_run_lock(
                &database,
                &store,
                &holder,
                may_lease,
                root.child_token(),
                &tracker,
            )
            .await;
        }
        None => {
            may_lease.send_replace(true);
        }
    }
    let mut running = Running {
        may_lease: may_lease_rx,
        pipeline: Pipeline::new(store.clone(), &settings),
        settings,
        monitor,
        tasks: BTreeMap::new(),
        outbound: None,
    };
    tracker.spawn(crate::store::checkpoint::run(
        store.clone(),
        running.pipeline.committed(),
        root.child_token(),
    ));
    start_outbound(&mut running, outbound, &store, &root, &tracker);
    let keys: Vec<FolderKey> = folders_of(&running.settings).into_keys().collect();
    for key in keys {
        start_task(&mut running, key, &holder, &activity, &root, &tracker);
    }
    if running.tasks.is_empty() {
        tracing::warn!(
            "no [[mailbox]] configured: nothing to watch until one is added and SIGHUP sent"
        );
    }

    let (Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return Err(StoreError::Failed(
            "cannot install signal handlers".to_string(),
        ));
    };
    let watchdog = sd_notify::watchdog_enabled();
    let mut tick =
        tokio::time::interval(watchdog.map(|period| period / 2).unwrap_or(STATUS_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status(&running, &activity)),
    ]);
    tracing::info!(folders = running.tasks.len(), instance = %holder, "intake is running");

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                notify(&[NotifyState::Reloading]);
                reload(config_path, &mut running, &store, &holder, &activity, &root, &tracker);
                notify(&[NotifyState::Ready, NotifyState::Status(&status(&running, &activity))]);
            }
            _ = tick.tick() => {
                // The watchdog is fed only while the runtime turns and the database answers.
                if watchdog.is_some() && database_answers(&store).await {
                    notify(&[NotifyState::Watchdog]);
                }
                notify(&[NotifyState::Status(&status(&running, &activity))]);
            }
        }
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    tracing::info!("stopping: finishing the messages in hand");
    root.cancel();
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => tracing::info!("all mailboxes logged out"),
        _ = tokio::time::sleep(STOP_GRACE) => tracing::warn!("mailboxes did not stop within {STOP_GRACE:?}; exiting anyway"),
        _ = terminate.recv() => tracing::warn!("second signal: exiting at once"),
        _ = interrupt.recv() => tracing::warn!("second signal: exiting at once"),
    }
    store.close().await;
    Ok(())
}

/// The run lock of a SQLite database (`run_lock`): held at once, or waited for by a task,
/// standing by; once held (until the process ends: a standby must not take over while tasks
/// still finish), `may_lease` lets the folder tasks take leases.
async fn take_run_lock(
    database: &Path,
    store: &Store,
    holder: &str,
    may_lease: watch::Sender<bool>,
    stop: CancellationToken,
    tracker: &TaskTracker,
) {
    let path = run_lock::path_for(database);
    match run_lock::try_take(&path) {
        Ok(Attempt::Held(lock)) => {
            lock.keep_until_exit();
            take_over(store, holder, &may_lease).await;
        }
        Ok(Attempt::Busy { pid }) => {
            let pid = pid.map_or_else(|| "unknown".to_string(), |pid| pid.to_string());
            tracing::info!(lock = %path.display(), %pid, "another intake run serves this database; standing by until it stops");
            tracker.spawn(stand_by(
                path,
                store.clone(),
                holder.to_string(),
                may_lease,
                stop,
            ));
        }
        Err(error) => {
            tracing::warn!(lock = %path.display(), %error, "cannot take the database's run lock: folder leases alone keep instances apart, so after a crash the restarted instance waits out the old leases");
            may_lease.send_replace(true);
        }
    }
}

/// Tries the run lock every `RUN_LOCK_RETRY` until it is free, then takes over.
async fn stand_by(
    path: PathBuf,
    store: Store,
    holder: String,
    may_lease: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RUN_LOCK_RETRY) => {}
        }
        match run_lock::try_take(&path) {
            Ok(Attempt::Held(lock)) => {
                lock.keep_until_exit();
                tracing::info!("the other intake run has stopped; taking over");
                take_over(&store, &holder, &may_lease).await;
                return;
            }
            Ok(Attempt::Busy { .. }) => {}
            Err(error) => {
                tracing::warn!(lock = %path.display(), %error, "cannot take the database's run lock any more: folder leases alone keep instances apart");
                may_lease.send_replace(true);
                return;
            }
        }
    }
}

/// As the only instance alive on the database: frees the leases dead instances left, then
/// lets the folder tasks take theirs.
async fn take_over(store: &Store, holder: &str, may_lease: &watch::Sender<bool>) {
    match folders::release_others_leases(store, holder).await {
        Ok(freed) if !freed.is_empty() => {
            let freed: Vec<String> = freed
                .iter()
                .map(|key| format!("{}/{}", key.mailbox, key.folder))
                .collect();
            tracing::info!(folders = %freed.join(", "), "taking over at once the folders a stopped instance still held");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot free the leases a stopped instance left; its folders are taken over when they expire")
        }
    }
    may_lease.send_replace(true);
}

fn start_task(
    running: &mut Running,
    key: FolderKey,
    holder: &str,
    activity: &Arc<Activity>,
    root: &CancellationToken,
    tracker: &TaskTracker,
) {
    let Some(mailbox) = running
        .settings
        .mailboxes
        .iter()
        .find(|mailbox| mailbox.name == key.mailbox)
        .cloned()
    else {
        return;
    };
    let stop = root.child_token();
    let task = FolderTask {
        key: key.clone(),
        mailbox,
        pipeline: running.pipeline.clone(),
        holder: holder.to_string(),
        may_lease: running.may_lease.clone(),
        activity: activity.clone(),
    };
    tracker.spawn(imap::run_folder(task, stop.clone()));
    running.tasks.insert(key, stop);
}

/// Replaces the outbound worker (if any) with one for `outbound`. The old one finishes the
/// mail in hand and gives back the rest of its claim.
fn start_outbound(
    running: &mut Running,
    outbound: Option<Outbound>,
    store: &Store,
    root: &CancellationToken,
    tracker: &TaskTracker,
) {
    if let Some(stop) = running.outbound.take() {
        stop.cancel();
    }
    match outbound {
        Some(outbound) => {
            let stop = root.child_token();
            tracker.spawn(outbound::run_worker(
                std::sync::Arc::new(outbound),
                store.clone(),
                running.pipeline.committed(),
                stop.clone(),
            ));
            running.outbound = Some(stop);
        }
        None => tracing::warn!(
            "no [smtp] configured: registration, approval and acknowledgement mail stays queued"
        ),
    }
}

fn reload(
    config_path: &Path,
    running: &mut Running,
    store: &Store,
    holder: &str,
    activity: &Arc<Activity>,
    root: &CancellationToken,
    tracker: &TaskTracker,
) {
    let new = match Settings::load(config_path) {
        Ok(new) => new,
        Err(error) => {
            tracing::error!(%error, "reload refused: the running configuration is kept");
            return;
        }
    };
    let outbound = match Outbound::from_settings(&new) {
        Ok(outbound) => outbound,
        Err(error) => {
            tracing::error!(%error, "reload refused: the running configuration is kept");
            return;
        }
    };
    let plan = plan_reload(&running.settings, &new);
    for ignored in &plan.ignored {
        tracing::warn!("reload: {ignored}");
    }
    let mut new = new;
    new.database = running.settings.database.clone();
    for key in &plan.stop {
        if let Some(stop) = running.tasks.remove(key) {
            stop.cancel();
        }
    }
    running.pipeline.update(&new);
    if let Some(monitor) = &running.monitor {
        monitor.update(&new);
    }
    running.settings = new;
    for key in plan.start.iter().cloned() {
        start_task(running, key, holder, activity, root, tracker);
    }
    start_outbound(running, outbound, store, root, tracker);
    tracing::info!(
        stopped = plan.stop.len(),
        started = plan.start.len(),
        folders = running.tasks.len(),
        "configuration reloaded"
    );
}

async fn database_answers(store: &Store) -> bool {
    let check = async {
        crate::on_pool!(store, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    };
    tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .unwrap_or(false)
}

fn status(running: &Running, activity: &Activity) -> String {
    if !*running.may_lease.borrow() {
        return "standing by: another intake run serves this database".to_string();
    }
    format!(
        "{} folders watched, {} messages ingested",
        running.tasks.len(),
        activity.messages.load(Ordering::Relaxed)
    )
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "sd_notify failed");
    }
}

/// gethostname(2): works under the unit's `ProcSubset=pid`, which hides /proc/sys.
fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        Settings::parse(text, Path::new("intake.toml")).expect("valid test config")
    }

    fn mailbox(name: &str, folders: &str, extra: &str) -> String {
        format!(
            "[[mailbox]]\nname = \"{name}\"\naddress = \"{name}@example.com\"\nhost = \"imap.example.com\"\n\
             username = \"{name}\"\npassword = \"x\"\nfolders = {folders}\n{extra}\n"
        )
    }

    fn keys(list: &[(&str, &str)]) -> Vec<FolderKey> {
        list.iter()
            .map(|(mailbox, folder)| FolderKey {
                mailbox: mailbox.to_string(),
                folder: folder.to_string(),
            })
            .collect()
    }

    #[test]
    fn reload_plans() {
        let base = format!(
            "{}{}",
            mailbox("support", "[\"INBOX\"]", ""),
            mailbox("sales", "[\"INBOX\"]", "")
        );
        let old = settings(&base);

        assert_eq!(
            plan_reload(&old, &settings(&base)),
            ReloadPlan::default(),
            "nothing changed"
        );

        let added = format!("{base}{}", mailbox("billing", "[\"INBOX\", \"Later\"]", ""));
        let plan = plan_reload(&old, &settings(&added));
        assert_eq!(
            plan.start,
            keys(&[("billing", "INBOX"), ("billing", "Later")])
        );
        assert!(plan.stop.is_empty());

        let removed = mailbox("support", "[\"INBOX\"]", "");
        let plan = plan_reload(&old, &settings(&removed));
        assert_eq!(plan.stop, keys(&[("sales", "INBOX")]));
        assert!(plan.start.is_empty());

        let changed = format!(
            "{}{}",
            mailbox("support", "[\"INBOX\"]", "poll_interval = \"5s\""),
            mailbox("sales", "[\"INBOX\"]", "")
        );
        let plan = plan_reload(&old, &settings(&changed));
        assert_eq!(plan.stop, keys(&[("support", "INBOX")]));
        assert_eq!(plan.start, keys(&[("support", "INBOX")]));

        let policy = format!("[clients]\nauto_approve = false\n{base}");
        let plan = plan_reload(&old, &settings(&policy));
        assert!(
            plan.stop.is_empty() && plan.start.is_empty(),
            "rules change in place"
        );

        let moved = format!("[database]\nurl = \"postgres://db/intake\"\n{base}");
        let plan = plan_reload(&old, &settings(&moved));
        assert_eq!(plan.ignored.len(), 1);
    }
}
