//! A temp installation whose survey page runs in-process on a real port (127.0.0.1, chosen
//! by the OS), cases opened by mail through the real binary, and invitations made with the
//! library's own `invite`.

use std::net::SocketAddr;
use std::sync::Arc;

use casegate::address::Address;
use casegate::config::Config;
use casegate::store::Store;
use casegate::web::{serve_on, WebState};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::http::{form_encode, http, Reply};
use crate::support::casegate::{off_runtime, Installation};
use crate::support::mail::to_support;

/// (case, recipient, score, solved 0/1/NULL, comment, channel) of one `survey_answers` row.
pub type AnswerRow = (i64, String, i64, Option<i64>, Option<String>, String);

/// The survey secret of every [`SurveySite`], for tests that sign tokens of their own.
pub const SECRET: &str = "integration-test survey secret 0123456789";

/// An installation with its survey page being served.
pub struct SurveySite {
    pub install: Installation,
    pub config: Arc<Config>,
    pub addr: SocketAddr,
    pub base_url: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl SurveySite {
    /// Binds a port first, so that `survey.base_url` can name it, then starts serving.
    pub async fn start() -> SurveySite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let base_url = format!("http://{addr}");
        let install = Installation::new(&format!(
            "[survey]\nbase_url = \"{base_url}\"\nlisten = \"{addr}\"\nsecret = \"{SECRET}\"\nlink_valid_days = 30\n"
        ));
        let config = Arc::new(Config::load(&install.config).expect("load config"));
        off_runtime(|| Store::open(&config).map(drop)).expect("create the database");
        let shutdown = CancellationToken::new();
        let state = WebState::new(config.clone()).expect("web state");
        let server = tokio::spawn(serve_on(listener, state, shutdown.clone()));
        SurveySite { install, config, addr, base_url, shutdown, server: Some(server) }
    }

    /// Opens a case by mail from `from` (through the real `casegate ingest`); returns its number.
    pub fn open_case(&self, from: &str, subject: &str) -> i64 {
        let id = format!("{}@customer.example", rand_id());
        let raw = to_support(from, subject, &id, "", "Please help.");
        let line = self.install.ingest_bytes(&format!("{}.eml", rand_id()), &raw);
        assert_eq!(line["outcome"], "created", "{line}");
        let case = line["case"].as_str().expect("case id");
        case.trim_start_matches("CASE-").parse().expect("case number")
    }

    /// Invites `recipient` to the survey of `case` as of `now`; returns the link.
    pub fn invite_at(&self, case: i64, recipient: &str, now: DateTime<Utc>) -> String {
        let recipient = Address::parse(recipient).expect("address");
        off_runtime(|| {
            let store = Store::open(&self.config).expect("open store");
            casegate::store::surveys::invite(store.db(), &self.config, case, &recipient, now)
                .expect("invite")
                .expect("not invited before")
                .url
        })
    }

    pub fn invite(&self, case: i64, recipient: &str) -> String {
        self.invite_at(case, recipient, Utc::now())
    }

    /// The path part of a survey link (`/survey/<token>`).
    pub fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&self.base_url).unwrap_or_else(|| panic!("{url} is not under {}", self.base_url)).to_string()
    }

    /// Stored answers (`solved` as 1 or 0 on either store).
    pub fn answers(&self) -> Vec<AnswerRow> {
        let rows = self.install.rows(
            "SELECT case_id, recipient, score, CASE WHEN solved THEN 1 WHEN NOT solved THEN 0 END, comment, channel \
             FROM survey_answers ORDER BY case_id, recipient",
            [],
        );
        let number = |v: &Option<String>| v.as_deref().map(|n| n.parse::<i64>().expect("a number"));
        rows.iter()
            .map(|r| {
                let text = |v: &Option<String>| v.clone().expect("a value");
                (number(&r[0]).unwrap(), text(&r[1]), number(&r[2]).unwrap(), number(&r[3]), r[4].clone(), text(&r[5]))
            })
            .collect()
    }

    pub async fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, &[], b"").await
    }

    /// Posts form fields as a browser on our own page would (same origin).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let origin = self.base_url.clone();
        self.post_with(path, fields, &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")]).await
    }

    pub async fn post_with(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        http(self.addr, "POST", path, &all, form_encode(fields).as_bytes()).await
    }

    /// GETs the form and posts these answers with its form tag.
    pub async fn answer(&self, path: &str, score: &str, solved: &str, comment: &str) -> Reply {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let tag = form_tag(&page.body);
        self.post(path, &[("form", &tag), ("score", score), ("solved", solved), ("comment", comment)]).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for SurveySite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The hidden form field of a rendered survey form.
pub fn form_tag(html: &str) -> String {
    let start = html.find("name=\"form\" value=\"").expect("form tag field") + "name=\"form\" value=\"".len();
    html[start..].split('"').next().expect("closing quote").to_string()
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
