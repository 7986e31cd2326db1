//! Survey invitations and answers in SQLite (tables `survey_invitations`, `survey_answers`,
//! migration 3).
//!
//! An invitation is the promise "this person may answer this case's survey until then";
//! it is made once per person and case (the primary key), so a case's survey is offered
//! once however often the case is closed or the daemon restarts. An answer belongs to an
//! invitation (a foreign key) and is replaced, not added, when the person answers again
//! before the link expires. Like the rest of [`crate::store`], everything here is
//! synchronous and takes a [`Db`], so it runs inside the caller's transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::cases::participants;
use super::db::{Db, DbError, DbResult, Row};
use super::mails::audit;
use super::references::InvitationColumns;
use crate::address::Address;
use crate::case::{AuditAction, CaseId, ParticipantRole};
use crate::config::Config;
use crate::survey::answer::{Answer, Channel, Score};
use crate::survey::token;
use crate::vals;

/// A new invitation, with the link to put in the survey mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub case: CaseId,
    pub recipient: Address,
    pub created_at: DateTime<Utc>,
    /// The link works strictly before this instant.
    pub expires_at: DateTime<Utc>,
    /// `{base_url}/survey/{token}`.
    pub url: String,
}

/// An invitation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRow {
    pub case: CaseId,
    pub recipient: Address,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The survey mail's Message-ID, once [`set_message_id`] recorded it.
    pub message_id: Option<String>,
}

