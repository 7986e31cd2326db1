//! The HTML of a person's case page and of "My cases": pure functions from data to
//! markup, so escaping and accessibility are tested without a server.
//!
//! The case page shows, top to bottom: the subject and status; what was just done, or
//! why it was not; the decision a proposed solution waits for, when this person may take
//! it; the summary (the case's opening message); the rest of the public thread with its
//! files; the case's fields; and what else the person may do. Each action is one small
//! form with the hidden form tag and `action` field — `accept`, `reject` with its
//! `reason`, `close`, `watch` with an `address`, `unwatch`. Plain HTML without
//! JavaScript, laid out for a phone first, every control labelled, everything that comes
//! from outside escaped ([`escape`]). It looks like the survey page: same document, same
//! style sheet ([`super::html`]).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::html::{document, escape, human_date, human_time};
use crate::case::{MessageKind, Status};

/// Longest reason for rejecting a solution, in characters (the form says so too).
pub const MAX_REASON_CHARS: usize = 4000;
/// Longest text in the "add watchers" field, in characters.
pub const MAX_ADDRESSES_CHARS: usize = 2000;

/// What the person may do on the case now (each per the permission table and the status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed {
    pub accept: bool,
    pub reject: bool,
    pub close: bool,
    pub watch: bool,
    pub unwatch: bool,
}

impl Allowed {
    fn any(&self) -> bool {
        self.accept || self.reject || self.close || self.watch || self.unwatch
    }
}

/// One file, as the page lists it.
#[derive(Debug, Clone)]
pub struct FileLink {
    pub name: String,
    /// `12 KB`.
    pub size: String,
    /// Relative download link (`../file/{token}`).
    pub href: String,
}

/// One entry of the thread, as the page shows it.
#[derive(Debug, Clone)]
pub struct EntryView {
    pub kind: MessageKind,
    /// Who wrote it (an address), when known.
    pub from: Option<String>,
    /// The stored time (RFC 3339).
    pub at: String,
    pub body: String,
    pub files: Vec<FileLink>,
}

/// What was just done, or why not.
#[derive(Debug, Clone)]
pub enum Said {
    Done(String),
    Refused(String),
}

