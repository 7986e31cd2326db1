//! The survey report: how many were asked, how many answered, how satisfied they were and
//! whether their problem was solved, with the comments. [`summarize`] is the arithmetic
//! (pure); [`load`] reads the rows it needs. The JSON shape is a stable interface,
//! documented in `docs/surveys.md`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::db::{Db, DbResult};
use super::surveys::{score_col, time_col};
use crate::case::CaseId;
use crate::survey::answer::{Channel, Score};
use crate::vals;

/// Which invitations the report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Invitations made on or after this day (UTC).
    pub since: Option<NaiveDate>,
    /// Cases of this account (matched case-insensitively).
    pub account: Option<String>,
}

/// One answer as the report sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportAnswer {
    /// The case as shown, e.g. `CASE-42`.
    pub case: String,
    pub recipient: String,
    pub score: Score,
    pub solved: Option<bool>,
    pub comment: Option<String>,
    pub channel: Channel,
    /// First answered and last changed, written as casegate writes times everywhere
    /// (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "as_stored_time")]
    pub answered_at: DateTime<Utc>,
    #[serde(serialize_with = "as_stored_time")]
    pub updated_at: DateTime<Utc>,
}

fn as_stored_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::store::stamp(*t))
}

/// `casegate survey report --json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The filter applied (`YYYY-MM-DD` / account name), null when none.
    pub since: Option<NaiveDate>,
    pub account: Option<String>,
    /// Invitations made (people asked).
    pub sent: u64,
    /// Invitations with an answer.
    pub answered: u64,
    /// answered / sent, 0..1, four decimals; null when nothing was sent.
    pub response_rate: Option<f64>,
    /// Mean score of the answers, 1..5, two decimals; null without answers.
    pub average_score: Option<f64>,
    /// Of the answers that said whether the problem was solved, the share that said yes,
    /// 0..1, four decimals; null when none said.
    pub solved_share: Option<f64>,
    pub solved_yes: u64,
    pub solved_no: u64,
    /// How many answers gave each score, keys "1" to "5".
    pub scores: BTreeMap<u8, u64>,
    /// The answers that have a comment, newest first.
    pub comments: Vec<ReportAnswer>,
}

/// The report's numbers from the count of invitations and their answers.
pub fn summarize(filter: &Filter, sent: u64, answers: &[ReportAnswer]) -> Report {
    let answered = answers.len() as u64;
    let solved_yes = answers.iter().filter(|a| a.solved == Some(true)).count() as u64;
    let solved_no = answers.iter().filter(|a| a.solved == Some(false)).count() as u64;
    let mut scores: BTreeMap<u8, u64> = (Score::MIN..=Score::MAX).map(|s| (s, 0)).collect();
    for a in answers {
        *scores.entry(a.score.get()).or_default() += 1;
    }
    let total: u64 = answers.iter().map(|a| u64::from(a.score.get())).sum();
    let mut comments: Vec<ReportAnswer> = answers.iter().filter(|a| a.comment.is_some()).cloned().collect();
    comments.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| a.case.cmp(&b.case)));
    Report {
        since: filter.since,
        account: filter.account.clone(),
        sent,
        answered,
        response_rate: ratio(answered, sent, 4),
        average_score: ratio(total, answered, 2),
        solved_share: ratio(solved_yes, solved_yes + solved_no, 4),
        solved_yes,
        solved_no,
        scores,
        comments,
    }
}

fn ratio(part: u64, whole: u64, decimals: i32) -> Option<f64> {
    if whole == 0 {
        return None;
    }
    let scale = 10f64.powi(decimals);
    Some((part as f64 / whole as f64 * scale).round() / scale)
}

