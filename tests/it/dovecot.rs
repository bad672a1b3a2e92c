//! A throwaway Dovecot (Debian's dovecot-imapd) for one test: its own config, users, Maildirs,
//! a test CA and server certificate, listening on 127.0.0.1 only, stopped on drop by its PID.
//! Also the `intake run` daemon as a child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::smtp::free_port;

/// The user that owns the Maildirs (as in the template); Dovecot refuses uid 0.
const MAIL_USER: &str = "nobody";

/// The configuration shared with scripts/demo and benches/ingest.py.
const DOVECOT_CONFIG: &str = include_str!("../../scripts/dovecot-test.conf.in");

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub imap_port: u16,
    pub imaps_port: u16,
    /// The CA that signed the server certificate: for `ca_file`.
    pub ca_file: PathBuf,
    /// Dovecot names its processes `dovecot-INSTANCE/...`: how this instance's are found.
    instance: String,
    child: Option<Child>,
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mail_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&MAIL_USER)).then(|| {
                (
                    fields[2].parse().expect("a numeric uid"),
                    fields[3].parse().expect("a numeric gid"),
                )
            })
        })
        .expect("the nobody user")
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
            chown_tree(&entry.path(), uid, gid);
        }
    }
}

impl Dovecot {
    /// Starts Dovecot with these `(user, password)` accounts.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        Dovecot::start_with(users, "")
    }

    /// Starts Dovecot with these accounts and `extra` lines appended to its configuration.
    pub fn start_with(users: &[(&str, &str)], extra: &str) -> Dovecot {
        use std::os::unix::fs::PermissionsExt;
        // Unix socket paths are limited to 108 bytes: keep the folder short, under /tmp.
        let dir = tempfile::Builder::new()
            .prefix("idv")
            .tempdir_in("/tmp")
            .expect("a temporary folder");
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        make_certificates(&root);
        let users_file: String = users
            .iter()
            .map(|(user, password)| format!("{user}:{{PLAIN}}{password}::::::\n"))
            .collect();
        std::fs::write(root.join("users"), users_file).expect("users");
        let (uid, gid) = mail_ids();
        chown_tree(&root.join("mail"), uid, gid);
        chown_tree(&root.join("home"), uid, gid);

        let imap_port = free_port();
        let imaps_port = free_port();
        let instance = root
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("idv")
            .to_string();
        let r = root.display().to_string();
        let config_text = DOVECOT_CONFIG
            .replace("@DIR@", &r)
            .replace("@INSTANCE@", &format!("intake-test-{instance}"))
            .replace(
                "@SSL@",
                &format!("ssl = yes\nssl_cert = <{r}/server.pem\nssl_key = <{r}/server.key"),
            )
            .replace("@IMAP_PORT@", &imap_port.to_string())
            .replace("@IMAPS_PORT@", &imaps_port.to_string())
            + extra;
        let config = root.join("dovecot.conf");
        std::fs::write(&config, config_text).expect("dovecot.conf");
        run(Command::new("doveconf")
            .arg("-c")
            .arg(&config)
            .arg("-n")
            .stdout(Stdio::null()));
        let mut dovecot = Dovecot {
            instance: format!("intake-test-{instance}"),
            ca_file: root.join("ca.pem"),
            dir,
            config,
            imap_port,
            imaps_port,
            child: None,
        };
        dovecot.start_server();
        dovecot
    }

    fn start_server(&mut self) {
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dovecot (is dovecot-imapd installed? scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server, dropping every client connection as an outage does (the Maildirs
    /// stay). The master leaves `imap` processes serving open connections running, so this
    /// instance's remaining processes are ended too, by their PIDs.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        for pid in self.leftover_pids() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        // The master may leave its children a moment; wait until the port is free.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// PIDs of processes titled `dovecot-INSTANCE/...`: children this test's Dovecot started.
    fn leftover_pids(&self) -> Vec<u32> {
        let prefix = format!("dovecot-{}/", self.instance);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                cmdline.starts_with(prefix.as_bytes()).then_some(pid)
            })
            .collect()
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    fn doveadm(&self) -> Command {
        let mut command = Command::new("doveadm");
        command.arg("-c").arg(&self.config);
        command
    }

    /// Delivers a message into `folder` of `user`, as the MTA would.
    pub fn deliver(&self, user: &str, folder: &str, raw: &[u8]) {
        use std::io::Write;
        let mut child = self
            .doveadm()
            .args(["save", "-u", user, "-m", folder])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("doveadm save");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(raw)
            .expect("writing to doveadm");
        let output = child.wait_with_output().expect("doveadm save");
        assert!(
            output.status.success(),
            "doveadm save: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Delivers straight into the user's Maildir `new/`, as a local MTA does; works while the
    /// server is stopped.
    pub fn deliver_to_maildir(&self, user: &str, raw: &[u8]) {
        let maildir = self.dir.path().join("mail").join(user);
        let new = maildir.join("new");
        if !new.is_dir() {
            // A user's first mail: the Maildir is made as Dovecot would, owned by the user.
            for part in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(maildir.join(part)).expect("Maildir folders");
            }
            let (uid, gid) = mail_ids();
            chown_tree(&maildir, uid, gid);
        }
        // Unique within the second even when called in a tight loop.
        static DELIVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let sequence = DELIVERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "{}.M{}Q{sequence}P{}.intake-test",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|duration| duration.as_secs())
                .unwrap_or(0),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|duration| duration.subsec_micros())
                .unwrap_or(0),
            std::process::id()
        );
        let path = new.join(name);
        std::fs::write(&path, raw).expect("writing into the Maildir");
        let (uid, gid) = mail_ids();
        chown_tree(&path, uid, gid);
    }

    pub fn create_folder(&self, user: &str, folder: &str) {
        run(self
            .doveadm()
            .args(["mailbox", "create", "-u", user, folder]));
    }

    /// `(uid, flags)` of the messages in a folder.
    pub fn messages(&self, user: &str, folder: &str) -> Vec<(u32, String)> {
        let output = self
            .doveadm()
            .args([
                "-f",
                "flow",
                "fetch",
                "-u",
                user,
                "uid flags",
                "mailbox",
                folder,
            ])
            .output()
            .expect("doveadm fetch");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let uid = line
                    .split("uid=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                let flags = line.split("flags=").nth(1).unwrap_or("").trim().to_string();
                Some((uid, flags))
            })
            .collect()
    }

    pub fn set_uid_validity(&self, user: &str, folder: &str, uid_validity: u32) {
        run(self.doveadm().args([
            "mailbox",
            "update",
            "-u",
            user,
            "--uid-validity",
            &uid_validity.to_string(),
            folder,
        ]));
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost
/// (`server.pem`, `server.key`) in `dir`.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        run(Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "3",
        "-subj",
        "/CN=intake test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "3",
        "-extfile",
        "server.ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
}

/// `intake run` as a child process, its log in a file.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: PathBuf) -> Daemon {
        Daemon::start_with_env(config, log, &[])
    }

    pub fn start_with_env(config: &Path, log: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let log_file = std::fs::File::create(&log).expect("daemon log file");
        let child = Command::new(env!("CARGO_BIN_EXE_intake"))
            .envs(env.iter().copied())
            .arg("-c")
            .arg(config)
            .arg("run")
            .env("INTAKE_LOG", "info,intake=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting intake run");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code, which must come within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        self.signal("TERM");
        self.wait(limit)
    }

    /// kill -9: no chance to finish anything.
    pub fn kill(&mut self) {
        self.signal("KILL");
        self.wait(Duration::from_secs(10));
    }

    /// Waits for the process to exit by itself; its exit code (None if killed by a signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "intake did not exit within {limit:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` until it is true; panics with `what` after `limit`. Never a bare sleep.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_until(limit, Duration::from_millis(50), what, check).await
}

/// As `wait_until`, checking every `every`: for a test that must act as soon as it can.
pub async fn poll_until<F, Fut>(limit: Duration, every: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}
