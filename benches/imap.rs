//! IMAP ingest throughput and latency of `casegate run` against a real Dovecot.
//!
//! 1. Starts its own Dovecot (the integration tests' harness) and appends N generated
//!    small mails (≈600 B, default 10,000) to the support INBOX with MULTIAPPEND.
//! 2. Times Dovecot's side of marking: one `UID MOVE` of all N to a scratch folder (and
//!    back, then INBOX selected once more so the server has caught up with the moves).
//! 3. Warms the page cache with one untimed bare fetch (this VM evicts mail files not
//!    read for about a minute; a cold fetch runs ~8x slower), then times a **bare fetch**
//!    three times (the median counts): one connection, `FETCH <500 messages> (UID
//!    BODY.PEEK[])` until all are read. That is the practical ceiling of any IMAP ingest
//!    here.
//! 4. Times the **ingest alone**: the same mails through `Gateway::ingest_batch` in
//!    batches of 500, in process, into a fresh database, parsed and written in sequence
//!    on one thread (the daemon prepares mails on other threads while the writer writes).
//! 5. Times **`casegate run`** (the release binary, logging at info into a file) from
//!    start until all N are committed (journal rows), and until all are moved to
//!    `Processed` on the server. Prints mails/s and the ratio to the bare fetch.
//! 6. With the daemon idle, appends single mails one at a time (default 200) and measures
//!    APPEND → commit (p50/p99). Dovecot itself reports new mail to an IDLE client about
//!    0.5 s after the APPEND.
//!
//! Run: `cargo bench --bench imap` (or `-- 20000 300` for other counts). Under
//! `cargo test --all-targets` it makes a quick smoke run (300 mails, 3 appends).

#[allow(unused_imports)]
#[path = "../tests/it/support/mailstack/mod.rs"]
mod mailstack;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;

use casegate::config::Config;
use casegate::ingest::{Gateway, Origin};
use mailstack::{Dovecot, PASSWORD, SUPPORT};

const BATCH: usize = 500;

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without
    // it, and then a small smoke run keeps the test suite quick while proving the bench.
    let benching = std::env::args().any(|a| a == "--bench");
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let count = args.next().unwrap_or(if benching { 10_000 } else { 300 });
    let singles = args.next().unwrap_or(if benching { 200 } else { 3 });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(bench(count, singles));
}

fn mail(i: usize) -> Vec<u8> {
    format!(
        "From: Customer {n} <customer{n}@customer.example>\r\n\
         To: Support <support@example.com>\r\n\
         Subject: Printer {i} does not print\r\n\
         Message-ID: <bench-{i}@customer.example>\r\n\
         Date: Mon, 25 Nov 2024 09:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello support,\r\n\r\nprinter {i} in building {b} stopped printing this morning. The display\r\n\
         shows error E-{e:04}. We restarted it twice; nothing changed. Could you send someone?\r\n\r\n\
         Thanks,\r\nCustomer {n}\r\n",
        n = i % 97,
        b = i % 13,
        e = i % 9973
    )
    .into_bytes()
}

fn config_text(dovecot: &Dovecot) -> String {
    format!(
        "data_dir = \"var\"\nsystem_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
         [accounts]\n\"customer.example\" = \"Customer Inc\"\n\
         [[mailbox]]\nname = \"support\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         username = \"{SUPPORT}\"\npassword = \"{PASSWORD}\"\nbatch_size = {BATCH}\n",
        dovecot.ports().imap
    )
}

