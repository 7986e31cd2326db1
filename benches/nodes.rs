//! PostgreSQL beside SQLite, and one node beside two, in one sitting on this machine:
//!
//! 1. **`casegate ingest DIR`** (the release binary) of N generated mails (≈700 B, half
//!    of them replies by token to cases opened a few batches earlier; default 10,000) into a fresh SQLite
//!    installation, then into a fresh PostgreSQL database on a throw-away cluster (the
//!    integration tests' harness: Debian's PostgreSQL on 127.0.0.1, `fsync` on as in
//!    production). Mails per second, and PostgreSQL's rate as a share of SQLite's.
//! 2. **`casegate run`** against a real Dovecot with M mailboxes (default 4) of K mails
//!    each (default 2,500; half of them replies by In-Reply-To to cases opened a few
//!    batches earlier in the same mailbox): on SQLite with one node, on PostgreSQL with one node, and on
//!    PostgreSQL with two nodes sharing the database (each leases half the mailboxes).
//!    The nodes are started on empty mailboxes and wait until their leases are settled;
//!    then all mails are appended (MULTIAPPEND, the mailboxes in parallel) and the time is
//!    taken from the first append until every mail is committed.
//!
//! Run: `cargo bench --bench nodes` (or `-- 20000 4 2500` for other counts). Under
//! `cargo test --all-targets` it makes a quick smoke run. Without PostgreSQL installed it
//! says so and measures SQLite only.

#[allow(unused_imports)]
#[path = "../tests/it/support/mailstack/mod.rs"]
mod mailstack;
#[allow(dead_code)]
#[path = "../tests/it/support/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailstack::{Dovecot, PASSWORD};
use postgres::Cluster;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let count = args.next().unwrap_or(if benching { 10_000 } else { 200 });
    let boxes = args.next().unwrap_or(if benching { 4 } else { 2 }).max(1);
    let per_box = args.next().unwrap_or(if benching { 2_500 } else { 30 });
    let cluster = postgres::cluster();

    let mails_dir = tempfile::tempdir().unwrap();
    for i in 0..count {
        std::fs::write(mails_dir.path().join(format!("{i:06}.eml")), mail("file", i, Reply::Token)).unwrap();
    }
    println!("1. casegate ingest DIR, {count} mails");
    let sqlite = ingest(mails_dir.path(), "", count);
    println!("   SQLite:      {sqlite:>7.0} mails/s");
    if let Some(cluster) = cluster {
        let url = fresh_database(cluster);
        let pg = ingest(mails_dir.path(), &storage(&url, "bench"), count);
        println!("   PostgreSQL:  {pg:>7.0} mails/s  ({:.0} % of SQLite; target 50 %)", 100.0 * pg / sqlite);
    }

    println!(
        "2. casegate run, {boxes} mailboxes × {per_box} mails in Dovecot, from the first append until all committed"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let users: Vec<String> = (0..boxes).map(|b| format!("support{b}@example.com")).collect();
        let sqlite = run_nodes(&users, per_box, None, 1).await;
        println!("   SQLite, one node:          {sqlite:>7.0} mails/s");
        if let Some(cluster) = cluster {
            let one = run_nodes(&users, per_box, Some(cluster), 1).await;
            println!("   PostgreSQL, one node:      {one:>7.0} mails/s  ({:.0} % of SQLite)", 100.0 * one / sqlite);
            let two = run_nodes(&users, per_box, Some(cluster), 2).await;
            println!("   PostgreSQL, two nodes:     {two:>7.0} mails/s  ({:.2}× one node)", two / one);
        }
    });
}

/// How a reply names its case.
#[derive(Clone, Copy)]
enum Reply {
    /// By the token of the case it answers, `[CASE-n]` (one writer numbers the cases in
    /// the order the mails come).
    Token,
    /// By `In-Reply-To` the mail that opened it (in the same mailbox): with several
    /// writers no one knows a case's number ahead, and a token guessing one may name a
    /// case another writer is still opening, which no customer could have heard of.
    InReplyTo,
}

