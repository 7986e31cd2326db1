//! `refresh_token_file`: the refresh token on disk, written by `casegate oauth authorize`
//! and by every rotation, read at every refresh.
//!
//! Written atomically (a temporary file in the same folder, synced, renamed over the old
//! one, the folder synced), readable by its owner only (0600): a crash or a full disk
//! leaves the old token or the new one, never half of one. Refreshes of one file are
//! serialised with a lock on a file beside it (`<file>.lock`), across processes too: a
//! rotated refresh token is single-use at most providers, so two refreshes with the same
//! one would leave one of them with a dead token.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting refresh looks again whether the lock is free.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Reads the refresh token (the first line, trimmed). The error says what to do.
pub fn read(path: &Path, authorize_command: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read the refresh token file {}: {e}; run `{authorize_command}` to obtain one", path.display())
    })?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!(
            "the refresh token file {} is empty; run `{authorize_command}` to obtain a refresh token",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// Replaces the file's content with `token`, atomically, mode 0600.
pub fn write(path: &Path, token: &str) -> std::io::Result<()> {
    let dir = folder(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "token".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        // A leftover of a crashed write would make create_new fail.
        let _ = std::fs::remove_file(&tmp);
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Whether casegate may write rotated tokens into the file's folder: checked at start,
/// since a rotation that cannot be saved loses the refresh token at the next restart.
pub fn check_writable(path: &Path) -> Result<(), String> {
    let dir = folder(path);
    tempfile::NamedTempFile::new_in(&dir).map(drop).map_err(|e| {
        format!(
            "casegate cannot write into {} ({e}): rotated refresh tokens are written back to {}",
            dir.display(),
            path.display()
        )
    })
}

/// Holds the lock on the file's refreshes while alive.
pub struct Lock(#[allow(dead_code)] File);

/// Takes the lock of `path`'s refreshes, waiting up to `wait` for another process (or
/// another account of this one) that refreshes with the same file.
pub async fn lock(path: &Path, wait: Duration) -> Result<Lock, String> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", lock_path.display()))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock(file)),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => tokio::time::sleep(LOCK_POLL).await,
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "another process has held {} for over {} s while refreshing the same token",
                    lock_path.display(),
                    wait.as_secs()
                ))
            }
            Err(TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
        }
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_written_token_replaces_the_old_one_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("support.token");
        std::fs::write(&path, "old-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, "new-token").unwrap();
        assert_eq!(read(&path, "casegate oauth authorize --smtp").unwrap(), "new-token");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["support.token"], "no temporary file is left behind");
    }

    #[test]
    fn a_missing_or_empty_file_says_which_command_fills_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.token");
        let err = read(&path, "casegate oauth authorize --mailbox support").unwrap_err();
        assert!(err.contains("none.token") && err.contains("casegate oauth authorize --mailbox support"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(read(&path, "x").unwrap_err().contains("is empty"));
        assert!(check_writable(&path).is_ok());
        assert!(check_writable(Path::new("/proc/casegate.token")).is_err());
    }

    #[tokio::test]
    async fn one_refresh_at_a_time_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.token");
        let first = lock(&path, Duration::from_secs(1)).await.unwrap();
        let err = lock(&path, Duration::from_millis(120)).await.err().expect("the file is locked");
        assert!(err.contains("t.token.lock"), "{err}");
        drop(first);
        assert!(lock(&path, Duration::from_millis(120)).await.is_ok());
    }
}
