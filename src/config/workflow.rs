//! `[workflow]`: cases that close themselves. A Resolved case whose requester neither
//! accepts nor rejects the solution is reminded once, then closed
//! (`crate::lifecycle::auto_close`). Off unless `auto_close_after_days` is set.

use std::time::Duration;

use serde::Deserialize;

use super::{Check, ConfigError};

/// Days are multiplied out saturating: an absurd number means "for ever", not a panic.
const DAY_SECS: u64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowConfig {
    pub auto_close: Option<AutoClose>,
}

/// When a Resolved case closes itself, counted from the moment it started waiting for the
/// customer (the solution, or a later staff answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoClose {
    /// The case closes this long after it started waiting ...
    pub after: Duration,
    /// ... and its requester and contact are reminded this long after it started waiting.
    pub remind_after: Duration,
}

impl AutoClose {
    /// How much notice the reminder gives at least: a reminder sent late (the daemon was
    /// down, the keys were just set) moves the closing date, so nobody is closed on
    /// without this much warning.
    pub fn notice(&self) -> Duration {
        self.after.saturating_sub(self.remind_after)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawWorkflow {
    auto_close_after_days: Option<u64>,
    remind_after_days: Option<u64>,
}

pub(super) fn workflow(check: &Check, w: RawWorkflow) -> Result<WorkflowConfig, ConfigError> {
    let Some(days) = w.auto_close_after_days else {
        if w.remind_after_days.is_some() {
            return Err(check.invalid(
                "workflow.remind_after_days",
                "reminds before a case closes itself; set workflow.auto_close_after_days too",
            ));
        }
        return Ok(WorkflowConfig::default());
    };
    if days == 0 {
        return Err(check.invalid("workflow.auto_close_after_days", "must be at least 1 day"));
    }
    let after = Duration::from_secs(days.saturating_mul(DAY_SECS));
    let remind_after = match w.remind_after_days {
        None => after / 2,
        Some(r) if r == 0 || r >= days => {
            return Err(check.invalid(
                "workflow.remind_after_days",
                format!("{r} must be at least 1 and less than workflow.auto_close_after_days ({days}); leave it out to remind half-way"),
            ))
        }
        Some(r) => Duration::from_secs(r.saturating_mul(DAY_SECS)),
    };
    Ok(WorkflowConfig { auto_close: Some(AutoClose { after, remind_after }) })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(&format!("system_addresses = [\"support@example.com\"]\n{extra}"), Path::new("/etc/c.toml"))
    }

    #[test]
    fn auto_close_reminds_half_way_unless_told_and_checks_the_order() {
        assert!(load("").unwrap().workflow.auto_close.is_none());
        let a = load("[workflow]\nauto_close_after_days = 14").unwrap().workflow.auto_close.unwrap();
        assert_eq!((a.after.as_secs(), a.remind_after.as_secs()), (14 * 86_400, 7 * 86_400));
        let a =
            load("[workflow]\nauto_close_after_days = 10\nremind_after_days = 8").unwrap().workflow.auto_close.unwrap();
        assert_eq!((a.remind_after.as_secs(), a.notice().as_secs()), (8 * 86_400, 2 * 86_400));
        for (text, key) in [
            ("[workflow]\nauto_close_after_days = 0", "workflow.auto_close_after_days"),
            ("[workflow]\nauto_close_after_days = 5\nremind_after_days = 5", "workflow.remind_after_days"),
            ("[workflow]\nauto_close_after_days = 5\nremind_after_days = 0", "workflow.remind_after_days"),
            ("[workflow]\nremind_after_days = 2", "workflow.remind_after_days"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("/etc/c.toml"), "{text}: {err}");
        }
    }
}
