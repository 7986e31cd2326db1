//! The case page, "My cases" and downloads over real HTTP on a bound port: every action
//! a person may take there (accept, reject with its reason, close, add watchers, stop
//! watching) goes through the workflow with its audit and notifications, and everything
//! that must be refused is — a stranger's link, an expired or tampered one, a watcher who
//! left, a forged form, a post from another site, a GET with action parameters — without
//! changing anything.

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::support::mail::to_support;
use crate::support::survey::http::http;
use crate::support::web::{form_tag, href, WebSite, SECRET};

const JANE: &str = "jane@customer.example";
const BOB: &str = "bob@customer.example";
const CAROL: &str = "carol@partner.example";
const EVE: &str = "eve@elsewhere.example";
const ANN: &str = "ann@support.example.com";

async fn site(extra: &str) -> WebSite {
    WebSite::start(&format!("[notify]\nstaff_recipients = [\"{ANN}\"]\n{extra}")).await
}

/// Jane opens a case with Bob in Cc (a watcher); returns its number.
fn open(site: &WebSite, subject: &str) -> i64 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let id = format!("web-{n}.{}@customer.example", std::process::id());
    let raw = to_support(&format!("Jane <{JANE}>"), subject, &id, &format!("Cc: {BOB}\r\n"), "It stopped working.");
    let line = site.install.ingest_bytes(&format!("open-{n}.eml"), &raw);
    assert_eq!(line["outcome"], "created", "{line}");
    line["case"].as_str().unwrap().trim_start_matches("CASE-").parse().unwrap()
}

/// Ann proposes a solution: the case is Resolved.
fn resolve(site: &WebSite, case: i64) {
    let id = format!("CASE-{case}");
    site.install.ok(&["case", "resolve", &id, "--as", ANN, "-m", "Update the driver to 5.3.2."]);
}

fn status(site: &WebSite, case: i64) -> String {
    site.install.case(&format!("CASE-{case}"))["status"].as_str().unwrap().to_string()
}

fn watchers(site: &WebSite, case: i64) -> Vec<String> {
    let shown = site.install.case(&format!("CASE-{case}"));
    shown["watchers"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect()
}

fn audit(site: &WebSite, action: &str) -> Vec<(Option<String>, Option<String>)> {
    let rows = site.install.rows("SELECT actor, detail FROM audit WHERE action = ?1 ORDER BY id", [action]);
    rows.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect()
}

/// (recipient, event) of every queued notification, in order.
fn outbox(site: &WebSite) -> Vec<(String, String)> {
    let rows: Value = site.install.json(&["outbox", "list", "--json"]);
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["to"][0].as_str().unwrap().to_string(), r["event"].as_str().unwrap().to_string()))
        .collect()
}

fn new_since(before: &[(String, String)], now: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut v = now[before.len()..].to_vec();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_get_shows_the_case_and_changes_nothing_even_with_action_parameters() {
    let site = site("").await;
    let case = open(&site, "Printer <prints> blank pages");
    resolve(&site, case);
    let path = site.case_path(case, JANE);
    let (outbox_before, audit_before) = (outbox(&site).len(), site.install.count("SELECT count(*) FROM audit", []));

    let page = site.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.header("content-type").unwrap().starts_with("text/html; charset=utf-8"));
    for header in ["content-security-policy", "x-frame-options", "referrer-policy", "x-content-type-options"] {
        assert!(page.header(header).is_some(), "{header} missing");
    }
    assert!(page.body.contains("Printer &lt;prints&gt; blank pages"), "escaped subject: {}", page.body);
    assert!(page.body.contains("status-resolved") && page.body.contains("It stopped working."));
    assert!(page.body.contains("Update the driver to 5.3.2.") && page.body.contains(&format!("{ANN} (support)")));
    for action in ["accept", "reject", "watch", "close"] {
        assert!(page.body.contains(&format!("name=\"action\" value=\"{action}\"")), "{action} offered to Jane");
    }
    assert!(!page.body.contains("value=\"unwatch\""), "Jane watches nothing");
    let tag = form_tag(&page.body);

    // What a mail scanner or a curious person might try with GET: nothing changes.
    for query in [format!("?action=accept&form={tag}"), format!("?action=close&form={tag}"), "?action=unwatch".into()] {
        let again = site.get(&format!("{path}{query}")).await;
        assert_eq!(again.status, 200);
    }
    assert_eq!(http(site.addr, "HEAD", &path, &[], b"").await.status, 200);
    assert_eq!(status(&site, case), "Resolved");
    assert_eq!(outbox(&site).len(), outbox_before);
    assert_eq!(site.install.count("SELECT count(*) FROM audit", []), audit_before);
    site.stop().await;
}

