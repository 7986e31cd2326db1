//! A survey answer — a score from 1 to 5, whether the problem was solved, an optional
//! comment — and the parser for answers given by replying to the survey mail.
//!
//! Everything here is pure: the web form and the ingest path both end in an [`Answer`],
//! which `store::surveys::record_answer` stores.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Longest comment kept, in characters; longer ones are cut (the form's `maxlength` says
/// the same, so only hand-made requests and long mails are ever cut).
pub const MAX_COMMENT_CHARS: usize = 2000;

/// How satisfied the customer is with how the case was handled: 1 (very dissatisfied) to
/// 5 (very satisfied). Only [`Score::new`] makes one, so every `Score` is in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Score(u8);

impl Score {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 5;

    pub fn new(value: u8) -> Option<Score> {
        (Score::MIN..=Score::MAX).contains(&value).then_some(Score(value))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One person's answer to the two questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub score: Score,
    /// Did the solution solve the problem? `None` when a mail answer left it out (the web
    /// form asks for it).
    pub solved: Option<bool>,
    /// Trimmed, never empty, at most [`MAX_COMMENT_CHARS`] characters.
    pub comment: Option<String>,
}

/// "yes", "no", or "-" when the question was left out: how logs, the audit and reports
/// show the second answer.
pub fn solved_word(solved: Option<bool>) -> &'static str {
    solved.map_or("-", |s| if s { "yes" } else { "no" })
}

