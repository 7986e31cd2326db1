//! Loading what a decision needs, in one call: where routing puts a mail (the pure rules
//! of [`crate::route`], run against the store's case numbers and Message-IDs), that case
//! with its participants and open follow-up, the survey invitation the mail answers, the
//! notifications a bounce names, and whether a sender that failed DMARC is known.

use super::db::{Db, DbResult};
use super::{bounces, cases, surveys};
use crate::case::{CaseId, Status};
use crate::config::Config;
use crate::decide::{CaseFacts, Routed, Snapshot, SurveyInvitation};
use crate::parse::InboundMail;
use crate::prepare::Analyzed;
use crate::route::{self, Route};
use crate::vals;

/// The snapshot a decision about `analyzed` is made on: [`for_mail`], with the
/// notifications it bounces and, when DMARC failed for it, whether its sender is known.
pub fn for_analyzed(
    db: Db<'_>,
    config: &Config,
    analyzed: &Analyzed,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Snapshot> {
    let mut snapshot = for_mail(db, config, &analyzed.mail)?;
    let ids = analyzed.bounce.as_ref().map_or(&[][..], |b| b.returned_ids.as_slice());
    if analyzed.return_path_row.is_some() || !ids.is_empty() {
        let window = chrono::Duration::from_std(config.bounces.soft_window).unwrap_or(chrono::Duration::days(36_500));
        let since = super::stamp(now - window);
        snapshot.bounced = bounces::sent_rows(db, analyzed.return_path_row, ids, &since, &super::stamp(now))?;
    }
    if let (Some(_), Some(from)) = (&analyzed.dmarc_failure, analyzed.mail.from_address()) {
        snapshot.sender_known = Some(takes_part_anywhere(db, from)? || config.is_staff(from) || config.is_admin(from));
    }
    Ok(snapshot)
}

/// The snapshot a decision about `mail` is made on.
pub fn for_mail(db: Db<'_>, config: &Config, mail: &InboundMail) -> anyhow::Result<Snapshot> {
    // A case a token names is read whole, and held, as it is checked: routing takes the
    // first that exists, whose facts are then at hand.
    let mut named: Option<CaseFacts> = None;
    let route = route::route(
        mail,
        &config.tokens,
        &config.token_prefix,
        |n| {
            named = case_facts_to_change(db, n)?;
            Ok::<_, crate::store::db::DbError>(named.is_some())
        },
        |id| cases::case_for_message_id(db, id),
    )?;
    let case = match route {
        Route::New { note } => return Ok(Snapshot::routed(Routed::New { note })),
        Route::Existing { case, .. } => case,
    };
    let facts = match named.filter(|f| f.row.id == case) {
        Some(facts) => facts,
        None => case_facts_to_change(db, case)?
            .ok_or_else(|| anyhow::anyhow!("routing chose case {case}, which the store does not have"))?,
    };
    let follow_up = match facts.row.status {
        Status::Closed => match cases::open_follow_up(db, case)? {
            Some(next) => case_facts_to_change(db, next)?.map(Box::new),
            None => None,
        },
        _ => None,
    };
    let invitation = invitation(db, mail)?;
    let mut snapshot = Snapshot::routed(Routed::Existing { case: Box::new(facts), follow_up });
    snapshot.invitation = invitation;
    Ok(snapshot)
}

/// Whether `address` takes (or took) part in any case: someone casegate has seen before.
fn takes_part_anywhere(db: Db<'_>, address: &crate::address::Address) -> DbResult<bool> {
    db.exists("SELECT 1 FROM participants WHERE address = ?1 LIMIT 1", vals![address.as_str()])
}

/// A case's fields and active participants, if it exists: what a page shows.
pub fn case_facts(db: Db<'_>, case: CaseId) -> DbResult<Option<CaseFacts>> {
    Ok(cases::row_and_participants(db, case, false)?.map(|(row, participants)| CaseFacts { row, participants }))
}

/// [`case_facts`] for a decision that may change the case: the case is held for the
/// unit of work (see [`cases::row_and_participants`]), so the decision is made on what
/// is there, not on what another node is changing.
pub fn case_facts_to_change(db: Db<'_>, case: CaseId) -> DbResult<Option<CaseFacts>> {
    Ok(cases::row_and_participants(db, case, true)?.map(|(row, participants)| CaseFacts { row, participants }))
}

/// The first survey invitation whose mail `mail` refers to (In-Reply-To first).
fn invitation(db: Db<'_>, mail: &InboundMail) -> DbResult<Option<SurveyInvitation>> {
    for id in mail.ancestors() {
        if let Some(found) = surveys::invitation_by_message_id(db, id)? {
            let answered = surveys::current_answer(db, found.case, &found.recipient)?.is_some();
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
