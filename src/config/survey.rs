//! `[survey]`: the satisfaction survey offered when a case is closed, and its page.

use std::time::Duration;

use serde::Deserialize;

use super::secret::{RawSecret, Secret};
use super::{Check, ConfigError};

#[derive(Debug, Clone)]
pub struct SurveyConfig {
    pub enabled: bool,
    pub base_url: String,
    pub listen: String,
    pub secret: Option<Secret>,
    pub delay: Duration,
    pub link_valid: Duration,
    /// Also offer the survey when a Resolved case waits this long without an answer.
    pub resolved_after: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawSurvey {
    enabled: Option<bool>,
    base_url: Option<String>,
    listen: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    delay_secs: Option<u64>,
    link_valid_days: Option<u64>,
    resolved_after_days: Option<u64>,
}

/// Days are multiplied out saturating: an absurd number of days means "for ever", not a panic.
const DAY_SECS: u64 = 86_400;

pub(super) fn survey(check: &Check, s: RawSurvey) -> Result<SurveyConfig, ConfigError> {
    let base_url = s.base_url.unwrap_or_else(|| "http://127.0.0.1:8025".into()).trim_end_matches('/').to_string();
    let listen = s.listen.unwrap_or_else(|| "127.0.0.1:8025".into());
    let secret =
        check.secret("survey", "secret", RawSecret { inline: s.secret, env: s.secret_env, file: s.secret_file })?;
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(check.invalid("survey.base_url", format!("{base_url:?} must start with http:// or https://")));
    }
    if listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(check
            .invalid("survey.listen", format!("{listen:?} must be an address and port such as \"127.0.0.1:8025\"")));
    }
    Ok(SurveyConfig {
        enabled: s.enabled.unwrap_or(true),
        base_url,
        listen,
        secret,
        delay: Duration::from_secs(s.delay_secs.unwrap_or(0)),
        link_valid: Duration::from_secs(s.link_valid_days.unwrap_or(30).saturating_mul(DAY_SECS)),
        resolved_after: s.resolved_after_days.map(|d| Duration::from_secs(d.saturating_mul(DAY_SECS))),
    })
}