/// An answer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredAnswer {
    #[serde(flatten)]
    pub answer: Answer,
    pub channel: Channel,
    pub answered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What [`record_answer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The first answer of this person for this case.
    New,
    /// An earlier answer was replaced.
    Changed,
}

/// Why an answer was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("{recipient} was not invited to the survey of case {case}")]
    NotInvited { case: CaseId, recipient: Address },
    #[error("the survey link of case {case} for {recipient} expired at {expires_at}")]
    Expired { case: CaseId, recipient: Address, expires_at: DateTime<Utc> },
    #[error(transparent)]
    Database(#[from] DbError),
}

/// Offers `recipient` the survey of `case`: records the invitation and returns it with its
/// link, valid for `survey.link_valid` from `now`. Returns `None` when this person was
/// already invited for this case (the survey is offered once). Reads the survey secret,
/// so a missing secret is an error here, not a broken link later.
pub fn invite(
    db: Db<'_>,
    config: &Config,
    case: CaseId,
    recipient: &Address,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Invitation>> {
    let secret = crate::survey::secret(config)?;
    Ok(invite_with_secret(db, config, &secret, case, recipient, now)?)
}

/// Invites the requester and the contact of `case` (not watchers; never staff or our own
/// system addresses, who are not customers), each once. Returns the new invitations —
/// empty when surveys are not offered ([`crate::survey::offered`]: disabled, or no secret key
/// configured) or everyone was invited before. An error means a configured secret could
/// not be read (or the database failed); the caller may log it and carry on.
pub fn invite_case(db: Db<'_>, config: &Config, case: CaseId, now: DateTime<Utc>) -> anyhow::Result<Vec<Invitation>> {
    if !crate::survey::offered(config) {
        tracing::debug!(case, "Surveys are not offered (disabled or no secret configured)");
        return Ok(Vec::new());
    }
    let mut recipients: Vec<Address> = participants(db, case)?
        .into_iter()
        .filter(|(a, role)| {
            matches!(role, ParticipantRole::Requester | ParticipantRole::Contact)
                && !config.is_staff(a)
                && !config.is_admin(a)
                && !config.is_system_address(a)
        })
        .map(|(a, _)| a)
        .collect();
    // One invitation per person, even when they are both requester and contact.
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|a| seen.insert(a.clone()));
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let secret = crate::survey::secret(config)?;
    let mut out = Vec::new();
    for recipient in recipients {
        if let Some(invitation) = invite_with_secret(db, config, &secret, case, &recipient, now)? {
            out.push(invitation);
        }
    }
    Ok(out)
}

/// [`invite`] with the secret already read (the web tests and [`invite_case`] use it).
pub fn invite_with_secret(
    db: Db<'_>,
    config: &Config,
    secret: &[u8],
    case: CaseId,
    recipient: &Address,
    now: DateTime<Utc>,
) -> DbResult<Option<Invitation>> {
    let valid = chrono::Duration::from_std(config.survey.link_valid).unwrap_or(chrono::Duration::MAX);
    // The token carries whole seconds; store the same instant so both agree.
    let expires_at = now.checked_add_signed(valid).unwrap_or(DateTime::<Utc>::MAX_UTC);
    let expires_at = DateTime::<Utc>::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at);
    let inserted = db.execute(
        "INSERT INTO survey_invitations (case_id, recipient, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (case_id, recipient) DO NOTHING",
        vals![case, recipient.as_str(), crate::store::stamp(now), crate::store::stamp(expires_at)],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    audit(
        db,
        None,
        Some(case),
        Some(recipient.as_str()),
        AuditAction::SurveyInvited.as_str(),
        Some(&format!("link valid until {}", crate::store::stamp(expires_at))),
        &crate::store::stamp(now),
    )?;
    tracing::info!(case, recipient = %recipient, expires_at = %expires_at, "Survey offered");
    let url = crate::survey::link(config, &token::sign(secret, case, recipient, expires_at));
    Ok(Some(Invitation { case, recipient: recipient.clone(), created_at: now, expires_at, url }))
}

/// Remembers the Message-ID of the survey mail sent for an invitation, so that a reply to
/// it can be recognised as an answer ([`invitation_by_message_id`]).
pub fn set_message_id(db: Db<'_>, case: CaseId, recipient: &Address, message_id: &str) -> DbResult<()> {
    super::references::changed(db, message_id);
    db.execute(
        "UPDATE survey_invitations SET message_id = ?3 WHERE case_id = ?1 AND recipient = ?2",
        vals![case, recipient.as_str(), message_id],
    )?;
    Ok(())
}

pub fn invitation(db: Db<'_>, case: CaseId, recipient: &Address) -> DbResult<Option<InvitationRow>> {
    db.query_row(
        "SELECT case_id, recipient, created_at, expires_at, message_id FROM survey_invitations
         WHERE case_id = ?1 AND recipient = ?2",
        vals![case, recipient.as_str()],
        row_to_invitation,
    )
}

/// The invitation whose survey mail had this Message-ID (for replies to the survey mail).
pub fn invitation_by_message_id(db: Db<'_>, message_id: &str) -> DbResult<Option<InvitationRow>> {
    if let Some(found) = super::references::invitation_read_ahead(db, message_id) {
        return found.map(invitation_of).transpose();
    }
    db.query_row(
        "SELECT case_id, recipient, created_at, expires_at, message_id FROM survey_invitations WHERE message_id = ?1",
        vals![message_id],
        row_to_invitation,
    )
}

fn row_to_invitation(r: &Row<'_>) -> DbResult<InvitationRow> {
    invitation_of(InvitationColumns {
        case: r.get(0)?,
        recipient: r.get(1)?,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        message_id: r.get(4)?,
    })
}

/// An invitation's row from its columns as stored.
fn invitation_of(c: InvitationColumns) -> DbResult<InvitationRow> {
    let recipient =
        Address::parse(&c.recipient).ok_or_else(|| DbError::column(1, format!("bad address {:?}", c.recipient)))?;
    Ok(InvitationRow {
        case: c.case,
        recipient,
        created_at: parse_time(2, &c.created_at)?,
        expires_at: parse_time(3, &c.expires_at)?,
        message_id: c.message_id,
    })
}

/// Stores `recipient`'s answer for `case`, replacing an earlier one (the last answer
/// counts, whichever channel it came by). Refused when the person was not invited or the
/// invitation has expired.
pub fn record_answer(
    db: Db<'_>,
    case: CaseId,
    recipient: &Address,
    answer: &Answer,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<Recorded, AnswerError> {
    let invitation = invitation(db, case, recipient)?
        .ok_or_else(|| AnswerError::NotInvited { case, recipient: recipient.clone() })?;
    if now >= invitation.expires_at {
        return Err(AnswerError::Expired { case, recipient: recipient.clone(), expires_at: invitation.expires_at });
    }
    let existed = current_answer(db, case, recipient)?.is_some();
    save_answer(db, case, recipient, answer, channel, now, existed)?;
    Ok(if existed { Recorded::Changed } else { Recorded::New })
}

/// Stores an answer that may be recorded (the invitation exists and has not expired),
/// replacing an earlier one when `changed`, with its audit record.
pub fn save_answer(
    db: Db<'_>,
    case: CaseId,
    recipient: &Address,
    answer: &Answer,
    channel: Channel,
    now: DateTime<Utc>,
    changed: bool,
) -> DbResult<()> {
    let now_s = crate::store::stamp(now);
    db.execute(
        "INSERT INTO survey_answers (case_id, recipient, score, solved, comment, channel, answered_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (case_id, recipient) DO UPDATE SET
           score = excluded.score, solved = excluded.solved, comment = excluded.comment,
           channel = excluded.channel, updated_at = excluded.updated_at",
        vals![
            case,
            recipient.as_str(),
            answer.score.get(),
            answer.solved,
            answer.comment.as_deref(),
            channel.as_str(),
            &now_s
        ],
    )?;
    let detail =
        format!("{channel}: score {}, solved {}", answer.score, crate::survey::answer::solved_word(answer.solved));
    let action = if changed { AuditAction::SurveyAnswerChanged } else { AuditAction::SurveyAnswered };
    audit(db, None, Some(case), Some(recipient.as_str()), action.as_str(), Some(&detail), &now_s)?;
    tracing::info!(case, recipient = %recipient, %channel, score = answer.score.get(), changed, "Survey answer recorded");
    Ok(())
}

/// The answer `recipient` gave for `case`, if any.
pub fn current_answer(db: Db<'_>, case: CaseId, recipient: &Address) -> DbResult<Option<StoredAnswer>> {
    db.query_row(
        "SELECT score, solved, comment, channel, answered_at, updated_at FROM survey_answers
         WHERE case_id = ?1 AND recipient = ?2",
        vals![case, recipient.as_str()],
        |r| {
            Ok(StoredAnswer {
                answer: Answer { score: score_col(r, 0)?, solved: r.get(1)?, comment: r.get(2)? },
                channel: r.parse(3)?,
                answered_at: time_col(r, 4)?,
                updated_at: time_col(r, 5)?,
            })
        },
    )
}

/// A stored score, checked to be one a person can give.
pub(crate) fn score_col(r: &Row<'_>, i: usize) -> DbResult<Score> {
    let score: i64 = r.get(i)?;
    u8::try_from(score)
        .ok()
        .and_then(Score::new)
        .ok_or_else(|| DbError::column(i, format!("score {score} out of range")))
}

/// Resolved cases that have waited `survey.resolved_after` without being closed and
/// whose survey was not offered yet: the daemon offers it to them as if they were closed.
/// Empty when that setting is off or surveys are not offered.
pub fn resolved_cases_due(db: Db<'_>, config: &Config, now: DateTime<Utc>) -> DbResult<Vec<CaseId>> {
    let Some(after) = config.survey.resolved_after.filter(|_| crate::survey::offered(config)) else {
        return Ok(Vec::new());
    };
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let Some(cutoff) = now.checked_sub_signed(after) else {
        return Ok(Vec::new());
    };
    db.query_map(
        "SELECT id FROM cases c WHERE status = 'resolved' AND updated_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM survey_invitations i WHERE i.case_id = c.id)
         ORDER BY id",
        vals![crate::store::stamp(cutoff)],
        |r| r.get(0),
    )
}

pub(crate) fn time_col(r: &Row<'_>, i: usize) -> DbResult<DateTime<Utc>> {
    parse_time(i, &r.get::<String>(i)?)
}

/// A time as stored (column `i`, for the error).
fn parse_time(i: usize, s: &str) -> DbResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DbError::column(i, format!("bad time {s:?}: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::case::Impact;
    use crate::decide::NewCase;
    use crate::store::cases::{add_participant, insert_case, set_status};
    use std::path::Path;

    pub(crate) const SECRET: &str = "unit-test survey secret, 32 bytes";

    pub(crate) fn config(extra: &str) -> Config {
        Config::from_toml(
            &format!(
                "system_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
                 [survey]\nbase_url = \"https://support.example.com\"\nsecret = \"{SECRET}\"\n{extra}"
            ),
            Path::new("/c.toml"),
        )
        .unwrap()
    }

    pub(crate) fn db() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        conn
    }

    pub(crate) fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    pub(crate) fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A case with a requester, a contact and a watcher.
    pub(crate) fn case(conn: &rusqlite::Connection, account: Option<&str>) -> CaseId {
        let conn = Db::Sqlite(conn);
        let now = "2030-01-01T00:00:00.000Z";
        let case = NewCase {
            subject: "Printer on fire".into(),
            impact: Impact::High,
            account: account.map(str::to_string),
            environment: None,
            linked_case: None,
            opening_gist: None,
        };
        let id = insert_case(conn, &case, now).unwrap();
        add_participant(conn, id, &addr("jane@customer.example"), ParticipantRole::Requester, "sender", None, now)
            .unwrap();
        add_participant(conn, id, &addr("joe@customer.example"), ParticipantRole::Contact, "cc", None, now).unwrap();
        add_participant(conn, id, &addr("boss@customer.example"), ParticipantRole::Watcher, "cc", None, now).unwrap();
        id
    }

    fn answer(score: u8, solved: Option<bool>, comment: Option<&str>) -> Answer {
        Answer::new(Score::new(score).unwrap(), solved, comment)
    }

    #[test]
    fn an_invitation_is_made_once_and_its_link_verifies() {
        let (conn, config) = (db(), config("link_valid_days = 10"));
        let id = case(&conn, None);
        let now = at("2030-01-01T10:00:00.250Z");
        let inv = invite((&conn).into(), &config, id, &addr("jane@customer.example"), now).unwrap().unwrap();
        assert_eq!(inv.expires_at, at("2030-01-11T10:00:00Z"));
        let token = inv.url.strip_prefix("https://support.example.com/survey/").unwrap();
        let claims = token::verify(SECRET.as_bytes(), token, now).unwrap();
        assert_eq!(
            (claims.case, claims.recipient.as_str(), claims.expires),
            (id, "jane@customer.example", inv.expires_at)
        );
        assert_eq!(invite((&conn).into(), &config, id, &addr("jane@customer.example"), now).unwrap(), None);
        assert_eq!(
            invitation((&conn).into(), id, &addr("jane@customer.example")).unwrap().unwrap().expires_at,
            inv.expires_at
        );
    }

    #[test]
    fn a_case_invites_requester_and_contact_not_watchers_or_staff() {
        let (conn, config) = (db(), config(""));
        let id = case(&conn, None);
        let now = "2030-01-01T00:00:00.000Z";
        add_participant(
            (&conn).into(),
            id,
            &addr("ann@support.example.com"),
            ParticipantRole::Contact,
            "cli",
            None,
            now,
        )
        .unwrap();
        let invited: Vec<String> = invite_case((&conn).into(), &config, id, at(now))
            .unwrap()
            .into_iter()
            .map(|i| i.recipient.to_string())
            .collect();
        assert_eq!(invited, ["jane@customer.example", "joe@customer.example"]);
        assert!(invite_case((&conn).into(), &config, id, at(now)).unwrap().is_empty(), "offered once");
        let disabled = self::config("enabled = false");
        let other = case(&conn, None);
        assert!(invite_case((&conn).into(), &disabled, other, at(now)).unwrap().is_empty());
        let mut no_secret = self::config("");
        no_secret.web.secret = None;
        assert!(invite_case((&conn).into(), &no_secret, other, at(now)).unwrap().is_empty(), "no secret, no survey");
        let mut unreadable = self::config("");
        unreadable.web.secret = Some(crate::config::Secret::Env {
            var: "CASEGATE_TEST_UNSET_SECRET".into(),
            key: "survey.secret_env".into(),
        });
        let err = invite_case((&conn).into(), &unreadable, other, at(now)).unwrap_err().to_string();
        assert!(err.contains("CASEGATE_TEST_UNSET_SECRET"), "{err}");
    }

    #[test]
    fn answers_are_recorded_then_changed_until_the_link_expires() {
        let (conn, config) = (db(), config("link_valid_days = 1"));
        let id = case(&conn, None);
        let jane = addr("jane@customer.example");
        invite((&conn).into(), &config, id, &jane, at("2030-01-01T00:00:00Z")).unwrap().unwrap();

        let first = record_answer(
            (&conn).into(),
            id,
            &jane,
            &answer(2, Some(false), Some("slow")),
            Channel::Web,
            at("2030-01-01T01:00:00Z"),
        );
        assert_eq!(first.unwrap(), Recorded::New);
        let second =
            record_answer((&conn).into(), id, &jane, &answer(4, None, None), Channel::Mail, at("2030-01-01T02:00:00Z"));
        assert_eq!(second.unwrap(), Recorded::Changed);
        let stored = current_answer((&conn).into(), id, &jane).unwrap().unwrap();
        assert_eq!(stored.answer, answer(4, None, None));
        assert_eq!(stored.channel, Channel::Mail);
        assert_eq!((stored.answered_at, stored.updated_at), (at("2030-01-01T01:00:00Z"), at("2030-01-01T02:00:00Z")));

        let late =
            record_answer((&conn).into(), id, &jane, &answer(1, None, None), Channel::Web, at("2030-01-02T00:00:00Z"));
        assert!(matches!(late, Err(AnswerError::Expired { .. })), "{late:?}");
        assert_eq!(current_answer((&conn).into(), id, &jane).unwrap().unwrap().answer.score.get(), 4);
        let count: i64 = conn.query_row("SELECT count(*) FROM survey_answers", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn people_who_were_not_invited_cannot_answer() {
        let conn = db();
        let id = case(&conn, None);
        let r = record_answer(
            (&conn).into(),
            id,
            &addr("boss@customer.example"),
            &answer(5, None, None),
            Channel::Mail,
            at("2030-01-01T00:00:00Z"),
        );
        assert!(matches!(r, Err(AnswerError::NotInvited { .. })), "{r:?}");
    }

    #[test]
    fn a_reply_to_the_survey_mail_finds_its_invitation() {
        let (conn, config) = (db(), config(""));
        let id = case(&conn, None);
        let jane = addr("jane@customer.example");
        invite((&conn).into(), &config, id, &jane, at("2030-01-01T00:00:00Z")).unwrap().unwrap();
        set_message_id((&conn).into(), id, &jane, "<survey-1@example.com>").unwrap();
        let found = invitation_by_message_id((&conn).into(), "<survey-1@example.com>").unwrap().unwrap();
        assert_eq!((found.case, found.recipient), (id, jane));
        assert!(invitation_by_message_id((&conn).into(), "<other@example.com>").unwrap().is_none());
    }

    #[test]
    fn resolved_cases_are_due_after_the_configured_wait_once() {
        let (conn, config) = (db(), config("resolved_after_days = 7"));
        let waited = case(&conn, None);
        set_status((&conn).into(), waited, crate::case::Status::Resolved, "2030-01-01T00:00:00.000Z").unwrap();
        let recent = case(&conn, None);
        set_status((&conn).into(), recent, crate::case::Status::Resolved, "2030-01-07T00:00:00.000Z").unwrap();
        let now = at("2030-01-08T12:00:00Z");
        assert_eq!(resolved_cases_due((&conn).into(), &config, now).unwrap(), [waited]);
        invite_case((&conn).into(), &config, waited, now).unwrap();
        assert!(resolved_cases_due((&conn).into(), &config, now).unwrap().is_empty());
        assert!(resolved_cases_due((&conn).into(), &self::config(""), now).unwrap().is_empty(), "off by default");
    }
}
