//! A real SMTP server for the outbound tests: `tests/smtp_sink.py` (aiosmtpd) on 127.0.0.1,
//! answering DATA as scripted and writing each accepted mail to a directory.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Debian's python3-aiosmtpd is for the system interpreter, whatever else is on PATH.
const PYTHON: &str = "/usr/bin/python3";

pub struct SmtpSink {
    child: Option<Child>,
    pub port: u16,
    pub out: PathBuf,
    /// Further arguments of every launch, such as `--tls starttls --cert … --key …`.
    options: Vec<String>,
    _dir: tempfile::TempDir,
}

/// One accepted mail: the raw bytes and the envelope recipients.
pub struct Delivered {
    pub raw: Vec<u8>,
    pub rcpt_tos: Vec<String>,
}

impl Delivered {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("the sink received a parsable message")
    }

    /// The header block, unfolded: one line per header.
    pub fn header_lines(&self) -> Vec<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            match (line.starts_with([' ', '\t']), lines.last_mut()) {
                (true, Some(last)) => {
                    last.push(' ');
                    last.push_str(line.trim_start());
                }
                _ => lines.push(line.to_string()),
            }
        }
        lines
    }

    /// The unfolded value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.header_lines().into_iter().find_map(|line| {
            line.to_ascii_lowercase()
                .starts_with(&prefix)
                .then(|| line[prefix.len()..].trim().to_string())
        })
    }

    pub fn body_text(&self) -> String {
        self.parsed()
            .body_text(0)
            .map(|body| body.into_owned())
            .unwrap_or_default()
    }
}

/// A port on 127.0.0.1 nothing listens on now, for a server a test starts.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

impl SmtpSink {
    /// Starts on a free port; `script` is the DATA answers, e.g. "451,250".
    pub fn start(script: &str) -> SmtpSink {
        let mut sink = SmtpSink::not_started(&[]);
        sink.launch(script);
        sink
    }

    /// A port for a sink that is not running yet (a server that is down), with the options
    /// every launch will get.
    pub fn not_started(options: &[&str]) -> SmtpSink {
        let dir = tempfile::tempdir().expect("a directory for the sink");
        let out = dir.path().join("out");
        SmtpSink {
            child: None,
            port: free_port(),
            out,
            options: options.iter().map(|option| option.to_string()).collect(),
            _dir: dir,
        }
    }

    /// Starts (again) on the same port and directory.
    pub fn launch(&mut self, script: &str) {
        assert!(self.child.is_none(), "the sink is already running");
        let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut child = Command::new(PYTHON)
            .arg(&script_path)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--out")
            .arg(&self.out)
            .arg("--script")
            .arg(script)
            .args(&self.options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {PYTHON} {}: {error}", script_path.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        if first.trim() != "ready" {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let _ = child.wait();
            panic!(
                "the SMTP sink did not start (is python3-aiosmtpd installed? scripts/test installs it):\n{stderr}"
            );
        }
        self.child = Some(child);
    }

    /// SIGTERM and wait: the port is closed when this returns.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Accepted mail, in arrival order.
    pub fn delivered(&self) -> Vec<Delivered> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .map(|path| {
                let raw = std::fs::read(&path).expect("read a delivered mail");
                let rcpt_tos = std::fs::read_to_string(path.with_extension("rcpt"))
                    .expect("read the envelope of a delivered mail")
                    .lines()
                    .map(str::to_string)
                    .collect();
                Delivered { raw, rcpt_tos }
            })
            .collect()
    }

    /// Every DATA answer given, "CODE RCPT...", accepted or not.
    pub fn attempts(&self) -> Vec<String> {
        std::fs::read_to_string(self.out.join("attempts.log"))
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
