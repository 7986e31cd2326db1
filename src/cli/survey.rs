//! `casegate survey report` — how the surveys went: sent, answered, response rate, average
//! score, share solved, and the comments.

use std::sync::Arc;

use chrono::NaiveDate;

use super::{print_json, table, UsageError};
use crate::config::Config;
use crate::store::survey_report::{self as report, Filter, Report};
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Sent, answered, response rate, average score, share solved, and the comments
    Report {
        /// Print one JSON object (documented in docs/surveys.md)
        #[arg(long)]
        json: bool,
        /// Only surveys offered on or after this day (UTC), as YYYY-MM-DD
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only cases of this account
        #[arg(long, value_name = "A")]
        account: Option<String>,
    },
}

pub fn run(config: Arc<Config>, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Report { json, since, account } => {
            let filter = Filter { since: since.as_deref().map(parse_date).transpose()?, account };
            let store = Store::open(&config)?;
            let report = report::load(store.db(), &config.token_prefix, &filter)?;
            if json {
                return print_json(&report);
            }
            print!("{}", render(&report));
            Ok(())
        }
    }
}

fn parse_date(s: &str) -> Result<NaiveDate, UsageError> {
    let s = s.trim();
    // Exactly YYYY-MM-DD: chrono alone would also take `2024-1-5`.
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| UsageError(format!("--since {s:?}: write the date as YYYY-MM-DD, e.g. 2024-03-01")))
}

fn render(r: &Report) -> String {
    let percent = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1} %", v * 100.0));
    let mut out = String::new();
    let scope = match (&r.since, &r.account) {
        (None, None) => "all surveys".to_string(),
        (Some(d), None) => format!("surveys offered since {d}"),
        (None, Some(a)) => format!("surveys of account {a}"),
        (Some(d), Some(a)) => format!("surveys of account {a} offered since {d}"),
    };
    out.push_str(&format!("Survey report: {}\n\n", table::cut(&scope, 120)));
    out.push_str(&format!("  sent:           {}\n", r.sent));
    out.push_str(&format!("  answered:       {}\n", r.answered));
    out.push_str(&format!("  response rate:  {}\n", percent(r.response_rate)));
    let average = r.average_score.map_or_else(|| "-".to_string(), |v| format!("{v:.2} of 5"));
    out.push_str(&format!("  average score:  {average}\n"));
    let said = r.solved_yes + r.solved_no;
    let solved = match r.solved_share {
        Some(share) => format!("{} ({} of {said} who said)", percent(Some(share)), r.solved_yes),
        None => "-".to_string(),
    };
    out.push_str(&format!("  solved:         {solved}\n"));
    let scores: Vec<String> = r.scores.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    out.push_str(&format!("  scores:         {}\n", scores.join("   ")));
    if r.comments.is_empty() {
        out.push_str("\nNo comments.\n");
        return out;
    }
    out.push_str(&format!("\nComments ({}), newest first:\n\n", r.comments.len()));
    let rows: Vec<Vec<String>> = r
        .comments
        .iter()
        .map(|c| {
            vec![
                c.updated_at.format("%Y-%m-%d").to_string(),
                c.case.clone(),
                c.score.to_string(),
                crate::survey::answer::solved_word(c.solved).to_string(),
                c.recipient.clone(),
                c.comment.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table::render(&["DATE", "CASE", "SCORE", "SOLVED", "FROM", "COMMENT"], &rows, 80));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_only_year_month_day() {
        assert_eq!(parse_date("2024-03-01").unwrap(), NaiveDate::from_ymd_opt(2024, 3, 1).unwrap());
        for bad in ["2024-3-1", "2024-02-30", "01.03.2024", "yesterday", "", "2024-03-01T00:00"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_shows_the_numbers_and_comments() {
        let filter = Filter { since: NaiveDate::from_ymd_opt(2030, 1, 1), account: Some("ACME".into()) };
        let answer = report::ReportAnswer {
            case: "CASE-3".into(),
            recipient: "jane@customer.example".into(),
            score: crate::survey::Score::new(4).unwrap(),
            solved: Some(true),
            comment: Some("quick\nand kind".into()),
            channel: crate::survey::Channel::Web,
            answered_at: "2030-01-02T00:00:00Z".parse().unwrap(),
            updated_at: "2030-01-03T00:00:00Z".parse().unwrap(),
        };
        let text = render(&report::summarize(&filter, 2, &[answer]));
        assert!(text.contains("account ACME offered since 2030-01-01"), "{text}");
        assert!(text.contains("response rate:  50.0 %"), "{text}");
        assert!(text.contains("average score:  4.00 of 5"), "{text}");
        assert!(text.contains("solved:         100.0 % (1 of 1 who said)"), "{text}");
        assert!(text.contains("2030-01-03  CASE-3  4      yes     jane@customer.example  quick and kind"), "{text}");
        let empty = render(&report::summarize(&Filter::default(), 0, &[]));
        assert!(empty.contains("response rate:  -") && empty.contains("No comments."), "{empty}");
    }
}