/// Everything the case page shows.
#[derive(Debug, Clone)]
pub struct CasePage<'a> {
    /// `CASE-42`.
    pub label: &'a str,
    pub subject: &'a str,
    pub status: Status,
    /// (label, value) pairs for the details list, in order.
    pub fields: Vec<(&'static str, String)>,
    pub opening: Option<EntryView>,
    pub later: Vec<EntryView>,
    /// Earlier entries left out of `later`.
    pub hidden: usize,
    pub allowed: Allowed,
    /// The hidden field binding the forms to the link.
    pub form_tag: &'a str,
    /// Whom the page is for, and as what (`the requester`, `a watcher`).
    pub person: &'a str,
    pub role: &'a str,
    pub said: Option<Said>,
    /// What was typed into the reject and watch forms, kept when they are shown again.
    pub reason: &'a str,
    pub addresses: &'a str,
    /// Relative link to the person's "My cases".
    pub my_cases: &'a str,
    pub support: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// The case page.
pub fn case_page(p: &CasePage<'_>) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "<h1>{}</h1>", escape(p.subject));
    let _ = writeln!(h, "<p class=\"case\">Case <strong>{}</strong> · {}</p>", escape(p.label), status_badge(p.status));
    match &p.said {
        Some(Said::Done(text)) => {
            let _ = writeln!(h, "<p class=\"notice\" role=\"status\">{}</p>", escape(text));
        }
        Some(Said::Refused(text)) => {
            let _ = writeln!(h, "<p class=\"error\" role=\"alert\">{}</p>", escape(text));
        }
        None => {}
    }
    h.push_str(&decision(p));
    if let Some(opening) = &p.opening {
        h.push_str("<h2 id=\"summary\">Summary</h2>\n");
        h.push_str(&entry(opening, "div"));
    }
    h.push_str(&thread(p));
    h.push_str("<h2 id=\"details\">Details</h2>\n<dl>\n");
    for (label, value) in &p.fields {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
    }
    h.push_str("</dl>\n");
    h.push_str(&more(p));
    h.push_str(&footer(p));
    document(&format!("{} · {}", p.label, p.subject), &h)
}

fn status_badge(status: Status) -> String {
    format!("<span class=\"status status-{}\">{}</span>", status.as_db(), status.as_str())
}

/// The decision a proposed solution waits for, when this person may take it.
fn decision(p: &CasePage<'_>) -> String {
    if !(p.allowed.accept || p.allowed.reject) {
        return String::new();
    }
    let mut h = String::from("<h2 id=\"decide\">Your decision</h2>\n");
    if p.allowed.accept {
        h.push_str(&form(
            p,
            "accept",
            "<p>Does the proposed solution solve your problem? If so, accepting it closes the case.</p>\n",
            "Accept the solution",
            false,
        ));
    }
    if p.allowed.reject {
        let fields = format!(
            "<label for=\"reason\">Not solved? Tell us what is still wrong</label>\n\
             <textarea id=\"reason\" name=\"reason\" rows=\"4\" required maxlength=\"{MAX_REASON_CHARS}\">{}</textarea>\n",
            escape(p.reason)
        );
        h.push_str(&form(p, "reject", &fields, "Reject the solution", true));
    }
    h
}

/// The other actions the person may take: watchers, closing, leaving; and how to write.
fn more(p: &CasePage<'_>) -> String {
    let mut h = String::from("<h2 id=\"more\">What else you can do</h2>\n");
    if p.allowed.watch {
        let fields = format!(
            "<label for=\"address\">Add watchers</label>\n\
             <p class=\"small\" id=\"address-hint\">They get a mail about every change of this case. Several \
             addresses may be separated by commas.</p>\n\
             <input type=\"email\" id=\"address\" name=\"address\" multiple required maxlength=\"{MAX_ADDRESSES_CHARS}\" \
             autocomplete=\"off\" aria-describedby=\"address-hint\" value=\"{}\">\n",
            escape(p.addresses)
        );
        h.push_str(&form(p, "watch", &fields, "Add watchers", true));
    }
    if p.allowed.close {
        h.push_str(&form(
            p,
            "close",
            "<p>No longer needed? You can close the case at any time.</p>\n",
            "Close the case",
            true,
        ));
    }
    if p.allowed.unwatch {
        h.push_str(&form(
            p,
            "unwatch",
            "<p>You watch this case. Stop, and you get no more mail about it (and this link stops working).</p>\n",
            "Stop watching",
            true,
        ));
    }
    if !p.allowed.any() {
        h.push_str("<p>There is nothing for you to decide on this case right now.</p>\n");
    }
    let _ = writeln!(
        h,
        "<p class=\"small\">To add a message or files, reply to any mail about {} (keep [{}] in the subject), or write to \
         <a href=\"mailto:{}\">{}</a>.</p>",
        escape(p.label),
        escape(p.label),
        escape(p.support),
        escape(p.support)
    );
    h
}

/// One action's form: the hidden fields, `fields`, and its button.
fn form(p: &CasePage<'_>, action: &str, fields: &str, button: &str, secondary: bool) -> String {
    // No `action` attribute: the form posts to the address it was loaded from, which also
    // works behind a proxy that serves the page under a path prefix.
    format!(
        "<div class=\"action\">\n<form method=\"post\">\n\
         <input type=\"hidden\" name=\"form\" value=\"{}\">\n<input type=\"hidden\" name=\"action\" value=\"{action}\">\n\
         {fields}<button type=\"submit\"{}>{button}</button>\n</form>\n</div>\n",
        escape(p.form_tag),
        if secondary { " class=\"secondary\"" } else { "" },
    )
}

fn thread(p: &CasePage<'_>) -> String {
    let mut h = String::from("<h2 id=\"thread\">Conversation</h2>\n");
    if p.later.is_empty() {
        h.push_str("<p>No answers yet.</p>\n");
        return h;
    }
    if p.hidden > 0 {
        let _ = writeln!(h, "<p class=\"small\">{} earlier entries are not shown; the newest follow.</p>", p.hidden);
    }
    h.push_str("<ol class=\"thread\">\n");
    for e in &p.later {
        h.push_str(&entry(e, "li"));
    }
    h.push_str("</ol>\n");
    h
}

/// One entry: who and when, the text, the files to download.
fn entry(e: &EntryView, tag: &str) -> String {
    let class = match e.kind {
        MessageKind::Staff => "entry staff",
        MessageKind::System => "entry system",
        _ => "entry",
    };
    let who = match (e.kind, &e.from) {
        (MessageKind::System, _) => "Update".to_string(),
        (MessageKind::Staff, Some(from)) => format!("{from} (support)"),
        (_, Some(from)) => from.clone(),
        (_, None) => "Unknown sender".to_string(),
    };
    let mut h = format!(
        "<{tag} class=\"{class}\">\n<p class=\"who\">{} <span class=\"when\">· {}</span></p>\n<div class=\"body\">{}</div>\n",
        escape(&who),
        escape(&human_time(&e.at)),
        escape(&e.body)
    );
    if !e.files.is_empty() {
        h.push_str("<ul class=\"files\" aria-label=\"Files\">\n");
        for f in &e.files {
            let _ = writeln!(
                h,
                "<li><a href=\"{}\" download>{}</a> <span class=\"small\">({})</span></li>",
                escape(&f.href),
                escape(&f.name),
                escape(&f.size)
            );
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(h, "</{tag}>");
    h
}

fn footer(p: &CasePage<'_>) -> String {
    format!(
        "<p class=\"small\">This page is personal to {} ({}); please do not forward its link. The link works until {}. \
         <a href=\"{}\">All your cases</a></p>\n",
        escape(p.person),
        escape(p.role),
        human_date(p.expires_at),
        escape(p.my_cases)
    )
}

/// The page after someone stopped watching, or for a link whose person left the case.
pub fn left(label: &str, subject: &str, done: bool) -> String {
    let (title, text) = if done {
        (
            "You no longer watch this case",
            "You get no more mail about it, and your links to it stop working. If you change your mind, ask its \
             requester to add you again.",
        )
    } else {
        (
            "This link no longer works",
            "You no longer take part in this case, so its page is not shown to you. If that is a mistake, ask its \
             requester to add you again as a watcher.",
        )
    };
    let h = format!(
        "<h1>{}</h1>\n<p class=\"case\">Case <strong>{}</strong>: <span class=\"subject\">{}</span></p>\n<p>{}</p>\n",
        escape(title),
        escape(label),
        escape(subject),
        escape(text)
    );
    document(title, &h)
}

/// One case in "My cases".
#[derive(Debug, Clone)]
pub struct CaseItem {
    pub label: String,
    pub subject: String,
    pub status: Status,
    /// `requester`, `contact` or `watcher`.
    pub role: String,
    /// Stored time of the last activity.
    pub updated_at: String,
    /// Relative link to the case page.
    pub href: String,
}

/// Everything "My cases" shows.
#[derive(Debug, Clone)]
pub struct MyCases<'a> {
    pub person: &'a str,
    /// The status shown (`None`: all).
    pub filter: Option<Status>,
    pub items: Vec<CaseItem>,
    /// How many cases the person has in all (before the filter).
    pub total: usize,
    pub expires_at: DateTime<Utc>,
}

/// "My cases": the person's cases with a status filter, each linking to its page.
pub fn my_cases(p: &MyCases<'_>) -> String {
    let mut h = String::from("<h1>My cases</h1>\n");
    let _ = writeln!(
        h,
        "<p class=\"case\">Cases of <strong>{}</strong>, most recently active first.</p>",
        escape(p.person)
    );
    // A GET form: choosing a filter changes only what is shown.
    h.push_str("<form method=\"get\" class=\"filter\">\n<div>\n<label for=\"status\">Show</label>\n<select id=\"status\" name=\"status\">\n");
    let _ =
        writeln!(h, "<option value=\"all\"{}>All cases</option>", if p.filter.is_none() { " selected" } else { "" });
    for s in Status::ALL {
        let selected = if p.filter == Some(*s) { " selected" } else { "" };
        let _ = writeln!(h, "<option value=\"{}\"{selected}>{}</option>", s.as_db(), s.as_str());
    }
    h.push_str("</select>\n</div>\n<button type=\"submit\" class=\"secondary\">Show</button>\n</form>\n");
    if p.items.is_empty() {
        let none = if p.total == 0 { "You take part in no cases." } else { "None of your cases has this status." };
        let _ = writeln!(h, "<p>{none}</p>");
    } else {
        let _ = writeln!(h, "<p class=\"small\" role=\"status\">{} of your {} cases.</p>", p.items.len(), p.total);
        h.push_str("<ul class=\"cases\">\n");
        for c in &p.items {
            let _ = writeln!(
                h,
                "<li><a href=\"{}\">{} · {}</a><br>{} <span class=\"small\">· you are the {} · last activity {}</span></li>",
                escape(&c.href),
                escape(&c.label),
                escape(&c.subject),
                status_badge(c.status),
                escape(&c.role),
                escape(&human_time(&c.updated_at))
            );
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(
        h,
        "<p class=\"small\">This page is personal; please do not forward its link. It works until {}.</p>",
        human_date(p.expires_at)
    );
    document("My cases", &h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

    fn page<'a>(subject: &'a str, allowed: Allowed) -> CasePage<'a> {
        let file = FileLink { name: HOSTILE.into(), size: "3 KB".into(), href: "../file/tok\"en".into() };
        let e = |kind, body: &str| EntryView {
            kind,
            from: Some(format!("{HOSTILE}@x.example")),
            at: "2030-01-02T10:00:00.000Z".into(),
            body: body.into(),
            files: vec![file.clone()],
        };
        CasePage {
            label: "CASE-7",
            subject,
            status: Status::Resolved,
            fields: vec![("Impact", "High".into()), ("Account", HOSTILE.into())],
            opening: Some(e(MessageKind::Customer, HOSTILE)),
            later: vec![e(MessageKind::Staff, "Try this."), e(MessageKind::System, "proposed a solution")],
            hidden: 0,
            allowed,
            form_tag: "tag-123",
            person: "jane@customer.example",
            role: "the requester",
            said: Some(Said::Refused(HOSTILE.into())),
            reason: "</textarea><b>",
            addresses: "\"><b>",
            my_cases: "../cases/abc",
            support: "support@example.com",
            expires_at: "2030-01-31T00:00:00Z".parse().unwrap(),
        }
    }

    fn all() -> Allowed {
        Allowed { accept: true, reject: true, close: true, watch: true, unwatch: true }
    }

    #[test]
    fn everything_echoed_is_escaped() {
        let html = case_page(&page(HOSTILE, all()));
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>"), "{html}");
        assert!(!html.contains("tok\"en"), "attribute values cannot be closed early");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(html.matches("</textarea>").count(), 1, "the reason cannot close its textarea");
        let list = my_cases(&MyCases {
            person: HOSTILE,
            filter: None,
            items: vec![CaseItem {
                label: "CASE-7".into(),
                subject: HOSTILE.into(),
                status: Status::Open,
                role: "watcher".into(),
                updated_at: HOSTILE.into(),
                href: "\"><script>".into(),
            }],
            total: 1,
            expires_at: "2030-01-31T00:00:00Z".parse().unwrap(),
        });
        assert!(!list.contains("<script>") && !list.contains("<img"), "{list}");
        assert!(!left(HOSTILE, HOSTILE, true).contains("<script>"));
    }

    #[test]
    fn each_allowed_action_is_a_labelled_form_with_the_hidden_fields_and_no_script() {
        let html = case_page(&page("Printer", all()));
        for action in ["accept", "reject", "close", "watch", "unwatch"] {
            assert!(html.contains(&format!("name=\"action\" value=\"{action}\"")), "{action}");
        }
        assert_eq!(html.matches("<form method=\"post\">").count(), 5);
        assert_eq!(html.matches("name=\"form\" value=\"tag-123\"").count(), 5);
        for id in ["reason", "address"] {
            assert!(html.contains(&format!("for=\"{id}\"")) && html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("<textarea id=\"reason\" name=\"reason\" rows=\"4\" required"));
        assert!(html.contains("<html lang=\"en\">") && html.contains("name=\"viewport\""));
        assert!(!html.contains("<script"), "no scripts");
        assert!(!regex::Regex::new(r"\son[a-z]+\s*=").unwrap().is_match(&html), "no inline event handlers");
        assert!(html.contains("role=\"alert\""));
    }

    #[test]
    fn only_the_allowed_actions_are_offered() {
        let watcher = Allowed { watch: true, unwatch: true, ..Allowed::default() };
        let html = case_page(&page("Printer", watcher));
        assert!(
            !html.contains("value=\"accept\"")
                && !html.contains("value=\"reject\"")
                && !html.contains("value=\"close\"")
        );
        assert!(html.contains("value=\"watch\"") && html.contains("value=\"unwatch\""));
        let html = case_page(&page("Printer", Allowed::default()));
        assert!(!html.contains("<form") && html.contains("nothing for you to decide"));
    }

    #[test]
    fn my_cases_has_a_get_filter_with_the_shown_status_selected() {
        let html = my_cases(&MyCases {
            person: "jane@customer.example",
            filter: Some(Status::Resolved),
            items: Vec::new(),
            total: 3,
            expires_at: "2030-01-31T00:00:00Z".parse().unwrap(),
        });
        assert!(html.contains("<form method=\"get\" class=\"filter\">"));
        assert!(html.contains("<option value=\"resolved\" selected>Resolved</option>"));
        assert!(html.contains("None of your cases has this status."));
        assert!(html.contains("<label for=\"status\">") && html.contains("id=\"status\""));
    }
}
