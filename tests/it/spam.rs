//! Spam and reports keep out of the queue, end to end through `casegate ingest` and the
//! real SMTP sink: mail the receiving server flagged as spam opens no case and gets no
//! answer (it is quarantined `spam`, and a person can release it); an abuse report (ARF)
//! is recorded as machine mail; a DMARC failure from a sender casegate never saw is
//! quarantined without an acknowledgement.

use crate::support::casegate::Installation;
use crate::support::mailstack::{SinkOptions, SmtpSink};
use crate::support::notify::{mail, Setup, JANE};

#[test]
fn spam_flagged_mail_opens_no_case_and_gets_no_answer_until_a_person_releases_it() {
    let mut s = Setup::with_sink(
        SmtpSink::start(SinkOptions::plain()),
        "tls = \"none\"\n",
        "[spam]\nheader_rules = [\"X-Barracuda-Spam-Status: Yes\"]\n",
    );
    let flagged = [
        "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=14.2 required=5.0\r\n",
        "X-Spam-Status: Yes, score=7.9 required=5.0 tests=BAYES_99\r\n",
        "X-Barracuda-Spam-Status: Yes, SCORE=9.1\r\n",
    ];
    for (i, headers) in flagged.iter().enumerate() {
        let line = s.ingest(&mail("Winner <prize@lottery.example>", &format!("You won {i}"), headers, "Claim now."));
        assert_eq!(line["outcome"], "quarantined", "{line}");
        assert!(line["reason"].as_str().unwrap().starts_with("spam: marked as spam by the receiving server"), "{line}");
        assert!(line["case"].is_null());
    }
    // A reply to a case is no way in either.
    let opened = s.ingest(&mail(JANE, "Printer on fire", "", "Help."));
    assert_eq!(opened["case"], "CASE-1");
    let line = s.ingest(&mail(JANE, "Re: [CASE-1] Printer on fire", "X-Spam-Flag: YES\r\n", "Cheap pills."));
    assert_eq!(line["outcome"], "quarantined", "{line}");

    assert_eq!(s.install.json(&["cases", "list", "--json"]).as_array().unwrap().len(), 1);
    let sent = s.flush();
    assert!(sent.iter().all(|d| d.row["case"] == "CASE-1" && d.event != "not-applied"), "no answer to spam");
    assert!(!sent.iter().any(|d| d.to == "prize@lottery.example"));
    let messages = s.install.case("CASE-1")["messages"].as_array().unwrap().len();
    assert_eq!(messages, 1, "the spam reply is not on the case");

    // Quarantined with the reason, and releasable: a person looked and it was not spam.
    let quarantined = s.install.json(&["quarantine", "list", "--json"]);
    let rows = quarantined.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|q| q["reason"] == "spam"), "{quarantined}");
    let id = rows[0]["id"].to_string();
    assert!(s.install.ok(&["quarantine", "release", &id]).contains("created"));
    assert_eq!(s.install.json(&["cases", "list", "--json"]).as_array().unwrap().len(), 2);
}

#[test]
fn an_abuse_report_is_recorded_as_machine_mail() {
    let s = Setup::new();
    let arf = "From: abuse-reports@isp.example\r\nTo: support@example.com\r\nSubject: Abuse report\r\n\
               Message-ID: <arf.1@isp.example>\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
               --F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\
               --F\r\nContent-Type: message/feedback-report\r\n\r\n\
               Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n\
               --F\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.com\r\nSubject: [CASE-9] x\r\n\
               --F--\r\n";
    let line = s.ingest(arf.as_bytes());
    assert_eq!(line["outcome"], "ignored", "{line}");
    assert!(
        line["reason"].as_str().unwrap().starts_with("report: multipart/report (feedback-report, abuse)"),
        "{line}"
    );
    assert!(s.install.json(&["cases", "list", "--json"]).as_array().unwrap().is_empty());
    assert!(s.outbox().is_empty(), "no answer");
}

#[test]
fn a_dmarc_failure_from_a_new_sender_is_quarantined_without_an_acknowledgement() {
    let install = Installation::new("authserv_id = \"mx.example.com\"\n");
    let results = "Authentication-Results: mx.example.com; spf=fail smtp.mailfrom=bank.example; \
                   dmarc=fail (p=reject) header.from=bank.example\r\n";
    let forged = mail("Bank <security@bank.example>", "Verify your account", results, "Click here.");
    let line = install.ingest_bytes("forged.eml", &forged);
    assert_eq!(line["outcome"], "quarantined", "{line}");
    assert!(line["reason"].as_str().unwrap().starts_with("dmarc-fail: DMARC failed for bank.example"), "{line}");
    let outbox = install.json(&["outbox", "list", "--json"]);
    assert!(outbox.as_array().unwrap().is_empty(), "no acknowledgement to the forged address: {outbox}");
    // A sender casegate knows keeps writing despite a broken DMARC record (a forwarder).
    let first = install.ingest_bytes("jane.eml", &mail(JANE, "Printer on fire", "", "Help."));
    assert_eq!(first["outcome"], "created");
    let via_list = results.replace("bank.example", "customer.example");
    let line = install.ingest_bytes("jane2.eml", &mail(JANE, "Re: [CASE-1] Printer on fire", &via_list, "More."));
    assert_eq!(line["outcome"], "replied", "{line}");
}
