//! `[retention]`: how long casegate keeps what it stores, table by table of the data it
//! holds. Every key is off by default (kept for ever, as before the keys existed); the
//! daemon applies them once a day (`crate::lifecycle::retention`).

use std::time::Duration;

use serde::Deserialize;

use super::{Check, ConfigError};

/// Days are multiplied out saturating: an absurd number means "for ever", not a panic.
const DAY_SECS: u64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Cases closed (and not changed since) longer than this are purged whole.
    pub closed_cases: Option<Duration>,
    /// Raw copies of mails older than this are removed; their thread entries stay.
    pub raw_mails: Option<Duration>,
    /// Quarantined mails not released within this are removed.
    pub quarantine: Option<Duration>,
    /// Notifications no longer waiting to be sent lose their rendered copy after this
    /// (rows about no case go altogether).
    pub sent_outbox: Option<Duration>,
}

impl RetentionConfig {
    /// Whether any key is set (the daily job has something to do).
    pub fn any(&self) -> bool {
        self.closed_cases.is_some()
            || self.raw_mails.is_some()
            || self.quarantine.is_some()
            || self.sent_outbox.is_some()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRetention {
    closed_cases_days: Option<u64>,
    raw_mails_days: Option<u64>,
    quarantine_days: Option<u64>,
    sent_outbox_days: Option<u64>,
}

pub(super) fn retention(check: &Check, r: RawRetention) -> Result<RetentionConfig, ConfigError> {
    let days = |key: &str, value: Option<u64>| match value {
        Some(0) => Err(check.invalid(key, "must be at least 1 day; leave the key out to keep everything")),
        Some(d) => Ok(Some(Duration::from_secs(d.saturating_mul(DAY_SECS)))),
        None => Ok(None),
    };
    Ok(RetentionConfig {
        closed_cases: days("retention.closed_cases_days", r.closed_cases_days)?,
        raw_mails: days("retention.raw_mails_days", r.raw_mails_days)?,
        quarantine: days("retention.quarantine_days", r.quarantine_days)?,
        sent_outbox: days("retention.sent_outbox_days", r.sent_outbox_days)?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(&format!("system_addresses = [\"support@example.com\"]\n{extra}"), Path::new("/etc/c.toml"))
    }

    #[test]
    fn retention_is_off_by_default_and_counts_in_days() {
        let c = load("").unwrap();
        assert!(!c.retention.any());
        let c = load("[retention]\nclosed_cases_days = 730\nraw_mails_days = 90\nquarantine_days = 30").unwrap();
        assert_eq!(c.retention.closed_cases.unwrap().as_secs(), 730 * 86_400);
        assert_eq!(c.retention.raw_mails.unwrap().as_secs(), 90 * 86_400);
        assert_eq!(c.retention.quarantine.unwrap().as_secs(), 30 * 86_400);
        assert!(c.retention.sent_outbox.is_none() && c.retention.any());
        let err = load("[retention]\nsent_outbox_days = 0").unwrap_err().to_string();
        assert!(err.contains("retention.sent_outbox_days") && err.contains("/etc/c.toml"), "{err}");
    }
}
