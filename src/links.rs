//! The personal links casegate puts into mail, and the secret they are signed with:
//!
//! ```text
//! {web.base_url}/survey/{token}   the survey of a closed case      (signed::SURVEY, id = case)
//! {web.base_url}/case/{token}     a person's page of one case      (signed::CASE_PAGE, id = case)
//! {web.base_url}/cases/{token}    a person's cases ("My cases")    (signed::MY_CASES, id = 0)
//! {web.base_url}/file/{token}     one attachment, for one person   (signed::DOWNLOAD, id = attachment)
//! ```
//!
//! Every token names the person it was made for and an expiry (see [`crate::signed`]).
//! Notifications make them ([`Signer`]); `web` checks them and serves the pages.

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::address::Address;
use crate::case::CaseId;
use crate::config::{Config, ConfigError, Secret};
use crate::signed::{self, Purpose};

/// The shortest link secret accepted, in bytes. HMAC-SHA256 is only as strong as its key;
/// `openssl rand -base64 32` makes a good one.
pub const MIN_SECRET_LEN: usize = 16;

/// Whether a link secret is configured (it may still fail to be read: see [`secret`]).
pub fn configured(config: &Config) -> bool {
    config.web.secret.is_some()
}

/// Reads the link secret (`web.secret_env`, `web.secret_file` or `web.secret`; the same
/// keys under `[survey]` in older files). A missing or short secret is a configuration
/// error naming the key.
pub fn secret(config: &Config) -> Result<Vec<u8>, ConfigError> {
    let table = config.web.secret_table;
    let invalid =
        |key: &str, message: String| ConfigError::Invalid { path: config.path.clone(), key: key.to_string(), message };
    let source = config.web.secret.as_ref().ok_or_else(|| {
        invalid(
            "web.secret_env",
            "personal links (survey, case page, downloads) need a secret: set web.secret_env (an environment \
             variable) or web.secret_file, holding e.g. the output of `openssl rand -base64 32`"
                .into(),
        )
    })?;
    let value = source.read(&config.path)?;
    if value.len() < MIN_SECRET_LEN {
        let key = match source {
            Secret::Env { key, .. } | Secret::File { key, .. } => key.clone(),
            Secret::Inline { .. } => format!("{table}.secret"),
        };
        return Err(invalid(
            &key,
            format!(
                "the link secret is {} bytes long; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -base64 32`)",
                value.len()
            ),
        ));
    }
    Ok(value.into_bytes())
}

/// A day as people read it, e.g. `31 January 2030` (UTC): how pages and mails say until
/// when a link works.
pub fn day(t: DateTime<Utc>) -> String {
    t.format("%-d %B %Y").to_string()
}

/// The survey link for a token: `{base_url}/survey/{token}`.
pub fn survey(config: &Config, token: &str) -> String {
    format!("{}/survey/{token}", config.web.base_url)
}

/// Makes the personal links of one notification: all for one person, valid until one
/// expiry (`web.link_valid` from when the mail is made).
pub struct Signer<'a> {
    config: &'a Config,
    secret: &'a [u8],
    pub expires: DateTime<Utc>,
}

