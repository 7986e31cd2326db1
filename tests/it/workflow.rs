//! The case workflow driven by real mail through `casegate ingest`: every cell of the
//! permission table (action × role, as in `casegate::workflow::PERMISSIONS`) and every
//! status transition, checked on what `cases show --json` reports afterwards — an allowed
//! action has its effect, a refused one changes nothing at all.

use std::sync::OnceLock;

use casegate::workflow::{Kind, Role, PERMISSIONS};
use serde_json::Value;

use crate::support::casegate::Installation;
use crate::support::mail::to_support;

const REQUESTER: &str = "jane.doe@customer.example";
const SAME_ACCOUNT: &str = "bob.miller@customer.example";
const WATCHER: &str = "wendy@other.example";
const OTHER_WATCHER: &str = "walt@other.example";
const CONTACT: &str = "carl@nowhere.example";
const STAFF: &str = "ann.lee@support.example.com";
const ADMIN: &str = "admin@example.com";
const STRANGER: &str = "eve@evil.example";

/// A mail as a mail client would send it to the support address.
fn mail(from: &str, subject: &str, id: &str, body: &str, cc: &[&str]) -> Vec<u8> {
    let cc = if cc.is_empty() { String::new() } else { format!("Cc: {}\r\n", cc.join(", ")) };
    to_support(&format!("<{from}>"), subject, &format!("{id}@mail.example"), &cc, body)
}

/// A fresh copy of the installation built by [`build`] for `status`: built once per status
/// and copied for each cell, so the matrix stays fast.
fn setup(status: &'static str) -> Installation {
    static OPEN: OnceLock<Installation> = OnceLock::new();
    static RESOLVED: OnceLock<Installation> = OnceLock::new();
    let template = match status {
        "Open" => OPEN.get_or_init(|| build("Open")),
        _ => RESOLVED.get_or_init(|| build("Resolved")),
    };
    template.copy()
}

/// Two cases: CASE-1 opened by the requester with two watchers in Cc (account Customer
/// Inc), CASE-2 opened by staff for a contact from a domain without account. Both are then
/// in `status` (Open or Resolved) through staff mail.
fn build(status: &str) -> Installation {
    let install = Installation::new("");
    let open = mail(REQUESTER, "Printer on fire", "open-1", "It burns.", &[WATCHER, OTHER_WATCHER]);
    assert_eq!(install.ingest_bytes("open1.eml", &open)["case"], "CASE-1");
    let for_contact =
        mail(STAFF, "Scanner jammed", "open-2", &format!("Contact: {CONTACT}\r\n\r\nCalled in by phone."), &[]);
    assert_eq!(install.ingest_bytes("open2.eml", &for_contact)["case"], "CASE-2");
    for case in ["CASE-1", "CASE-2"] {
        let pick = mail(STAFF, &format!("Re: [{case}] x"), &format!("pick-{case}"), "Looking into it.", &[]);
        assert_eq!(install.ingest_bytes(&format!("pick-{case}.eml"), &pick)["outcome"], "replied");
        if status == "Resolved" {
            let resolve = mail(
                STAFF,
                &format!("Re: [{case}] x"),
                &format!("resolve-{case}"),
                "#resolve\r\nTurn it off and on.",
                &[],
            );
            assert_eq!(install.ingest_bytes(&format!("resolve-{case}.eml"), &resolve)["outcome"], "command");
        }
        assert_eq!(install.case(case)["status"], status);
    }
    install
}

fn sender_of(role: Role) -> (&'static str, &'static str) {
    match role {
        Role::Requester => (REQUESTER, "CASE-1"),
        Role::Contact => (CONTACT, "CASE-2"),
        Role::Watcher => (WATCHER, "CASE-1"),
        Role::SameAccount => (SAME_ACCOUNT, "CASE-1"),
        Role::Staff => (STAFF, "CASE-1"),
        Role::Admin => (ADMIN, "CASE-1"),
        Role::Stranger => (STRANGER, "CASE-1"),
    }
}