/// How many cases back a reply goes: its case was opened this many openings (twice as
/// many mails) before it, a few batches earlier, as a customer answers a case opened
/// some time ago. The first replies, with no case that far back, answer the case the
/// mail before them opened.
const REPLY_LAG: usize = 600;

/// A customer's mail: every second one opens a case, and the others reply (see
/// [`REPLY_LAG`]).
fn mail(prefix: &str, i: usize, reply: Reply) -> Vec<u8> {
    // The `opening`th case opened (from 0), by mail `2 × opening`.
    let opening = (i / 2).checked_sub(REPLY_LAG).unwrap_or(i / 2);
    let opener = 2 * opening;
    let (subject, refers) = match (i % 2, reply) {
        (0, _) => (format!("Scanner {i} in hall {} jams", i % 7), String::new()),
        (_, Reply::Token) => {
            (format!("Re: [CASE-{}] Scanner {opener} in hall {} jams", opening + 1, opener % 7), String::new())
        }
        (_, Reply::InReplyTo) => (
            format!("Re: Scanner {opener} in hall {} jams", opener % 7),
            format!("In-Reply-To: <{prefix}-{opener}@customer.example>\r\n"),
        ),
    };
    format!(
        "From: Customer {c} <customer{c}@customer.example>\r\nTo: Support <support@example.com>\r\n\
         Subject: {subject}\r\n{refers}Message-ID: <{prefix}-{i}@customer.example>\r\n\
         Date: Tue, 01 Dec 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n\r\nthe scanner feeds two sheets at once and stops with code J-{j:03}. We cleaned the\r\n\
         rollers as the manual says; it still happens every few pages. Can someone look at it?\r\n\r\nRegards,\r\n\
         Customer {c}\r\n",
        c = i % 89,
        j = i % 997
    )
    .into_bytes()
}

const CONFIG: &str =
    "data_dir = \"var\"\nsystem_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
                      [accounts]\n\"customer.example\" = \"Customer Inc\"\n\
                      [notify]\nstaff_recipients = [\"team@support.example.com\"]\n";

fn storage(url: &str, node: &str) -> String {
    format!("[storage]\ndatabase_url = \"{url}\"\nnode = \"{node}\"\n")
}

fn fresh_database(cluster: &Cluster) -> String {
    let name = cluster.new_database();
    // The harness runs its cluster without fsync, for tests; a benchmark of the database
    // needs the durability production has.
    cluster.psql("postgres", &format!("ALTER DATABASE {name} SET synchronous_commit = on"));
    cluster.url(&name)
}

/// `casegate ingest --json DIR` into a fresh installation; mails per second.
fn ingest(mails: &Path, extra: &str, count: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("casegate.toml");
    std::fs::write(&config, format!("{CONFIG}{extra}")).unwrap();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_casegate"))
        .arg("--config")
        .arg(&config)
        .args(["ingest", "--json"])
        .arg(mails)
        .output()
        .expect("run casegate ingest");
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "casegate ingest failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines = out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(lines, count, "one outcome line per mail");
    let replied = String::from_utf8_lossy(&out.stdout).matches("\"outcome\":\"replied\"").count();
    assert_eq!(replied, count / 2, "every second mail replies to a case");
    count as f64 / secs
}

