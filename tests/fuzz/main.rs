//! The fuzz test binary: every mail in `fixtures/` and the shared corpus, and mutations of
//! them (see `mutate.rs`), through casegate's whole ingest path
//! (`casegate::ingest::fuzzing`), each within the budget: no panic, no failure of
//! casegate's own, at most 1 s and 20× its size in memory.
//!
//! A binary of its own because it counts every allocation (its global allocator), which
//! would slow the other tests and be disturbed by them; its tests take turns for the same
//! reason.
//!
//! - `CASEGATE_FUZZ_SECS`: how long the mutation test runs (default 60).
//! - `CASEGATE_FUZZ_RUNS`: at most this many mutated inputs (default: no limit), so that
//!   a run is the same on a faster machine (`scripts/test` sets it).
//! - `CASEGATE_FUZZ_SEED`: the seed (decimal or 0x-hex; default: from the clock, printed).
//! - `CASEGATE_FUZZ_TRACE=1`: print each input before it runs (for a crash that kills
//!   the process, such as a stack overflow).
//!
//! Inputs that break the budget are written to the test's temporary folder and named in
//! the failure; each becomes a fixture in `fixtures/fuzz/` once understood.

mod mutate;

#[path = "../it/support/corpus.rs"]
#[allow(dead_code)]
mod corpus;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use casegate::ingest::fuzzing::{CountingAllocator, Harness, TIME_BUDGET};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// One test at a time: the allocator's peak is the whole process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The stack casegate's threads get in production (Rust's and tokio's default), so that a
/// recursion that would overflow there overflows here too.
const STACK_BYTES: usize = 2 * 1024 * 1024;

/// Unoptimised code runs parsers many times slower than the release build the budget is
/// for; `scripts/fuzz` checks the 1 s itself in a release build.
fn time_limit() -> Duration {
    if cfg!(debug_assertions) {
        TIME_BUDGET * 20
    } else {
        TIME_BUDGET
    }
}

/// Progress for people, written past the test harness's output capture so that the seed
/// is known even when the process dies.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "fuzz: {line}");
}

/// Runs `work` with the harness on a thread with a production-sized stack, alone.
fn with_harness<R: Send>(work: impl FnOnce(&mut Harness) -> R + Send) -> R {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, || {
                let mut harness = Harness::new().expect("the harness needs a temporary directory");
                work(&mut harness)
            })
            .expect("a thread can be started")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every `.eml` under `dir` (but not under an `open` folder), sorted, with its path.
fn eml_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("a fixture folder entry is readable").path();
            if path.is_dir() {
                // `fixtures/fuzz/open` holds what fuzzing found and is not fixed yet: it
                // would break the budget (see its README).
                if path.file_name().is_some_and(|n| n != "open") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "eml") {
                let bytes = std::fs::read(&path).expect("a fixture is readable");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// The seeds: every fixture mail, and the shared corpus when it is there (its reply
/// bodies wrapped in a reply to a seeded case).
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = eml_files(&fixtures_dir())
        .into_iter()
        .map(|(path, bytes)| {
            (path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&path).display().to_string(), bytes)
        })
        .collect();
    assert!(seeds.len() > 100, "the fixtures hold over a hundred mails; found {}", seeds.len());
    match corpus::root() {
        None => say(&corpus::skipping()),
        Some(root) => {
            for record in corpus::records(&root) {
                let bytes = std::fs::read(root.join(&record.file)).expect("a corpus file is readable");
                let bytes = match record.input_kind.as_str() {
                    "body_html" => reply_with(&bytes, "text/html; charset=utf-8"),
                    "body_text" => reply_with(&bytes, "text/plain; charset=utf-8"),
                    _ => bytes,
                };
                seeds.push((format!("corpus/{}", record.file), bytes));
            }
        }
    }
    seeds
}