#[tokio::test]
async fn accepting_on_the_page_closes_the_case_with_its_audit_and_notifications() {
    let site = site("").await;
    let case = open(&site, "Printer offline");
    resolve(&site, case);
    let before = outbox(&site);

    let reply = site.act(&site.case_path(case, JANE), "accept", &[]).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("You accepted the solution") && reply.body.contains("role=\"status\""));
    assert!(reply.body.contains("status-closed") && !reply.body.contains("value=\"accept\""));
    assert_eq!(status(&site, case), "Closed");
    let changed = audit(&site, "status-changed");
    assert_eq!(changed.last().unwrap(), &(Some(JANE.into()), Some("Resolved -> Closed".into())));
    // Exactly what `#accept` by mail causes: the others hear of it, Jane is offered the survey.
    assert_eq!(new_since(&before, outbox(&site)), pairs(&[(BOB, "closed"), (ANN, "closed"), (JANE, "survey")]));
    site.stop().await;
}

#[tokio::test]
async fn rejecting_needs_a_reason_and_reopens_the_case_with_it() {
    let site = site("").await;
    let case = open(&site, "Printer offline");
    resolve(&site, case);
    let path = site.case_path(case, JANE);
    let before = outbox(&site);

    let no_reason = site.act(&path, "reject", &[("reason", "   ")]).await;
    assert_eq!(no_reason.status, 422, "{}", no_reason.body);
    assert!(no_reason.body.contains("role=\"alert\"") && no_reason.body.contains("a reason is needed"));
    assert_eq!(status(&site, case), "Resolved");
    let refused = audit(&site, "command-refused");
    assert_eq!(refused.len(), 1);
    assert!(refused[0].1.as_deref().unwrap().starts_with("web: #reject"), "{refused:?}");
    assert_eq!(outbox(&site), before, "a refused action is not announced");

    let reply = site.act(&path, "reject", &[("reason", "Still blank pages <b>every</b> morning.")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("You rejected the solution") && reply.body.contains("status-open"));
    assert!(reply.body.contains("Still blank pages &lt;b&gt;every&lt;/b&gt; morning."), "{}", reply.body);
    assert_eq!(status(&site, case), "Open");
    let shown = site.install.case(&format!("CASE-{case}"));
    let last_customer =
        shown["messages"].as_array().unwrap().iter().rfind(|m| m["kind"] == "customer").unwrap().clone();
    assert_eq!(last_customer["body"], "Still blank pages <b>every</b> morning.");
    assert_eq!(last_customer["from"], JANE);
    assert_eq!(new_since(&before, outbox(&site)), pairs(&[(BOB, "reopened"), (ANN, "reopened")]));
    site.stop().await;
}

#[tokio::test]
async fn closing_and_adding_watchers_work_as_their_commands_by_mail() {
    let site = site("[limits]\nmax_watchers_per_mail = 2\n").await;
    let case = open(&site, "Scanner jams");
    let bobs = site.case_path(case, BOB);
    let before = outbox(&site);

    // A watcher may add watchers; what is not an address is refused and adds nobody.
    let bad = site.act(&bobs, "watch", &[("address", &format!("{CAROL}, not-an-address"))]).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("not-an-address") && bad.body.contains("is not an email address"));
    assert!(bad.body.contains(&format!("value=\"{CAROL}, not-an-address\"")), "what was typed is kept");
    assert_eq!(watchers(&site, case), [BOB]);

    let added =
        site.act(&bobs, "watch", &[("address", &format!("{CAROL}, dan@partner.example; erin@partner.example"))]).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(added.body.contains(&format!("Added as watchers: {CAROL}, dan@partner.example")), "{}", added.body);
    assert!(added.body.contains("At most 2 addresses are added at once"), "limited like #watch");
    assert_eq!(watchers(&site, case), [BOB, CAROL, "dan@partner.example"]);
    assert_eq!(audit(&site, "watchers-limited").len(), 1);
    assert_eq!(
        new_since(&before, outbox(&site)),
        pairs(&[(CAROL, "watcher-added"), ("dan@partner.example", "watcher-added")])
    );

    // A watcher may not close the case; the requester may.
    let refused = site.act(&bobs, "close", &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("only its requester, its contact or our support team may"), "{}", refused.body);
    assert_eq!(status(&site, case), "New");
    let closed = site.act(&site.case_path(case, JANE), "close", &[]).await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert!(closed.body.contains("You closed the case."));
    assert_eq!(status(&site, case), "Closed");
    site.stop().await;
}