/// Reads the invitations and answers `filter` selects and summarizes them.
pub fn load(db: Db<'_>, token_prefix: &str, filter: &Filter) -> DbResult<Report> {
    let since = filter.since.map(|d| crate::store::stamp(d.and_time(chrono::NaiveTime::MIN).and_utc()));
    let account = filter.account.as_deref().map(str::trim);
    // Accounts match whatever their case (`lower` on both sides: ASCII, as SQLite's NOCASE).
    let sent: i64 = db.query_one(
        "SELECT count(*) FROM survey_invitations i JOIN cases c ON c.id = i.case_id
         WHERE (CAST(?1 AS TEXT) IS NULL OR i.created_at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR lower(c.account) = lower(?2))",
        vals![since.as_deref(), account],
        |r| r.get(0),
    )?;
    let answers = db.query_map(
        "SELECT a.case_id, a.recipient, a.score, a.solved, a.comment, a.channel, a.answered_at, a.updated_at
         FROM survey_answers a
         JOIN survey_invitations i ON i.case_id = a.case_id AND i.recipient = a.recipient
         JOIN cases c ON c.id = a.case_id
         WHERE (CAST(?1 AS TEXT) IS NULL OR i.created_at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR lower(c.account) = lower(?2))
         ORDER BY a.updated_at",
        vals![since.as_deref(), account],
        |r| {
            let case: CaseId = r.get(0)?;
            Ok(ReportAnswer {
                case: format!("{token_prefix}-{case}"),
                recipient: r.get(1)?,
                score: score_col(r, 2)?,
                solved: r.get(3)?,
                comment: r.get(4)?,
                channel: r.parse(5)?,
                answered_at: time_col(r, 6)?,
                updated_at: time_col(r, 7)?,
            })
        },
    )?;
    Ok(summarize(filter, u64::try_from(sent).unwrap_or(0), &answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::surveys::tests::{addr, at, case, config, db};
    use crate::store::surveys::{invite, record_answer};
    use crate::survey::answer::Answer;

    fn answer(case: &str, score: u8, solved: Option<bool>, comment: Option<&str>, day: u32) -> ReportAnswer {
        let t: DateTime<Utc> = format!("2030-01-{day:02}T12:00:00Z").parse().unwrap();
        ReportAnswer {
            case: case.into(),
            recipient: "jane@customer.example".into(),
            score: Score::new(score).unwrap(),
            solved,
            comment: comment.map(str::to_string),
            channel: Channel::Web,
            answered_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn rates_averages_and_shares_are_computed_and_rounded() {
        let answers = [
            answer("CASE-1", 5, Some(true), Some("great"), 1),
            answer("CASE-2", 4, Some(true), None, 2),
            answer("CASE-3", 2, Some(false), Some("slow"), 3),
            answer("CASE-4", 4, None, None, 4),
        ];
        let r = summarize(&Filter::default(), 6, &answers);
        assert_eq!((r.sent, r.answered), (6, 4));
        assert_eq!(r.response_rate, Some(0.6667));
        assert_eq!(r.average_score, Some(3.75));
        assert_eq!(r.solved_share, Some(0.6667), "2 of the 3 who said");
        assert_eq!((r.solved_yes, r.solved_no), (2, 1));
        assert_eq!(r.scores.values().copied().collect::<Vec<_>>(), [0, 1, 0, 2, 1]);
        let comments: Vec<&str> = r.comments.iter().map(|c| c.case.as_str()).collect();
        assert_eq!(comments, ["CASE-3", "CASE-1"], "newest first");
    }

    #[test]
    fn nothing_sent_or_answered_gives_nulls_not_nan() {
        let r = summarize(&Filter::default(), 0, &[]);
        assert_eq!((r.response_rate, r.average_score, r.solved_share), (None, None, None));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["response_rate"], serde_json::Value::Null);
        assert_eq!(json["scores"], serde_json::json!({"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}));
        let r = summarize(&Filter::default(), 3, &[]);
        assert_eq!(r.response_rate, Some(0.0));
    }

    #[test]
    fn load_filters_by_invitation_date_and_account() {
        let (conn, config) = (db(), config(""));
        let acme = case(&conn, Some("ACME"));
        let other = case(&conn, Some("Customer Inc"));
        let jane = addr("jane@customer.example");
        invite((&conn).into(), &config, acme, &jane, at("2030-01-01T00:00:00Z")).unwrap();
        invite((&conn).into(), &config, other, &jane, at("2030-02-01T00:00:00Z")).unwrap();
        invite((&conn).into(), &config, other, &addr("joe@customer.example"), at("2030-02-01T00:00:00Z")).unwrap();
        let a = |s, c| Answer::new(Score::new(s).unwrap(), Some(true), c);
        record_answer((&conn).into(), acme, &jane, &a(5, Some("ok")), Channel::Web, at("2030-01-02T00:00:00Z"))
            .unwrap();
        record_answer((&conn).into(), other, &jane, &a(3, None), Channel::Mail, at("2030-02-02T00:00:00Z")).unwrap();

        let all = load((&conn).into(), "CASE", &Filter::default()).unwrap();
        assert_eq!((all.sent, all.answered, all.average_score), (3, 2, Some(4.0)));
        assert_eq!(all.comments.len(), 1);
        assert_eq!(all.comments[0].case, format!("CASE-{acme}"));

        let since = Filter { since: NaiveDate::from_ymd_opt(2030, 1, 15), account: None };
        let r = load((&conn).into(), "CASE", &since).unwrap();
        assert_eq!((r.sent, r.answered, r.response_rate), (2, 1, Some(0.5)));

        let acme_only = Filter { since: None, account: Some("acme".into()) };
        let r = load((&conn).into(), "CASE", &acme_only).unwrap();
        assert_eq!((r.sent, r.answered, r.average_score), (1, 1, Some(5.0)));
    }
}