async fn bare_fetch(dovecot: &Dovecot, count: usize) -> (usize, usize, Duration) {
    let mut session = dovecot.login(SUPPORT).await;
    let started = Instant::now();
    session.examine("INBOX").await.unwrap();
    let (mut n, mut bytes) = (0, 0);
    for first in (1..=count).step_by(BATCH) {
        let last = (first + BATCH - 1).min(count);
        let fetches: Vec<_> =
            session.fetch(format!("{first}:{last}"), "(UID BODY.PEEK[])").await.unwrap().try_collect().await.unwrap();
        for f in &fetches {
            bytes += f.body().map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    let took = started.elapsed();
    session.logout().await.unwrap();
    (n, bytes, took)
}

/// Journal rows committed so far, through one read-only connection kept open (WAL: the
/// reader never blocks the daemon's writer).
struct Journal {
    path: std::path::PathBuf,
    conn: Option<rusqlite::Connection>,
}

impl Journal {
    fn count(&mut self) -> i64 {
        if self.conn.is_none() && self.path.exists() {
            self.conn =
                rusqlite::Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok();
        }
        let Some(db) = &self.conn else { return 0 };
        db.query_row("SELECT count(*) FROM mails", [], |r| r.get(0)).unwrap_or(0)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn bench(count: usize, singles: usize) {
    let dovecot = Dovecot::start();
    let mails: Vec<Vec<u8>> = (0..count).map(mail).collect();
    let total: usize = mails.iter().map(Vec::len).sum();
    let t = Instant::now();
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;
    println!(
        "seeded {count} mails ({:.0} B average) with MULTIAPPEND in {:.2} s",
        total as f64 / count as f64,
        t.elapsed().as_secs_f64()
    );

    // The server's side of marking: one UID MOVE of every mail, and back (new UIDs; the
    // daemon searches the whole folder anyway). Done before the fetches, and INBOX selected
    // again afterwards, so that Dovecot has synced the folder after the move back: the bare
    // fetch and the daemon then find the same state (otherwise the daemon's SELECT pays
    // ~0.2 s for the server catching up with the bench's own moves).
    {
        let mut session = dovecot.login(SUPPORT).await;
        session.create("Scratch").await.unwrap();
        session.select("INBOX").await.unwrap();
        let t = Instant::now();
        session.uid_mv("1:*", "Scratch").await.unwrap();
        let move_rate = count as f64 / t.elapsed().as_secs_f64();
        session.select("Scratch").await.unwrap();
        session.uid_mv("1:*", "INBOX").await.unwrap();
        session.select("INBOX").await.unwrap();
        session.logout().await.unwrap();
        println!(
            "server MOVE:      {move_rate:>8.0} mails/s  (one UID MOVE of all {count}: Dovecot's cost of marking)"
        );
    }

    // Page cache: read everything once, untimed.
    let (warm, _, cold) = bare_fetch(&dovecot, count).await;
    println!("page cache warmed by one untimed fetch ({warm} mails in {:.2} s)", cold.as_secs_f64());
    // Three timed fetches, the median taken: one fetch of a few hundred milliseconds
    // spreads by ±20 % on a shared machine.
    let mut fetches = Vec::with_capacity(3);
    for _ in 0..3 {
        let (n, bytes, took) = bare_fetch(&dovecot, count).await;
        assert_eq!(n, count, "bare fetch saw {n} of {count} mails");
        fetches.push((n as f64 / took.as_secs_f64(), bytes));
    }
    fetches.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (bare_rate, bytes) = fetches[1];
    println!(
        "bare fetch:       {bare_rate:>8.0} mails/s  (median of 3: {:.0}-{:.0}/s; {count} mails, {:.1} MB, batches of {BATCH})",
        fetches[0].0,
        fetches[2].0,
        bytes as f64 / 1e6,
    );

    // The writer's ceiling: parse + decide + store, in process.
    let scratch = tempfile::tempdir().unwrap();
    let config = Arc::new(Config::from_toml(&config_text(&dovecot), &scratch.path().join("casegate.toml")).unwrap());
    let mut gateway = Gateway::open(Arc::clone(&config)).unwrap();
    let origins: Vec<Origin> = (0..count)
        .map(|i| Origin {
            description: format!("bench uid {}", i + 1),
            source: Some("support".into()),
            source_key: Some(format!("1:{}", i + 1)),
            account: None,
        })
        .collect();
    let t = Instant::now();
    for (raws, origins) in mails.chunks(BATCH).zip(origins.chunks(BATCH)) {
        let items: Vec<(&[u8], &Origin)> = raws.iter().map(Vec::as_slice).zip(origins).collect();
        gateway.ingest_batch(&items).unwrap();
    }
    let ingest_rate = count as f64 / t.elapsed().as_secs_f64();
    println!("ingest alone:     {ingest_rate:>8.0} mails/s  (Gateway::ingest_batch, batches of {BATCH}, in process)");
    drop(gateway);
    drop(scratch);

    // casegate run, the real binary.
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("casegate.toml");
    std::fs::write(&config_path, config_text(&dovecot)).unwrap();
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut journal = Journal { path: dir.path().join("var/casegate.db"), conn: None };
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_casegate"))
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        // BENCH_RUST_LOG=warn shows what the per-mail log lines cost.
        .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    while journal.count() < count as i64 {
        assert!(started.elapsed() < Duration::from_secs(600), "casegate did not commit all mails in 10 minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let committed = started.elapsed();
    while dovecot.folder_count(SUPPORT, "INBOX").await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let marked = started.elapsed();
    let run_rate = count as f64 / committed.as_secs_f64();
    println!(
        "casegate run:     {run_rate:>8.0} mails/s  (start → all {count} committed in {:.2} s; all moved to Processed after {:.2} s: {:.0} mails/s)",
        committed.as_secs_f64(),
        marked.as_secs_f64(),
        count as f64 / marked.as_secs_f64()
    );
    println!(
        "ratio:            {:>8.1} % of the bare fetch; {:.0} % of the ingest-alone rate",
        100.0 * run_rate / bare_rate,
        100.0 * run_rate / ingest_rate
    );

    // APPEND → commit while idle.
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let idle_deadline = Instant::now() + Duration::from_secs(30);
    while !log_text().contains("Mailbox connected") && Instant::now() < idle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delays = Vec::with_capacity(singles);
    for k in 0..singles {
        let before = journal.count();
        dovecot.append(SUPPORT, "INBOX", &mail(count + k)).await;
        let appended = Instant::now();
        while journal.count() == before {
            assert!(appended.elapsed() < Duration::from_secs(30), "single mail {k} not committed within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(appended.elapsed());
    }
    delays.sort();
    if !delays.is_empty() {
        println!(
            "APPEND → commit:  p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms  ({} single appends while idle)",
            percentile(&delays, 0.5).as_secs_f64() * 1e3,
            percentile(&delays, 0.99).as_secs_f64() * 1e3,
            delays.last().unwrap().as_secs_f64() * 1e3,
            delays.len()
        );
    }

    // SAFETY: kill has no memory-safety preconditions; the child is ours and unreaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let stopping = Instant::now();
    let status = child.wait().unwrap();
    println!("SIGTERM → exit:   {:.0} ms ({status})", stopping.elapsed().as_secs_f64() * 1e3);
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("kept {}", dir.keep().display());
    }
}