#[tokio::test]
async fn a_watcher_who_stops_watching_loses_the_page() {
    let site = site("").await;
    let case = open(&site, "VPN drops");
    let bobs = site.case_path(case, BOB);
    let tag = form_tag(&site.get(&bobs).await.body);
    let before = outbox(&site);

    let left = site.post(&bobs, &[("form", &tag), ("action", "unwatch")]).await;
    assert_eq!(left.status, 200, "{}", left.body);
    assert!(left.body.contains("You no longer watch this case"));
    assert!(watchers(&site, case).is_empty());
    assert_eq!(new_since(&before, outbox(&site)), pairs(&[(BOB, "watcher-removed")]));

    // The same link, and the same form, no longer work.
    let page = site.get(&bobs).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("This link no longer works") && !page.body.contains("VPN drops every"));
    let again = site.post(&bobs, &[("form", &tag), ("action", "watch"), ("address", EVE)]).await;
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(watchers(&site, case).is_empty());
    site.stop().await;
}

#[tokio::test]
async fn refused_links_forms_and_actions_change_nothing() {
    let site = site("").await;
    let case = open(&site, "Printer offline");
    let other = open(&site, "Scanner offline");
    let janes = site.case_path(case, JANE);
    let tag = form_tag(&site.get(&janes).await.body);
    let other_tag = form_tag(&site.get(&site.case_path(other, JANE)).await.body);
    let before =
        (outbox(&site), site.install.count("SELECT count(*) FROM audit WHERE action <> 'command-refused'", []));

    // A genuine link for someone who does not take part, an expired one, a changed one.
    let strangers = site.case_path(case, EVE);
    let expired = site.expired_case_path(case, JANE, Utc::now() - Duration::hours(1));
    let mut chars: Vec<char> = janes.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let survey_token = casegate::survey::token::sign(
        SECRET.as_bytes(),
        case,
        &casegate::address::Address::parse(JANE).unwrap(),
        Utc::now() + Duration::days(1),
    );
    let not_a_case_token = format!("/case/{survey_token}");
    for (path, code, words) in [
        (strangers.as_str(), 403, "This link no longer works"),
        (expired.as_str(), 410, "This link has expired"),
        (tampered.as_str(), 404, "This link is not valid"),
        (not_a_case_token.as_str(), 404, "This link is not valid"),
    ] {
        let page = site.get(path).await;
        assert_eq!(page.status, code, "GET {path}: {}", page.body);
        assert!(page.body.contains(words), "GET {path}: {}", page.body);
        let tag = casegate::signed::form_tag(
            SECRET.as_bytes(),
            &casegate::signed::CASE_PAGE,
            path.trim_start_matches("/case/"),
        );
        let post = site.post(path, &[("form", &tag), ("action", "close")]).await;
        assert_eq!(post.status, code, "POST {path}: {}", post.body);
    }

    // Forged forms: another page's tag, none, garbage; an action the page does not have.
    for (fields, code) in [
        (vec![("form", other_tag.as_str()), ("action", "close")], 403),
        (vec![("action", "close")], 403),
        (vec![("form", "AAAA"), ("action", "close")], 403),
        (vec![("form", tag.as_str()), ("action", "resolve")], 400),
        (vec![("form", tag.as_str()), ("action", "delete")], 400),
    ] {
        let reply = site.post(&janes, &fields).await;
        assert_eq!(reply.status, code, "{fields:?}: {}", reply.body);
    }
    // Posted from another site, with the right tag.
    for headers in [
        vec![("Origin", "https://evil.example")],
        vec![("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Referer", "https://evil.example/page")],
    ] {
        let reply = site.post_with(&janes, &[("form", &tag), ("action", "close")], &headers).await;
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.body);
        assert!(reply.body.contains("cannot be sent from here"));
    }
    // Too much at once.
    let big = site.post(&janes, &[("form", &tag), ("action", "reject"), ("reason", &"x".repeat(17 * 1024))]).await;
    assert_eq!(big.status, 413, "{}", big.body);
    // Actions the permission table or the status do not allow, explained.
    let watcher_accepts = site.act(&site.case_path(case, BOB), "accept", &[]).await;
    assert_eq!(watcher_accepts.status, 403, "{}", watcher_accepts.body);
    assert!(watcher_accepts.body.contains("only its requester or its contact may"), "{}", watcher_accepts.body);
    let nothing_to_accept = site.post(&janes, &[("form", &tag), ("action", "accept")]).await;
    assert_eq!(nothing_to_accept.status, 409, "{}", nothing_to_accept.body);
    assert!(nothing_to_accept.body.contains("There is no proposed solution to answer"));
    let requester_unwatches = site.post(&janes, &[("form", &tag), ("action", "unwatch")]).await;
    assert_eq!(requester_unwatches.status, 409, "{}", requester_unwatches.body);
    assert!(requester_unwatches.body.contains("You do not watch this case, you are the requester"));

    assert_eq!((status(&site, case), status(&site, other)), ("New".into(), "New".into()));
    assert_eq!(watchers(&site, case), [BOB]);
    let after = (outbox(&site), site.install.count("SELECT count(*) FROM audit WHERE action <> 'command-refused'", []));
    assert_eq!(after, before, "nothing was written but the refusals' audit");
    assert_eq!(audit(&site, "command-refused").len(), 2, "the two refused actions are audited");
    site.stop().await;
}

