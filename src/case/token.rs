//! Case tokens in subjects: `[CASE-42]`, the prefix from the configuration.

use regex::Regex;

use super::CaseId;

/// Finds `[PREFIX-123]` tokens in subjects.
#[derive(Debug, Clone)]
pub struct TokenMatcher {
    re: Regex,
}

impl TokenMatcher {
    /// `prefix` is validated by the config (ASCII letters and digits only).
    pub fn new(prefix: &str) -> TokenMatcher {
        // Forgiving about case and spacing (`[case-7]`, `[ CASE-7 ]`, `[CASE#7]`), strict
        // about brackets and prefix, so "CASE-7" in running text or `[TICKET-7]` never match.
        let pattern = format!(r"(?i)\[\s*{}\s*[-#:]?\s*0*(\d{{1,12}})\s*\]", regex::escape(prefix));
        TokenMatcher { re: Regex::new(&pattern).expect("token pattern is built from a validated prefix") }
    }

    /// The subject without case tokens and without leading reply/forward prefixes, for a
    /// case opened from a mail that pointed at another one ("Re: [CASE-7] Printer" → "Printer").
    pub fn clean_subject(&self, subject: &str) -> String {
        let without = self.re.replace_all(subject, " ");
        let mut s = without.trim();
        loop {
            let lower = s.to_ascii_lowercase();
            let Some(p) = PREFIXES.iter().find(|p| lower.starts_with(**p)) else { break };
            s = s[p.len()..].trim_start();
        }
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Every case number named in the subject, in order of appearance.
    pub fn tokens(&self, subject: &str) -> Vec<CaseId> {
        self.re.captures_iter(subject).filter_map(|c| c[1].parse().ok()).filter(|n| *n > 0).collect()
    }
}

/// Reply and forward prefixes in the languages casegate meets.
const PREFIXES: &[&str] = &["re:", "aw:", "sv:", "vs:", "fwd:", "fw:", "wg:", "tr:", "rv:", "antw:", "doorst:"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_subject_drops_tokens_and_prefixes() {
        let t = TokenMatcher::new("CASE");
        assert_eq!(t.clean_subject("Re: AW: [CASE-7] Printer on fire"), "Printer on fire");
        assert_eq!(t.clean_subject("RE: Printer [case-7] on fire"), "Printer on fire");
        assert_eq!(t.clean_subject("[CASE-7]"), "");
    }
}
