//! Commands written in mail: `#word arguments` on the first lines of the new text, or
//! `#word` in the subject (so that the `mailto:` links in notifications work from any
//! mail client). Case-insensitive and forgiving about spacing.
//!
//! | command              | meaning                                                    |
//! |----------------------|------------------------------------------------------------|
//! | `#accept`            | accept the proposed solution (requester, contact)          |
//! | `#reject <reason>`   | reject it; the reason may also be the text below the line  |
//! | `#close`             | close the case                                             |
//! | `#resolve <text>`    | propose a solution: the rest of the mail (staff)           |
//! | `#note <text>`       | the whole mail is an internal note (staff)                 |
//! | `#open`              | pick up, or re-open a resolved case (staff)                |
//! | `#impact high`       | set the impact: high, medium or low (staff)                |
//! | `#watch a@x b@y`     | add watchers                                               |
//! | `#unwatch [a@x]`     | stop watching (yourself, or someone else for staff)        |
//! | `#cases`             | (subject of a mail to support) list my cases               |

use crate::address::Address;
use crate::case::Impact;
use crate::workflow::Action;

/// Commands found in a mail, and the text that is left for the thread.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commands {
    pub actions: Vec<Action>,
    /// `#cases`: the sender wants the list of their cases.
    pub list_cases: bool,
    /// Problems to report: unknown words, bad arguments.
    pub problems: Vec<(String, String)>,
    /// The text without the command lines, plus any text arguments (a solution, a note,
    /// a reason) — what goes on the thread.
    pub text: String,
}

impl Commands {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && !self.list_cases && self.problems.is_empty()
    }

    pub fn has(&self, word: &str) -> bool {
        self.actions.iter().any(|a| a.word() == word)
    }
}

/// Longest text kept from a single command line argument.
const MAX_ARG: usize = 10_000;

/// Reads commands from the subject and the new text of a mail.
pub fn parse(subject: &str, text: &str) -> Commands {
    let mut out = Commands::default();
    let mut args_text: Vec<String> = Vec::new();

    // Subject: only #-words count, so ordinary subjects never trigger anything.
    for word in subject.split_whitespace() {
        if let Some(w) = word.strip_prefix('#') {
            let w = w.trim_end_matches([':', ',', '.', ']', ')']);
            if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic()) {
                apply_word(&mut out, &w.to_ascii_lowercase(), "", &mut args_text, true);
            }
        }
    }

    // Body: command lines at the top (blank lines between them allowed); the first other
    // line ends the command block.
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() {
            i += 1;
            continue;
        }
        let Some((word, rest)) = command_line(line) else {
            break;
        };
        apply_word(&mut out, &word, rest, &mut args_text, false);
        i += 1;
    }
    let remaining = lines[i..].join("\n").trim().to_string();

    // `#reject` / `#resolve` / `#note` without text on their line take the text below.
    for action in &mut out.actions {
        if let Action::Reject { reason } = action {
            if reason.is_none() && !remaining.is_empty() {
                *reason = Some(cut(&remaining));
            }
        }
    }
    let mut text_parts = args_text;
    if !remaining.is_empty() {
        text_parts.push(remaining);
    }
    out.text = text_parts.join("\n\n");
    out
}

/// `#word rest` → (word, rest), for a line that is a command.
fn command_line(line: &str) -> Option<(String, &str)> {
    let body = line.strip_prefix('#')?.trim_start();
    let end = body.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let word = body[..end].to_ascii_lowercase();
    let rest = body[end..].trim_start_matches([':', ' ', '\t']).trim();
    Some((word, rest))
}

