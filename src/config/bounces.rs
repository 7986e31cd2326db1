//! `[bounces]`: what a bounce of casegate's own mail does to the address it was sent to,
//! and the return path bounces come back to.

use std::time::Duration;

use serde::Deserialize;

use super::{Check, ConfigError};
use crate::address::Address;

/// Days are multiplied out saturating: an absurd number means "for ever", not a panic.
const DAY_SECS: u64 = 86_400;

#[derive(Debug, Clone)]
pub struct BounceConfig {
    /// How long an address is not mailed after a hard bounce (or too many soft ones).
    pub suppress_for: Duration,
    /// This many soft bounces of one address within `soft_window` suppress it like a hard one.
    pub soft_bounces_to_suppress: u32,
    pub soft_window: Duration,
    /// The envelope sender notifications are sent with, as `local+<row>@domain` (VERP), so
    /// a bounce names the notification by the address it comes back to. `None`: the From
    /// address, and bounces are matched by the Message-ID they return.
    pub return_path: Option<Address>,
}

impl Default for BounceConfig {
    fn default() -> BounceConfig {
        BounceConfig {
            suppress_for: Duration::from_secs(30 * DAY_SECS),
            soft_bounces_to_suppress: 5,
            soft_window: Duration::from_secs(7 * DAY_SECS),
            return_path: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawBounces {
    suppress_days: Option<u64>,
    soft_bounces_to_suppress: Option<u32>,
    soft_bounce_window_days: Option<u64>,
    return_path: Option<String>,
}

pub(super) fn bounces(check: &Check, b: RawBounces) -> Result<BounceConfig, ConfigError> {
    let defaults = BounceConfig::default();
    let days = |key: &str, value: Option<u64>, default: Duration| match value {
        Some(0) => Err(check.invalid(key, "must be at least 1 day")),
        Some(d) => Ok(Duration::from_secs(d.saturating_mul(DAY_SECS))),
        None => Ok(default),
    };
    let suppress_for = days("bounces.suppress_days", b.suppress_days, defaults.suppress_for)?;
    let soft_window = days("bounces.soft_bounce_window_days", b.soft_bounce_window_days, defaults.soft_window)?;
    let soft_bounces_to_suppress = match b.soft_bounces_to_suppress {
        Some(0) => {
            return Err(check.invalid(
                "bounces.soft_bounces_to_suppress",
                "0 would suppress an address before it bounced; the default is 5",
            ))
        }
        Some(n) => n,
        None => defaults.soft_bounces_to_suppress,
    };
    let return_path = match b.return_path {
        None => None,
        Some(text) => {
            let address = Address::parse(&text).filter(|a| !a.local_part().contains('+')).ok_or_else(|| {
                check.invalid(
                    "bounces.return_path",
                    format!("{text:?} must be an address without '+', such as \"bounce@example.com\" (casegate sends as bounce+<id>@example.com)"),
                )
            })?;
            Some(address)
        }
    };
    Ok(BounceConfig { suppress_for, soft_bounces_to_suppress, soft_window, return_path })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(&format!("system_addresses = [\"support@example.com\"]\n{extra}"), Path::new("/etc/c.toml"))
    }

    #[test]
    fn bounces_have_defaults_and_bad_values_name_their_key() {
        let c = load("").unwrap();
        assert_eq!(c.bounces.suppress_for.as_secs(), 30 * 86_400);
        assert_eq!((c.bounces.soft_bounces_to_suppress, c.bounces.return_path.is_none()), (5, true));
        let c = load("[bounces]\nreturn_path = \"Bounce@Example.com\"\nsuppress_days = 7").unwrap();
        assert_eq!(c.bounces.return_path.unwrap().as_str(), "bounce@example.com");
        for (text, key) in [
            ("[bounces]\nreturn_path = \"bounce+x@example.com\"", "bounces.return_path"),
            ("[bounces]\nreturn_path = \"nonsense\"", "bounces.return_path"),
            ("[bounces]\nsuppress_days = 0", "bounces.suppress_days"),
            ("[bounces]\nsoft_bounces_to_suppress = 0", "bounces.soft_bounces_to_suppress"),
            ("[limits]\ncase_exchange_limit = 1", "limits.case_exchange_limit"),
            ("[limits]\ncase_exchange_minutes = 0", "limits.case_exchange_minutes"),
            ("[spam]\nheader_rules = [\"Not a header: x\"]", "spam.header_rules[0]"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("/etc/c.toml"), "{text}: {err}");
        }
        let c = load(
            "[limits]\nauto_replies_per_address_per_day = 3\n[spam]\nheader_rules = [\"X-Junk\", \"X-Verdict: Spam\"]",
        )
        .unwrap();
        assert_eq!(c.auto_replies_per_address_per_day, 3);
        assert_eq!(c.spam.header_rules, [("X-Junk".to_string(), String::new()), ("X-Verdict".into(), "spam".into())]);
        assert_eq!(load("").unwrap().auto_replies_per_address_per_day, 20);
    }
}
