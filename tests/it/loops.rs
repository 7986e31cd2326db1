//! The loop breaker, end to end: autoresponders that answer every mail they get, without
//! the RFC 3834 headers that would tell casegate not to answer, against the real SMTP sink
//! and `casegate ingest`. Each run lasts ten simulated minutes: twenty rounds in which each
//! responder answers what it received in the round before, its `Date` thirty seconds on.
//! (casegate's own windows — 24 hours for the daily limit, `case_exchange_minutes` for the
//! per-case brake — hold the whole run, which takes seconds.) A run ends early once a round
//! brings the responders nothing: only their answers make casegate write, so the rounds
//! left would be the same. Nothing the responders send is lost: every mail is on a case.

use serde_json::Value;

use crate::support::mail::to_support;
use crate::support::mailstack::{SinkOptions, SmtpSink};
use crate::support::notify::{Delivered, Setup, BOB, JANE};

const ROBOT: &str = "robot@autoresponder.example";
const W1: &str = "w1@robots.example";
const W2: &str = "w2@robots.example";
/// Rounds of thirty simulated seconds: ten minutes.
const ROUNDS: usize = 20;

fn setup(limits: &str) -> Setup {
    Setup::with_sink(SmtpSink::start(SinkOptions::plain()), "tls = \"none\"\n", &format!("[limits]\n{limits}\n"))
}

/// `Date` of round `round`: thirty seconds apart.
fn date(round: usize) -> String {
    let secs = round * 30;
    format!("Mon, 23 Nov 2026 10:{:02}:{:02} +0000", secs / 60, secs % 60)
}

/// A mail from `from` as an autoresponder writes it: no Auto-Submitted, no Precedence, no
/// X-Autoreply; `threading` are In-Reply-To/References lines, or nothing.
fn robot_mail(from: &str, subject: &str, round: usize, n: usize, threading: &str, body: &str) -> Vec<u8> {
    let raw =
        to_support(from, subject, &format!("r{n}.{round}@{}", from.split('@').nth(1).unwrap_or("x")), threading, body);
    // The builder writes a fixed Date; the responder's clock moves on.
    String::from_utf8(raw)
        .unwrap()
        .replace("Date: Mon, 23 Nov 2026 10:00:00 +0000", &format!("Date: {}", date(round)))
        .into_bytes()
}

fn mails_to<'a>(mails: &'a [Delivered], address: &str) -> Vec<&'a Delivered> {
    mails.iter().filter(|d| d.to == address).collect()
}

fn held_back(s: &Setup, address: &str) -> Vec<Value> {
    s.outbox().into_iter().filter(|r| r["to"][0] == address && r["status"] == "suppressed").collect()
}

/// Runs a responder at `ROBOT` for ten simulated minutes: it answers each mail it got in
/// the round before with `answer(n)` (a new case each time: no token, no threading).
/// Returns the mails it received, and the answers it sent.
fn run_robot(s: &mut Setup, answer: impl Fn(usize) -> String) -> (usize, Vec<String>) {
    let mut sent = vec![answer(0)];
    let line = s.ingest(&robot_mail(ROBOT, "Automatic message", 0, 0, "", &sent[0]));
    assert_eq!(line["outcome"], "created", "{line}");
    let mut received = 0;
    for round in 1..ROUNDS {
        let got = s.flush();
        if mails_to(&got, ROBOT).is_empty() {
            break;
        }
        for _ in mails_to(&got, ROBOT) {
            received += 1;
            let text = answer(sent.len());
            let line = s.ingest(&robot_mail(ROBOT, "Thank you for your message", round, sent.len(), "", &text));
            assert_eq!(line["outcome"], "created", "every answer is kept, on a case of its own: {line}");
            sent.push(text);
        }
    }
    (received, sent)
}

/// Every answer the responder sent is the description of one case of its.
fn assert_each_answer_is_on_a_case(s: &Setup, sent: &[String]) {
    let cases = s.install.json(&["cases", "list", "--json"]);
    let ids: Vec<&str> = cases.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    let mut descriptions: Vec<String> = ids
        .iter()
        .map(|id| s.install.case(id)["description"].as_str().unwrap_or_default().trim().to_string())
        .collect();
    for text in sent {
        let at = descriptions.iter().position(|d| d == text.trim());
        assert!(at.is_some(), "{text:?} is on no case: {descriptions:?}");
        descriptions.remove(at.unwrap());
    }
    assert!(descriptions.is_empty(), "cases nobody wrote: {descriptions:?}");
}

