//! Notification throughput: queue 5,000 notifications through the real path (5,000 new
//! cases ingested, each acknowledged by `notify::enqueue` in its transaction), then send
//! them with `Sender::send_due` to a local SMTP server over pooled, reused connections.
//! Prints queueing and sending rates in mails per second.
//!
//! Run: `cargo bench --bench notify` (optionally `-- 20000` for another count).
//! The SMTP server is the test harness's aiosmtpd sink (`tests/it/support/smtp_sink.py`,
//! Debian's python3-aiosmtpd), which stores every mail as two files. With
//! `-- --builtin-sink` it is a minimal SMTP responder in this process instead, which
//! shows the ceiling of the sending side itself.

use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use casegate::config::Config;
use casegate::ingest::{Gateway, Origin};
use casegate::notify::Sender;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; under `cargo test --all-targets` a small smoke run
    // proves the bench without slowing the test suite.
    let benching = args.iter().any(|a| a == "--bench");
    let count: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(if benching { 5_000 } else { 200 });
    let builtin = args.iter().any(|a| a == "--builtin-sink");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let _sink = if builtin {
        runtime.spawn(builtin_sink(port, Arc::clone(&received)));
        None
    } else {
        Some(AiosmtpdSink::start(&dir.path().join("sink"), port))
    };

    let text = format!(
        "data_dir = \"var\"\nsystem_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
         [notify]\nstaff_recipients = []\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
    );
    let config = Arc::new(Config::from_toml(&text, &dir.path().join("casegate.toml")).expect("config"));

    // Queue: one acknowledgement per new case, written by enqueue inside the ingest.
    let mut gateway = Gateway::open(Arc::clone(&config)).expect("open store");
    let mails: Vec<Vec<u8>> = (0..count).map(mail).collect();
    let origins: Vec<Origin> = (0..count).map(|i| Origin::file(&format!("bench-{i}"))).collect();
    let t = Instant::now();
    for (mails, origins) in mails.chunks(100).zip(origins.chunks(100)) {
        let batch: Vec<(&[u8], &Origin)> = mails.iter().map(Vec::as_slice).zip(origins).collect();
        gateway.ingest_batch(&batch).expect("ingest");
    }
    let queue_secs = t.elapsed().as_secs_f64();
    drop(gateway);
    println!(
        "queued  {count} notifications in {queue_secs:.2} s: {:>6.0} mails/s (ingest + enqueue; rendered when sent)",
        count as f64 / queue_secs
    );

    // Send: one drain of the outbox, as `outbox flush` does it.
    let t = Instant::now();
    let summary = runtime.block_on(async {
        let sender = Sender::new(Arc::clone(&config)).expect("sender");
        sender.send_due().await.expect("send")
    });
    let send_secs = t.elapsed().as_secs_f64();
    assert_eq!((summary.sent, summary.deferred, summary.failed), (count, 0, 0), "{summary:?}");
    let arrived =
        if builtin { received.load(Ordering::SeqCst) } else { count_files(&dir.path().join("sink/messages")) };
    assert_eq!(arrived, count, "the server received every mail once");
    let size = std::fs::metadata(dir.path().join("var/casegate.db")).map(|m| m.len()).unwrap_or(0);
    println!(
        "sent    {count} notifications in {send_secs:.2} s: {:>6.0} mails/s to {} ({} connections reused, database {:.1} MB)",
        count as f64 / send_secs,
        if builtin { "the built-in sink" } else { "the aiosmtpd sink" },
        casegate::notify::send::CONCURRENCY,
        size as f64 / 1e6
    );
}

fn mail(i: usize) -> Vec<u8> {
    format!(
        "From: Customer {i} <customer{i}@customer.example>\r\nTo: support@example.com\r\nSubject: Printer {i} is on fire\r\n\
         Message-ID: <bench-{i}@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n\
         The printer in room {i} is on fire. {}\r\n",
        "Please send help. ".repeat(20)
    )
    .into_bytes()
}

fn free_port() -> u16 {
    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().unwrap().port()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
        .unwrap_or(0)
}

/// The test harness's SMTP sink, killed on drop.
struct AiosmtpdSink(Child);

impl AiosmtpdSink {
    fn start(dir: &Path, port: u16) -> AiosmtpdSink {
        std::fs::create_dir_all(dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtp_sink.py");
        let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        let log = std::fs::File::create(dir.join("sink.log")).unwrap();
        let child = Command::new(python)
            .arg(&script)
            .arg("--dir")
            .arg(dir)
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the aiosmtpd sink (needs python3-aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(dir.join("sink.log")).unwrap_or_default().contains("READY") {
            assert!(Instant::now() < deadline, "the SMTP sink did not start; see {}", dir.join("sink.log").display());
            std::thread::sleep(Duration::from_millis(20));
        }
        AiosmtpdSink(child)
    }
}

impl Drop for AiosmtpdSink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Just enough SMTP to accept mail: every command gets a positive answer, DATA is read
/// up to the lone dot and counted.
async fn builtin_sink(port: u16, received: Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read);
            let _ = write.write_all(b"220 bench ESMTP\r\n").await;
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                let answer: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-bench\r\n250 8BITMIME\r\n",
                    "DATA" => {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        received.fetch_add(1, Ordering::SeqCst);
                        b"250 stored\r\n"
                    }
                    "QUIT" => {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    }
                    _ => b"250 OK\r\n",
                };
                if write.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}
