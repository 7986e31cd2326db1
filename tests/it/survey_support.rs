//! Harness for the survey tests: a temp installation whose survey page runs in-process on
//! a real port (127.0.0.1, chosen by the OS), cases opened by mail through the real binary,
//! invitations made with the library's own `invite`, and a small HTTP/1.1 client that
//! sends exactly the bytes a test asks for (headers browsers send, oversized bodies).

use std::net::SocketAddr;
use std::sync::Arc;

use casegate::address::Address;
use casegate::config::Config;
use casegate::store::Store;
use casegate::web::{serve_on, SurveyState};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::casegate::Installation;

/// (case, recipient, score, solved 0/1/NULL, comment, channel) of one `survey_answers` row.
pub type AnswerRow = (i64, String, i64, Option<i64>, Option<String>, String);

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
        Store::open(&config).expect("create the database");
        let shutdown = CancellationToken::new();
        let state = SurveyState::new(config.clone()).expect("survey state");
        let server = tokio::spawn(serve_on(listener, state, shutdown.clone()));
        SurveySite { install, config, addr, base_url, shutdown, server: Some(server) }
    }

    /// Opens a case by mail from `from` (through the real `casegate ingest`); returns its number.
    pub fn open_case(&self, from: &str, subject: &str) -> i64 {
        let id = format!("{}@customer.example", rand_id());
        let raw = format!(
            "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
             MIME-Version: 1.0\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Please help.\r\n"
        );
        let line = self.install.ingest_bytes(&format!("{}.eml", rand_id()), raw.as_bytes());
        assert_eq!(line["outcome"], "created", "{line}");
        let case = line["case"].as_str().expect("case id");
        case.trim_start_matches("CASE-").parse().expect("case number")
    }

    /// Invites `recipient` to the survey of `case` as of `now`; returns the link.
    pub fn invite_at(&self, case: i64, recipient: &str, now: DateTime<Utc>) -> String {
        let store = Store::open(&self.config).expect("open store");
        let recipient = Address::parse(recipient).expect("address");
        casegate::store::surveys::invite(&store.conn, &self.config, case, &recipient, now)
            .expect("invite")
            .expect("not invited before")
            .url
    }

    pub fn invite(&self, case: i64, recipient: &str) -> String {
        self.invite_at(case, recipient, Utc::now())
    }

    /// The path part of a survey link (`/survey/<token>`).
    pub fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&self.base_url).unwrap_or_else(|| panic!("{url} is not under {}", self.base_url)).to_string()
    }

    /// Stored answers, as SQLite holds them.
    pub fn answers(&self) -> Vec<AnswerRow> {
        let db = self.install.db();
        let mut stmt = db
            .prepare(
                "SELECT case_id, recipient, score, solved, comment, channel FROM survey_answers ORDER BY case_id, recipient",
            )
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
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

/// `application/x-www-form-urlencoded`, as browsers write it.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
                b' ' => out.push('+'),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// An HTTP response as received.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection; the whole response (the server closes).
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    request_raw(addr, &[head.as_bytes(), body].concat()).await
}

/// Sends raw bytes, reads the response until the server closes (or resets after
/// answering, as a server may when it refuses a body it did not read).
pub async fn request_raw(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the survey page");
    // The server may answer and close before reading everything (an oversized body):
    // a failed write is not the test's failure, a missing response is.
    let _ = stream.write_all(bytes).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no response within 20 s; got so far: {}", String::from_utf8_lossy(&raw)),
        }
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    assert!(
        !headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "this client reads only sized bodies"
    );
    Reply { status, headers, body: body.to_string() }
}
