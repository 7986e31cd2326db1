//! The HTML of the survey page: the form, the thank-you page and the pages that explain a
//! refused link. Pure functions from data to markup, so escaping and accessibility are
//! tested without a server.
//!
//! Plain semantic HTML that needs no JavaScript: each question is a `fieldset` with a
//! `legend`, every input has a `label` tied to it by `for`/`id`, focus is always visible.
//! The document, the style and the escaping are the ones every page shares
//! ([`super::html`]). Everything that comes from outside — the case subject, a comment, a
//! date — passes through [`escape`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::html::{document, escape, human_date};
use crate::survey::answer::{Answer, MAX_COMMENT_CHARS};

/// The five points of the satisfaction scale, as read out and shown.
pub const SCALE: [&str; 5] = ["Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"];

/// The case the survey is about, as shown at the top of every page.
#[derive(Debug, Clone)]
pub struct CaseHeading<'a> {
    /// `CASE-42`.
    pub label: &'a str,
    pub subject: &'a str,
}

/// What the form shows as already chosen: the stored answer, or what was just posted when
/// it needs correcting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub score: Option<u8>,
    pub solved: Option<bool>,
    pub comment: String,
}

impl From<&Answer> for Values {
    fn from(a: &Answer) -> Values {
        Values { score: Some(a.score.get()), solved: a.solved, comment: a.comment.clone().unwrap_or_default() }
    }
}

/// Everything the form page shows.
#[derive(Debug, Clone)]
pub struct Form<'a> {
    pub case: CaseHeading<'a>,
    /// The hidden field binding the form to its token.
    pub form_tag: &'a str,
    pub values: Values,
    /// When an answer was already given: when it was last changed.
    pub answered_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    /// Why the posted answer was not taken.
    pub error: Option<&'a str>,
}

pub fn form(f: &Form<'_>) -> String {
    let mut h = String::new();
    h.push_str("<h1>How did we do?</h1>\n");
    h.push_str(&case_line(&f.case));
    if let Some(error) = f.error {
        let _ = writeln!(h, "<p class=\"error\" role=\"alert\">{}</p>", escape(error));
    } else if let Some(at) = f.answered_at {
        let _ = writeln!(
            h,
            "<p class=\"notice\">You answered on {}. You can change your answer until {}.</p>",
            human_date(at),
            human_date(f.expires_at)
        );
    }
    // No `action`: the form posts to the address it was loaded from, which also works
    // behind a proxy that serves the page under a path prefix.
    h.push_str("<form method=\"post\">\n");
    let _ = writeln!(h, "<input type=\"hidden\" name=\"form\" value=\"{}\">", escape(f.form_tag));

    h.push_str("<fieldset>\n<legend>How satisfied are you with how we handled your case?</legend>\n");
    h.push_str("<div class=\"options scale\">\n");
    for (i, words) in SCALE.iter().enumerate() {
        let n = i + 1;
        let checked = if f.values.score == Some(n as u8) { " checked" } else { "" };
        let _ = writeln!(
            h,
            "<label for=\"score-{n}\"><input type=\"radio\" id=\"score-{n}\" name=\"score\" value=\"{n}\" required{checked}> <span class=\"n\">{n}</span> <span>{words}</span></label>"
        );
    }
    h.push_str("</div>\n</fieldset>\n");

    h.push_str("<fieldset>\n<legend>Did our solution solve your problem?</legend>\n");
    h.push_str("<div class=\"options choices\">\n");
    for (value, shown, is) in [("yes", "Yes", true), ("no", "No", false)] {
        let checked = if f.values.solved == Some(is) { " checked" } else { "" };
        let _ = writeln!(
            h,
            "<label for=\"solved-{value}\"><input type=\"radio\" id=\"solved-{value}\" name=\"solved\" value=\"{value}\" required{checked}> <span>{shown}</span></label>"
        );
    }
    h.push_str("</div>\n</fieldset>\n");

    h.push_str(
        "<label class=\"comment-label\" for=\"comment\">Anything else you would like to tell us? <span class=\"optional\">(optional)</span></label>\n",
    );
    let _ = writeln!(
        h,
        "<textarea id=\"comment\" name=\"comment\" rows=\"4\" maxlength=\"{MAX_COMMENT_CHARS}\">{}</textarea>",
        escape(&f.values.comment)
    );
    let button = if f.answered_at.is_some() { "Change my answer" } else { "Send my answer" };
    let _ = writeln!(h, "<button type=\"submit\">{button}</button>\n</form>");
    let _ = writeln!(
        h,
        "<p class=\"small\">Your answer goes to our support team only. This link works until {}; you can also answer by replying to the survey mail.</p>",
        human_date(f.expires_at)
    );
    document(&format!("How did we do? · {}", f.case.label), &h)
}

