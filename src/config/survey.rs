//! `[survey]`: the satisfaction survey offered when a case is closed. Its page, address
//! and link secret are `[web]`'s (`base_url`, `listen` and `secret*` are still read here
//! for files written before `[web]` existed, and handed to it).

use std::time::Duration;

use serde::Deserialize;

use super::secret::RawSecret;
use super::web::LegacySurveyKeys;

#[derive(Debug, Clone)]
pub struct SurveyConfig {
    pub enabled: bool,
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

/// `[survey]`, and the keys it hands to `[web]`.
pub(super) fn survey(s: RawSurvey) -> (SurveyConfig, LegacySurveyKeys) {
    let legacy = LegacySurveyKeys {
        base_url: s.base_url,
        listen: s.listen,
        secret: RawSecret { inline: s.secret, env: s.secret_env, file: s.secret_file },
    };
    let survey = SurveyConfig {
        enabled: s.enabled.unwrap_or(true),
        delay: Duration::from_secs(s.delay_secs.unwrap_or(0)),
        link_valid: Duration::from_secs(s.link_valid_days.unwrap_or(30).saturating_mul(DAY_SECS)),
        resolved_after: s.resolved_after_days.map(|d| Duration::from_secs(d.saturating_mul(DAY_SECS))),
    };
    (survey, legacy)
}
