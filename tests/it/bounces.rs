//! Bounces of casegate's own notifications, end to end: notifications go out through the
//! real SMTP sink, a delivery status notification for one of them comes back through
//! `casegate ingest`, and the outbox row, the case, staff and the next mail to the address
//! show it — matched by the Message-ID the bounce returns, or by the return path (VERP) it
//! comes back to.

use serde_json::Value;

use crate::support::mailstack::{SinkOptions, SmtpSink};
use crate::support::notify::{mail, open_case, to, Delivered, Setup, ANN, JANE, TOM};

/// A DSN as Postfix writes it for `d`, addressed to its envelope sender, returning its
/// headers (as mail systems do: the Message-ID is in them).
fn dsn_for(d: &Delivered, status: &str, diagnostic: &str) -> Vec<u8> {
    let data = String::from_utf8_lossy(&d.received.data);
    let headers = data.split("\r\n\r\n").next().unwrap_or_default();
    format!(
        "From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)\r\n\
         To: {sender}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <dsn.{n}@mx.customer.example>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n\
         <{rcpt}>: host mx.customer.example said: {diagnostic} (in reply to RCPT TO command)\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.customer.example\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--B--\r\n",
        sender = d.received.mail_from,
        n = d.row["id"],
        rcpt = d.to,
    )
    .into_bytes()
}

fn row(s: &Setup, id: &Value) -> Value {
    s.outbox().into_iter().find(|r| r["id"] == *id).expect("the row is listed")
}

fn system_entries(s: &Setup, case: &str) -> Vec<String> {
    let case = s.install.case(case);
    case["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["kind"] == "system")
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// An analyst's reply on CASE-1, which mails Jane (the requester).
fn analyst_replies(s: &Setup, text: &str) {
    s.install.ok(&["case", "reply", "CASE-1", "--as", ANN, "-m", text]);
}

#[test]
fn a_bounced_notification_is_marked_told_once_and_the_address_is_suppressed_until_lifted() {
    let mut s = Setup::new();
    let opening = open_case(&mut s);
    let ack = to(&opening, JANE);
    assert_eq!(ack.event, "acknowledgement");
    analyst_replies(&s, "We are looking into it.");
    let picked_up = s.flush();
    let second = to(&picked_up, JANE);

    // The DSN for Jane's acknowledgement comes back.
    let line =
        s.ingest(&dsn_for(ack, "5.1.1", "550 5.1.1 <jane@customer.example>: Recipient address rejected: User unknown"));
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("replied"), Some("CASE-1")), "{line}");
    assert!(line["reason"].as_str().unwrap().starts_with("bounce: notification #"), "{line}");
    let bounced = row(&s, &ack.row["id"]);
    assert_eq!(bounced["status"], "bounced", "{bounced}");
    let error = bounced["last_error"].as_str().unwrap();
    assert!(error.starts_with("5.1.1 user-unknown: 550 5.1.1"), "status and diagnostic in last_error: {error}");
    let entries = system_entries(&s, "CASE-1");
    assert!(entries.iter().any(|e| e.contains(JANE) && e.contains("could not be delivered")), "{entries:?}");

    // Staff are told, each once; nobody else.
    let told = s.flush();
    let got: Vec<(&str, &str)> = told.iter().map(|d| (d.to.as_str(), d.event.as_str())).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&(ANN, "bounced")) && got.contains(&(TOM, "bounced")), "{got:?}");
    assert!(to(&told, ANN).mail.text.contains(JANE));

    // The same DSN again is a duplicate; the DSN for the second mail to Jane marks its row,
    // but staff hear nothing more.
    let again =
        s.ingest(&dsn_for(ack, "5.1.1", "550 5.1.1 <jane@customer.example>: Recipient address rejected: User unknown"));
    assert_eq!(again["outcome"], "duplicate");
    let line = s.ingest(&dsn_for(second, "5.1.1", "550 5.1.1 <jane@customer.example>: User unknown"));
    assert!(line["reason"].as_str().unwrap().contains("bounced"), "{line}");
    assert_eq!(row(&s, &second.row["id"])["status"], "bounced");
    assert!(s.flush().is_empty(), "staff are told once");

    // The next mail to Jane is not sent: its row is suppressed, with the reason.
    analyst_replies(&s, "Which printer model is it?");
    let to_jane: Vec<Value> = s.outbox().into_iter().filter(|r| r["to"][0] == JANE).collect();
    let statuses: Vec<&str> = to_jane.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["bounced", "bounced", "suppressed"]);
    let held = &to_jane[2..];
    assert!(held[0]["last_error"].as_str().unwrap().contains("hard bounce: 5.1.1"), "{}", held[0]);
    assert!(!s.flush().iter().any(|d| d.to == JANE), "nothing goes out to a suppressed address");
    let listed = s.install.ok(&["outbox", "suppressed"]);
    assert!(listed.contains(JANE) && listed.contains("hard bounce"), "{listed}");

    // Staff lift the suppression; Jane is mailed again.
    assert!(s.install.ok(&["outbox", "unsuppress", JANE, "--as", ANN]).contains("mailed again"));
    assert_eq!(s.install.json(&["outbox", "suppressed", "--json"]), Value::Array(Vec::new()));
    let lifted = s.install.run(&["outbox", "unsuppress", JANE]);
    assert_eq!(lifted.status.code(), Some(1), "nothing left to lift");
    analyst_replies(&s, "Is it the one in room 4?");
    let sent = s.flush();
    assert_eq!(to(&sent, JANE).row["status"], "sent");
}

#[test]
fn a_bounce_to_the_return_path_names_its_notification_without_being_read() {
    let sink = SmtpSink::start(SinkOptions::plain());
    let mut s = Setup::with_sink(sink, "tls = \"none\"\n", "[bounces]\nreturn_path = \"bounce@example.com\"\n");
    let opening = open_case(&mut s);
    let ack = to(&opening, JANE);
    let envelope = format!("bounce+{}@example.com", ack.row["id"]);
    assert_eq!(ack.received.mail_from, envelope, "each notification has its own return path");

    // A terse notice that returns nothing: only the address it came back to names the row.
    let notice = format!(
        "From: postmaster@mx.customer.example\r\nTo: {envelope}\r\nSubject: failure notice\r\n\
         Message-ID: <notice.1@mx.customer.example>\r\n\r\n\
         Hi. This is the qmail-send program at mx.customer.example.\r\n\
         I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\r\n\
         <{JANE}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n"
    );
    let line = s.ingest(notice.as_bytes());
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("replied"), Some("CASE-1")), "{line}");
    let bounced = row(&s, &ack.row["id"]);
    assert_eq!(bounced["status"], "bounced");
    assert!(bounced["last_error"].as_str().unwrap().starts_with("5.1.1 user-unknown"), "{bounced}");
    assert!(system_entries(&s, "CASE-1").iter().any(|e| e.contains(JANE)));
    let told = s.flush();
    assert_eq!(told.iter().filter(|d| d.event == "bounced").count(), 2, "Ann and Tom");
    // The next mail to Jane is held back.
    analyst_replies(&s, "Any news?");
    assert!(s.outbox().iter().any(|r| r["to"][0] == JANE && r["status"] == "suppressed"));
    assert!(!s.flush().iter().any(|d| d.to == JANE));

    // Mail at the return path that is no bounce (a person answering it) is ordinary mail.
    let person = mail(JANE, "Re: [CASE-1] Printer on fire", &format!("Delivered-To: {envelope}\r\n"), "Still burning.");
    let line = s.ingest(&person);
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("replied"), Some("CASE-1")), "{line}");
    assert!(line["reason"].is_null(), "{line}");
}