impl<'a> Signer<'a> {
    pub fn new(config: &'a Config, secret: &'a [u8], now: DateTime<Utc>) -> Signer<'a> {
        let valid = ChronoDuration::from_std(config.web.link_valid).unwrap_or_else(|_| ChronoDuration::days(30));
        // Whole seconds: that is what the token keeps, and what the page says.
        let expires = now.checked_add_signed(valid).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let expires = DateTime::<Utc>::from_timestamp(expires.timestamp(), 0).unwrap_or(expires);
        Signer { config, secret, expires }
    }

    /// Links that expire at `expires` instead (a page links on with the expiry of its own link).
    pub fn until(config: &'a Config, secret: &'a [u8], expires: DateTime<Utc>) -> Signer<'a> {
        Signer { config, secret, expires }
    }

    /// `{base_url}/case/{token}`: `person`'s page of `case`.
    pub fn case_page(&self, case: CaseId, person: &Address) -> String {
        self.url("case", &signed::CASE_PAGE, case, person)
    }

    /// `{base_url}/cases/{token}`: `person`'s cases.
    pub fn my_cases(&self, person: &Address) -> String {
        self.url("cases", &signed::MY_CASES, 0, person)
    }

    /// `{base_url}/file/{token}`: attachment `id` (its row in `attachments`), for `person`.
    pub fn download(&self, id: i64, person: &Address) -> String {
        self.url("file", &signed::DOWNLOAD, id, person)
    }

    /// Just the token of a case page (for links relative to another page).
    pub fn case_token(&self, case: CaseId, person: &Address) -> String {
        signed::sign(self.secret, &signed::CASE_PAGE, case, person, self.expires)
    }

    /// Just the token of a download.
    pub fn download_token(&self, id: i64, person: &Address) -> String {
        signed::sign(self.secret, &signed::DOWNLOAD, id, person, self.expires)
    }

    fn url(&self, path: &str, purpose: &Purpose, id: i64, person: &Address) -> String {
        let token = signed::sign(self.secret, purpose, id, person, self.expires);
        format!("{}/{path}/{token}", self.config.web.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!("system_addresses = [\"s@example.com\"]\n{extra}"), Path::new("/c.toml")).unwrap()
    }

    #[test]
    fn the_secret_must_be_configured_and_long_enough_and_errors_name_its_key() {
        let err = secret(&config("")).unwrap_err().to_string();
        assert!(err.contains("web.secret_env"), "{err}");
        let err = secret(&config("[web]\nsecret = \"short\"")).unwrap_err().to_string();
        assert!(err.contains("web.secret") && err.contains("at least 16"), "{err}");
        let err = secret(&config("[survey]\nsecret = \"short\"")).unwrap_err().to_string();
        assert!(err.contains("survey.secret") && err.contains("at least 16"), "{err}");
        let err = secret(&config("[web]\nsecret_env = \"CASEGATE_TEST_UNSET_WEB_SECRET\"")).unwrap_err().to_string();
        assert!(err.contains("web.secret_env") && err.contains("CASEGATE_TEST_UNSET_WEB_SECRET"), "{err}");
        assert_eq!(secret(&config("[web]\nsecret = \"0123456789abcdef\"")).unwrap(), b"0123456789abcdef");
    }

    #[test]
    fn survey_keys_still_configure_the_web_pages_and_web_keys_win() {
        let old = config(
            "[survey]\nbase_url = \"https://old.example/\"\nlisten = \"127.0.0.1:9000\"\nsecret = \"0123456789abcdef\"",
        );
        assert_eq!((old.web.base_url.as_str(), old.web.listen.as_str()), ("https://old.example", "127.0.0.1:9000"));
        assert_eq!(secret(&old).unwrap(), b"0123456789abcdef");
        let new = config("[web]\nbase_url = \"https://new.example\"\n[survey]\nbase_url = \"https://new.example/\"");
        assert_eq!(new.web.base_url, "https://new.example");
        let text = "system_addresses = [\"s@example.com\"]\n[web]\nbase_url = \"https://a.example\"\n[survey]\nbase_url = \"https://b.example\"";
        let err = Config::from_toml(text, Path::new("/c.toml")).unwrap_err().to_string();
        assert!(err.contains("survey.base_url") && err.contains("[web] only"), "{err}");
        let text = "system_addresses = [\"s@example.com\"]\n[web]\nsecret_env = \"A\"\n[survey]\nsecret_env = \"B\"";
        let err = Config::from_toml(text, Path::new("/c.toml")).unwrap_err().to_string();
        assert!(err.contains("survey.secret") && err.contains("[web] only"), "{err}");
        let text = "system_addresses = [\"s@example.com\"]\n[web]\nlisten = \"nowhere\"";
        let err = Config::from_toml(text, Path::new("/c.toml")).unwrap_err().to_string();
        assert!(err.contains("web.listen"), "{err}");
    }

    #[test]
    fn links_are_under_base_url_and_verify_for_their_purpose_only() {
        let c = config("[web]\nbase_url = \"https://support.example.com/\"\nlink_valid_days = 2");
        let now: DateTime<Utc> = "2030-01-01T10:00:00.500Z".parse().unwrap();
        let signer = Signer::new(&c, b"0123456789abcdef", now);
        assert_eq!(signer.expires, "2030-01-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let jane = Address::parse("jane@customer.example").unwrap();
        let page = signer.case_page(42, &jane);
        let token = page.strip_prefix("https://support.example.com/case/").expect(&page);
        let claims = signed::verify(b"0123456789abcdef", &signed::CASE_PAGE, token, now).unwrap();
        assert_eq!((claims.id, claims.address), (42, jane.clone()));
        assert!(signed::verify(b"0123456789abcdef", &signed::DOWNLOAD, token, now).is_err());
        assert!(signer.my_cases(&jane).starts_with("https://support.example.com/cases/"));
        assert!(signer.download(7, &jane).starts_with("https://support.example.com/file/"));
        assert_eq!(survey(&c, "abc"), "https://support.example.com/survey/abc");
    }
}
