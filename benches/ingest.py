#!/usr/bin/env python3
"""Ingest benchmark: how fast does `intake run` turn a full mailbox into incidents?

Loads N messages (a realistic mix: mostly small text, some HTML, some with 20-500 KB
attachments) into a throwaway Dovecot on 127.0.0.1, then times:
  - the ceiling: a bare IMAP fetch of the same messages (benches/imap_ceiling.rs);
  - intake (release build) ingesting all of them, on SQLite and on PostgreSQL;
  - the SQLite storage floor: SQLite alone keeping the raw messages and decoded attachments,
    with intake's page size, page cache and autocheckpoint;
  - the PostgreSQL storage floor: the same bytes sent to PostgreSQL by binary COPY;
  - the parsing floor: one thread parsing every message with mail-parser alone, and with
    intake's own reading (benches/parse_floor.rs);
after touching --warm-up GiB of memory once (a fresh VM's first writes are slow), and
reports messages/s, MB/s, the ratio to the ceiling, intake's peak RSS, and the CPU time the
whole machine spent on each run (every process and the kernel: intake, Dovecot, PostgreSQL,
writeback), set against the CPU a run at the target rate could use (see cpu_budget).

Usage (as root, from the repository): benches/ingest.py [--messages 5000] [--backend both]
  [--mix text] [--large N] [--warm-up 4]
PostgreSQL: INTAKE_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres);
its parameters (?sslmode=disable) are kept for the databases the bench creates.
Bounded: every wait has a deadline, and everything started here is stopped by PID at the end.
"""

import argparse
import base64
import mmap
import os
import random
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench-password"
DEADLINE_SECONDS = 1800