#[test]
fn a_responder_that_answers_every_acknowledgement_gets_at_most_the_daily_limit() {
    let mut s = setup("auto_replies_per_address_per_day = 5");
    // Every answer has new words (a quote of the day), so only the daily limit stops it.
    const QUOTES: &[&str] = &[
        "Carpe diem",
        "Festina lente",
        "Veni vidi vici",
        "Alea iacta est",
        "Ad astra",
        "Cogito ergo sum",
        "Per aspera ad astra",
        "Dum spiro spero",
        "Acta non verba",
        "Ars longa",
    ];
    let (received, sent) =
        run_robot(&mut s, |n| format!("Thank you for your email. Quote of the day: {}.", QUOTES[n % QUOTES.len()]));
    assert_eq!(received, 5, "at most limits.auto_replies_per_address_per_day mails out");
    assert_eq!(sent.len(), 6, "the loop ends when the answers stop");
    let held = held_back(&s, ROBOT);
    assert_eq!(held.len(), 1, "{held:?}");
    let why = held[0]["last_error"].as_str().unwrap();
    assert!(why.starts_with("loop breaker: 5 automatic mails to robot@autoresponder.example in 24 hours"), "{why}");
    assert_eq!(held[0]["event"], "acknowledgement");
    assert_each_answer_is_on_a_case(&s, &sent);
    // The held-back mail is listed as such.
    assert!(s.install.ok(&["outbox", "list", "--status", "suppressed"]).contains(ROBOT));
}

#[test]
fn a_responder_that_repeats_itself_is_stopped_by_its_own_words() {
    let mut s = setup("auto_replies_per_address_per_day = 20");
    // The same words each time, with a new ticket number.
    let (received, sent) =
        run_robot(&mut s, |n| format!("Your mail was received as ticket {}. We answer within 2 days.", 1000 + n));
    assert_eq!(received, 2, "the third identical answer gets no acknowledgement");
    assert_eq!(sent.len(), 3);
    let held = held_back(&s, ROBOT);
    assert_eq!(held.len(), 1, "{held:?}");
    let why = held[0]["last_error"].as_str().unwrap();
    assert!(why.contains("sent the same text 2 times before today"), "{why}");
    assert_each_answer_is_on_a_case(&s, &sent);
}

#[test]
fn two_responders_watching_a_case_are_braked() {
    let mut s = setup("case_exchange_limit = 3");
    let line = s.ingest(&to_support(
        JANE,
        "Printer on fire",
        "open.1@customer.example",
        &format!("Cc: {W1}, {W2}, {BOB}\r\n"),
        "Help.",
    ));
    assert_eq!(line["case"], "CASE-1", "{line}");
    let mut answers = 0;
    let mut rounds = 0;
    for round in 1..=ROUNDS {
        let got = s.flush();
        let for_robots: Vec<&Delivered> = got.iter().filter(|d| d.to == W1 || d.to == W2).collect();
        if for_robots.is_empty() {
            break;
        }
        rounds = round;
        for d in for_robots {
            // Each answers on the case: the token stays in the subject, no RFC 3834 headers.
            let subject = format!("Re: {}", d.mail.subject);
            let threading = format!("In-Reply-To: <{}>\r\n", d.message_id());
            let line = s.ingest(&robot_mail(&d.to, &subject, round, answers, &threading, "I am away until Monday."));
            assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("replied"), Some("CASE-1")), "{line}");
            answers += 1;
        }
    }
    let to_robots = s.sink.messages().iter().filter(|m| m.rcpt_to[0] == W1 || m.rcpt_to[0] == W2).count();
    assert!(to_robots <= 8, "the brake stops the exchange: {to_robots} mails to the responders");
    assert!(rounds <= 6, "and the loop ends: the responders had mail in {rounds} of {ROUNDS} rounds");
    let held: Vec<Value> = [W1, W2].iter().flat_map(|w| held_back(&s, w)).collect();
    assert!(!held.is_empty());
    for row in &held {
        let why = row["last_error"].as_str().unwrap();
        assert!(why.starts_with("loop breaker: ") && why.contains("entries on CASE-1 within 10 minutes"), "{why}");
    }
    // Nothing is lost: every answer is an entry on the case; and Bob, a person watching,
    // still hears of them.
    let case = s.install.case("CASE-1");
    let from_robots =
        case["messages"].as_array().unwrap().iter().filter(|m| m["from"] == W1 || m["from"] == W2).count();
    assert_eq!(from_robots, answers);
    let to_bob = s.sink.messages().iter().filter(|m| m.rcpt_to[0] == BOB).count();
    assert!(to_bob > answers / 2, "Bob got {to_bob} of {answers}");
}
