//! Compaction of the raw-mail packs: packs that hold many records no row names any more
//! (removed by retention, a purge or an erasure, or written by a unit that rolled back)
//! are rewritten with only their live records, and packs with none are deleted.
//!
//! Crash-safe at every step, because a record is always readable where its row says:
//!
//! 1. the live records are copied into a temporary file (not a pack name, so nothing
//!    reads it), which is synced and then renamed to a new pack name (directory synced);
//! 2. one transaction (synchronous = FULL, so it survives a power cut) points the rows at
//!    the new pack — a row changed meanwhile (its mail removed) is left alone, and its
//!    copy in the new pack is overwritten with zeros;
//! 3. only then are the old packs' other bytes overwritten and the old packs deleted.
//!
//! A kill before 2 leaves a temporary file or an unreferenced pack, which the next run
//! deletes; a kill after 2 leaves old packs no row names, which the next run deletes.
//! Readers that looked up a row just before step 2 and open the old pack after step 3
//! read the row again (`mails::raw`).
//!
//! Online: a pack a writer is appending to is locked by it (`packs::lock_if_idle`) and
//! left alone; two compactions never run at once (a lock file in the packs' directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::db::Db;
use super::lifecycle::bytes::{scrub_file, zero_ranges};
use super::{packs, Store};
use crate::vals;

/// Which packs are rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Those where at least an eighth is dead (or all of it): space is won, and little is
    /// copied for it.
    Worthwhile,
    /// Also overwrite, in place, the dead bytes of every other pack no writer holds: after
    /// an erasure, no copy of a removed record stays anywhere (not even one a rolled-back
    /// unit wrote).
    Thorough,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compacted {
    /// Packs looked at.
    pub packs: u64,
    /// Packs a writer holds (left alone).
    pub in_use: u64,
    /// Packs rewritten with their live records only.
    pub rewritten: u64,
    /// Packs without a live record, deleted.
    pub removed: u64,
    pub records_moved: u64,
    /// Live records that did not match their hash (copied as they were, and reported).
    pub damaged: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// `bytes_before - bytes_after`.
    pub bytes_won: u64,
    /// Dead bytes overwritten with zeros (in packs deleted after, or kept in thorough mode).
    pub bytes_overwritten: u64,
    /// Another compaction was running: nothing was done.
    pub busy: bool,
}

/// A dead part of a pack is worth a rewrite from this share of the pack on (1/8).
const WORTH_SHIFT: u32 = 3;

/// The lock file that keeps two compactions apart.
const LOCK: &str = ".compact.lock";
/// Temporary files of compaction (before they become packs).
const TMP_PREFIX: &str = ".compact-";

/// A point between two steps where a test stops a compaction as a kill would (nothing
/// after it runs; what the process wrote so far stays). Nothing stops outside tests.
fn step(name: &'static str) -> anyhow::Result<()> {
    #[cfg(test)]
    if tests::stops_at(name) {
        anyhow::bail!("stopped before {name} (test)");
    }
    let _ = name;
    Ok(())
}

/// One live record: its hash, where it is and how long.
#[derive(Debug, Clone)]
struct Record {
    sha256: String,
    offset: u64,
    length: u64,
}

/// A pack no writer holds, with its live records (locked while this runs).
struct Idle {
    name: String,
    size: u64,
    records: Vec<Record>,
    _lock: File,
}

impl Idle {
    fn live_bytes(&self) -> u64 {
        self.records.iter().map(|r| r.length).sum()
    }

    /// The byte ranges no live record covers.
    fn dead_ranges(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = 0;
        for r in &self.records {
            if r.offset > at {
                out.push((at, r.offset - at));
            }
            at = at.max(r.offset + r.length);
        }
        if self.size > at {
            out.push((at, self.size - at));
        }
        out
    }
}