fn reply_with(body: &[u8], content_type: &str) -> Vec<u8> {
    let mut mail = format!(
        "From: alice@customer.example\r\nTo: support@example.com\r\nSubject: Re: [CASE-1] VPN drops every hour\r\n\
         In-Reply-To: <seed-1@customer.example>\r\nMessage-ID: <reply@customer.example>\r\n\
         Content-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    mail.extend_from_slice(body);
    mail
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

/// Every mail already found to break the budget stays fixed: `fixtures/fuzz/*.eml`.
#[test]
fn inputs_that_broke_the_budget_before_keep_it_now() {
    let found = eml_files(&fixtures_dir().join("fuzz"));
    assert!(!found.is_empty(), "fixtures/fuzz holds the inputs fuzzing found; none were read");
    let failures = with_harness(|harness| {
        let mut failures = Vec::new();
        for (path, bytes) in &found {
            if let Err(finding) = harness.check(bytes, time_limit()) {
                failures.push(format!("{}: {finding}", path.display()));
            }
        }
        failures
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What `fixtures/fuzz/012` would be, were it not 8 MB: random bytes in a bounce then its
/// parts repeated, 1,897 times a `multipart/related` whose boundary (damaged into 8-bit
/// bytes) never comes, each holding HTML, text and a named image. mail-parser searched the
/// rest of the mail for each boundary (3.3 s), and each attachment's file name guessed the
/// mail's charset from its 8-bit header values again.
fn broken_multiparts(count: usize) -> Vec<u8> {
    let mut mail = b"From: mailer-daemon@example.org\r\nTo: support@example.com\r\nSubject: Undelivered\r\n\
                     Message-ID: <broken-multiparts@example.org>\r\nMIME-Version: 1.0\r\n\
                     Content-Type: multipart/report; boundary=\"r\"; report-type=delivery-status\r\n\r\n"
        .to_vec();
    for i in 0..count {
        mail.extend_from_slice(
            b"--r\r\nContent-Type: multipart/related; boundary=\"rel\xc3\xa9\xd6\xa7\xfe\x01\"\r\n\r\n",
        );
        mail.extend_from_slice(b"--alt\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\n");
        mail.extend_from_slice(format!("Delivery to user{i}@example.net failed.\r\n").repeat(20).as_bytes());
        mail.extend_from_slice(b"--alt\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n\r\n<p>");
        mail.extend_from_slice(b"The message could not be delivered. ".repeat(60).as_slice());
        mail.extend_from_slice(b"</p>\r\n--alt\r\nContent-Type: image/png; name=\"\xe9t\xe9 ");
        mail.extend_from_slice(&[0xb7; 1_000]);
        mail.extend_from_slice(b".png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n");
    }
    mail.extend_from_slice(b"--r--\r\n");
    mail
}

#[test]
fn thousands_of_multiparts_whose_boundary_never_comes_keep_the_budget() {
    keeps_the_budget(&broken_multiparts(1_900), 7_000_000);
}

/// `mail`, made to be larger than `at_least` bytes, keeps the budget.
fn keeps_the_budget(mail: &[u8], at_least: usize) {
    assert!(mail.len() > at_least, "{} bytes", mail.len());
    if let Err(finding) = with_harness(|harness| harness.check(mail, time_limit())) {
        panic!("{finding}");
    }
}

/// What `fixtures/fuzz/014` would be, were it not 8 MB: `011.eml` (a bounce whose
/// attached messages overlap) with its first part repeated to 8 MB, found by the suite's
/// mutation run (seed 0xc8220d3403ffae31, input 546: duplicate-parts). Its HTML, 8 MB of
/// it, left thousands of table cells open once they were made text flow, and hundreds of
/// `<font>`s: the HTML parser's work for each run of text grew with them (1.2 s in a
/// release build, over a minute in the test build).
#[test]
fn a_report_repeated_to_eight_megabytes_keeps_the_budget() {
    let report = std::fs::read(fixtures_dir().join("fuzz/011.eml")).expect("fixture 011 is readable");
    let boundary = mutate::boundary_of(&report).expect("011 is multipart");
    keeps_the_budget(&mutate::repeat_first_part(report, &boundary, 5_000), 8_000_000);
}

/// Every fixture and corpus mail as it is.
#[test]
fn every_fixture_and_corpus_mail_keeps_the_budget() {
    let seeds = seeds();
    let failures = with_harness(|harness| {
        let mut failures = Vec::new();
        let (mut slowest, mut largest) = ((Duration::ZERO, ""), (0, 0, ""));
        for (name, bytes) in &seeds {
            match harness.check(bytes, time_limit()) {
                Ok(cost) => {
                    slowest = slowest.max((cost.took, name));
                    let peak = cost.heap_peak.unwrap_or(0) + cost.sqlite_peak;
                    largest = largest.max((peak, bytes.len(), name));
                }
                Err(finding) => failures.push(format!("{name}: {finding}")),
            }
        }
        say(&format!(
            "{} mails; slowest {:?} ({}); most memory {} bytes for {} bytes ({})",
            seeds.len(),
            slowest.0,
            slowest.1,
            largest.0,
            largest.1,
            largest.2
        ));
        failures
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Mutated mails for `CASEGATE_FUZZ_SECS` seconds (default 60).
#[test]
fn mutated_mails_keep_the_budget() {
    let secs = env_number("CASEGATE_FUZZ_SECS").unwrap_or(60);
    let max_runs = env_number("CASEGATE_FUZZ_RUNS").unwrap_or(u64::MAX);
    let seed = env_number("CASEGATE_FUZZ_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64
    });
    let trace = std::env::var_os("CASEGATE_FUZZ_TRACE").is_some();
    say(&format!("seed {seed:#x} for {secs} s (CASEGATE_FUZZ_SEED={seed:#x} repeats the same inputs)"));
    let seeds = seeds();
    let seed_bytes: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    let found_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings");
    let deadline = Duration::from_secs(secs);
    let save = |name: &str, bytes: &[u8]| -> PathBuf {
        std::fs::create_dir_all(&found_dir).expect("the test's temporary folder is writable");
        let path = found_dir.join(name);
        std::fs::write(&path, bytes).expect("the test's temporary folder is writable");
        path
    };
    // The input in hand, for the watchdog: a mail that runs far past its budget (three
    // tries over the time limit, and then some) is saved and ends the process, so that the
    // test neither hangs nor loses it.
    let current: Mutex<Option<(Instant, String, Vec<u8>)>> = Mutex::new(None);
    let done = std::sync::atomic::AtomicBool::new(false);
    let hang_limit = time_limit() * 3 + Duration::from_secs(10);
    let began = Instant::now();
    let (runs, bytes, findings) = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let slot = current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some((started, what, bytes)) =
                    slot.as_ref().filter(|(started, ..)| started.elapsed() > hang_limit)
                {
                    let path = save(&format!("{seed:x}-hang.eml"), bytes);
                    say(&format!(
                        "FOUND {what}: still running after {:?}; saved as {}",
                        started.elapsed(),
                        path.display()
                    ));
                    std::process::exit(101);
                }
            }
        });
        let result = with_harness(|harness| {
            let mut rng = mutate::Rng::new(seed);
            let started = Instant::now();
            let (mut runs, mut bytes) = (0u64, 0u64);
            let mut findings = Vec::new();
            while started.elapsed() < deadline && runs < max_runs && findings.len() < 5 {
                let which = rng.below(seeds.len());
                let mutant = mutate::mutate(&mut rng, &seed_bytes[which], &seed_bytes);
                let index = runs;
                runs += 1;
                let what = format!("input {index}: {} mutated by {}", seeds[which].0, mutant.how.join(" + "));
                if trace {
                    say(&format!("{what} ({} bytes)", mutant.bytes.len()));
                }
                bytes += mutant.bytes.len() as u64;
                *current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some((Instant::now(), what.clone(), mutant.bytes.clone()));
                let result = harness.check(&mutant.bytes, time_limit());
                *current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                if let Err(finding) = result {
                    let path = save(&format!("{seed:x}-{index}.eml"), &mutant.bytes);
                    say(&format!("FOUND {what}: {finding}; saved as {}", path.display()));
                    findings.push(format!("{what}: {finding} (saved as {})", path.display()));
                }
            }
            (runs, bytes, findings)
        });
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    });
    say(&format!(
        "{runs} inputs ({} MB) in {:.0?}, seed {seed:#x}, {} findings",
        bytes / 1_000_000,
        began.elapsed(),
        findings.len()
    ));
    assert!(runs > 0, "no input ran");
    assert!(findings.is_empty(), "seed {seed:#x}:\n{}", findings.join("\n"));
}
