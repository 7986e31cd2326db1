//! `[spam]`: mail the receiving server marked as spam never opens a case nor gets an
//! answer; it is quarantined (reason `spam`), releasable by a person.

use serde::Deserialize;

use super::{Check, ConfigError};

#[derive(Debug, Clone)]
pub struct SpamConfig {
    /// Honour the usual flags (`X-Spam-Flag: YES`, `X-Spam-Status: Yes`).
    pub enabled: bool,
    /// More headers that mark spam: `(name, value prefix)`, compared case-insensitively;
    /// an empty prefix means the header's presence is enough.
    pub header_rules: Vec<(String, String)>,
    /// Quarantine mail whose DMARC check failed at `authserv_id` when its sender is new to
    /// casegate (an acknowledgement would go to whoever was forged).
    pub quarantine_dmarc_fail: bool,
}

impl Default for SpamConfig {
    fn default() -> SpamConfig {
        SpamConfig { enabled: true, header_rules: Vec::new(), quarantine_dmarc_fail: true }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawSpam {
    enabled: Option<bool>,
    header_rules: Vec<String>,
    quarantine_dmarc_fail: Option<bool>,
}

pub(super) fn spam(check: &Check, s: RawSpam) -> Result<SpamConfig, ConfigError> {
    let mut header_rules = Vec::with_capacity(s.header_rules.len());
    for (i, rule) in s.header_rules.iter().enumerate() {
        let (name, value) = rule.split_once(':').unwrap_or((rule.as_str(), ""));
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(check.invalid(
                &format!("spam.header_rules[{i}]"),
                format!("{rule:?} must be \"Header-Name\" or \"Header-Name: value it starts with\", e.g. \"X-Spam-Verdict: spam\""),
            ));
        }
        header_rules.push((name.to_string(), value.trim().to_lowercase()));
    }
    Ok(SpamConfig {
        enabled: s.enabled.unwrap_or(true),
        header_rules,
        quarantine_dmarc_fail: s.quarantine_dmarc_fail.unwrap_or(true),
    })
}
