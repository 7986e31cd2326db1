//! `[web]`: the pages casegate serves — survey page, case pages, "My cases", downloads —
//! and the secret their links are signed with. The `[survey]` keys `base_url`, `listen`
//! and `secret*` of earlier versions still work when `[web]` does not give them.

use std::time::Duration;

use serde::Deserialize;

use super::secret::{RawSecret, Secret};
use super::{Check, ConfigError};

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Public address of the pages, without a trailing `/`: links are `{base_url}/case/…`,
    /// `{base_url}/survey/…` and so on; its origin is the only one allowed to post.
    pub base_url: String,
    /// Where `casegate run` serves them.
    pub listen: String,
    /// The secret personal links are signed with; without one there are no links and no
    /// pages.
    pub secret: Option<Secret>,
    /// The table the secret was given in (`web`, or `survey` in older files), for messages.
    pub secret_table: &'static str,
    /// How long a case-page, "My cases" or download link in a notification works.
    pub link_valid: Duration,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawWeb {
    base_url: Option<String>,
    listen: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    link_valid_days: Option<u64>,
}

/// The keys `[survey]` held before `[web]` existed.
#[derive(Default)]
pub(super) struct LegacySurveyKeys {
    pub base_url: Option<String>,
    pub listen: Option<String>,
    pub secret: RawSecret,
}

/// Days are multiplied out saturating: an absurd number of days means "for ever", not a panic.
const DAY_SECS: u64 = 86_400;

pub(super) fn web(check: &Check, w: RawWeb, legacy: LegacySurveyKeys) -> Result<WebConfig, ConfigError> {
    let (base_url_key, base_url) = one_of(check, "base_url", w.base_url, legacy.base_url)?;
    let (listen_key, listen) = one_of(check, "listen", w.listen, legacy.listen)?;
    let base_url = base_url.unwrap_or_else(|| "http://127.0.0.1:8025".into()).trim_end_matches('/').to_string();
    let listen = listen.unwrap_or_else(|| "127.0.0.1:8025".into());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(check.invalid(base_url_key, format!("{base_url:?} must start with http:// or https://")));
    }
    if listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(
            check.invalid(listen_key, format!("{listen:?} must be an address and port such as \"127.0.0.1:8025\""))
        );
    }
    let own = RawSecret { inline: w.secret, env: w.secret_env, file: w.secret_file };
    let web_secret = check.secret("web", "secret", own)?;
    let survey_secret = check.secret("survey", "secret", legacy.secret)?;
    let (secret, secret_table) = match (web_secret, survey_secret) {
        (Some(_), Some(_)) => {
            return Err(check.invalid(
                "survey.secret",
                "the link secret is given under [web] and under [survey]; keep it under [web] only",
            ))
        }
        (Some(s), None) => (Some(s), "web"),
        (None, Some(s)) => (Some(s), "survey"),
        (None, None) => (None, "web"),
    };
    let days = w.link_valid_days.unwrap_or(30);
    if days == 0 {
        return Err(check.invalid("web.link_valid_days", "0 would make links that never work; the default is 30"));
    }
    Ok(WebConfig {
        base_url,
        listen,
        secret,
        secret_table,
        link_valid: Duration::from_secs(days.saturating_mul(DAY_SECS)),
    })
}

/// A key `[web]` took over from `[survey]`: the value and the key it came from. Given in
/// both places with different values, which one wins would be a guess: an error.
fn one_of(
    check: &Check,
    name: &'static str,
    web: Option<String>,
    survey: Option<String>,
) -> Result<(&'static str, Option<String>), ConfigError> {
    let (web_key, survey_key) = match name {
        "base_url" => ("web.base_url", "survey.base_url"),
        _ => ("web.listen", "survey.listen"),
    };
    match (web, survey) {
        (Some(w), Some(s)) if w.trim_end_matches('/') != s.trim_end_matches('/') => Err(check.invalid(
            survey_key,
            format!("{s:?} differs from {web_key} = {w:?}; keep it under [web] only (one server serves every page)"),
        )),
        (Some(w), _) => Ok((web_key, Some(w))),
        (None, Some(s)) => Ok((survey_key, Some(s))),
        (None, None) => Ok((web_key, None)),
    }
}
