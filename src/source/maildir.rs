//! The Maildir source: a local folder in the Maildir format (`new/`, `cur/`, `tmp/`), the
//! quick-start's inbox and an option for servers that deliver locally.
//!
//! Only `new/` is read: that is where a delivery agent puts mail nobody has seen. After
//! the batch's commit each mail is renamed into `cur/` with the info `:2,S` (seen), or
//! `:2,FS` (flagged, seen) when it was quarantined, so a person browsing the folder with
//! a mail client sees which ones need attention. Files in `cur/` are never read: they are
//! processed, or belong to someone else. A crash between the commit and the rename leaves
//! the file in `new/`; it is read again, recognised by its position (source = the
//! Maildir's name, key = the file's unique name), and only renamed.
//!
//! `seed_from` (for the demo): when the Maildir does not exist yet, it is created and the
//! messages of the seed folder are copied into its `new/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use super::{Settled, SourceMail, WriterHandle};
use crate::backoff::Backoff;
use crate::config::MaildirConfig;
use crate::ingest::Origin;

/// Mails per transaction.
const BATCH: usize = 100;

#[derive(Clone)]
pub struct MaildirWatcher {
    pub maildir: Arc<MaildirConfig>,
    pub writer: WriterHandle,
    pub shutdown: CancellationToken,
    /// Process what is waiting, then return.
    pub once: bool,
}

impl MaildirWatcher {
    pub async fn run(self) -> anyhow::Result<()> {
        let md = Arc::clone(&self.maildir);
        tokio::task::spawn_blocking(move || prepare(&md)).await??;
        let mut backoff = Backoff::after_errors();
        tracing::info!(maildir = %self.maildir.name, path = %self.maildir.path.display(), "Watching Maildir");
        loop {
            match self.drain().await {
                Ok(()) => backoff.reset(),
                Err(e) if self.once => return Err(e.context(format!("maildir {}", self.maildir.name))),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(maildir = %self.maildir.name, error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "Maildir scan failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = self.shutdown.cancelled() => return Ok(()),
                    }
                }
            }
            if self.once || self.shutdown.is_cancelled() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.maildir.poll_interval) => {}
                _ = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Processes everything in `new/`, in name order (which is delivery order for the
    /// usual `time.unique.host` names), batch by batch.
    async fn drain(&self) -> anyhow::Result<()> {
        let md = &self.maildir;
        loop {
            let dir = md.path.join("new");
            let names = tokio::task::spawn_blocking(move || list_new(&dir)).await??;
            if names.is_empty() {
                return Ok(());
            }
            for chunk in names.chunks(BATCH) {
                if self.shutdown.is_cancelled() {
                    return Ok(());
                }
                let mut mails = Vec::with_capacity(chunk.len());
                let mut files = Vec::with_capacity(chunk.len());
                for name in chunk {
                    let path = md.path.join("new").join(name);
                    match tokio::fs::read(&path).await {
                        Ok(raw) => {
                            // Delivery writes the file and moves it into new/ untouched since.
                            let arrived = tokio::fs::metadata(&path).await.and_then(|m| m.modified()).ok();
                            mails.push(SourceMail {
                                raw,
                                origin: Origin {
                                    description: format!("maildir:{} {name}", md.name),
                                    source: Some(md.name.clone()),
                                    source_key: Some(unique_name(name).to_string()),
                                    account: md.account.clone(),
                                },
                                arrived,
                            });
                            files.push(name.clone());
                        }
                        // Taken by someone else since the listing.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
                    }
                }
                if mails.is_empty() {
                    continue;
                }
                let processed = self.writer.ingest(mails).await?;
                // Each mail's outcome was logged at its commit (`Mail processed`, origin
                // `maildir:<name> <file>`); this says where the files went.
                let mut quarantined = 0;
                for (name, p) in files.iter().zip(&processed) {
                    let flags = match p.settled {
                        Settled::Processed => "S",
                        Settled::Quarantined => {
                            quarantined += 1;
                            "FS"
                        }
                    };
                    let from = md.path.join("new").join(name);
                    let to = md.path.join("cur").join(format!("{}:2,{flags}", unique_name(name)));
                    tokio::fs::rename(&from, &to)
                        .await
                        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
                }
                tracing::info!(
                    maildir = %md.name,
                    mails = processed.len(),
                    quarantined,
                    on_disk = "moved to cur/ (quarantined ones flagged F)",
                    "Mails marked"
                );
            }
        }
    }
}

/// The unique part of a Maildir file name (before the `:2,` info).
fn unique_name(file: &str) -> &str {
    file.split_once(':').map_or(file, |(u, _)| u)
}

/// The file names in `new/`, sorted; dot files (editor and delivery leftovers) skipped.
pub(crate) fn list_new(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Creates the Maildir if it is missing (seeding it when configured) and checks its shape.
pub fn prepare(md: &MaildirConfig) -> anyhow::Result<()> {
    let path = &md.path;
    if !path.exists() {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(path.join(sub))
                .with_context(|| format!("cannot create Maildir {}", path.display()))?;
        }
        match &md.seed_from {
            Some(seed) => {
                let n = seed_maildir(seed, path)?;
                tracing::info!(maildir = %md.name, from = %seed.display(), mails = n, "Maildir created and seeded");
            }
            None => tracing::info!(maildir = %md.name, path = %path.display(), "Maildir created"),
        }
    }
    if let Some(sub) = missing_maildir_folder(path) {
        bail!("{} is not a Maildir: it has no {sub}/ folder", path.display());
    }
    Ok(())
}

/// The first of `tmp/`, `new/`, `cur/` that `path` lacks, if any.
pub(crate) fn missing_maildir_folder(path: &Path) -> Option<&'static str> {
    ["tmp", "new", "cur"].into_iter().find(|sub| !path.join(sub).is_dir())
}

