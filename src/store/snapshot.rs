//! Loading what a decision needs, in one call: where routing puts a mail (the pure rules
//! of [`crate::route`], run against the store's case numbers and Message-IDs), that case
//! with its participants and open follow-up, and the survey invitation the mail answers.

use rusqlite::Connection;

use super::{cases, surveys};
use crate::case::{CaseId, Status};
use crate::config::Config;
use crate::decide::{CaseFacts, Routed, Snapshot, SurveyInvitation};
use crate::parse::InboundMail;
use crate::route::{self, Route};

/// The snapshot a decision about `mail` is made on.
pub fn for_mail(conn: &Connection, config: &Config, mail: &InboundMail) -> anyhow::Result<Snapshot> {
    let route = route::route(
        mail,
        &config.tokens,
        &config.token_prefix,
        |n| cases::case_row(conn, n).map(|r| r.is_some()),
        |id| cases::case_for_message_id(conn, id),
    )?;
    let case = match route {
        Route::New { note } => return Ok(Snapshot { routed: Routed::New { note }, invitation: None }),
        Route::Existing { case, .. } => case,
    };
    let facts = case_facts(conn, case)?
        .ok_or_else(|| anyhow::anyhow!("routing chose case {case}, which the store does not have"))?;
    let follow_up = match facts.row.status {
        Status::Closed => match cases::open_follow_up(conn, case)? {
            Some(next) => case_facts(conn, next)?.map(Box::new),
            None => None,
        },
        _ => None,
    };
    let invitation = invitation(conn, mail)?;
    Ok(Snapshot { routed: Routed::Existing { case: Box::new(facts), follow_up }, invitation })
}

/// A case's fields and active participants, if it exists.
pub fn case_facts(conn: &Connection, case: CaseId) -> rusqlite::Result<Option<CaseFacts>> {
    let Some(row) = cases::case_row(conn, case)? else { return Ok(None) };
    Ok(Some(CaseFacts { row, participants: cases::participants(conn, case)? }))
}

/// The first survey invitation whose mail `mail` refers to (In-Reply-To first).
fn invitation(conn: &Connection, mail: &InboundMail) -> rusqlite::Result<Option<SurveyInvitation>> {
    for id in mail.ancestors() {
        if let Some(found) = surveys::invitation_by_message_id(conn, id)? {
            let answered = surveys::current_answer(conn, found.case, &found.recipient)?.is_some();
            return Ok(Some(SurveyInvitation {
                case: found.case,
                recipient: found.recipient,
                expires_at: found.expires_at,
                answered,
            }));
        }
    }
    Ok(None)
}