/// The mail body that asks for the action, and the status the case must be in for it.
fn request(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Reply => ("Any news on this?", "Open"),
        Kind::Note => ("#note customer called about it", "Open"),
        Kind::Resolve => ("#resolve\r\nReplace the fuser unit.", "Open"),
        Kind::Accept => ("#accept", "Resolved"),
        Kind::Reject => ("#reject it still smells of smoke", "Resolved"),
        Kind::Close => ("#close", "Open"),
        Kind::Open => ("#open", "Resolved"),
        Kind::Impact => ("#impact high", "Open"),
        Kind::Watch => ("#watch newbie@customer.example", "Open"),
        Kind::UnwatchSelf => ("#unwatch", "Open"),
        Kind::UnwatchOther => ("#unwatch walt@other.example", "Open"),
    }
}

/// Checks the effect of an allowed action on the case.
fn assert_effect(kind: Kind, role: Role, before: &Value, after: &Value) {
    let messages = |v: &Value| v["messages"].as_array().unwrap().clone();
    let new_entries: Vec<Value> = messages(after)[messages(before).len()..].to_vec();
    let kinds: Vec<&str> = new_entries.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    let ctx = format!("{kind:?} by {}: {kinds:?} {after}", role.name());
    match kind {
        Kind::Reply => {
            let want = if matches!(role, Role::Staff | Role::Admin) { "staff" } else { "customer" };
            assert_eq!(kinds, [want], "{ctx}");
        }
        Kind::Note => assert_eq!(kinds, ["note"], "{ctx}"),
        Kind::Resolve => assert_eq!(after["status"], "Resolved", "{ctx}"),
        Kind::Accept | Kind::Close => assert_eq!(after["status"], "Closed", "{ctx}"),
        Kind::Reject | Kind::Open => assert_eq!(after["status"], "Open", "{ctx}"),
        Kind::Impact => assert_eq!(after["impact"], "High", "{ctx}"),
        Kind::Watch => {
            assert!(after["watchers"].as_array().unwrap().contains(&"newbie@customer.example".into()), "{ctx}")
        }
        Kind::UnwatchSelf => {
            let (me, _) = sender_of(role);
            assert!(!after["watchers"].as_array().unwrap().contains(&me.into()), "{ctx}");
        }
        Kind::UnwatchOther => assert!(!after["watchers"].as_array().unwrap().contains(&OTHER_WATCHER.into()), "{ctx}"),
    }
}

fn run_row(kind: Kind) {
    let (_, _, cells) = PERMISSIONS.iter().find(|(k, _, _)| *k == kind).expect("row in the table");
    let (body, status) = request(kind);
    for (role, &allowed) in Role::ALL.iter().zip(cells) {
        let install = setup(status);
        let (sender, case) = sender_of(*role);
        let before = install.case(case);
        let line = install.ingest_bytes("cell.eml", &mail(sender, &format!("Re: [{case}] Printer"), "cell", body, &[]));
        let after = install.case(case);
        let outcome = line["outcome"].as_str().unwrap();
        let reason = line["reason"].as_str().unwrap_or_default();
        let cell = format!("{kind:?} by {} ({sender})", role.name());
        if allowed {
            assert!(
                matches!(outcome, "command" | "replied") && !reason.starts_with("refused"),
                "{cell} should be allowed: {line}"
            );
            assert_effect(kind, *role, &before, &after);
        } else {
            if *role == Role::Stranger {
                assert_eq!(outcome, "quarantined", "{cell}: {line}");
                assert!(reason.starts_with("sender-not-participant"), "{cell}: {line}");
            } else {
                assert_eq!(outcome, "command", "{cell}: {line}");
                assert!(reason.starts_with("refused:"), "{cell} should be refused: {line}");
            }
            assert_eq!(after, before, "{cell} was refused but changed the case");
        }
    }
}

#[test]
fn reply_row_of_the_permission_table() {
    run_row(Kind::Reply);
}

#[test]
fn note_row_of_the_permission_table() {
    run_row(Kind::Note);
}

#[test]
fn resolve_row_of_the_permission_table() {
    run_row(Kind::Resolve);
}

#[test]
fn accept_row_of_the_permission_table() {
    run_row(Kind::Accept);
}

#[test]
fn reject_row_of_the_permission_table() {
    run_row(Kind::Reject);
}

#[test]
fn close_row_of_the_permission_table() {
    run_row(Kind::Close);
}

#[test]
fn open_row_of_the_permission_table() {
    run_row(Kind::Open);
}

#[test]
fn impact_row_of_the_permission_table() {
    run_row(Kind::Impact);
}

#[test]
fn watch_row_of_the_permission_table() {
    run_row(Kind::Watch);
}