/// Compacts the packs of `store`; `progress(done, total)` is told how many packs were
/// looked at.
pub fn compact(store: &mut Store, mode: Mode, progress: &mut dyn FnMut(u64, u64)) -> anyhow::Result<Compacted> {
    // On PostgreSQL raw mails are rows: there are no packs to compact.
    let Some(packs) = store.packs() else { return Ok(Compacted::default()) };
    let dir = packs.borrow().dir().to_path_buf();
    let lock = File::create(dir.join(LOCK)).with_context(|| format!("cannot create {}", dir.join(LOCK).display()))?;
    let mut done = Compacted::default();
    if let Err(e) = lock.try_lock() {
        return match e {
            fs::TryLockError::WouldBlock => Ok(Compacted { busy: true, ..done }),
            fs::TryLockError::Error(e) => Err(e).context("cannot lock the raw mail packs for compaction"),
        };
    }
    clean_leftovers(&dir)?;
    let names = pack_names(&dir)?;
    let total = names.len() as u64;
    let mut candidates = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        progress(i as u64, total);
        done.packs += 1;
        let path = dir.join(&name);
        let size = fs::metadata(&path).map_or(0, |m| m.len());
        done.bytes_before += size;
        let Some(lock) = packs::lock_if_idle(&path)? else {
            done.in_use += 1;
            done.bytes_after += size;
            continue;
        };
        let records = live_records(store.db(), &name)?;
        let idle = Idle { name, size, records, _lock: lock };
        let live = idle.live_bytes();
        if idle.records.is_empty() {
            done.bytes_overwritten += idle.size;
            scrub_file(&path).with_context(|| format!("cannot delete the empty pack {}", path.display()))?;
            done.removed += 1;
        } else if size - live.min(size) >= size >> WORTH_SHIFT && size > 0 {
            candidates.push(idle);
        } else {
            if mode == Mode::Thorough {
                done.bytes_overwritten += zero_ranges(&path, &idle.dead_ranges())?;
            }
            done.bytes_after += size;
        }
    }
    for batch in batches(candidates) {
        rewrite(store, &dir, batch, &mut done)?;
    }
    progress(total, total);
    done.bytes_won = done.bytes_before.saturating_sub(done.bytes_after);
    Ok(done)
}

