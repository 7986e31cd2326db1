//! The HTML of the survey page: the form, the thank-you page and the pages that explain a
//! refused link. Pure functions from data to markup, so escaping and accessibility are
//! tested without a server.
//!
//! Plain semantic HTML that needs no JavaScript: each question is a `fieldset` with a
//! `legend`, every input has a `label` tied to it by `for`/`id`, focus is always visible,
//! and the layout is a single column that widens on larger screens. The only style is the
//! inline [`STYLE`] sheet, allowed by its hash in the Content-Security-Policy
//! ([`style_csp_source`]). Everything that comes from outside — the case subject, a
//! comment, a date — passes through [`escape`].

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::survey::answer::{Answer, MAX_COMMENT_CHARS};

/// The page's only style sheet (inline, allowed by hash).
pub const STYLE: &str = "
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;line-height:1.5;color:#1d1d1f;background:#f4f5f7;-webkit-text-size-adjust:100%}
body{margin:0;padding:1rem}
main{max-width:36rem;margin:0 auto;background:#fff;border-radius:12px;padding:1.25rem 1.25rem 1.5rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .5rem}
p{margin:.5rem 0 1rem}
.case{color:#3c3c43}
.subject{overflow-wrap:anywhere}
fieldset{border:0;margin:0 0 1rem;padding:0;min-width:0}
legend{font-weight:600;font-size:1.05rem;margin-bottom:.5rem;padding:0}
.options{display:grid;gap:.4rem}
.options label{display:flex;align-items:center;gap:.75rem;min-height:2.75rem;padding:.4rem .75rem;border:2px solid #c7c7cc;border-radius:8px;cursor:pointer;background:#fff}
.options label:hover{border-color:#1a5fb4}
.options label:has(input:checked){border-color:#1a5fb4;background:#e8f0fc}
.options input{width:1.25rem;height:1.25rem;margin:0;flex:none;accent-color:#1a5fb4}
.n{font-weight:700;font-size:1.15rem;min-width:1ch}
.comment-label{display:block;font-weight:600;font-size:1.05rem;margin-bottom:.5rem}
.optional{font-weight:400;color:#57575c}
textarea{width:100%;min-height:5.5rem;font:inherit;padding:.6rem;border:2px solid #8e8e93;border-radius:8px;resize:vertical}
button{display:block;width:100%;margin-top:1rem;padding:.85rem 1rem;font:inherit;font-weight:600;font-size:1.05rem;color:#fff;background:#1a5fb4;border:0;border-radius:8px;cursor:pointer}
button:hover{background:#144a8c}
:focus-visible{outline:3px solid #e66100;outline-offset:2px}
.options label:focus-within{outline:3px solid #e66100;outline-offset:2px}
.error{border-left:4px solid #c01c28;background:#fdecea;padding:.5rem .75rem}
.notice{border-left:4px solid #1a5fb4;background:#e8f0fc;padding:.5rem .75rem}
.small{font-size:.9rem;color:#57575c}
a{color:#1a5fb4}
dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:0 0 1rem}
dt{font-weight:600}
dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
@media (min-width:40rem){body{padding:2rem}main{padding:2rem}.scale{grid-template-columns:repeat(5,1fr)}.scale label{flex-direction:column;gap:.25rem;text-align:center;font-size:.9rem}.choices{grid-template-columns:1fr 1fr}}
";

/// The CSP source that allows exactly [`STYLE`]: `'sha256-…'`.
pub fn style_csp_source() -> String {
    let digest = Sha256::digest(STYLE.as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The five points of the satisfaction scale, as read out and shown.
pub const SCALE: [&str; 5] = ["Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"];

/// Escapes text for HTML element content and quoted attribute values: the escaping the
/// HTML notifications get too.
pub use handlebars::html_escape as escape;

/// A date as shown to the person answering, e.g. `31 January 2030` (UTC).
pub fn human_date(t: DateTime<Utc>) -> String {
    t.format("%-d %B %Y").to_string()
}

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

/// A page that explains why nothing was recorded.
pub fn problem(title: &str, message: &str) -> String {
    let h = format!("<h1>{}</h1>\n<p>{}</p>\n", escape(title), escape(message));
    document(title, &h)
}

fn case_line(case: &CaseHeading<'_>) -> String {
    format!(
        "<p class=\"case\">About your case <strong>{}</strong>: <span class=\"subject\">{}</span></p>\n",
        escape(case.label),
        escape(case.subject)
    )
}

fn document(title: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{main}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
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
