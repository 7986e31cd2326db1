//! Ingest throughput: 10,000 generated mails of about 5 KB, 10% with a 50 KB attachment,
//! 70% opening cases and 30% replying to them by token, through the same path as
//! `casegate ingest` (files read from disk, one transaction per mail) into a fresh
//! database. Prints mails per second, beside the raw parse rate for comparison.
//!
//! Run: `cargo bench --bench ingest` (optionally `-- 20000` for another count).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use casegate::config::Config;
use casegate::ingest::{Gateway, Origin};

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and then a small smoke run proves the bench without slowing the test suite.
    let benching = std::env::args().any(|a| a == "--bench");
    let count: usize =
        std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(if benching { 10_000 } else { 300 });
    let dir = tempfile::tempdir().expect("temp dir");
    // The generated mails are kept under target/ and reused: creating 10,000 files costs
    // more than ingesting them on some file systems, and is not what is measured here.
    let mails_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-mails-v2-{count}"));
    let files: Vec<std::path::PathBuf> = (0..count).map(|i| mails_dir.join(format!("{i:06}.eml"))).collect();
    if !files.last().is_some_and(|f| f.is_file()) {
        std::fs::create_dir_all(&mails_dir).unwrap();
        let mut generator = Generator::default();
        for (i, path) in files.iter().enumerate() {
            std::fs::write(path, generator.next_mail(i)).unwrap();
        }
    }
    let total_bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    println!(
        "{count} mails in {}, {:.1} MB ({:.1} KB average)",
        mails_dir.display(),
        total_bytes as f64 / 1e6,
        total_bytes as f64 / count as f64 / 1e3
    );

    // Parse alone: the ceiling of the pipeline.
    let raws: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let t = Instant::now();
    let mut parsed = 0;
    for raw in &raws {
        parsed += casegate::parse::parse(raw).map(|m| m.attachments.len()).unwrap_or(0);
    }
    let parse_rate = count as f64 / t.elapsed().as_secs_f64();
    println!("parse only:      {parse_rate:>9.0} mails/s  ({parsed} attachments)");
    drop(raws);

    let config = config(dir.path());
    let mut gateway = Gateway::open(Arc::new(config)).expect("open store");
    let cpu_start = cpu_seconds();
    let t = Instant::now();
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    let batch: usize =
        std::env::var("BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(casegate::ingest::DEFAULT_BATCH);
    for (n, chunk) in files.chunks(batch).enumerate() {
        let raws: Vec<Vec<u8>> = chunk.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let origins: Vec<Origin> = chunk.iter().map(|p| Origin::file(&p.display().to_string())).collect();
        let items: Vec<(&[u8], &Origin)> = raws.iter().map(Vec::as_slice).zip(&origins).collect();
        for report in gateway.ingest_batch(&items).expect("ingest") {
            *outcomes.entry(report.outcome.as_str()).or_default() += 1;
        }
        if ((n + 1) * batch) % 2_000 < batch {
            eprintln!("  {} mails…", (n + 1) * batch);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ingest (stored, batches of {batch}): {:>9.0} mails/s  ({count} mails in {secs:.2} s; outcomes {outcomes:?})",
        count as f64 / secs
    );
    let cpu = cpu_seconds() - cpu_start;
    // CPU time (user + system) is what the pipeline costs; wall time also counts waiting for
    // a busy machine. On an idle core the two meet.
    println!("ingest CPU time: {cpu:.2} s  (= {:.0} mails/s per busy core)", count as f64 / cpu);
    let db = std::fs::metadata(dir.path().join("var/casegate.db")).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.path().join("var/casegate.db-wal")).map(|m| m.len()).unwrap_or(0);
    println!("database: {:.1} MB", db as f64 / 1e6);
    drop(gateway);

    // The same mails through the real command line, as an operator or a mail server runs
    // it (a reader thread parses the next batch while the current one is written): as
    // installed, with notifications queued for every event, and with them switched off.
    for (label, config) in
        [("with notifications", CONFIG.to_string()), ("notify.enabled = false", format!("{CONFIG}enabled = false\n"))]
    {
        let (secs, queued) = run_cli(&config, &mails_dir, count);
        println!(
            "casegate ingest DIR, {label:<22} {:>6.0} mails/s  ({count} mails in {secs:.2} s; {queued} notifications queued)",
            count as f64 / secs
        );
    }
}

