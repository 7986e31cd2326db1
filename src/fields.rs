//! Case fields read from a mail: `Impact:`, `Environment:` and similar labelled lines in
//! the body, and the priority headers mail clients set.

use crate::case::Impact;
use crate::parse::InboundMail;

/// Longest value kept from a labelled line.
const MAX_FIELD: usize = 200;

/// The value of the first `Label: value` line written by the sender (quoted lines, those
/// starting with `>`, are not the sender's and are skipped). Case-insensitive label;
/// markdown-style emphasis around the label (`*Impact:*`) is tolerated.
pub fn labelled_line<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('>') {
            continue;
        }
        let unstarred = line.trim_start_matches(['*', '_']);
        let Some(head) = unstarred.get(..label.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(label) {
            continue;
        }
        let rest = unstarred[label.len()..].trim_start_matches(['*', '_']).trim_start();
        let Some(value) = rest.strip_prefix(':') else {
            continue;
        };
        let value = value.trim().trim_matches(['*', '_']).trim();
        if !value.is_empty() {
            return Some(truncate(value, MAX_FIELD));
        }
    }
    None
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Impact from an `Impact:` line, else from `Importance`/`X-Priority`/`Priority` headers.
/// `None` when the mail says nothing (the caller applies the default, Medium).
pub fn impact_of(mail: &InboundMail, text: &str) -> Option<Impact> {
    if let Some(v) = labelled_line(text, "impact") {
        let word = v.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default();
        if let Ok(impact) = word.parse::<Impact>() {
            return Some(impact);
        }
    }
    impact_from_headers(mail)
}

fn impact_from_headers(mail: &InboundMail) -> Option<Impact> {
    if let Some(v) = mail.header("importance") {
        match v.trim().to_ascii_lowercase().as_str() {
            "high" => return Some(Impact::High),
            "low" => return Some(Impact::Low),
            _ => {}
        }
    }
    if let Some(v) = mail.header("x-priority") {
        // "1 (Highest)", "2", "3 (Normal)", "4", "5 (Lowest)"
        match v.trim().chars().next() {
            Some('1' | '2') => return Some(Impact::High),
            Some('4' | '5') => return Some(Impact::Low),
            _ => {}
        }
    }
    if let Some(v) = mail.header("priority") {
        match v.trim().to_ascii_lowercase().as_str() {
            "urgent" => return Some(Impact::High),
            "non-urgent" => return Some(Impact::Low),
            _ => {}
        }
    }
    None
}

/// The `Environment:` line, if any.
pub fn environment_of(text: &str) -> Option<String> {
    labelled_line(text, "environment").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(headers: &str) -> InboundMail {
        crate::parse::parse(format!("From: a@b.example\r\n{headers}\r\n\r\nbody").as_bytes()).unwrap()
    }

    #[test]
    fn labelled_lines_are_found_case_insensitively_outside_quotes() {
        let text = "> Impact: Low\nHello\n  *IMPACT:* high!\nEnvironment: Production (EU)\n";
        assert_eq!(labelled_line(text, "impact"), Some("high!"));
        assert_eq!(environment_of(text).as_deref(), Some("Production (EU)"));
        assert_eq!(labelled_line("Impactful: yes", "impact"), None);
        assert_eq!(labelled_line("Impact:", "impact"), None);
    }

    #[test]
    fn impact_line_beats_headers_and_headers_map_to_levels() {
        let m = mail("Importance: high");
        assert_eq!(impact_of(&m, "Impact: low"), Some(Impact::Low));
        assert_eq!(impact_of(&m, "no line"), Some(Impact::High));
        assert_eq!(impact_of(&mail("X-Priority: 5 (Lowest)"), ""), Some(Impact::Low));
        assert_eq!(impact_of(&mail("X-Priority: 1 (Highest)"), ""), Some(Impact::High));
        assert_eq!(impact_of(&mail("X-Priority: 3"), ""), None);
        assert_eq!(impact_of(&mail("Priority: urgent"), ""), Some(Impact::High));
        assert_eq!(impact_of(&mail(""), "Impact: catastrophic"), None);
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let text = format!("Environment: {}", "é".repeat(300));
        assert!(environment_of(&text).unwrap().len() <= MAX_FIELD);
    }
}
