//! Surveys from end to end through the real binary: a case closed by mail offers its
//! survey to the requester and contact (once, never to watchers) through the outbox; the
//! survey mail carries a working link; replying to it with a score records the answer;
//! `survey report --json` shows it.

use serde_json::Value;

use crate::support::casegate::Installation;
use crate::support::survey::by_mail::{close_a_case_by_mail, install, link_in, mail, survey_mails, BOB, JANE};

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
    let audited = install.count("SELECT count(*) FROM audit WHERE action LIKE 'survey-answer%'", []);
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
