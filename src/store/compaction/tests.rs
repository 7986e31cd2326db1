//! Compaction stopped at every step, as a kill would stop it, then run again: every live
//! raw mail stays readable and matches its hash at every point, and the second run
//! finishes the work.

use std::cell::Cell;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::ingest::{Gateway, Origin};
use crate::store::mails;

thread_local! {
    /// The step to stop before, and how many times to pass it first.
    static STOP_AT: Cell<Option<(&'static str, u32)>> = const { Cell::new(None) };
}

/// Whether the compaction of this thread stops before step `name` (see [`step`]).
pub(super) fn stops_at(name: &'static str) -> bool {
    STOP_AT.with(|s| match s.get() {
        Some((at, 0)) if at == name => true,
        Some((at, n)) if at == name => {
            s.set(Some((at, n - 1)));
            false
        }
        _ => false,
    })
}

fn config(dir: &Path) -> Arc<Config> {
    let toml = format!("data_dir = {:?}\nsystem_addresses = [\"support@example.com\"]\n", dir.join("var"));
    Arc::new(Config::from_toml(&toml, &dir.join("casegate.toml")).expect("a valid config"))
}

/// A mail whose words are its own (`word` repeated with a number), so that the test can
/// find a removed one's bytes.
fn mail(pack: usize, i: usize) -> Vec<u8> {
    let words: String = (0..40).map(|k| format!("p{pack}m{i}w{k} ")).collect();
    format!(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Mail {pack}-{i}\r\n\
         Message-ID: <{pack}-{i}@test.example>\r\n\r\nmarker{pack}x{i} {words}\r\n"
    )
    .into_bytes()
}

/// Three packs of four mails each (one process each, as three ingest runs would write):
/// the first loses two mails, the second one (both worth rewriting, into one pack), the
/// third all four (deleted). Returns the removed mails' markers.
fn three_packs_with_dead_records(dir: &Path) -> Vec<String> {
    let config = config(dir);
    for pack in 0..3 {
        let mut gateway = Gateway::open(Arc::clone(&config)).unwrap();
        for i in 0..4 {
            let report = gateway.ingest(&mail(pack, i), &Origin::file(&format!("{pack}-{i}.eml"))).unwrap();
            assert!(report.mail_id.is_some(), "{report:?}");
        }
    }
    let dead = [(0, 1), (0, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)];
    let mut store = Store::open(&config).unwrap();
    store
        .write(false, |unit| {
            let db = unit.scope().conn;
            for (pack, i) in dead {
                let subject = format!("Mail {pack}-{i}");
                let id: i64 = db
                    .query_row("SELECT id FROM mails WHERE subject = ?1", vals![subject], |r| r.get(0))?
                    .expect("the mail is journalled");
                // The rows go; the records stay in their packs, as a unit that rolled
                // back after writing them would leave them.
                crate::store::lifecycle::remove_mails(db, &[id], unit.scope().stamp)?;
            }
            Ok(Some(()))
        })
        .unwrap();
    assert_eq!(pack_files(dir).len(), 3);
    dead.iter().map(|(p, i)| format!("marker{p}x{i}")).collect()
}

fn pack_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("var/raw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| packs::is_pack_name(n))
        .collect();
    names.sort();
    names
}

/// Every mail whose raw copy is kept reads back and matches its hash; how many.
fn verify_live(dir: &Path) -> usize {
    let store = Store::open(&config(dir)).unwrap();
    let shas: Vec<String> =
        store.db().query_map("SELECT raw_sha256 FROM mails WHERE removed_at IS NULL", vals![], |r| r.get(0)).unwrap();
    for sha in &shas {
        let raw = mails::raw(store.db(), &dir.join("var/raw"), sha).unwrap_or_else(|e| panic!("{sha}: {e:#}"));
        assert!(raw.is_some(), "{sha} has no raw copy");
    }
    shas.len()
}

fn compact_dir(dir: &Path, mode: Mode) -> anyhow::Result<Compacted> {
    let mut store = Store::open(&config(dir)).unwrap();
    compact(&mut store, mode, &mut |_, _| {})
}

/// Whether a file under `var/raw` still holds `needle`.
fn in_packs(dir: &Path, needle: &str) -> bool {
    fs::read_dir(dir.join("var/raw")).unwrap().any(|e| {
        let bytes = fs::read(e.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn a_compaction_stopped_at_any_step_loses_no_live_mail_and_the_next_run_finishes() {
    let template = tempfile::tempdir().unwrap();
    let dead = three_packs_with_dead_records(template.path());
    assert_eq!(verify_live(template.path()), 5);
    assert!(in_packs(template.path(), &dead[0]), "the test can fail: dead records are in the packs");
    let stops: &[(&str, u32)] = &[
        ("copy", 0),
        ("after copy", 0),
        ("rename", 0),
        ("switch", 0),
        ("commit", 0),
        ("zero old", 0),
        ("delete old", 0),
        ("zero old", 1),
        ("delete old", 1),
    ];
    for &(at, passes) in stops {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        STOP_AT.with(|s| s.set(Some((at, passes))));
        let stopped = compact_dir(dir.path(), Mode::Worthwhile);
        STOP_AT.with(|s| s.set(None));
        let err = format!("{:#}", stopped.expect_err(at));
        assert!(err.contains("stopped before"), "{at}: {err}");
        assert_eq!(verify_live(dir.path()), 5, "after a stop before {at} ({passes} passed)");

        let done = compact_dir(dir.path(), Mode::Worthwhile).unwrap();
        assert_eq!(verify_live(dir.path()), 5, "after the next run ({at})");
        assert_eq!(pack_files(dir.path()).len(), 1, "{at}: {done:?}");
        let leftovers: Vec<String> = fs::read_dir(dir.path().join("var/raw"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{at}: {leftovers:?}");
        for marker in &dead {
            assert!(!in_packs(dir.path(), marker), "{at}: {marker} is still in a pack");
        }
        // Nothing is left to do.
        let again = compact_dir(dir.path(), Mode::Worthwhile).unwrap();
        assert_eq!((again.rewritten, again.removed, again.bytes_won), (0, 0, 0), "{at}: {again:?}");
    }
}

#[test]
fn compaction_reports_the_space_won_and_leaves_a_pack_being_written_alone() {
    let dir = tempfile::tempdir().unwrap();
    three_packs_with_dead_records(dir.path());
    // A writer that keeps its pack open (a running daemon between batches).
    let mut writer = Gateway::open(config(dir.path())).unwrap();
    writer.ingest(&mail(9, 0), &Origin::file("9-0.eml")).unwrap();
    let before: u64 =
        fs::read_dir(dir.path().join("var/raw")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();

    let done = compact_dir(dir.path(), Mode::Worthwhile).unwrap();
    assert_eq!((done.packs, done.in_use, done.rewritten, done.removed), (4, 1, 2, 1), "{done:?}");
    assert_eq!(done.records_moved, 5);
    let after: u64 =
        fs::read_dir(dir.path().join("var/raw")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(done.bytes_won, before - after, "{done:?}");
    assert!(done.bytes_won > 0);

    // The writer goes on in its pack; everything reads back.
    writer.ingest(&mail(9, 1), &Origin::file("9-1.eml")).unwrap();
    drop(writer);
    assert_eq!(verify_live(dir.path()), 7);
    // Another compaction at the same time does nothing.
    let lock = File::create(dir.path().join("var/raw").join(LOCK)).unwrap();
    lock.lock().unwrap();
    assert!(compact_dir(dir.path(), Mode::Worthwhile).unwrap().busy);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}
