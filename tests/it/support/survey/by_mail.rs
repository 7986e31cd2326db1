//! Surveys through the real binary, as a customer meets them: an installation that writes
//! its notifications as `.eml` files into `outbox/`, a case closed by mail, and the survey
//! mails and links found in that folder.

use std::path::PathBuf;

use crate::support::casegate::Installation;
use crate::support::mail::to_support;

const SECRET: &str = "test-survey-secret-0123456789";
/// The requester of the case [`close_a_case_by_mail`] closes.
pub const JANE: &str = "jane.doe@customer.example";
/// A watcher of that case (in Cc of the opening mail), of Jane's account.
pub const BOB: &str = "bob@customer.example";
/// The analyst who resolves it.
pub const ANN: &str = "ann.lee@support.example.com";

/// An installation whose notifications are written as `.eml` files into `outbox/`, with
/// surveys on; `listen` is where `casegate run` serves the survey page.
pub fn install(listen: &str, extra: &str) -> Installation {
    Installation::new(&format!(
        "[outbox]\nfile_dir = \"outbox\"\n[survey]\nsecret = \"{SECRET}\"\nbase_url = \"http://{listen}\"\nlisten = \"{listen}\"\n{extra}"
    ))
}

/// A mail from `from` with Message-ID `<{id}@mail.example>`; `extra_headers` are header
/// lines, each ending in CRLF.
pub fn mail(from: &str, subject: &str, id: &str, body: &str, extra_headers: &str) -> Vec<u8> {
    to_support(&format!("<{from}>"), subject, &format!("{id}@mail.example"), extra_headers, body)
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