/// Copies every message of `seed` (its `new/` and `cur/`, or the folder itself when it
/// is not a Maildir) into `target/new/`, through `tmp/` as Maildir delivery requires.
fn seed_maildir(seed: &Path, target: &Path) -> anyhow::Result<usize> {
    let dirs: Vec<PathBuf> =
        if seed.join("new").is_dir() { vec![seed.join("new"), seed.join("cur")] } else { vec![seed.to_path_buf()] };
    let mut n = 0;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        for name in list_new(dir)? {
            let unique = unique_name(&name);
            let tmp = target.join("tmp").join(unique);
            std::fs::copy(dir.join(&name), &tmp)
                .with_context(|| format!("cannot copy {} into {}", dir.join(&name).display(), target.display()))?;
            std::fs::rename(&tmp, target.join("new").join(unique))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unique_names_drop_the_info_part() {
        assert_eq!(unique_name("1732525200.M1P1.host:2,S"), "1732525200.M1P1.host");
        assert_eq!(unique_name("1732525200.M1P1.host"), "1732525200.M1P1.host");
    }

    #[test]
    fn a_missing_maildir_is_created_and_seeded_once() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seed");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(seed.join(sub)).unwrap();
        }
        std::fs::write(seed.join("new/1.a.host"), "Subject: a\r\n\r\nx\r\n").unwrap();
        std::fs::write(seed.join("cur/2.b.host:2,S"), "Subject: b\r\n\r\nx\r\n").unwrap();
        std::fs::write(seed.join("new/.hidden"), "x").unwrap();
        let md = MaildirConfig {
            name: "t".into(),
            path: dir.path().join("box"),
            seed_from: Some(seed),
            account: None,
            poll_interval: Duration::from_millis(100),
        };

        prepare(&md).unwrap();
        std::fs::remove_file(md.path.join("new/1.a.host")).unwrap();
        prepare(&md).unwrap();

        assert_eq!(list_new(&md.path.join("new")).unwrap(), ["2.b.host"], "seeded once, never again");
    }

    #[test]
    fn a_folder_without_new_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let md = MaildirConfig {
            name: "t".into(),
            path: dir.path().to_path_buf(),
            seed_from: None,
            account: None,
            poll_interval: Duration::from_millis(100),
        };
        let err = prepare(&md).unwrap_err().to_string();
        assert!(err.contains("not a Maildir"), "{err}");
    }
}