/// The page after an answer was stored.
pub fn thanks(
    case: &CaseHeading<'_>,
    answer: &Answer,
    changed: bool,
    token: &str,
    expires_at: DateTime<Utc>,
) -> String {
    let mut h = String::new();
    h.push_str("<h1>Thank you!</h1>\n");
    h.push_str(&case_line(case));
    let _ = writeln!(
        h,
        "<p role=\"status\">{}</p>",
        if changed { "We have updated your answer." } else { "We have received your answer." }
    );
    let score = answer.score.get();
    let words = SCALE[usize::from(score) - 1];
    let solved = match answer.solved {
        Some(true) => "Yes",
        Some(false) => "No",
        None => "Not said",
    };
    let _ = writeln!(
        h,
        "<dl>\n<dt>Satisfaction</dt><dd>{score} of 5 · {words}</dd>\n<dt>Problem solved</dt><dd>{solved}</dd>"
    );
    if let Some(comment) = &answer.comment {
        let _ = writeln!(h, "<dt>Comment</dt><dd>{}</dd>", escape(comment));
    }
    h.push_str("</dl>\n");
    // A relative link: `/survey/<token>` seen from `/survey/<token>`, under any prefix.
    let _ = writeln!(
        h,
        "<p>Changed your mind? You can <a href=\"{}\">change your answer</a> until {}.</p>",
        escape(token),
        human_date(expires_at)
    );
    document(&format!("Thank you · {}", case.label), &h)
}

fn case_line(case: &CaseHeading<'_>) -> String {
    format!(
        "<p class=\"case\">About your case <strong>{}</strong>: <span class=\"subject\">{}</span></p>\n",
        escape(case.label),
        escape(case.subject)
    )
}

#[cfg(test)]
mod tests {
    use super::super::html::{problem, style_csp_source, STYLE};
    use super::*;
    use crate::survey::answer::Score;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn sample<'a>(subject: &'a str, values: Values) -> Form<'a> {
        Form {
            case: CaseHeading { label: "CASE-7", subject },
            form_tag: "tag-123",
            values,
            answered_at: None,
            expires_at: at("2030-01-31T00:00:00Z"),
            error: None,
        }
    }

    #[test]
    fn everything_echoed_is_escaped() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href&#x3D;&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;");
        let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
        let values = Values { score: Some(3), solved: Some(true), comment: format!("</textarea>{hostile}") };
        let html = form(&sample(hostile, values));
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("</textarea><"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let answer = Answer::new(Score::new(2).unwrap(), None, Some(hostile));
        let html = thanks(
            &CaseHeading { label: "CASE-7", subject: hostile },
            &answer,
            false,
            "tok",
            at("2030-01-31T00:00:00Z"),
        );
        assert!(!html.contains("<script>") && !html.contains("<img"), "{html}");
        assert!(!problem("<b>", "<i>").contains("<b>"));
    }

    #[test]
    fn the_form_is_accessible_without_javascript() {
        let html = form(&sample("Printer", Values::default()));
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("name=\"viewport\""));
        assert_eq!(html.matches("<fieldset>").count(), 2);
        assert_eq!(html.matches("<legend>").count(), 2);
        for id in ["score-1", "score-2", "score-3", "score-4", "score-5", "solved-yes", "solved-no", "comment"] {
            assert!(html.contains(&format!("for=\"{id}\"")) && html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(!html.contains("<script"), "no scripts");
        assert!(!regex::Regex::new(r"\son[a-z]+\s*=").unwrap().is_match(&html), "no inline event handlers");
        assert!(html.contains("<form method=\"post\">") && html.contains("<button type=\"submit\">"));
        assert!(!html.contains(" checked>"));
        assert!(STYLE.contains(":focus-visible"));
    }

    #[test]
    fn a_stored_answer_is_preselected_for_changing() {
        let values = Values { score: Some(4), solved: Some(false), comment: "it came back".into() };
        let mut f = sample("Printer", values);
        f.answered_at = Some(at("2030-01-02T10:00:00Z"));
        let html = form(&f);
        assert!(html.contains("value=\"4\" required checked>"));
        assert!(html.contains("value=\"no\" required checked>"));
        assert_eq!(html.matches(" checked>").count(), 2);
        assert!(html.contains(">it came back</textarea>"));
        assert!(html.contains("You answered on 2 January 2030") && html.contains("until 31 January 2030"));
        assert!(html.contains("Change my answer"));
    }

    #[test]
    fn the_style_hash_matches_the_inline_style() {
        let src = style_csp_source();
        assert!(src.starts_with("'sha256-") && src.ends_with('\''));
        assert!(form(&sample("x", Values::default())).contains(&format!("<style>{STYLE}</style>")));
    }
}
