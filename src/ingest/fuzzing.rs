//! The whole ingest path of one mail, for fuzzers: parse, classify, route, authorize,
//! decide, apply and the notifications it queues — exactly the code a mail from a mailbox
//! runs — against a small database of seeded cases, then rolled back, so that millions of
//! inputs all start from the same state and each can be replayed alone.
//!
//! Also the budget every mail must keep, whatever its bytes: no panic, no failure of
//! casegate's own (an error that would quarantine it as `internal-error`), at most
//! [`TIME_BUDGET`], and at most [`MEMORY_FACTOR`] times its size in memory (plus
//! [`MEMORY_FLOOR`] for the fixed costs of any mail), measured by [`CountingAllocator`]
//! and SQLite's own counter.
//!
//! This module exists for the fuzz targets (`fuzz/` and `tests/fuzz`); it is not part of
//! casegate's interface.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Gateway, IngestReport, Origin, Passage, Prepared, Step};
use crate::config::Config;
use crate::store::is_systemic;

/// The longest one mail may take, from raw bytes to its queued notifications.
pub const TIME_BUDGET: Duration = Duration::from_secs(1);
/// How many times its own size a mail may take in memory at the peak of its processing.
pub const MEMORY_FACTOR: usize = 20;
/// Memory any mail may take whatever its size: the decisions' queries, the notification
/// rows, the database pages a transaction touches (0.4–0.8 MiB measured for the fixture
/// and corpus mails under 20 KB).
pub const MEMORY_FLOOR: usize = 2 * 1024 * 1024;

/// What one mail did that it must not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// casegate panicked (even where a guard caught it: every caught panic is a bug).
    Panic(String),
    /// casegate failed on the mail with an error that is not the database's or the disk's:
    /// the daemon would quarantine it as `internal-error`.
    Error(String),
    /// The mail took longer than the time budget.
    TooSlow { took: Duration, limit: Duration },
    /// The mail took more memory than its budget: peaks of the Rust heap and of SQLite.
    TooMuchMemory { heap: usize, sqlite: usize, limit: usize },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Panic(what) => write!(f, "panic: {what}"),
            Finding::Error(what) => write!(f, "casegate failed on the mail: {what}"),
            Finding::TooSlow { took, limit } => write!(f, "too slow: {took:?} (budget {limit:?})"),
            Finding::TooMuchMemory { heap, sqlite, limit } => write!(
                f,
                "too much memory: {} bytes at the peak ({heap} on the heap, {sqlite} in SQLite; budget {limit} bytes)",
                heap + sqlite
            ),
        }
    }
}

/// What one mail cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// The CPU time of the thread that ran the mail where the system tells it (Linux), else
    /// the time that passed: on a busy machine a mail waits for a processor, which is the
    /// machine's cost, not the mail's.
    pub took: Duration,
    /// Peak of the Rust heap above its level before the mail; `None` without
    /// [`CountingAllocator`].
    pub heap_peak: Option<usize>,
    /// Peak of SQLite's memory above its level before the mail.
    pub sqlite_peak: usize,
}

/// The memory budget of a mail of `size` bytes.
pub fn memory_limit(size: usize) -> usize {
    MEMORY_FACTOR.saturating_mul(size).saturating_add(MEMORY_FLOOR)
}

/// A seeded database and the gateway over it.
pub struct Harness {
    gateway: Gateway,
    _dir: tempfile::TempDir,
}

/// The installation the seeds and the fuzzers' inputs (the fixtures' mails) are written
/// for: the scenario fixtures' addresses, with sender authentication and surveys on so
/// that their code runs too.
const CONFIG: &str = r#"
system_addresses = ["support@example.com", "help@example.com"]
staff = ["@support.example.com"]
admins = ["admin@example.com"]
authserv_id = "mx.example.com"
[case]
token_prefix = "CASE"
[accounts]
"customer.example" = "Customer Inc"
"acme.example" = "ACME"
[survey]
secret = "fuzzing-secret-not-used-anywhere-else"
"#;

