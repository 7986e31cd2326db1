//! `[storage]`: where the data lives — SQLite under `data_dir` (the default), or one
//! PostgreSQL database shared by several nodes (`database_url`, `database_url_env` or
//! `database_url_file`) — whether writes are synced, and how the nodes sharing a database
//! name themselves and hold their mailboxes.

use std::time::Duration;

use serde::Deserialize;

use super::secret::RawSecret;
use super::{Check, ConfigError, Secret};

/// Default of `storage.lease_secs`.
pub const DEFAULT_LEASE_SECS: u64 = 30;

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The PostgreSQL URL (`postgres://…`), when the data lives there; read when the
    /// database is opened (it may hold a password).
    pub database_url: Option<Secret>,
    /// This node's name among those sharing the database (default: the host name). A
    /// node that restarts under its name takes back its mailboxes at once.
    pub node: String,
    /// How long a node's hold on a mailbox lasts unless renewed; another node takes the
    /// mailbox over once it ran out (a node renews every third of it).
    pub lease: Duration,
    /// How many database writers `run` uses on PostgreSQL, each with a session of its
    /// own (`writers`, default 4): a mailbox's batches always go to the same one, so its
    /// mail is written in order, while other mailboxes' mail is written beside it. SQLite
    /// has one writer at a time, and `run` one writer thread there.
    pub writers: usize,
}

/// The default of `storage.writers`.
pub const DEFAULT_WRITERS: usize = 4;

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            database_url: None,
            node: host_name(),
            lease: Duration::from_secs(DEFAULT_LEASE_SECS),
            writers: DEFAULT_WRITERS,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawStorage {
    pub fsync: bool,
    database_url: Option<String>,
    database_url_env: Option<String>,
    database_url_file: Option<String>,
    node: Option<String>,
    lease_secs: Option<u64>,
    writers: Option<usize>,
}

pub(super) fn storage(check: &Check, raw: RawStorage) -> Result<StorageConfig, ConfigError> {
    if let Some(url) = &raw.database_url {
        let lower = url.trim().to_ascii_lowercase();
        if !lower.starts_with("postgres://") && !lower.starts_with("postgresql://") {
            return Err(check.invalid(
                "storage.database_url",
                "must be a PostgreSQL URL (postgres://user:password@host/database); leave it out for SQLite \
                 under data_dir",
            ));
        }
    }
    let database_url = check.secret(
        "storage",
        "database_url",
        RawSecret { inline: raw.database_url, env: raw.database_url_env, file: raw.database_url_file },
    )?;
    let node = match raw.node.map(|n| n.trim().to_string()) {
        None => host_name(),
        Some(n) if n.is_empty() || n.len() > 200 || n.chars().any(char::is_control) => {
            return Err(check.invalid("storage.node", "must be a name of 1 to 200 printable characters"))
        }
        Some(n) => n,
    };
    let lease = match raw.lease_secs {
        None => Duration::from_secs(DEFAULT_LEASE_SECS),
        Some(s @ 3..=3600) => Duration::from_secs(s),
        Some(s) => {
            return Err(check.invalid(
                "storage.lease_secs",
                format!("{s} is outside 3..=3600 seconds (the default is {DEFAULT_LEASE_SECS})"),
            ))
        }
    };
    let writers = match raw.writers {
        None => DEFAULT_WRITERS,
        Some(n @ 1..=64) => n,
        Some(n) => {
            return Err(check.invalid(
                "storage.writers",
                format!(
                    "{n} is outside 1..=64 (the default is {DEFAULT_WRITERS}; each writer holds a PostgreSQL session)"
                ),
            ))
        }
    };
    Ok(StorageConfig { database_url, node, lease, writers })
}

/// The machine's name, as the default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "casegate".to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(&format!("system_addresses = [\"support@example.com\"]\n{extra}"), Path::new("/c.toml"))
    }

    #[test]
    fn sqlite_is_the_default_and_a_postgres_url_is_read_from_where_it_is_given() {
        let c = load("").unwrap();
        assert!(c.storage.database_url.is_none());
        assert!(!c.storage.node.is_empty());
        assert_eq!(c.storage.lease.as_secs(), super::DEFAULT_LEASE_SECS);
        let c = load("[storage]\ndatabase_url_env = \"CASEGATE_DATABASE_URL\"\nnode = \"node-a\"\nlease_secs = 10\n")
            .unwrap();
        assert!(
            matches!(&c.storage.database_url, Some(crate::config::Secret::Env { var, .. }) if var == "CASEGATE_DATABASE_URL")
        );
        assert_eq!((c.storage.node.as_str(), c.storage.lease.as_secs()), ("node-a", 10));
        assert_eq!(c.storage.writers, super::DEFAULT_WRITERS);
        assert_eq!(load("[storage]\nwriters = 2\n").unwrap().storage.writers, 2);
    }

    #[test]
    fn mistakes_name_the_key() {
        for (text, key) in [
            ("[storage]\ndatabase_url = \"mysql://x\"\n", "storage.database_url"),
            ("[storage]\ndatabase_url = \"postgres://x\"\ndatabase_url_env = \"X\"\n", "storage.database_url"),
            ("[storage]\nlease_secs = 1\n", "storage.lease_secs"),
            ("[storage]\nwriters = 0\n", "storage.writers"),
            ("[storage]\nnode = \"\"\n", "storage.node"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