#[tokio::test]
async fn my_cases_lists_a_person_s_cases_with_a_filter_and_links_to_their_pages() {
    let site = site("").await;
    let first = open(&site, "Printer offline");
    let second = open(&site, "Scanner <jams>");
    resolve(&site, first);
    let janes = site.my_cases_path(JANE);

    let all = site.get(&janes).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.body.contains("Printer offline") && all.body.contains("Scanner &lt;jams&gt;"));
    assert!(all.body.contains("2 of your 2 cases"));
    let resolved = site.get(&format!("{janes}?status=resolved")).await;
    assert!(resolved.body.contains("Printer offline") && !resolved.body.contains("Scanner"), "{}", resolved.body);
    assert!(resolved.body.contains("<option value=\"resolved\" selected>"));

    // Its link leads to Jane's page of that case.
    let link = href(&resolved.body, "../case/").expect("a link to the case page");
    let page = site.get(&format!("/case/{}", link.trim_start_matches("../case/"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&format!("CASE-{first}")) && page.body.contains("value=\"accept\""));

    // Bob watches both; Eve has none; a tampered link shows nothing.
    assert!(site.get(&site.my_cases_path(BOB)).await.body.contains("you are the watcher"));
    assert!(site.get(&site.my_cases_path(EVE)).await.body.contains("You take part in no cases."));
    let last = janes.chars().last().unwrap();
    let tampered = format!("{}{}", &janes[..janes.len() - 1], if last == 'A' { 'B' } else { 'A' });
    assert_eq!(site.get(&tampered).await.status, 404);
    let _ = second;
    site.stop().await;
}

#[tokio::test]
async fn files_on_the_page_download_for_the_people_of_the_case_and_a_note_s_for_staff_only() {
    let site = site("").await;
    let case = open(&site, "Printer offline");
    let log = b"line 1: paper jam\nline 2: toner low\n".repeat(40);
    let path = site.install.path().join("printer.log");
    std::fs::write(&path, &log).unwrap();
    let secret_file = site.install.path().join("internal.txt");
    std::fs::write(&secret_file, b"staff only").unwrap();
    let id = format!("CASE-{case}");
    site.install.ok(&["case", "reply", &id, "--as", ANN, "-m", "Here is the log.", "--attach", path.to_str().unwrap()]);
    site.install.ok(&["case", "note", &id, "--as", ANN, "-m", "Internal.", "--attach", secret_file.to_str().unwrap()]);
    let file_id = |name: &str| site.install.count("SELECT id FROM attachments WHERE filename = ?1", [name]);

    let page = site.get(&site.case_path(case, JANE)).await;
    assert!(
        page.body.contains("printer.log") && !page.body.contains("internal.txt") && !page.body.contains("Internal.")
    );
    let link = href(&page.body, "../file/").expect("a download link");
    let got = site.get(&format!("/file/{}", link.trim_start_matches("../file/"))).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.bytes, log, "the download is the file");
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert!(got.header("content-security-policy").unwrap().contains("sandbox"));

    // The note's file: not for Jane even with a genuine link, but for staff.
    let note_file = file_id("internal.txt");
    assert_eq!(site.get(&site.download_path(note_file, JANE)).await.status, 404);
    let staff = site.get(&site.download_path(note_file, ANN)).await;
    assert_eq!((staff.status, staff.bytes.as_slice()), (200, b"staff only".as_slice()));
    // Nobody outside the case gets the public file either.
    assert_eq!(site.get(&site.download_path(file_id("printer.log"), EVE)).await.status, 404);
    site.stop().await;
}