/// Cases for inputs to land on: CASE-1 New, CASE-2 Resolved (with a watcher), CASE-3
/// Closed, each with Message-IDs that the fixtures' replies and simple mutations can name.
const SEEDS: &[&str] = &[
    "From: Alice Example <alice@customer.example>\r\nTo: support@example.com\r\nCc: carol@customer.example\r\n\
     Subject: VPN drops every hour\r\nMessage-ID: <seed-1@customer.example>\r\n\
     Date: Mon, 2 Nov 2026 09:00:00 +0000\r\n\r\nThe VPN drops every 60 minutes.\r\n",
    "From: Bob <bob@acme.example>\r\nTo: support@example.com\r\nCc: dave@acme.example\r\n\
     Subject: Printer offline\r\nMessage-ID: <seed-2@acme.example>\r\n\
     Date: Mon, 2 Nov 2026 09:05:00 +0000\r\n\r\nThe printer on floor 2 is offline.\r\n",
    "From: Ann Analyst <ann@support.example.com>\r\nTo: support@example.com\r\n\
     Subject: Re: [CASE-2] Printer offline\r\nMessage-ID: <seed-3@support.example.com>\r\n\
     In-Reply-To: <seed-2@acme.example>\r\n\
     Authentication-Results: mx.example.com; dkim=pass header.d=support.example.com; dmarc=pass header.from=support.example.com\r\n\
     Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n#resolve\r\nPower-cycle it and update the driver.\r\n",
    "From: carol@customer.example\r\nTo: help@example.com\r\nSubject: Password reset\r\n\
     Message-ID: <seed-4@customer.example>\r\nDate: Mon, 2 Nov 2026 11:00:00 +0000\r\n\r\nPlease reset my password.\r\n",
    "From: carol@customer.example\r\nTo: help@example.com\r\nSubject: Re: [CASE-3] Password reset\r\n\
     Message-ID: <seed-5@customer.example>\r\nIn-Reply-To: <seed-4@customer.example>\r\n\
     Date: Mon, 2 Nov 2026 11:30:00 +0000\r\n\r\n#close\r\nDone, thanks.\r\n",
];