/// Deletes what a compaction that was killed left: its temporary files, and new packs a
/// writer never got to name (their writer died between creating and renaming them).
fn clean_leftovers(dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with(TMP_PREFIX) || (name.starts_with('.') && name.ends_with(".pack.new"));
        if stale && packs::lock_if_idle(&entry.path())?.is_some() {
            scrub_file(&entry.path()).with_context(|| format!("cannot delete {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The packs in the directory, oldest first (names begin with the time).
fn pack_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| packs::is_pack_name(n))
        .collect();
    names.sort();
    Ok(names)
}

fn live_records(db: Db<'_>, pack: &str) -> anyhow::Result<Vec<Record>> {
    Ok(db.query_map(
        "SELECT sha256, pack_offset, pack_length FROM raw_mails WHERE pack = ?1 ORDER BY pack_offset",
        vals![pack],
        |r| {
            Ok(Record {
                sha256: r.get(0)?,
                offset: r.get::<i64>(1)?.max(0) as u64,
                length: r.get::<i64>(2)?.max(0) as u64,
            })
        },
    )?)
}

/// Groups packs so that each new pack holds at most about [`packs::PACK_LIMIT`] bytes.
fn batches(candidates: Vec<Idle>) -> Vec<Vec<Idle>> {
    let mut out: Vec<Vec<Idle>> = Vec::new();
    let mut size = 0;
    for idle in candidates {
        let live = idle.live_bytes();
        match out.last_mut() {
            Some(batch) if size + live <= packs::PACK_LIMIT => batch.push(idle),
            _ => {
                size = 0;
                out.push(vec![idle]);
            }
        }
        size += live;
    }
    out
}

/// Where a record goes: its row, the old place, the new offset.
struct Move {
    sha256: String,
    from_pack: String,
    from_offset: u64,
    to_offset: u64,
    length: u64,
}

/// Rewrites a batch of packs into one new pack (steps 1–3 of the module documentation).
fn rewrite(store: &mut Store, dir: &Path, batch: Vec<Idle>, done: &mut Compacted) -> anyhow::Result<()> {
    let name = packs::new_name();
    let tmp = dir.join(format!("{TMP_PREFIX}{:08x}.tmp", rand::random::<u32>()));
    let moves = copy_live(dir, &batch, &tmp, done).with_context(|| format!("cannot write {}", tmp.display()))?;
    let path = dir.join(&name);
    step("rename")?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;

    step("switch")?;
    let stale = switch(store, &name, &moves)?;
    if !stale.is_empty() {
        // Removed while they were copied: their copies here are overwritten at once.
        done.bytes_overwritten += zero_ranges(&path, &stale)?;
    }
    done.records_moved += (moves.len() - stale.len()) as u64;
    done.bytes_after += fs::metadata(&path).map_or(0, |m| m.len());
    for idle in batch {
        let old = dir.join(&idle.name);
        step("zero old")?;
        done.bytes_overwritten += zero_ranges(&old, &idle.dead_ranges())?;
        step("delete old")?;
        fs::remove_file(&old).with_context(|| format!("cannot delete the old pack {}", old.display()))?;
        done.rewritten += 1;
    }
    File::open(dir)?.sync_all()?;
    tracing::info!(pack = %name, records = moves.len(), "Raw mail packs compacted");
    Ok(())
}

/// Step 1: copies the live records of `batch` into `tmp`, in order, and syncs it.
fn copy_live(dir: &Path, batch: &[Idle], tmp: &Path, done: &mut Compacted) -> anyhow::Result<Vec<Move>> {
    let file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let mut moves = Vec::new();
    let mut at = 0;
    for idle in batch {
        let source = File::open(dir.join(&idle.name))?;
        for r in &idle.records {
            let mut record = vec![0; usize::try_from(r.length)?];
            source.read_exact_at(&mut record, r.offset)?;
            if !verifies(&record, &r.sha256) {
                tracing::warn!(pack = %idle.name, sha256 = %r.sha256, "A raw mail record does not match its hash; copied as it is");
                done.damaged += 1;
            }
            out.write_all(&record)?;
            if moves.len() == 1 {
                // Half-way through the copy: what was written so far is in the file.
                out.flush()?;
                step("copy")?;
            }
            moves.push(Move {
                sha256: r.sha256.clone(),
                from_pack: idle.name.clone(),
                from_offset: r.offset,
                to_offset: at,
                length: r.length,
            });
            at += r.length;
        }
    }
    out.flush()?;
    drop(out);
    file.sync_all()?;
    step("after copy")?;
    Ok(moves)
}

/// Whether a record is the raw mail its row says it is.
fn verifies(record: &[u8], sha256: &str) -> bool {
    lz4_flex::decompress_size_prepended(record).is_ok_and(|raw| crate::digest::sha256_hex(&raw) == sha256)
}

/// Step 2: points the rows at the new pack in one durable transaction. Returns the new
/// pack's ranges whose rows had changed meanwhile (their mails were removed).
fn switch(store: &mut Store, name: &str, moves: &[Move]) -> anyhow::Result<Vec<(u64, u64)>> {
    let setting = store.db().query_row("PRAGMA synchronous", vals![], |r| r.get::<i64>(0))?.unwrap_or(2);
    store.db().batch("PRAGMA synchronous = FULL")?;
    let switched = store.write(false, |unit| {
        let db = unit.scope().conn;
        let mut stale = Vec::new();
        for m in moves {
            let changed = db.execute(
                "UPDATE raw_mails SET pack = ?2, pack_offset = ?3 WHERE sha256 = ?1 AND pack = ?4 AND pack_offset = ?5",
                vals![&m.sha256, name, m.to_offset, &m.from_pack, m.from_offset],
            )?;
            if changed == 0 {
                stale.push((m.to_offset, m.length));
            }
        }
        step("commit")?;
        Ok(Some(stale))
    });
    // Back to the store's setting (a number: 1 NORMAL, 2 FULL).
    store.db().batch(&format!("PRAGMA synchronous = {setting}"))?;
    Ok(switched?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
