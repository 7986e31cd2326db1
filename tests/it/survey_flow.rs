//! Surveys from end to end through the real binary: a case closed by mail offers its
//! survey to the requester and contact (once, never to watchers) through the outbox; the
//! survey mail carries a working link; replying to it with a score records the answer;
//! `survey report --json` shows it.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::casegate::Installation;

pub const SECRET: &str = "test-survey-secret-0123456789";
const JANE: &str = "jane.doe@customer.example";
const BOB: &str = "bob@customer.example";
const ANN: &str = "ann.lee@support.example.com";

/// An installation whose notifications are written as `.eml` files into `outbox/`, with
/// surveys on; `listen` is where `casegate run` serves the survey page.
pub fn install(listen: &str, extra: &str) -> Installation {
    Installation::new(&format!(
        "[outbox]\nfile_dir = \"outbox\"\n[survey]\nsecret = \"{SECRET}\"\nbase_url = \"http://{listen}\"\nlisten = \"{listen}\"\n{extra}"
    ))
}

pub fn mail(from: &str, subject: &str, id: &str, body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}@mail.example>\r\n\
         {extra_headers}Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Opens CASE-1 for Jane with Bob in Cc (a watcher), resolves it as staff, and has Jane
/// accept the solution: the case is closed by mail.
pub fn close_a_case_by_mail(install: &Installation) {
    let open =
        mail(JANE, "Printer prints blank pages", "open", "Every page comes out blank.", &format!("Cc: <{BOB}>\r\n"));
    assert_eq!(install.ingest_bytes("open.eml", &open)["case"], "CASE-1");
    let resolve = mail(ANN, "Re: [CASE-1] Printer", "resolve", "#resolve\r\nReplace the toner cartridge.", "");
    assert_eq!(install.ingest_bytes("resolve.eml", &resolve)["outcome"], "command");
    let accept = mail(JANE, "Re: [CASE-1] Printer #accept", "accept", "Works again, thanks.", "");
    assert_eq!(install.ingest_bytes("accept.eml", &accept)["outcome"], "command");
    assert_eq!(install.case("CASE-1")["status"], "Closed");
}