#[test]
fn unwatch_self_row_of_the_permission_table() {
    run_row(Kind::UnwatchSelf);
}

#[test]
fn unwatch_other_row_of_the_permission_table() {
    run_row(Kind::UnwatchOther);
}

#[test]
fn every_row_of_the_table_has_a_test() {
    // The rows above are written out so that each shows up by name; this keeps them in step.
    let source = include_str!("workflow.rs");
    for (kind, _, _) in PERMISSIONS {
        assert!(source.contains(&format!("run_row(Kind::{kind:?})")), "no test runs the {kind:?} row");
    }
}

/// Every status transition, in order, by mail: New → Open (staff acts) → Resolved →
/// Open (rejected with a reason) → Resolved → Closed (accepted); and New/Open/Resolved →
/// Closed by #close from the requester and from staff.
#[test]
fn every_status_transition_by_mail() {
    let install = Installation::new("");
    let send = |name: &str, from: &str, body: &str| {
        install.ingest_bytes(&format!("{name}.eml"), &mail(from, "Re: [CASE-1] Printer", name, body, &[]))
    };
    install.ingest_bytes("open.eml", &mail(REQUESTER, "Printer", "open", "It burns.", &[]));
    let status = || install.case("CASE-1")["status"].as_str().unwrap().to_string();
    assert_eq!(status(), "New");
    send("c1", REQUESTER, "More details: it smokes.");
    assert_eq!(status(), "New", "a customer reply does not pick the case up");
    send("s1", STAFF, "We are on it.");
    assert_eq!(status(), "Open");
    send("s2", STAFF, "#resolve\r\nReplace the fuser.");
    assert_eq!(status(), "Resolved");
    let refused = send("c2", REQUESTER, "#reject");
    assert!(refused["reason"].as_str().unwrap().contains("needs a reason"), "{refused}");
    assert_eq!(status(), "Resolved", "a reject without a reason changes nothing");
    send("c3", REQUESTER, "#reject\r\nIt still smokes after the new fuser.");
    assert_eq!(status(), "Open");
    send("s3", STAFF, "#resolve\r\nReplace the power supply too.");
    assert_eq!(status(), "Resolved");
    send("c4", REQUESTER, "#accept\r\nThanks, all good now.");
    assert_eq!(status(), "Closed");

    let case = install.case("CASE-1");
    let kinds: Vec<&str> = case["messages"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "customer", "customer", "staff", "system", "staff", "system", "customer", "system", "staff", "system",
            "customer", "system"
        ]
    );
    let last = case["messages"].as_array().unwrap().last().unwrap()["body"].as_str().unwrap().to_string();
    assert!(last.contains("accepted the solution") && last.contains("Resolved → Closed"), "{last}");

    // #close from New, Open and Resolved, by the requester and by staff.
    for (n, (from, to_status)) in
        [(REQUESTER, "New"), (STAFF, "New"), (REQUESTER, "Open"), (STAFF, "Resolved")].iter().enumerate()
    {
        let install = Installation::new("");
        install.ingest_bytes("o.eml", &mail(REQUESTER, "Printer", "o", "It burns.", &[]));
        if *to_status != "New" {
            install.ingest_bytes("p.eml", &mail(STAFF, "Re: [CASE-1] P", "p", "On it.", &[]));
        }
        if *to_status == "Resolved" {
            install.ingest_bytes("r.eml", &mail(STAFF, "Re: [CASE-1] P", "r", "#resolve\r\nFixed.", &[]));
        }
        assert_eq!(install.case("CASE-1")["status"], *to_status, "setup {n}");
        let line = install.ingest_bytes("c.eml", &mail(from, "Re: [CASE-1] P #close", "c", "", &[]));
        assert_eq!(line["outcome"], "command", "{line}");
        assert_eq!(install.case("CASE-1")["status"], "Closed", "#close by {from} from {to_status}");
    }
}

