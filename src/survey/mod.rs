//! Surveys: after a case is closed its requester and contact are asked two questions — how
//! satisfied they are with how the case was handled (1–5) and whether the solution solved
//! the problem — by a signed link to a small web page, or by replying to the survey mail.
//!
//! What surveys are, without any I/O:
//! - [`token`]: the signed link token (HMAC-SHA256) and the form tag bound to it.
//! - [`answer`]: [`Answer`], and [`parse_mail_answer`] for answers given by mail.
//! - here: whether surveys are offered, the link secret, the link itself.
//!
//! Around them: invitations and answers are stored by `store::surveys` (the numbers of
//! `casegate survey report` by `store::survey_report`); `consequences` offers the survey
//! when a case is closed (or waited too long in Resolved); `decide::mail` recognises an
//! answer by mail; `web` serves the page.

pub mod answer;
pub mod token;

use crate::config::{Config, ConfigError};

pub use answer::{parse_mail_answer, Answer, Channel, Score};

/// The shortest link secret accepted, in bytes (see [`crate::links::MIN_SECRET_LEN`]).
pub const MIN_SECRET_LEN: usize = crate::links::MIN_SECRET_LEN;

/// Whether surveys are offered: enabled, a secret to sign links with is configured (under
/// `[web]`), and notifications are on (a survey is offered by mail; an invitation nobody
/// is sent would count as sent in the report). Without a secret key surveys stay off
/// instead of failing the mail that closes a case.
pub fn offered(config: &Config) -> bool {
    config.survey.enabled && crate::links::configured(config) && config.notify.enabled
}

/// Reads the link secret the survey links are signed with (see [`crate::links::secret`]).
pub fn secret(config: &Config) -> Result<Vec<u8>, ConfigError> {
    crate::links::secret(config)
}

/// The survey link for a token: `{base_url}/survey/{token}`.
pub fn link(config: &Config, token: &str) -> String {
    crate::links::survey(config, token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(survey: &str) -> Config {
        Config::from_toml(&format!("system_addresses = [\"s@example.com\"]\n[survey]\n{survey}"), Path::new("/c.toml"))
            .unwrap()
    }

    #[test]
    fn the_secret_may_still_be_given_under_survey() {
        let err = secret(&config("")).unwrap_err().to_string();
        assert!(err.contains("web.secret_env"), "{err}");
        let err = secret(&config("secret = \"short\"")).unwrap_err().to_string();
        assert!(err.contains("survey.secret") && err.contains("at least 16"), "{err}");
        let err = secret(&config("secret_env = \"CASEGATE_TEST_UNSET_SURVEY_SECRET\"")).unwrap_err().to_string();
        assert!(err.contains("survey.secret_env") && err.contains("CASEGATE_TEST_UNSET_SURVEY_SECRET"), "{err}");
        assert_eq!(secret(&config("secret = \"0123456789abcdef\"")).unwrap(), b"0123456789abcdef");
    }

    #[test]
    fn surveys_are_offered_only_when_enabled_and_a_secret_is_configured() {
        assert!(offered(&config("secret_env = \"X\"")));
        assert!(!offered(&config("")), "no secret key");
        assert!(!offered(&config("enabled = false\nsecret_env = \"X\"")));
        let quiet = Config::from_toml(
            "system_addresses = [\"s@example.com\"]\n[notify]\nenabled = false\n[survey]\nsecret_env = \"X\"",
            Path::new("/c.toml"),
        )
        .unwrap();
        assert!(!offered(&quiet), "no invitations that no mail would carry");
    }

    #[test]
    fn links_are_base_url_slash_survey_slash_token() {
        let c = config("base_url = \"https://support.example.com/\"");
        assert_eq!(link(&c, "abc"), "https://support.example.com/survey/abc");
    }
}