/// Runs `casegate ingest --json DIR` on a fresh installation; returns the seconds it took
/// and how many notifications it queued.
fn run_cli(config: &str, mails_dir: &Path, count: usize) -> (f64, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("casegate.toml");
    std::fs::write(&cfg, config).unwrap();
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_casegate"))
        .arg("--config")
        .arg(&cfg)
        .args(["ingest", "--json"])
        .arg(mails_dir)
        .output()
        .expect("run casegate ingest");
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "casegate ingest failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines = out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(lines, count, "one outcome line per mail");
    let db = rusqlite::Connection::open(dir.path().join("var/casegate.db")).expect("open database");
    let queued: i64 = db.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).expect("count outbox");
    (secs, queued as usize)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A realistic installation: an account for the customers' domain, and a team address
/// that receives the staff alerts (new case, customer reply), so notifications are queued
/// as in production. Ends inside `[notify]`, so a key can be appended there.
const CONFIG: &str =
    "data_dir = \"var\"\nsystem_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
                      [accounts]\n\"customer.example\" = \"Customer Inc\"\n\
                      [notify]\nstaff_recipients = [\"team@support.example.com\"]\n";

fn config(dir: &Path) -> Config {
    Config::from_toml(CONFIG, &dir.join("casegate.toml")).expect("bench config")
}

const WORDS: &[&str] = &[
    "printer",
    "invoice",
    "server",
    "login",
    "error",
    "timeout",
    "the",
    "after",
    "update",
    "cannot",
    "access",
    "report",
    "since",
    "yesterday",
    "morning",
    "please",
    "help",
    "urgent",
    "database",
    "network",
    "password",
    "reset",
    "screen",
];

/// Who opened the cases so far (case number − 1 → customer index), so that replies come
/// from a case's own requester with the same colleague in Cc, as in real traffic.
#[derive(Default)]
struct Generator {
    openers: Vec<usize>,
}

impl Generator {
    /// Mail `i`: 7 in 10 open a case, 3 in 10 reply to an earlier case by token.
    fn next_mail(&mut self, i: usize) -> Vec<u8> {
        let reply = i >= 10 && i % 10 < 3;
        if reply {
            // An earlier case, spread over the whole history.
            let n = (i.wrapping_mul(2654435761) >> 7) % self.openers.len();
            generate(i, Some((n + 1, self.openers[n])))
        } else {
            self.openers.push(i % 500);
            generate(i, None)
        }
    }
}

/// A deterministic pseudo-random mail of about 5 KB, 1 in 10 with a 50 KB attachment: a
/// new case from customer `i % 500`, or a reply to `(case, its requester)`.
fn generate(i: usize, reply: Option<(usize, usize)>) -> Vec<u8> {
    let mut seed = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let customer = reply.map_or(i % 500, |(_, requester)| requester);
    let subject = match reply {
        Some((c, _)) => format!("Re: [CASE-{c}] Problem report {c}"),
        None => format!(
            "Problem report {i}: {} {}",
            WORDS[next() as usize % WORDS.len()],
            WORDS[next() as usize % WORDS.len()]
        ),
    };
    let mut body = String::with_capacity(5_000);
    while body.len() < 4_600 {
        for _ in 0..12 {
            body.push_str(WORDS[next() as usize % WORDS.len()]);
            body.push(' ');
        }
        body.push_str("\r\n");
    }
    let from = format!("user{customer}@customer.example");
    let mut mail = format!(
        "From: User {customer} <{from}>\r\nTo: support@example.com\r\nCc: colleague{}@customer.example\r\n\
         Subject: {subject}\r\nMessage-ID: <bench-{i}@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n",
        customer + 1
    );
    if i % 10 == 5 {
        let mut data = Vec::with_capacity(50_000);
        while data.len() < 50_000 {
            data.extend_from_slice(&next().to_le_bytes());
        }
        mail.push_str("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
        mail.push_str(&body);
        mail.push_str("\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"log.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        let encoded = base64_lines(&data);
        mail.push_str(&encoded);
        mail.push_str("\r\n--b--\r\n");
    } else {
        mail.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        mail.push_str(&body);
    }
    mail.into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (n, chunk) in data.chunks(3).enumerate() {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        if n % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}
