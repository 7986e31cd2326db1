//! The survey page in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver) by fantoccini, answers a survey link with the keyboard alone,
//! then changes the answer with clicks; the stored answer is checked in SQLite.
//!
//! Needs `chromium` and `chromium-driver` (scripts/test installs them). Without them the
//! test is skipped with a message — but only for a non-root developer outside CI; as root or
//! under CI (where they can and must be installed) their absence is a failure.
//!
//! `CASEGATE_SURVEY_SCREENSHOT=docs/survey-page.png cargo test --test it survey_browser`
//! also saves the phone-width screenshot shown in the README.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::json;

use crate::support::browser::{browser, connect, focused_id, press, screenshot, wait_for_heading, Driver, PHONE};
use crate::support::casegate::Daemon;
use crate::support::mailstack::free_port;
use crate::support::survey::by_mail;
use crate::support::survey::http::accepts_within;
use crate::support::survey::site::SurveySite;

const JANE: &str = "jane@customer.example";

#[tokio::test]
async fn a_survey_link_answered_in_headless_chromium_is_stored() {
    let Some((chromium, chromedriver)) = browser("survey_browser") else { return };
    let site = SurveySite::start().await;
    let case = site.open_case(&format!("Jane <{JANE}>"), "Printer prints only blank pages");
    let url = site.invite(case, JANE);
    let scratch = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver, scratch.path());
    driver.wait_ready().await;
    let client = connect(&driver, &chromium, &scratch.path().join("profile")).await;

    let session = async {
        // The link as the mail gives it; the page as a phone shows it.
        client.set_window_size(PHONE.0, PHONE.1).await.expect("phone-sized window");
        client.goto(&url).await.expect("open the survey link");
        wait_for_heading(&client, "How did we do?").await;
        let width = client.execute("return window.innerWidth", vec![]).await.unwrap();
        assert_eq!(width, json!(PHONE.0), "the page is laid out at phone width");
        if let Some(target) = std::env::var_os("CASEGATE_SURVEY_SCREENSHOT") {
            screenshot(&chromium, &url, &Path::new(env!("CARGO_MANIFEST_DIR")).join(target), scratch.path(), PHONE)
                .await;
        }
        assert!(site.answers().is_empty(), "opening the link records nothing");

        // Keyboard only: Tab into the first question, arrows to choose, Tab on, Enter to send.
        client.find(Locator::Css("body")).await.unwrap().send_keys(&Key::Tab).await.unwrap();
        assert_eq!(focused_id(&client).await, "score-1", "Tab reaches the first question");
        press(&client, &Key::Space).await;
        for _ in 0..3 {
            press(&client, &Key::Right).await;
        }
        assert_eq!(focused_id(&client).await, "score-4");
        press(&client, &Key::Tab).await;
        assert_eq!(focused_id(&client).await, "solved-yes");
        press(&client, &Key::Right).await;
        assert_eq!(focused_id(&client).await, "solved-no");
        press(&client, &Key::Tab).await;
        assert_eq!(focused_id(&client).await, "comment");
        press(&client, "Fixed, but it took a week <b>really</b>").await;
        press(&client, &Key::Tab).await;
        press(&client, &Key::Enter).await;
        wait_for_heading(&client, "Thank you!").await;
        let body = client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
        assert!(body.contains("4 of 5") && body.contains("<b>really</b>"), "{body}");
        assert_eq!(
            site.answers(),
            [(
                case,
                JANE.to_string(),
                4,
                Some(0),
                Some("Fixed, but it took a week <b>really</b>".into()),
                "web".into()
            )]
        );

        // Changed with clicks, through the page's own "change your answer" link.
        client.find(Locator::LinkText("change your answer")).await.unwrap().click().await.unwrap();
        wait_for_heading(&client, "How did we do?").await;
        let score4 = client.find(Locator::Css("#score-4")).await.unwrap();
        assert!(score4.is_selected().await.unwrap(), "the stored answer is preselected");
        client.find(Locator::Css("label[for=score-5]")).await.unwrap().click().await.unwrap();
        client.find(Locator::Css("label[for=solved-yes]")).await.unwrap().click().await.unwrap();
        client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
        wait_for_heading(&client, "Thank you!").await;
        assert_eq!(
            site.answers(),
            [(
                case,
                JANE.to_string(),
                5,
                Some(1),
                Some("Fixed, but it took a week <b>really</b>".into()),
                "web".into()
            )]
        );
    };
    tokio::time::timeout(Duration::from_secs(120), session).await.expect("the browser session took over 2 minutes");

    client.close().await.expect("close the browser");
    drop(driver);
    site.stop().await;
}

/// The whole way a customer takes: the case is closed by mail, the survey notification
/// goes out, its link — served by the real `casegate run` — is answered in headless
/// Chromium, and `survey report --json` shows the answer. A forged link is refused.
#[tokio::test]
async fn a_case_closed_by_mail_gets_a_survey_answered_in_chromium_and_reported() {
    let Some((chromium, chromedriver)) = browser("survey_browser") else { return };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let install = by_mail::install(&listen, "");
    by_mail::close_a_case_by_mail(&install);
    install.ok(&["outbox", "flush"]);
    let (to, mail) = by_mail::survey_mails(&install).remove(0);
    assert_eq!(to, "jane.doe@customer.example");
    let url = by_mail::link_in(&mail);
    assert!(url.starts_with(&format!("http://{listen}/survey/")), "{url}");

    let mut daemon = Daemon::start(&install, &[]);
    let up = accepts_within(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(10)).await;
    assert!(up, "casegate run did not serve the survey page on {listen}");

    let scratch = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver, scratch.path());
    driver.wait_ready().await;
    let client = connect(&driver, &chromium, &scratch.path().join("profile")).await;
    let session = async {
        // A forged link (one character changed) is refused and records nothing.
        let last = url.chars().last().unwrap();
        let forged = format!("{}{}", &url[..url.len() - 1], if last == 'A' { 'B' } else { 'A' });
        client.goto(&forged).await.expect("open the forged link");
        wait_for_heading(&client, "This survey link is not valid").await;

        client.goto(&url).await.expect("open the survey link from the mail");
        wait_for_heading(&client, "How did we do?").await;
        client.find(Locator::Css("label[for=score-5]")).await.unwrap().click().await.unwrap();
        client.find(Locator::Css("label[for=solved-yes]")).await.unwrap().click().await.unwrap();
        client.find(Locator::Css("#comment")).await.unwrap().send_keys("Quick and friendly").await.unwrap();
        client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
        wait_for_heading(&client, "Thank you!").await;
    };
    tokio::time::timeout(Duration::from_secs(120), session).await.expect("the browser session took over 2 minutes");
    client.close().await.expect("close the browser");
    drop(driver);
    daemon.terminate().await;

    let report = install.json(&["survey", "report", "--json"]);
    assert_eq!((report["sent"].as_i64(), report["answered"].as_i64()), (Some(1), Some(1)), "{report}");
    assert_eq!(report["average_score"].as_f64(), Some(5.0));
    assert_eq!(report["solved_yes"], 1);
    assert_eq!(report["comments"][0]["comment"], "Quick and friendly");
    assert_eq!(report["comments"][0]["channel"], "web");
    assert_eq!(report["comments"][0]["case"], "CASE-1");
}