def generate(count, seed, attachments=True):
    """The mix: 70% small text, 15% HTML, 15% with one 20-500 KB attachment (or, without
    attachments, 85% text and 15% HTML)."""
    rng = random.Random(seed)
    words = ("printer network invoice password laptop screen broken urgent please help "
             "thanks account access error server mail update monday").split()
    messages = []
    for index in range(count):
        sender = f"user{rng.randrange(400)}@company{rng.randrange(60)}.example"
        subject = " ".join(rng.choice(words) for _ in range(5)).capitalize()
        text = "\r\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(rng.randrange(5, 60)))
        headers = (f"From: User {index} <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
                   f"Message-ID: <bench-{index}@{sender.split('@')[1]}>\r\n"
                   "Date: Mon, 23 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n")
        kind = rng.random()
        if kind < 0.70:
            body = headers + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
        elif kind < 0.85 or not attachments:
            html = "".join(f"<p>{line}</p>" for line in text.split("\r\n")) * 4
            body = (headers + 'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
                    "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
                    "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>" + html +
                    "</body></html>\r\n--alt--\r\n")
        else:
            size = rng.randrange(20_000, 500_000)
            payload = base64.encodebytes(rng.randbytes(size)).decode().replace("\n", "\r\n")
            body = (headers + 'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
                    "--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
                    f'--mix\r\nContent-Type: application/pdf; name="scan{index}.pdf"\r\n'
                    f'Content-Disposition: attachment; filename="scan{index}.pdf"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\n" + payload + "--mix--\r\n")
        messages.append(body.encode())
    return messages


def large_messages(count, seed):
    """Messages just under the default max_message_bytes (25 MiB): an 18 MB attachment each,
    24.6 MB encoded. Peak RSS with these shows what the largest accepted message costs."""
    rng = random.Random(seed)
    messages = []
    for index in range(count):
        payload = base64.encodebytes(rng.randbytes(18_000_000)).decode().replace("\n", "\r\n")
        messages.append((
            f"From: big{index}@large.example\r\nTo: support@example.com\r\nSubject: large {index}\r\n"
            f"Message-ID: <large-{index}@large.example>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
            "--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe scans, as promised.\r\n"
            f'--mix\r\nContent-Type: application/pdf; name="large{index}.pdf"\r\n'
            f'Content-Disposition: attachment; filename="large{index}.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" + payload + "--mix--\r\n").encode())
    return messages


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, what, limit=DEADLINE_SECONDS, interval=0.1):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


class Dovecot:
    def __init__(self, messages):
        self.dir = tempfile.mkdtemp(prefix="ibench", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        d = self.dir
        for sub in ("run", "state", "home/support", "mail/support/new", "mail/support/cur", "mail/support/tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, "users"), "w") as users:
            users.write(f"support:{{PLAIN}}{PASSWORD}::::::\n")
        # The configuration shared with tests/it/dovecot.rs and scripts/demo.
        with open(os.path.join(REPO, "scripts/dovecot-test.conf.in")) as template:
            text = template.read()
        for placeholder, value in (("@DIR@", d), ("@INSTANCE@", f"intake-bench-{os.getpid()}"),
                                   ("@SSL@", "ssl = no"), ("@IMAP_PORT@", str(self.port)),
                                   ("@IMAPS_PORT@", "0")):
            text = text.replace(placeholder, value)
        self.config = os.path.join(d, "dovecot.conf")
        with open(self.config, "w") as config:
            config.write(text)
        # Straight into Maildir new/, named in arrival order: Dovecot assigns UIDs in that order.
        for index, raw in enumerate(messages):
            with open(os.path.join(d, "mail/support/new", f"{1700000000 + index}.M{index}.bench"), "wb") as file:
                file.write(raw)
        subprocess.run(["chown", "-R", "nobody:nogroup", os.path.join(d, "mail"), os.path.join(d, "home")], check=True)
        subprocess.run(["dovecot", "-c", self.config], check=True)
        wait_for(self.answers, "dovecot to listen", limit=30)
        # Let Dovecot index the folder once, so neither side pays for that.
        subprocess.run(["doveadm", "-c", self.config, "force-resync", "-u", "support", "INBOX"], check=True)

    def answers(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 1).close()
            return True
        except OSError:
            return False

    def stop(self):
        subprocess.run(["dovecot", "-c", self.config, "stop"], check=False)
        time.sleep(0.5)
        subprocess.run(["rm", "-rf", self.dir], check=False)


def scratch_database(postgres_url, name):
    """A new, empty database `name` on the server of `postgres_url`: its URL, with the same
    parameters (sslmode=…), and a function that drops it."""
    subprocess.run(["psql", postgres_url, "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True, capture_output=True)
    subprocess.run(["psql", postgres_url, "-qc", f"CREATE DATABASE {name}"], check=True)
    base, _, query = postgres_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")
    def drop():
        subprocess.run(["psql", postgres_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)
    return url, drop


class Psql:
    """A psql session kept open, asked one query at a time."""

    def __init__(self, url):
        self.process = subprocess.Popen(["psql", url, "-AtqX"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def scalar(self, sql):
        """The query's one value; "" if the session has ended. The query must not fail: psql
        would then print nothing, and this would wait."""
        self.process.stdin.write(sql + ";\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def busy_cpu_seconds():
    """CPU seconds the whole machine has spent working since boot: user, nice, system, irq and
    softirq on every CPU (not idle, not waiting for I/O, not stolen by the hypervisor)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_budget(ceiling_seconds):
    """The CPU a run at the target rate (half the ceiling's) could use at most: every CPU of the
    machine, busy for twice the ceiling's time. A run that needs more CPU than this cannot reach
    the target on this machine, however well it spreads its work."""
    return os.cpu_count() * 2 * ceiling_seconds


def build_bench(name):
    """A bench binary (benches/NAME.rs), built once (so cargo's own start is not timed)."""
    built = subprocess.run(["cargo", "bench", "--no-run", "--bench", name], cwd=REPO, check=True,
                           capture_output=True, text=True)
    for line in built.stderr.splitlines():
        if "Executable" in line and name in line:
            return os.path.join(REPO, line.rsplit("(", 1)[1].rstrip(")"))
    sys.exit(f"cannot find the {name} binary in cargo's output:\n{built.stderr}")


def settle():
    """Waits until the dirty pages of the runs before are on disk: a floor timed while the
    kernel still wrote out intake's gigabyte took 1.2-3.4 s instead of 0.8-0.95 s."""
    os.sync()


def ceiling(binary, port):
    settle()
    cpu = busy_cpu_seconds()
    output = subprocess.run([binary, "127.0.0.1", str(port), "support", PASSWORD],
                            check=True, capture_output=True, text=True).stdout.split()
    cpu = busy_cpu_seconds() - cpu
    messages, size, seconds = int(output[0]), int(output[1]), float(output[2])
    return messages, size, seconds, cpu


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_intake(binary, backend, port, expected, postgres_url):
    workdir = tempfile.mkdtemp(prefix="intake-bench-")
    if backend == "sqlite":
        url = f"sqlite://{workdir}/intake.db"
        def count():
            try:
                with sqlite3.connect(f"file:{workdir}/intake.db?mode=ro", uri=True) as db:
                    return db.execute("SELECT count(*) FROM ingest_log").fetchone()[0]
            except sqlite3.Error:
                return 0
        cleanup = lambda: None
    else:
        url, drop = scratch_database(postgres_url, f"intake_bench_{os.getpid()}")
        probe = None
        def count():
            # One psql session for the whole wait, opened after the migration: a new psql
            # per probe (a process, a connection, a TLS handshake) was 5% of the machine's CPU
            # in a run (perf), so it polled only every 0.5 s.
            nonlocal probe
            if probe is None:
                probe = Psql(url)
            return int(probe.scalar("SELECT count(*) FROM ingest_log") or 0)
        def cleanup():
            if probe is not None:
                probe.close()
            drop()
    config = os.path.join(workdir, "intake.toml")
    with open(config, "w") as file:
        file.write(f"""state_dir = "{workdir}"
[database]
url = "{url}"
[[mailbox]]
name = "support"
address = "support@example.com"
host = "127.0.0.1"
port = {port}
security = "plain"
username = "support"
password = "{PASSWORD}"
# The mail is loaded before intake first looks; answer it as new mail, as every run before
# 2026-12-04 did, so runs stay comparable (and the queue's rows are counted in).
existing_mail = "acknowledge"
""")
    # Schema first, so the timing covers ingestion only.
    subprocess.run([binary, "-c", config, "migrate"], check=True, capture_output=True)
    count()  # opens the PostgreSQL probe's session before the clock starts
    settle()
    started = time.monotonic()
    cpu = busy_cpu_seconds()
    # INTAKE_BENCH_LOG=FOLDER keeps each run's log there (info level), for looking into a result.
    log_folder = os.environ.get("INTAKE_BENCH_LOG")
    log = open(os.path.join(log_folder, f"intake-{backend}.log"), "w") if log_folder else subprocess.DEVNULL
    process = subprocess.Popen([binary, "-c", config, "run"], stderr=log,
                               env=dict(os.environ, INTAKE_LOG=os.environ.get("INTAKE_BENCH_LOG_FILTER", "info,intake::imap=debug") if log_folder else "warn", NO_COLOR="1"))
    try:
        # Every 50 ms: a run's time is known to within that.
        wait_for(lambda: count() >= expected, f"intake on {backend} to ingest {expected}", interval=0.05)
        seconds = time.monotonic() - started
        cpu = busy_cpu_seconds() - cpu
        rss = peak_rss_kb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
        cleanup()
        subprocess.run(["rm", "-rf", workdir], check=False)
    return seconds, cpu, rss


def warm_up_memory(gib):
    """Touches `gib` GiB of memory once and gives it back. On a virtual machine the first write
    to a page of memory the guest has never used costs a fault in the host: here 1 GB written
    into the page cache took 2.2 s the first time and 0.2 s every time after (dd, 2026-12-03).
    A fresh VM charges that to whatever writes first, intake or the storage floor, and not to
    the ceiling, which writes nothing; a server that has run for a while has no such pages."""
    if gib <= 0:
        return
    started = time.monotonic()
    size = gib << 30
    chunk = b"\1" * (1 << 20)
    with mmap.mmap(-1, size) as memory:
        for offset in range(0, size, len(chunk)):
            memory[offset:offset + len(chunk)] = chunk
    print(f"warmed up {gib} GiB of memory in {time.monotonic() - started:.1f} s", flush=True)


def decoded_attachments(messages):
    """Each message's attachment, decoded as intake stores it, or None."""
    attachments = []
    for raw in messages:
        start = raw.find(b"base64\r\n\r\n")
        attachments.append(base64.b64decode(raw[start + 10:raw.rfind(b"--mix--")]) if start >= 0 else None)
    return attachments


def copy_binary(values):
    """A PostgreSQL binary COPY stream of one-column rows holding `values`."""
    rows = [b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)]
    rows.extend(struct.pack(">hi", 1, len(value)) + value for value in values)
    rows.append(struct.pack(">h", -1))
    return b"".join(rows)


def postgres_floor(messages, postgres_url):
    """Seconds PostgreSQL alone takes to keep the same bytes as the SQLite floor: each raw
    message and each decoded attachment into a bytea column compressed with lz4 (as intake's
    are), sent as one binary COPY per table, the cheapest way in: no statement per row, one
    commit. No parsing, no other rows, no indexes but the keys: a floor under any ingest into
    PostgreSQL on this machine."""
    stream_messages = copy_binary(messages)
    stream_attachments = copy_binary([value for value in decoded_attachments(messages) if value is not None])
    url, drop = scratch_database(postgres_url, f"intake_floor_{os.getpid()}")
    try:
        subprocess.run(["psql", url, "-qc", """
            CREATE TABLE messages (id bigserial PRIMARY KEY, raw bytea NOT NULL);
            CREATE TABLE attachments (id bigserial PRIMARY KEY, content bytea NOT NULL);
            ALTER TABLE messages ALTER COLUMN raw SET COMPRESSION lz4;
            ALTER TABLE attachments ALTER COLUMN content SET COMPRESSION lz4;"""], check=True)
        settle()
        started = time.monotonic()
        cpu = busy_cpu_seconds()
        for table, column, stream in [("messages", "raw", stream_messages),
                                      ("attachments", "content", stream_attachments)]:
            subprocess.run(["psql", url, "-qc", f"COPY {table} ({column}) FROM STDIN (FORMAT binary)"],
                           input=stream, check=True)
        seconds = time.monotonic() - started
        cpu = busy_cpu_seconds() - cpu
        return seconds, cpu
    finally:
        drop()


def parse_floor(binary, messages):
    """Seconds one thread takes to parse every message: with mail-parser alone (every part
    decoded, nothing kept), and with intake's Inbound::parse (mail-parser, SHA-256 of the raw
    bytes and attachments, the fields intake keeps). CPU-bound on one thread, so the seconds
    are its CPU time too. Any ingest built on mail-parser spends at least the first."""
    with tempfile.NamedTemporaryFile(prefix="intake-parse-") as file:
        for raw in messages:
            file.write(struct.pack("<I", len(raw)))
            file.write(raw)
        file.flush()
        output = subprocess.run([binary, file.name], check=True, capture_output=True, text=True).stdout.split()
    return float(output[0]), float(output[1])


def storage_floor(messages):
    """Seconds SQLite alone takes to keep what intake must keep of these messages: each raw
    message and each decoded attachment as a blob, in WAL mode with synchronous=NORMAL, one
    transaction per 100 messages, with intake's page size, page cache and autocheckpoint
    (src/store/mod.rs). No parsing, no other rows, no indexes: a floor under any ingest into
    SQLite on this machine, to set beside the IMAP ceiling."""
    attachments = decoded_attachments(messages)
    workdir = tempfile.mkdtemp(prefix="intake-floor-")
    try:
        db = sqlite3.connect(os.path.join(workdir, "floor.db"), isolation_level=None)
        db.execute("PRAGMA page_size = 65536")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA cache_size = -4096")
        db.execute("PRAGMA wal_autocheckpoint = 4096")  # 256 MiB of 64 KiB pages
        db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
        db.execute("CREATE TABLE attachments (id INTEGER PRIMARY KEY, content BLOB NOT NULL)")
        settle()
        started = time.monotonic()
        cpu = busy_cpu_seconds()
        for first in range(0, len(messages), 100):
            db.execute("BEGIN")
            for raw, attachment in zip(messages[first:first + 100], attachments[first:first + 100]):
                db.execute("INSERT INTO messages (raw) VALUES (?)", (raw,))
                if attachment is not None:
                    db.execute("INSERT INTO attachments (content) VALUES (?)", (attachment,))
            db.execute("COMMIT")
        seconds = time.monotonic() - started
        cpu = busy_cpu_seconds() - cpu
        db.close()
        return seconds, cpu
    finally:
        subprocess.run(["rm", "-rf", workdir], check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mix", choices=["realistic", "text"], default="realistic",
                        help="text: no attachments, to separate per-message from per-byte costs")
    parser.add_argument("--large", type=int, default=0,
                        help="also this many 24.6 MB messages, spread through the mailbox (peak RSS)")
    parser.add_argument("--warm-up", type=int, default=4, metavar="GIB",
                        help="touch this much memory first (see warm_up_memory; 0: not at all)")
    parser.add_argument("--binary", help="an intake binary to measure instead of building target/release/intake")
    arguments = parser.parse_args()
    postgres_url = os.environ.get("INTAKE_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

    binary = arguments.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "intake"], cwd=REPO, check=True)
        target = os.path.join(REPO, os.environ.get("CARGO_TARGET_DIR", "target"))
        binary = os.path.join(target, "release", "intake")
    ceiling_binary = build_bench("imap_ceiling")
    parse_binary = build_bench("parse_floor")
    warm_up_memory(arguments.warm_up)
    messages = generate(arguments.messages, arguments.seed, attachments=arguments.mix == "realistic")
    for index, large in enumerate(large_messages(arguments.large, arguments.seed)):
        messages.insert((index + 1) * len(messages) // (arguments.large + 1), large)
    total = sum(len(raw) for raw in messages)
    with_attachments = sum(1 for raw in messages if b'filename="scan' in raw)
    print(f"{len(messages)} messages, {total / 1e6:.1f} MB ({with_attachments} with attachments)", flush=True)
    dovecot = Dovecot(messages)
    try:
        fetched, size, seconds, cpu = ceiling(ceiling_binary, dovecot.port)
        assert fetched == len(messages), f"the ceiling fetched {fetched}"
        ceiling_rate = fetched / seconds
        budget, ceiling_seconds, ceiling_cpu = cpu_budget(seconds), seconds, cpu
        print(f"{'run':<22}{'seconds':>9}{'messages/s':>12}{'MB/s':>9}{'of ceiling':>12}{'peak RSS':>11}"
              f"{'CPU s':>8}")
        print(f"{'bare IMAP fetch':<22}{seconds:>9.2f}{ceiling_rate:>12.0f}{size / 1e6 / seconds:>9.1f}"
              f"{'100%':>12}{'-':>11}{cpu:>8.2f}", flush=True)
        backends = ["sqlite", "postgres"] if arguments.backend == "both" else [arguments.backend]
        for backend in backends:
            seconds, cpu, rss = run_intake(binary, backend, dovecot.port, len(messages), postgres_url)
            rate = len(messages) / seconds
            print(f"{'intake, ' + backend:<22}{seconds:>9.2f}{rate:>12.0f}{total / 1e6 / seconds:>9.1f}"
                  f"{rate / ceiling_rate:>12.0%}{rss / 1024:>8.0f} MB{cpu:>8.2f}", flush=True)
        floors = []
        if "sqlite" in backends:
            floors.append(("SQLite blobs alone", lambda: storage_floor(messages)))
        if "postgres" in backends:
            floors.append(("PostgreSQL COPY alone", lambda: postgres_floor(messages, postgres_url)))
        storage_cpu = {}
        for label, floor in floors:
            seconds, cpu = floor()
            storage_cpu[label] = cpu
            rate = len(messages) / seconds
            print(f"{label:<22}{seconds:>9.2f}{rate:>12.0f}{total / 1e6 / seconds:>9.1f}"
                  f"{rate / ceiling_rate:>12.0%}{'-':>11}{cpu:>8.2f}", flush=True)
        mail_parser, intake_parse = parse_floor(parse_binary, messages)
        for label, seconds in [("mail-parser alone", mail_parser), ("intake's parse alone", intake_parse)]:
            rate = len(messages) / seconds
            print(f"{label:<22}{seconds:>9.2f}{rate:>12.0f}{total / 1e6 / seconds:>9.1f}"
                  f"{rate / ceiling_rate:>12.0%}{'-':>11}{seconds:>8.2f}", flush=True)
        print(f"CPU a run at half the ceiling's rate could use here: {budget:.2f} s "
              f"({os.cpu_count()} CPUs x 2 x {ceiling_seconds:.2f} s)", flush=True)
        # Work no ingest can skip: the server serving the fetch (the ceiling's run), mail-parser
        # reading each message, and the database keeping the bytes (a storage floor).
        for label, cpu in storage_cpu.items():
            least = ceiling_cpu + mail_parser + cpu
            print(f"CPU any ingest with mail-parser needs here ({label.split()[0]}): at least "
                  f"{least:.2f} s (fetch {ceiling_cpu:.2f} + mail-parser {mail_parser:.2f} + storage "
                  f"{cpu:.2f}), {least / budget:.0%} of that", flush=True)
    finally:
        dovecot.stop()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("benches/ingest.py needs root: Dovecot's mail processes run as nobody")
    main()