#[test]
fn closed_is_final_and_later_mail_opens_one_linked_follow_up() {
    let install = Installation::new("");
    install.ingest_bytes("open.eml", &mail(REQUESTER, "Printer on fire", "open", "It burns.", &[]));
    install.ingest_bytes("close.eml", &mail(REQUESTER, "Re: [CASE-1] Printer on fire", "close", "#close", &[]));
    let again = install
        .ingest_bytes("again.eml", &mail(REQUESTER, "Re: [CASE-1] Printer on fire", "again", "It burns again.", &[]));
    assert_eq!((again["outcome"].as_str(), again["case"].as_str()), (Some("created"), Some("CASE-2")), "{again}");
    let follow_up = install.case("CASE-2");
    assert_eq!(follow_up["linked_case"], "CASE-1");
    assert_eq!(follow_up["subject"], "Printer on fire", "the old token is not carried over");
    // More mail on the old thread goes to the open follow-up, not to a third case.
    let more =
        install.ingest_bytes("more.eml", &mail(REQUESTER, "Re: [CASE-1] Printer on fire", "more", "And smoke.", &[]));
    assert_eq!((more["outcome"].as_str(), more["case"].as_str()), (Some("replied"), Some("CASE-2")), "{more}");
    // Staff writing on a closed case opens the follow-up for the same customer and account.
    install.ingest_bytes("close2.eml", &mail(REQUESTER, "Re: [CASE-2] Printer on fire", "close2", "#close", &[]));
    let staff = install.ingest_bytes(
        "staff.eml",
        &mail(STAFF, "Re: [CASE-2] Printer on fire", "staff", "We replaced the unit today.", &[]),
    );
    assert_eq!(staff["case"], "CASE-3", "{staff}");
    let third = install.case("CASE-3");
    assert_eq!((third["contact"].as_str(), third["reported_by"].as_str()), (Some(REQUESTER), Some(STAFF)));
    assert_eq!(third["account"], "Customer Inc");
    assert_eq!(third["linked_case"], "CASE-2");
    // Staff cannot re-open a closed case either.
    let reopen = install.run(&["case", "open", "CASE-1", "--as", STAFF]);
    assert_eq!(reopen.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&reopen.stderr).contains("closed cases are final"));
    assert_eq!(install.case("CASE-1")["status"], "Closed");
}

#[test]
fn analysts_work_a_case_from_the_terminal_through_the_same_workflow() {
    let install = Installation::new("");
    install.ingest_bytes("open.eml", &mail(REQUESTER, "VPN drops", "open", "Every hour.", &[WATCHER]));
    let ok = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--as", STAFF]);
        install.ok(&all)
    };
    assert_eq!(ok(&["case", "reply", "CASE-1", "-m", "Which client version?"]).trim(), "CASE-1: New → Open");
    ok(&["case", "note", "CASE-1", "-m", "Probably the 60-minute re-key."]);
    ok(&["case", "impact", "CASE-1", "high"]);
    ok(&["case", "watch", "CASE-1", "net-team@customer.example"]);
    ok(&["case", "unwatch", "CASE-1", WATCHER]);
    assert_eq!(ok(&["case", "resolve", "CASE-1", "-m", "Update to 5.3.2."]).trim(), "CASE-1: Open → Resolved");
    let case = install.case("CASE-1");
    assert_eq!(case["impact"], "High");
    assert_eq!(case["watchers"], serde_json::json!(["net-team@customer.example"]));
    let kinds: Vec<&str> = case["messages"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["customer", "staff", "system", "note", "system", "staff", "system"]);

    // Customers cannot use the analyst CLI; bad input is a usage error.
    let out = install.run(&["case", "close", "CASE-1", "--as", REQUESTER]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not listed under staff or admins"));
    assert_eq!(install.run(&["case", "reply", "CASE-1", "--as", STAFF]).status.code(), Some(2), "missing text");
    assert_eq!(install.run(&["case", "impact", "CASE-1", "urgent", "--as", STAFF]).status.code(), Some(2));
    // A refused action: nothing changes, exit 1.
    let out = install.run(&["case", "resolve", "CASE-1", "-m", "again", "--as", STAFF]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing changed"));
}

#[test]
fn the_readme_shows_the_permission_table_of_the_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- permissions-table:start -->").expect("start marker in README");
    let end = readme.find("<!-- permissions-table:end -->").expect("end marker in README");
    let rows: Vec<Vec<String>> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.contains("---") && !l.contains("requester"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert_eq!(rows.len(), PERMISSIONS.len(), "README rows");
    for (row, (kind, label, cells)) in rows.iter().zip(PERMISSIONS) {
        assert_eq!(row[0], *label, "README row order/label for {kind:?}");
        let shown: Vec<bool> = row[1..].iter().map(|c| c == "yes").collect();
        assert_eq!(shown, cells.to_vec(), "README cells for {kind:?} ({label})");
    }
}