impl Harness {
    /// A gateway on a new temporary data directory, with the seed cases committed.
    pub fn new() -> anyhow::Result<Harness> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("casegate.toml");
        let toml = format!("data_dir = {:?}\n{CONFIG}", dir.path().join("var"));
        let config = Config::from_toml(&toml, &config_path)?;
        let mut gateway = Gateway::open(Arc::new(config))?;
        for (i, seed) in SEEDS.iter().enumerate() {
            let report = gateway.ingest(seed.as_bytes(), &Origin::file(&format!("seed-{}.eml", i + 1)))?;
            anyhow::ensure!(
                matches!(report.outcome.as_str(), "created" | "command"),
                "seed mail {} was not applied: {report:?}",
                i + 1
            );
        }
        Ok(Harness { gateway, _dir: dir })
    }

    /// Runs one mail through the whole path and rolls its effects back. `Err` is a
    /// failure of casegate (a database error, or one the mail caused); a panic unwinds.
    pub fn run(&mut self, raw: &[u8]) -> anyhow::Result<IngestReport> {
        let prepared = Prepared::new(&self.gateway.config, raw.to_vec());
        let origin = Origin::file("fuzz.eml");
        let config = Arc::clone(&self.gateway.config);
        let mut report = None;
        // The unit is never committed: the next mail finds the seeded state.
        self.gateway.store.write(false, |unit| {
            let step = Step { config: &config, prepared: &prepared, passage: Passage::New(&origin), known: None };
            report = Some(step.run(&unit.scope())?);
            Ok(None::<()>)
        })?;
        report.context("the mail's unit of work ended without a report")
    }

    /// Runs one mail and checks it against the budget, with `time_limit` in place of
    /// [`TIME_BUDGET`] (an unoptimised build needs more). Panics are caught and reported,
    /// including those a guard inside casegate caught and turned into an outcome.
    ///
    /// A mail over its time or memory budget is run twice more and reported only if it is
    /// over every time: the first mail to take a code path pays once per process for what
    /// the path sets up (patterns compiled on first use, their match caches), and a busy
    /// machine can stall any run.
    pub fn check(&mut self, raw: &[u8], time_limit: Duration) -> Result<Cost, Finding> {
        let mut result = self.measure(raw, time_limit);
        for _ in 0..2 {
            match result {
                Err(Finding::TooSlow { .. } | Finding::TooMuchMemory { .. }) => result = self.measure(raw, time_limit),
                _ => break,
            }
        }
        result
    }

    fn measure(&mut self, raw: &[u8], time_limit: Duration) -> Result<Cost, Finding> {
        install_panic_recorder();
        PANICS.with(|p| *p.borrow_mut() = Some(Vec::new()));
        // SAFETY: reading and resetting SQLite's memory statistics has no preconditions.
        let sqlite_before = unsafe { rusqlite::ffi::sqlite3_memory_highwater(1) };
        let heap_before = reset_peak();
        let started = Instant::now();
        let cpu_before = thread_cpu_time();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(raw)));
        let took = match (cpu_before, thread_cpu_time()) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => started.elapsed(),
        };
        let heap_peak = PEAK.load(Ordering::Relaxed).saturating_sub(heap_before);
        // SAFETY: as above.
        let sqlite_peak = unsafe { rusqlite::ffi::sqlite3_memory_highwater(0) };
        let sqlite_growth = usize::try_from(sqlite_peak.saturating_sub(sqlite_before)).unwrap_or(0);
        let panics = PANICS.with(|p| p.borrow_mut().take()).unwrap_or_default();
        if let Some(first) = panics.into_iter().next() {
            return Err(Finding::Panic(first));
        }
        match result {
            Err(_) => return Err(Finding::Panic("a panic without a message".into())),
            Ok(Err(e)) if !is_systemic(&e) => return Err(Finding::Error(format!("{e:#}"))),
            Ok(Err(e)) => return Err(Finding::Error(format!("database or disk error: {e:#}"))),
            Ok(Ok(_)) => {}
        }
        let heap_peak = COUNTING.load(Ordering::Relaxed).then_some(heap_peak);
        // The sum is an upper bound of the peak: the two peaks need not coincide.
        let limit = memory_limit(raw.len());
        if heap_peak.unwrap_or(0) + sqlite_growth > limit {
            return Err(Finding::TooMuchMemory { heap: heap_peak.unwrap_or(0), sqlite: sqlite_growth, limit });
        }
        if took > time_limit {
            return Err(Finding::TooSlow { took, limit: time_limit });
        }
        Ok(Cost { took, heap_peak, sqlite_peak: sqlite_growth })
    }
}

/// CPU time of the calling thread so far, from `/proc/thread-self/stat` (utime and stime,
/// in the kernel's fixed 100 ticks a second); `None` where there is no such file.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Panics of dependencies' debug assertions that mark states their release builds recover
/// from, by message. mail-parser 0.11 asserts on a multipart it cannot find again while
/// unwinding a corrupt nesting of attached messages, then goes on parsing what it can.
const TOLERATED_PANICS: &[&str] = &["Invalid part ID, could not find multipart."];

thread_local! {
    /// Panics seen on this thread while it runs [`Harness::check`] (`None` otherwise).
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Records every panic on a thread running [`Harness::check`] (a guard inside casegate may
/// catch it and quarantine the mail, which is safe but still a bug to find), and leaves
/// every other thread's panics to the hook that was there before.
fn install_panic_recorder() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            if TOLERATED_PANICS.contains(&message.as_str()) {
                return;
            }
            let recorded = PANICS
                .try_with(|p| match p.try_borrow_mut().as_deref_mut() {
                    Ok(Some(seen)) => {
                        seen.push(format!("{message}{at}"));
                        true
                    }
                    Ok(None) | Err(_) => false,
                })
                .unwrap_or(false);
            if !recorded {
                previous(info);
            }
        }));
    });
}

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Sets the peak to the current level and returns that level.
fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The system allocator, counting the bytes in use and their peak, so that a fuzz binary
/// can check each mail's memory: `#[global_allocator] static A: CountingAllocator =
/// CountingAllocator;`. It counts every thread; the budget is only meaningful while one
/// mail is processed at a time.
pub struct CountingAllocator;

