//! The case page in a real browser, the whole way a customer takes it: a real notification
//! from the SMTP sink carries Jane's personal link, the page is served by the real
//! `casegate run`, headless Chromium rejects the proposed solution with a reason, the page
//! shows the case open again, and the analysts' notification arrives at the sink.
//!
//! `CASEGATE_CASE_SCREENSHOT=docs/case-page.png cargo test --test it case_browser` also
//! saves the phone-width screenshot shown in the README.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::support::browser::{browser, connect, screenshot, wait_for_heading, Driver, PHONE};
use crate::support::casegate::Daemon;
use crate::support::mailstack::free_port;
use crate::support::notify::{mail, Delivered, Setup, ANN, BOB, JANE, TOM};
use crate::support::survey::http::accepts_within;

/// The screenshot's size: a phone's width, tall enough to show the thread.
const SCREENSHOT: (u32, u32) = (PHONE.0, 1500);

/// Jane's opening mail: a description, Bob in Cc, a log file attached.
fn opening_mail() -> Vec<u8> {
    format!(
        "From: Jane Doe <{JANE}>\r\nTo: support@example.com\r\nCc: {BOB}\r\nSubject: Printer prints blank pages\r\n\
         Message-ID: <browser-1@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Since this morning the printer in room 4 prints only blank pages.\r\nThe printer log is attached.\r\n\
         --b\r\nContent-Type: text/plain; name=\"printer.log\"\r\nContent-Disposition: attachment; filename=\"printer.log\"\r\n\r\n\
         09:12 toner sensor: no cartridge\r\n09:13 page 1 printed (blank)\r\n--b--\r\n"
    )
    .into_bytes()
}

/// Waits until the sink holds a notification for each (address, event); returns those.
async fn wait_for_mails(s: &mut Setup, expected: &[(&str, &str)]) -> Vec<Delivered> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        seen.extend(s.received());
        let found: Vec<Option<usize>> =
            expected.iter().map(|(a, e)| seen.iter().position(|d: &Delivered| d.to == *a && d.event == *e)).collect();
        if found.iter().all(Option::is_some) {
            return seen.into_iter().filter(|d| expected.contains(&(d.to.as_str(), d.event.as_str()))).collect();
        }
        assert!(Instant::now() < deadline, "not all of {expected:?} within 30 s; got {:?}", who(&seen));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn who(mails: &[Delivered]) -> Vec<(String, String)> {
    mails.iter().map(|d| (d.to.clone(), d.event.clone())).collect()
}

#[tokio::test]
async fn a_customer_rejects_a_solution_on_the_case_page_from_a_real_notification() {
    let Some((chromium, chromedriver)) = browser("case_browser") else { return };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut s = Setup::with_tables(
        "",
        &format!("[web]\nbase_url = \"http://{listen}\"\nlisten = \"{listen}\"\nsecret = \"case-browser secret 0123456789\"\n"),
    );
    assert_eq!(s.ingest(&opening_mail())["case"], "CASE-1");
    s.install.ok(&["case", "reply", "CASE-1", "--as", ANN, "-m", "Which driver version do you run?"]);
    let answer = mail(JANE, "Re: [CASE-1] Printer prints blank pages", "", "Version 5.3.1, on Windows 11.");
    assert_eq!(s.ingest(&answer)["outcome"], "replied");
    s.install.ok(&[
        "case",
        "resolve",
        "CASE-1",
        "--as",
        ANN,
        "-m",
        "Please update the driver to 5.3.2; it fixes blank pages after a toner change.",
    ]);
    let sent = s.flush();
    let resolved = sent.iter().find(|d| d.to == JANE && d.event == "resolved").expect("Jane is asked to decide");
    let link = resolved
        .mail
        .text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("http://{listen}/case/")))
        .unwrap_or_else(|| panic!("no case page link in Jane's mail:\n{}", resolved.mail.text))
        .to_string();

    let mut daemon = Daemon::start(&s.install, &[]);
    let up = accepts_within(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(10)).await;
    assert!(up, "casegate run did not serve the pages on {listen}");

    let scratch = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver, scratch.path());
    driver.wait_ready().await;
    let client = connect(&driver, &chromium, &scratch.path().join("profile")).await;
    let session = async {
        client.set_window_size(PHONE.0, PHONE.1).await.expect("phone-sized window");
        client.goto(&link).await.expect("open the link from the mail");
        wait_for_heading(&client, "Printer prints blank pages").await;
        if let Some(target) = std::env::var_os("CASEGATE_CASE_SCREENSHOT") {
            let target = Path::new(env!("CARGO_MANIFEST_DIR")).join(target);
            screenshot(&chromium, &link, &target, scratch.path(), SCREENSHOT).await;
        }
        let badge = client.find(Locator::Css(".case .status")).await.unwrap().text().await.unwrap();
        assert_eq!(badge, "Resolved");
        let thread = client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
        assert!(thread.contains("Version 5.3.1") && thread.contains("printer.log"), "{thread}");

        client
            .find(Locator::Css("#reason"))
            .await
            .unwrap()
            .send_keys("Still blank pages after the update.")
            .await
            .unwrap();
        client.find(Locator::XPath("//input[@value='reject']/../button")).await.unwrap().click().await.unwrap();
        let notice = client.wait().at_most(Duration::from_secs(15)).for_element(Locator::Css("p.notice")).await;
        let notice = notice.expect("a notice after rejecting").text().await.unwrap();
        assert!(notice.contains("You rejected the solution"), "{notice}");
        let badge = client.find(Locator::Css(".case .status")).await.unwrap().text().await.unwrap();
        assert_eq!(badge, "Open", "the page shows the case open again");
        let thread = client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
        assert!(thread.contains("Still blank pages after the update."), "{thread}");
    };
    tokio::time::timeout(Duration::from_secs(120), session).await.expect("the browser session took over 2 minutes");
    client.close().await.expect("close the browser");
    drop(driver);

    assert_eq!(s.install.case("CASE-1")["status"], "Open");
    // The daemon's outbox worker tells the analysts, with Jane's reason.
    for told in wait_for_mails(&mut s, &[(ANN, "reopened"), (TOM, "reopened"), (BOB, "reopened")]).await {
        assert!(told.mail.text.contains("Still blank pages after the update."), "{}", told.mail.text);
    }
    daemon.terminate().await;
}
