//! Headless Chromium for the page tests: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) by fantoccini, at the width of a phone, and Chromium's own
//! screenshot mode for the pictures in the README.
//!
//! Without `chromium` and `chromium-driver` the browser tests are skipped with a message —
//! but only for a non-root developer outside CI; as root or under CI (where they can and
//! must be installed) their absence is a failure.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::mailstack::free_port;
use crate::support::survey::http::accepts_within;

/// A phone: the width of a common Android handset.
pub const PHONE: (u32, u32) = (412, 900);

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/bin", "/usr/lib/chromium"].map(PathBuf::from));
    names.iter().flat_map(|n| dirs.iter().map(move |d| d.join(n))).find(|p| p.is_file())
}

/// chromedriver in a process group of its own, so that the browsers it starts go with it.
pub struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    pub fn start(chromedriver: &Path, dir: &Path) -> Driver {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        Driver { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn wait_ready(&self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if !accepts_within(addr, Duration::from_secs(10)).await {
            panic!("chromedriver did not listen within 10 s; log:\n{}", self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Our own child's process group (chromedriver and the browser it started), by id.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: killpg only sends a signal; the group is the one we created at spawn.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        "--hide-scrollbars".into(),
        "--force-device-scale-factor=1".into(),
        format!("--window-size={},{}", PHONE.0, PHONE.1),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let serde_json::Value::Object(capabilities) = capabilities else { unreachable!("a JSON object literal") };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url())
        .await
        .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}\nchromedriver log:\n{}", driver.log_text()))
}

/// Presses keys on whatever has the focus, as a person at a keyboard does.
pub async fn press(client: &Client, keys: &str) {
    client.active_element().await.expect("focused element").send_keys(keys).await.expect("send keys");
}

pub async fn focused_id(client: &Client) -> String {
    client.active_element().await.unwrap().attr("id").await.unwrap().unwrap_or_default()
}

pub async fn wait_for_heading(client: &Client, text: &str) {
    let found = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(&format!("//h1[normalize-space()='{text}']")))
        .await;
    if found.is_err() {
        panic!("no heading {text:?}; the page is:\n{}", client.source().await.unwrap_or_default());
    }
}

/// Chromium's own screenshot mode, `size` wide and high (a GET: it records nothing).
pub async fn screenshot(chromium: &Path, url: &str, target: &Path, scratch: &Path, size: (u32, u32)) {
    let out = tokio::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", scratch.join("screenshot-profile").display()))
        .arg(format!("--window-size={},{}", size.0, size.1))
        .arg(format!("--screenshot={}", target.display()))
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("screenshot within 60 s").unwrap();
    assert!(out.status.success() && target.is_file(), "screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Chromium and chromedriver, or `None` (after saying so) where a developer may lack them.
pub fn browser(test: &str) -> Option<(PathBuf, PathBuf)> {
    let programs = (find_program(&["chromium", "chromium-browser"]), find_program(&["chromedriver"]));
    let (Some(chromium), Some(chromedriver)) = programs else {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(
            !root && !ci,
            "chromium and chromedriver are needed for the browser test: \
             apt-get install chromium chromium-driver (scripts/test does this as root)"
        );
        eprintln!(
            "SKIPPED {test}: chromium/chromedriver not installed and not root \
             (sudo apt-get install chromium chromium-driver)"
        );
        return None;
    };
    Some((chromium, chromedriver))
}