impl Answer {
    /// Builds an answer, normalising the comment (trimmed, empty → none, cut to length).
    pub fn new(score: Score, solved: Option<bool>, comment: Option<&str>) -> Answer {
        Answer { score, solved, comment: comment.and_then(clean_comment) }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Web,
    Mail,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Mail => "mail",
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Channel, String> {
        match s {
            "web" => Ok(Channel::Web),
            "mail" => Ok(Channel::Mail),
            other => Err(format!("{other:?} is not a survey channel (web, mail)")),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn clean_comment(raw: &str) -> Option<String> {
    // Control characters other than line breaks and tabs have no place in a comment, and
    // CR LF from a browser's textarea becomes LF.
    let text: String =
        raw.replace("\r\n", "\n").chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect();
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MAX_COMMENT_CHARS) {
        Some((cut, _)) => text[..cut].trim_end().to_string(),
        None => text.to_string(),
    })
}

/// Reads an answer from the start of a reply to the survey mail (quoted history and
/// signature already removed). The first non-blank line must begin with the score:
///
/// ```text
/// 5
/// 5 yes great job
/// 4/5 no still flaky
/// 3 - ok
/// Score: 4
/// ```
///
/// After the score (optionally `/5` or `out of 5`) may come `yes`/`no` (or `y`/`n`, any
/// case) for "did it solve the problem"; whatever follows, together with any further
/// lines, is the comment. Returns `None` when the text does not start with a score from 1
/// to 5 — `0`, `6`, `55`, `4.5`, `10/10` or a sentence without a leading score — so an
/// ordinary reply is never mistaken for an answer.
pub fn parse_mail_answer(first_lines: &str) -> Option<Answer> {
    let text = first_lines.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let (first, more) = match text.split_once('\n') {
        Some((first, more)) => (first, more),
        None => (text, ""),
    };
    let mut rest = first.trim();

    // An optional "score" label: `score 4`, `Score: 4`, `score=4`.
    if let Some(after) = strip_prefix_ignore_case(rest, "score") {
        let after = after.trim_start();
        let after = after.strip_prefix([':', '=']).unwrap_or(after);
        rest = after.trim_start();
    }

    let digit = rest.chars().next().filter(char::is_ascii_digit)?;
    let score = Score::new(digit.to_digit(10)? as u8)?;
    rest = &rest[1..];
    // `55`, `4.5`, `3,5`, `5th`: not a score from 1 to 5.
    if let Some(next) = rest.chars().next() {
        if next.is_alphanumeric() {
            return None;
        }
        if matches!(next, '.' | ',') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
    }
    // An optional scale: `4/5`, `4 / 5`, `4 out of 5`, `4 of 5`.
    let trimmed = rest.trim_start();
    let scale = trimmed
        .strip_prefix('/')
        .or_else(|| strip_word_ignore_case(trimmed, "out").and_then(|r| strip_word_ignore_case(r.trim_start(), "of")))
        .or_else(|| strip_word_ignore_case(trimmed, "of"));
    if let Some(after) = scale {
        match after.trim_start().strip_prefix('5') {
            Some(after) if !after.starts_with(|c: char| c.is_alphanumeric()) => rest = after,
            // `4/10` is a score on another scale; `4 of them were fine` is a comment.
            _ if trimmed.starts_with('/') => return None,
            _ => {}
        }
    }

    rest = skip_separators(rest);
    let mut solved = None;
    for (word, value) in [("yes", true), ("no", false), ("y", true), ("n", false)] {
        if let Some(after) = strip_word_ignore_case(rest, word) {
            solved = Some(value);
            rest = skip_separators(after);
            break;
        }
    }

    let mut comment = rest.trim().to_string();
    let more = more.trim();
    if !more.is_empty() {
        if !comment.is_empty() {
            comment.push('\n');
        }
        comment.push_str(more);
    }
    Some(Answer::new(score, solved, Some(&comment)))
}

fn skip_separators(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_whitespace() || "-–—:,.;!".contains(c))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Strips `word` when it stands alone: followed by the end or by something that is
/// neither a letter nor a digit (`yes,` and `no!` count; `yesterday` and `nice` do not).
fn strip_word_ignore_case<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let after = strip_prefix_ignore_case(s, word)?;
    match after.chars().next() {
        Some(c) if c.is_alphanumeric() => None,
        _ => Some(after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Option<(u8, Option<bool>, Option<String>)> {
        parse_mail_answer(s).map(|a| (a.score.get(), a.solved, a.comment))
    }

    fn some(score: u8, solved: Option<bool>, comment: Option<&str>) -> Option<(u8, Option<bool>, Option<String>)> {
        Some((score, solved, comment.map(str::to_string)))
    }

    #[test]
    fn the_documented_forms_are_accepted() {
        assert_eq!(parsed("5"), some(5, None, None));
        assert_eq!(parsed("5 yes great job"), some(5, Some(true), Some("great job")));
        assert_eq!(parsed("4/5 no still flaky"), some(4, Some(false), Some("still flaky")));
        assert_eq!(parsed("3 - ok"), some(3, None, Some("ok")));
        assert_eq!(parsed("score: 4"), some(4, None, None));
        assert_eq!(parsed("Score 2 n"), some(2, Some(false), None));
        assert_eq!(parsed("SCORE=1 NO too slow"), some(1, Some(false), Some("too slow")));
    }

    #[test]
    fn yes_and_no_are_case_insensitive_and_may_be_abbreviated() {
        assert_eq!(parsed("5 YES"), some(5, Some(true), None));
        assert_eq!(parsed("5 Y thanks"), some(5, Some(true), Some("thanks")));
        assert_eq!(parsed("2 n"), some(2, Some(false), None));
        assert_eq!(parsed("2, No, it came back"), some(2, Some(false), Some("it came back")));
        assert_eq!(parsed("4 - yes! quick"), some(4, Some(true), Some("quick")));
    }

    #[test]
    fn words_that_only_start_like_yes_or_no_are_comment() {
        assert_eq!(parsed("5 nice work"), some(5, None, Some("nice work")));
        assert_eq!(parsed("4 yesterday it broke"), some(4, None, Some("yesterday it broke")));
        assert_eq!(parsed("3 not really"), some(3, None, Some("not really")));
    }

    #[test]
    fn scales_and_punctuation_after_the_score() {
        assert_eq!(parsed("4 / 5 yes"), some(4, Some(true), None));
        assert_eq!(parsed("4 out of 5"), some(4, None, None));
        assert_eq!(parsed("5."), some(5, None, None));
        assert_eq!(parsed("5!"), some(5, None, None));
        assert_eq!(parsed("5: y"), some(5, Some(true), None));
        assert_eq!(parsed("4 of them were fine"), some(4, None, Some("of them were fine")));
    }

    #[test]
    fn leading_blank_lines_and_further_lines() {
        assert_eq!(parsed("\n\n  5 yes\n"), some(5, Some(true), None));
        assert_eq!(
            parsed("\u{feff}4 no\nIt works now but\nit took a week."),
            some(4, Some(false), Some("It works now but\nit took a week."))
        );
    }

    #[test]
    fn what_is_not_a_score_from_one_to_five_is_refused() {
        for s in [
            "",
            "   ",
            "0",
            "6",
            "9 yes",
            "55",
            "10/10",
            "4.5",
            "3,5",
            "5th time this broke",
            "4/10",
            "-5",
            "#5",
            "great job",
            "yes 5",
            "Thanks, solved!",
            "score",
            "score: great",
            "five",
        ] {
            assert_eq!(parsed(s), None, "{s:?}");
        }
    }

    #[test]
    fn comments_are_trimmed_cleaned_and_cut() {
        let long = format!("5 yes {}", "é".repeat(MAX_COMMENT_CHARS + 10));
        let a = parse_mail_answer(&long).unwrap();
        assert_eq!(a.comment.unwrap().chars().count(), MAX_COMMENT_CHARS);
        let a = Answer::new(Score::new(3).unwrap(), Some(true), Some(" a\r\nb\u{1b}[2J \u{0}"));
        assert_eq!(a.comment.as_deref(), Some("a\nb[2J"));
        assert_eq!(Answer::new(Score::new(3).unwrap(), None, Some(" \n ")).comment, None);
    }

    #[test]
    fn scores_outside_one_to_five_cannot_be_made() {
        assert!(Score::new(0).is_none() && Score::new(6).is_none());
        assert_eq!(Score::new(5).map(Score::get), Some(5));
    }
}
