//! An installation whose web pages (case pages, "My cases", downloads) run in-process on a
//! real port (127.0.0.1, chosen by the OS); cases are worked through the real binary, and
//! personal links are signed with the library's own `links::Signer`.

use std::net::SocketAddr;
use std::sync::Arc;

use casegate::address::Address;
use casegate::config::Config;
use casegate::links::Signer;
use casegate::store::Store;
use casegate::web::{serve_on, WebState};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::survey::http::{form_encode, http, Reply};
use crate::support::casegate::{off_runtime, Installation};

/// The link secret of every [`WebSite`].
pub const SECRET: &str = "integration-test web secret 0123456789";

/// An installation with its web pages being served.
pub struct WebSite {
    pub install: Installation,
    pub config: Arc<Config>,
    pub addr: SocketAddr,
    pub base_url: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl WebSite {
    /// Binds a port first, so that `web.base_url` can name it, then starts serving. `extra`
    /// is appended to the config (tables after `[web]`).
    pub async fn start(extra: &str) -> WebSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let base_url = format!("http://{addr}");
        let install = Installation::new(&format!(
            "[web]\nbase_url = \"{base_url}\"\nlisten = \"{addr}\"\nsecret = \"{SECRET}\"\n{extra}"
        ));
        WebSite::serve(install, listener).await
    }

    /// Serves the pages of `install` (whose `web.base_url` names `listener`'s address).
    pub async fn serve(install: Installation, listener: tokio::net::TcpListener) -> WebSite {
        let addr = listener.local_addr().expect("local addr");
        let config = Arc::new(Config::load(&install.config).expect("load config"));
        let base_url = config.web.base_url.clone();
        off_runtime(|| Store::open(&config).map(drop)).expect("create the database");
        let (shutdown, server) = serve_pages(config.clone(), listener);
        WebSite { install, config, addr, base_url, shutdown, server: Some(server) }
    }

    /// The path of `person`'s case page of `case`, valid from now.
    pub fn case_path(&self, case: i64, person: &str) -> String {
        self.path_of(&self.signer(Utc::now()).case_page(case, &addr(person)))
    }

    /// The path of a case page link that expired at `expired`.
    pub fn expired_case_path(&self, case: i64, person: &str, expired: DateTime<Utc>) -> String {
        let signer = Signer::until(&self.config, SECRET.as_bytes(), expired);
        self.path_of(&signer.case_page(case, &addr(person)))
    }

    pub fn my_cases_path(&self, person: &str) -> String {
        self.path_of(&self.signer(Utc::now()).my_cases(&addr(person)))
    }

    pub fn download_path(&self, file: i64, person: &str) -> String {
        self.path_of(&self.signer(Utc::now()).download(file, &addr(person)))
    }

    fn signer(&self, now: DateTime<Utc>) -> Signer<'_> {
        Signer::new(&self.config, SECRET.as_bytes(), now)
    }

    /// The path part of a link (`/case/<token>`).
    pub fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&self.base_url).unwrap_or_else(|| panic!("{url} is not under {}", self.base_url)).to_string()
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

    /// GETs the page and posts `action` (with `fields`) with the page's form tag, as the
    /// page's own form does.
    pub async fn act(&self, path: &str, action: &str, fields: &[(&str, &str)]) -> Reply {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let tag = form_tag(&page.body);
        let mut all = vec![("form", tag.as_str()), ("action", action)];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for WebSite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves the pages of `config` on `listener` until the token is cancelled.
pub fn serve_pages(
    config: Arc<Config>,
    listener: tokio::net::TcpListener,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let shutdown = CancellationToken::new();
    let state = WebState::new(config).expect("web state");
    let server = tokio::spawn(serve_on(listener, state, shutdown.clone()));
    (shutdown, server)
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap_or_else(|| panic!("{s} is not an address"))
}

/// The hidden form tag of a rendered page's forms.
pub fn form_tag(html: &str) -> String {
    let start = html.find("name=\"form\" value=\"").expect("a form tag field") + "name=\"form\" value=\"".len();
    html[start..].split('"').next().expect("closing quote").to_string()
}

/// The first `href` in `html` that starts with `prefix`, with HTML entities of the
/// characters a token may hold decoded.
pub fn href(html: &str, prefix: &str) -> Option<String> {
    let needle = format!("href=\"{prefix}");
    let start = html.find(&needle)? + "href=\"".len();
    let raw = html[start..].split('"').next()?;
    Some(raw.replace("&#x3D;", "=").replace("&#x2F;", "/").replace("&amp;", "&"))
}