impl CountingAllocator {
    fn grew(by: usize) {
        let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are
// updated beside it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        COUNTING.store(true, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        COUNTING.store(true, Ordering::Relaxed);
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_lands_on_its_case_and_leaves_the_seeded_state_as_it_was() {
        let mut harness = Harness::new().unwrap();
        let reply = b"From: alice@customer.example\r\nTo: support@example.com\r\n\
            Subject: Re: [CASE-1] VPN drops every hour\r\nMessage-ID: <r1@customer.example>\r\n\r\nStill broken.\r\n";
        for _ in 0..2 {
            // The same mail twice: the first run was rolled back, so it is no duplicate.
            let report = harness.run(reply).unwrap();
            assert_eq!(report.outcome.as_str(), "replied", "{report:?}");
            assert_eq!(report.case, Some(1));
        }
        let count: i64 =
            harness.gateway.store.db().query_one("SELECT count(*) FROM mails", crate::vals![], |r| r.get(0)).unwrap();
        assert_eq!(count, SEEDS.len() as i64, "only the seeds are journalled");
    }

    #[test]
    fn a_mail_within_budget_passes_the_check() {
        let mut harness = Harness::new().unwrap();
        let mail = b"From: x@other.example\r\nTo: support@example.com\r\nSubject: hello\r\n\r\nhi\r\n";
        let cost = harness.check(mail, Duration::from_secs(60)).unwrap();
        assert!(cost.took < Duration::from_secs(60));
    }

    #[test]
    fn a_panic_caught_inside_casegate_is_still_reported() {
        let mut harness = Harness::new().unwrap();
        // In test builds this subject makes the apply step panic (see `super::tests`); the
        // harness runs that step unguarded, and the recorder sees the panic either way.
        let mail =
            b"From: x@other.example\r\nTo: support@example.com\r\nSubject: make casegate panic (test)\r\n\r\nhi\r\n";
        match harness.check(mail, Duration::from_secs(60)) {
            Err(Finding::Panic(what)) => assert!(what.contains("asked to by the test"), "{what}"),
            other => panic!("expected a panic finding, got {other:?}"),
        }
        // A caught panic leaves the harness usable.
        let ok = b"From: x@other.example\r\nTo: support@example.com\r\nSubject: hello\r\n\r\nhi\r\n";
        assert!(harness.check(ok, Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn an_error_of_the_mail_is_reported() {
        let mut harness = Harness::new().unwrap();
        let mail =
            b"From: x@other.example\r\nTo: support@example.com\r\nSubject: make casegate fail (test)\r\n\r\nhi\r\n";
        match harness.check(mail, Duration::from_secs(60)) {
            Err(Finding::Error(what)) => assert!(what.contains("failing as the test asked"), "{what}"),
            other => panic!("expected an error finding, got {other:?}"),
        }
    }

    #[test]
    fn thread_cpu_time_counts_work_and_not_sleep() {
        let Some(before) = thread_cpu_time() else { return };
        std::thread::sleep(Duration::from_millis(300));
        let slept = thread_cpu_time().unwrap().saturating_sub(before);
        assert!(slept < Duration::from_millis(100), "{slept:?}");
        // Busy until 100 ms of CPU time are counted (however busy the machine is).
        let started = Instant::now();
        let mut x = 0u64;
        while thread_cpu_time().unwrap().saturating_sub(before) < Duration::from_millis(100) {
            assert!(started.elapsed() < Duration::from_secs(30), "CPU time does not grow with work");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }

    #[test]
    fn the_memory_budget_grows_with_the_size() {
        assert_eq!(memory_limit(0), MEMORY_FLOOR);
        assert_eq!(memory_limit(1000), 20_000 + MEMORY_FLOOR);
        assert_eq!(memory_limit(usize::MAX), usize::MAX);
    }
}