/// Starts `nodes` × `casegate run` on empty mailboxes of `users` (on `cluster`, or on
/// SQLite for one node), waits until the leases are settled, appends `per_box` mails to
/// each mailbox, and returns mails per second from the first append until all committed.
async fn run_nodes(users: &[String], per_box: usize, cluster: Option<&Cluster>, nodes: usize) -> f64 {
    let mut builder = Dovecot::builder();
    for user in users {
        builder = builder.user(user, PASSWORD);
    }
    let dovecot = builder.start();
    let mut boxes = String::new();
    for (b, user) in users.iter().enumerate() {
        boxes.push_str(&format!(
            "[[mailbox]]\nname = \"box{b}\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{user}\"\n\
             password = \"{PASSWORD}\"\nbatch_size = 500\n",
            dovecot.ports().imap
        ));
    }
    let url = cluster.map(fresh_database);
    let mut running = Vec::new();
    for n in 0..nodes {
        let extra = url.as_deref().map(|u| storage(u, &format!("node{n}"))).unwrap_or_default();
        running.push(Node::start(&format!("{CONFIG}{boxes}{extra}")));
    }
    // Every mailbox leased, each node holding its share, as the database's leases say.
    let share = users.len() / nodes;
    let settled = Instant::now();
    loop {
        let held = running[0].leases_by_node(nodes);
        if held.iter().sum::<usize>() == users.len() && held.iter().all(|h| *h >= share) {
            break;
        }
        if settled.elapsed() > Duration::from_secs(120) {
            let logs: Vec<String> = running.iter().map(Node::log).collect();
            panic!("the nodes did not settle their leases: {held:?}\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let count = |sql: &str| -> usize {
        match (&url, cluster) {
            (Some(url), Some(cluster)) => {
                let db = url.rsplit('/').next().unwrap();
                cluster.psql(db, sql).parse().unwrap_or(0)
            }
            _ => running[0].sqlite_count(sql),
        }
    };
    let committed = || count("SELECT count(*) FROM mails");
    let total = users.len() * per_box;
    let started = Instant::now();
    let appends = users.iter().enumerate().map(|(b, user)| {
        let mails: Vec<Vec<u8>> = (0..per_box).map(|i| mail(&format!("box{b}"), i, Reply::InReplyTo)).collect();
        let dovecot = &dovecot;
        async move { dovecot.append_many(user, "INBOX", &mails).await }
    });
    futures::future::join_all(appends).await;
    while committed() < total {
        assert!(started.elapsed() < Duration::from_secs(900), "not all mails committed within 15 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    // Each backend did the same work: every reply went to the case its mail named.
    let replied = count("SELECT count(*) FROM mails WHERE outcome = 'replied'");
    assert_eq!(replied, users.len() * (per_box / 2), "every second mail replies to a case");
    let mut retried = 0;
    for node in &mut running {
        node.stop();
        retried += node.log().matches("Another writer got in the way").count();
    }
    if retried > 0 {
        println!("   ({retried} batches written again after a conflict with another writer)");
    }
    rate
}

/// One `casegate run` in a directory of its own.
struct Node {
    dir: tempfile::TempDir,
    child: Child,
}

impl Node {
    fn start(config: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("casegate.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_casegate"))
            .arg("--config")
            .arg(&path)
            .arg("run")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start casegate run");
        Node { dir, child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// How many mailboxes each of the nodes `node0`, `node1`, … holds, as `casegate nodes
    /// --json` reads the leases (alone on SQLite, the one node is `node0`).
    fn leases_by_node(&self, nodes: usize) -> Vec<usize> {
        let out = Command::new(env!("CARGO_BIN_EXE_casegate"))
            .arg("--config")
            .arg(self.dir.path().join("casegate.toml"))
            .args(["nodes", "--json"])
            .output()
            .expect("run casegate nodes");
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut held = vec![0; nodes];
        for node in view["nodes"].as_array().into_iter().flatten() {
            let n = node["mailboxes"].as_array().map_or(0, Vec::len);
            match node["name"].as_str().and_then(|name| name.strip_prefix("node")).and_then(|i| i.parse::<usize>().ok())
            {
                Some(i) if i < nodes => held[i] = n,
                _ if nodes == 1 => held[0] += n,
                _ => {}
            }
        }
        held
    }

    fn sqlite_count(&self, sql: &str) -> usize {
        let path: PathBuf = self.dir.path().join("var/casegate.db");
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|db| db.query_row(sql, [], |r| r.get::<_, i64>(0)))
            .map_or(0, |n| n as usize)
    }

    fn stop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the child is ours and unreaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "casegate run ended with {status}:\n{}", self.log());
    }
}

impl Drop for Node {
    /// A bench that fails midway leaves no daemon behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