fn apply_word(out: &mut Commands, word: &str, rest: &str, args_text: &mut Vec<String>, in_subject: bool) {
    let text_arg = |args_text: &mut Vec<String>| {
        if !rest.is_empty() {
            args_text.push(cut(rest));
        }
    };
    let action = match word {
        "accept" | "accepted" => {
            text_arg(args_text);
            Action::Accept
        }
        "reject" | "rejected" => {
            text_arg(args_text);
            Action::Reject { reason: Some(cut(rest)).filter(|r| !r.is_empty()) }
        }
        "close" | "closed" => {
            text_arg(args_text);
            Action::Close
        }
        "resolve" | "resolved" | "solution" => {
            text_arg(args_text);
            Action::Resolve
        }
        "note" => {
            text_arg(args_text);
            Action::Note
        }
        "open" | "reopen" => Action::Open,
        "impact" => match rest.split_whitespace().next().map(str::parse::<Impact>) {
            Some(Ok(level)) => Action::Impact(level),
            _ if in_subject => return,
            _ => {
                out.problems.push((
                    format!("#impact {rest}").trim().to_string(),
                    "write #impact high, #impact medium or #impact low".into(),
                ));
                return;
            }
        },
        "watch" | "unwatch" => {
            let mut addresses = Vec::new();
            for token in rest.split([' ', ',', ';', '\t']).filter(|t| !t.is_empty()) {
                match Address::parse(token) {
                    Some(a) => addresses.push(a),
                    None => {
                        out.problems.push((format!("#{word} {token}"), format!("{token:?} is not an email address")))
                    }
                }
            }
            if word == "unwatch" {
                if addresses.is_empty() {
                    out.actions.push(Action::Unwatch(None));
                }
                out.actions.extend(addresses.into_iter().map(|a| Action::Unwatch(Some(a))));
            } else if addresses.is_empty() {
                if !in_subject && rest.is_empty() {
                    out.problems.push(("#watch".into(), "name the address to add, e.g. #watch bob@example.com".into()));
                }
            } else {
                out.actions.extend(addresses.into_iter().map(Action::Watch));
            }
            return;
        }
        "cases" => {
            out.list_cases = true;
            return;
        }
        other => {
            out.problems.push((
                format!("#{other}"),
                "unknown command; the commands are #accept, #reject <reason>, #close, #resolve, #note, #open, #impact <level>, #watch <address>, #unwatch".into(),
            ));
            return;
        }
    };
    if !out.actions.contains(&action) {
        out.actions.push(action);
    }
}

fn cut(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_ARG {
        return s.to_string();
    }
    let mut end = MAX_ARG;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mail_has_no_commands() {
        let c = parse("Re: [CASE-1] printer", "Thanks, still broken.\n#accept later maybe");
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(c.text, "Thanks, still broken.\n#accept later maybe");
    }

    #[test]
    fn commands_on_the_first_lines_case_insensitively() {
        let c = parse("Re: [CASE-1] x", "  #ACCEPT\n\n# close: done\nThanks for the help!");
        assert_eq!(c.actions, vec![Action::Accept, Action::Close]);
        assert_eq!(c.text, "done\n\nThanks for the help!");
    }

    #[test]
    fn reject_takes_its_reason_from_the_line_or_the_text_below() {
        let c = parse("", "#reject the error is still there");
        assert_eq!(c.actions, vec![Action::Reject { reason: Some("the error is still there".into()) }]);
        let c = parse("Re: [CASE-1] #reject", "It still fails\nevery morning.");
        assert_eq!(c.actions, vec![Action::Reject { reason: Some("It still fails\nevery morning.".into()) }]);
        let c = parse("", "#reject");
        assert_eq!(c.actions, vec![Action::Reject { reason: None }]);
    }

    #[test]
    fn subject_words_work_for_mailto_links() {
        let c = parse("Re: [CASE-7] Printer #accept", "");
        assert_eq!(c.actions, vec![Action::Accept]);
        let c = parse("#cases", "");
        assert!(c.list_cases);
        let c = parse("Issue #42 again", "");
        assert!(c.is_empty(), "#42 is not a command");
    }

    #[test]
    fn staff_commands_and_arguments() {
        let c = parse("", "#impact high\n#resolve\nRestart the spooler.\n\nAnn");
        assert_eq!(c.actions, vec![Action::Impact(Impact::High), Action::Resolve]);
        assert_eq!(c.text, "Restart the spooler.\n\nAnn");
        let c = parse("", "#note customer called, waiting for logs");
        assert_eq!(c.actions, vec![Action::Note]);
        assert_eq!(c.text, "customer called, waiting for logs");
        let c = parse("", "#watch bob@x.example, carol@y.example\n#unwatch");
        assert_eq!(
            c.actions,
            vec![
                Action::Watch(Address::parse("bob@x.example").unwrap()),
                Action::Watch(Address::parse("carol@y.example").unwrap()),
                Action::Unwatch(None)
            ]
        );
    }

    #[test]
    fn problems_are_reported_not_guessed() {
        let c = parse("", "#impact urgent\n#frobnicate\n#watch not-an-address");
        assert!(c.actions.is_empty());
        let words: Vec<&str> = c.problems.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["#impact urgent", "#frobnicate", "#watch not-an-address"]);
    }
}
