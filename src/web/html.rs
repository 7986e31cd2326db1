//! What every page casegate serves shares: the document around it, the one style sheet,
//! escaping, dates, and the page that explains a problem. Pure functions, tested without
//! a server.
//!
//! Plain semantic HTML that needs no JavaScript, one column on a phone that widens on
//! larger screens, focus always visible. The only style is the inline [`STYLE`] sheet,
//! allowed by its hash in the Content-Security-Policy ([`style_csp_source`]); the survey
//! page, the case page and "My cases" share it, so they look alike. Everything that comes
//! from outside — subjects, mail text, file names, addresses, dates — passes through
//! [`escape`].

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The pages' only style sheet (inline, allowed by hash).
pub const STYLE: &str = "
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;line-height:1.5;color:#1d1d1f;background:#f4f5f7;-webkit-text-size-adjust:100%}
body{margin:0;padding:1rem}
main{max-width:36rem;margin:0 auto;background:#fff;border-radius:12px;padding:1.25rem 1.25rem 1.5rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .5rem;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
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
textarea,input[type=email],select{width:100%;font:inherit;padding:.6rem;border:2px solid #8e8e93;border-radius:8px;background:#fff}
textarea{min-height:5.5rem;resize:vertical}
button{display:block;width:100%;margin-top:1rem;padding:.85rem 1rem;font:inherit;font-weight:600;font-size:1.05rem;color:#fff;background:#1a5fb4;border:0;border-radius:8px;cursor:pointer}
button:hover{background:#144a8c}
button.secondary{color:#1a5fb4;background:#fff;border:2px solid #1a5fb4}
button.secondary:hover{background:#e8f0fc}
:focus-visible{outline:3px solid #e66100;outline-offset:2px}
.options label:focus-within{outline:3px solid #e66100;outline-offset:2px}
.error{border-left:4px solid #c01c28;background:#fdecea;padding:.5rem .75rem}
.notice{border-left:4px solid #1a5fb4;background:#e8f0fc;padding:.5rem .75rem}
.small{font-size:.9rem;color:#57575c}
a{color:#1a5fb4}
dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:0 0 1rem}
dt{font-weight:600}
dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.status{display:inline-block;padding:0 .5rem;border-radius:999px;font-weight:600;font-size:.9rem;border:2px solid currentColor}
.status-new{color:#5e5c64}.status-open{color:#1a5fb4}.status-resolved{color:#1c7a4a}.status-closed{color:#57575c}
.action{border-top:1px solid #deddda;padding-top:.75rem;margin-top:.75rem}
.action form{margin:0}
.action label{display:block;font-weight:600;margin-bottom:.4rem}
.thread{list-style:none;margin:0;padding:0}
.entry{border-left:3px solid #c7c7cc;padding:.25rem 0 .25rem .75rem;margin:0 0 1rem}
.entry.staff{border-left-color:#1a5fb4}
.entry.system{border-left-color:#deddda;color:#57575c;font-size:.9rem}
.who{font-weight:600;margin:0;overflow-wrap:anywhere}
.when{font-weight:400;color:#57575c;font-size:.9rem}
.body{white-space:pre-wrap;overflow-wrap:anywhere;margin:.25rem 0 .5rem}
.files{margin:.25rem 0 .5rem;padding-left:1.25rem}
.files li{overflow-wrap:anywhere}
.cases{list-style:none;margin:0;padding:0}
.cases li{border-top:1px solid #deddda;padding:.6rem 0}
.cases a{font-weight:600;overflow-wrap:anywhere}
.filter{display:grid;grid-template-columns:1fr auto;gap:.5rem;align-items:end;margin-bottom:1rem}
.filter button{margin-top:0;width:auto}
@media (min-width:40rem){body{padding:2rem}main{padding:2rem}.scale{grid-template-columns:repeat(5,1fr)}.scale label{flex-direction:column;gap:.25rem;text-align:center;font-size:.9rem}.choices{grid-template-columns:1fr 1fr}}
";

/// The CSP source that allows exactly [`STYLE`]: `'sha256-…'`.
pub fn style_csp_source() -> String {
    let digest = Sha256::digest(STYLE.as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// Escapes text for HTML element content and quoted attribute values: the escaping the
/// HTML notifications get too.
pub use handlebars::html_escape as escape;

/// A date as shown to people, e.g. `31 January 2030` (UTC), as notifications say it.
pub use crate::links::day as human_date;

/// A stored time (RFC 3339) as shown to people, e.g. `2 January 2030, 10:00 UTC`; what
/// does not parse is shown as stored.
pub fn human_time(stored: &str) -> String {
    DateTime::parse_from_rfc3339(stored)
        .map(|t| t.with_timezone(&Utc).format("%-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_else(|_| stored.to_string())
}

/// A size in the units people use: `980 bytes`, `12 KB`, `3.4 MB` (as notifications say it).
pub use crate::notify::files::size_in_words as human_size;

/// A page that explains why nothing happened.
pub fn problem(title: &str, message: &str) -> String {
    let h = format!("<h1>{}</h1>\n<p>{}</p>\n", escape(title), escape(message));
    document(title, &h)
}

/// The whole document around a page's `main` content.
pub fn document(title: &str, main: &str) -> String {
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

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        assert_eq!(human_date("2030-01-31T12:00:00Z".parse().unwrap()), "31 January 2030");
        assert_eq!(human_time("2030-01-02T10:00:00.000Z"), "2 January 2030, 10:00 UTC");
        assert_eq!(human_time("yesterday"), "yesterday");
    }

    #[test]
    fn the_document_escapes_its_title_and_carries_the_hashed_style() {
        let page = problem("<b>Oops</b>", "<i>x</i>");
        assert!(!page.contains("<b>") && !page.contains("<i>"), "{page}");
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(style_csp_source().starts_with("'sha256-"));
    }
}