/// The `.eml` files of the outbox folder, parsed: (file, mail).
pub fn outbox_mails(install: &Installation) -> Vec<(PathBuf, casegate::parse::InboundMail)> {
    let dir = install.path().join("outbox");
    let mut out: Vec<(PathBuf, casegate::parse::InboundMail)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .map(|p| {
                    let parsed = casegate::parse::parse(&std::fs::read(&p).unwrap()).expect("outbox mail parses");
                    (p, parsed)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The survey mails sent: (recipient, mail).
pub fn survey_mails(install: &Installation) -> Vec<(String, casegate::parse::InboundMail)> {
    outbox_mails(install)
        .into_iter()
        .filter(|(_, m)| m.subject.contains("How did we do?"))
        .map(|(_, m)| (m.to[0].address.to_string(), m))
        .collect()
}

/// The survey link in a survey mail's text.
pub fn link_in(mail: &casegate::parse::InboundMail) -> String {
    let start = mail.text.find("http://").expect("a link in the survey mail");
    mail.text[start..].split_whitespace().next().unwrap().to_string()
}

fn report(install: &Installation) -> Value {
    install.json(&["survey", "report", "--json"])
}

#[test]
fn a_case_closed_by_mail_offers_its_survey_once_to_the_requester_only() {
    let install = install("127.0.0.1:9", "");
    close_a_case_by_mail(&install);
    install.ok(&["outbox", "flush"]);
    let surveys = survey_mails(&install);
    assert_eq!(surveys.iter().map(|(to, _)| to.as_str()).collect::<Vec<_>>(), [JANE], "not the watcher, not staff");
    let (_, survey) = &surveys[0];
    assert!(survey.subject.starts_with("[CASE-1] How did we do?"), "{}", survey.subject);
    assert!(link_in(survey).starts_with("http://127.0.0.1:9/survey/"), "{}", survey.text);
    assert!(survey.text.contains("5 yes"), "the mail explains answering by reply");
    // Closing a second time (a follow-up case closed by staff) offers that case's survey;
    // the first is never offered again.
    assert_eq!(report(&install)["sent"], 1);
    install.ok(&["outbox", "flush"]);
    assert_eq!(survey_mails(&install).len(), 1);
}

#[test]
fn a_reply_to_the_survey_mail_with_a_score_is_the_answer() {
    let install = install("127.0.0.1:9", "");
    close_a_case_by_mail(&install);
    install.ok(&["outbox", "flush"]);
    let (_, survey) = survey_mails(&install).remove(0);
    let survey_id = survey.message_id.clone().unwrap();
    let in_reply_to = format!("In-Reply-To: <{survey_id}>\r\nReferences: <{survey_id}>\r\n");

    let line = install.ingest_bytes(
        "answer.eml",
        &mail(
            JANE,
            "Re: [CASE-1] How did we do?",
            "answer",
            "4 yes quick and friendly\r\n\r\n> quoted survey",
            &in_reply_to,
        ),
    );
    assert_eq!(line["outcome"], "command", "{line}");
    assert!(line["reason"].as_str().unwrap().starts_with("survey answer recorded: score 4, solved yes"), "{line}");
    let r = report(&install);
    assert_eq!(
        (r["sent"].as_i64(), r["answered"].as_i64(), r["average_score"].as_f64()),
        (Some(1), Some(1), Some(4.0))
    );
    assert_eq!(r["comments"][0]["comment"], "quick and friendly");
    assert_eq!(r["comments"][0]["channel"], "mail");
    let audited: i64 = install
        .db()
        .query_row("SELECT count(*) FROM audit WHERE action LIKE 'survey-answer%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(audited, 1, "one audit row per answer, whichever channel it came by");

    // The answer can be changed by replying again; it does not open a follow-up case.
    let again =
        install.ingest_bytes("again.eml", &mail(JANE, "Re: [CASE-1] How did we do?", "again", "5", &in_reply_to));
    assert!(again["reason"].as_str().unwrap().starts_with("survey answer changed: score 5"), "{again}");
    assert_eq!(report(&install)["average_score"].as_f64(), Some(5.0));
    assert_eq!(install.json(&["cases", "list", "--json"]).as_array().unwrap().len(), 1, "no follow-up case");
    // Words without a score are not an answer: a reply on a closed case opens a follow-up.
    let words = install.ingest_bytes(
        "words.eml",
        &mail(JANE, "Re: [CASE-1] How did we do?", "words", "It broke again.", &in_reply_to),
    );
    assert_eq!((words["outcome"].as_str(), words["case"].as_str()), (Some("created"), Some("CASE-2")), "{words}");
    // Someone else replying to the survey mail with a score is not an answer: Bob (a
    // watcher, same account) writes on the thread, which now leads to the follow-up.
    let bob = install.ingest_bytes("bob.eml", &mail(BOB, "Re: [CASE-1] How did we do?", "bob", "5 yes", &in_reply_to));
    assert_eq!((bob["outcome"].as_str(), bob["case"].as_str()), (Some("replied"), Some("CASE-2")), "{bob}");
    assert_eq!(report(&install)["answered"], 1);
}

#[test]
fn the_survey_waits_the_configured_delay_and_can_be_switched_off() {
    let delayed = install("127.0.0.1:9", "delay_secs = 3600");
    close_a_case_by_mail(&delayed);
    let queued = delayed.json(&["outbox", "list", "--json"]);
    let survey = queued.as_array().unwrap().iter().find(|n| n["event"] == "survey").expect("survey queued").clone();
    let created = chrono::DateTime::parse_from_rfc3339(survey["created_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(survey["next_attempt_at"].as_str().unwrap()).unwrap();
    assert_eq!((due - created).num_seconds(), 3600);
    delayed.ok(&["outbox", "flush"]);
    assert!(survey_mails(&delayed).is_empty(), "not sent before its time");

    let off = install("127.0.0.1:9", "enabled = false");
    close_a_case_by_mail(&off);
    off.ok(&["outbox", "flush"]);
    assert!(survey_mails(&off).is_empty());
    assert_eq!(report(&off)["sent"], 0);
}
