//! The journal's side of a mail's passage: is it a mail seen before (a duplicate, which
//! writes nothing), a new mail, or a new mail that reuses an earlier one's Message-ID?

use super::{IngestReport, Origin, Prepared};
use crate::case::{AuditAction, Outcome};
use crate::config::Config;
use crate::prepare::{self, Parsed};
use crate::store::db::{Db, DbResult};
use crate::store::mails::{self, MailRecord};
use crate::store::unit::AuditRecord;
use crate::store::{packs, Scope};

/// The journal key of a mail: its Message-ID and content fingerprint (`mid:<id> <fp>`),
/// or, without a Message-ID, the hash of its bytes (`sha256:<hex>`): with no identity
/// given by its author, only an identical copy is known to be the same mail. The key is
/// unique in the journal, so one mail can be recorded only once; a Message-ID cannot hold
/// a space, so all the keys of one Message-ID sort together (see [`seen_before`]). Rows
/// written before fingerprints have `mid:<id>`.
pub(super) fn dedupe_key(message_id: Option<&str>, prepared: &Prepared) -> String {
    match message_id {
        Some(id) => format!("mid:{id} {}", prepared.fingerprint),
        None => format!("sha256:{}", prepared.sha),
    }
}

/// Whether the journal knows a mail.
pub(super) enum Seen {
    New,
    /// The same mail: its first passage, and why it is the same.
    Duplicate(MailRecord, &'static str),
    /// Another mail used this Message-ID before (these rows): this one is new.
    IdReused(Vec<MailRecord>),
}

/// A mail is a duplicate only when it is the same mail: from the same source position, or
/// with the same Message-ID and the same content fingerprint (or, without a Message-ID,
/// the same bytes). The same Message-ID with other content is another mail.
pub(super) fn seen_before(
    tx: Db<'_>,
    config: &Config,
    origin: &Origin,
    message_id: Option<&str>,
    prepared: &Prepared,
) -> anyhow::Result<Seen> {
    if let (Some(source), Some(key)) = (&origin.source, &origin.source_key) {
        if let Some(found) = mails::find_by_position(tx, source, key)? {
            return Ok(Seen::Duplicate(found, "already processed from this source position"));
        }
    }
    let Some(id) = message_id else {
        return Ok(match mails::find_by_dedupe_key(tx, &dedupe_key(None, prepared))? {
            Some(found) => Seen::Duplicate(found, "identical mail already processed"),
            None => Seen::New,
        });
    };
    let mut others = Vec::new();
    for (found, key) in mails::find_by_message_id_key(tx, &format!("mid:{id}"))? {
        let same = match key.split_once(' ') {
            Some((_, fingerprint)) => fingerprint == prepared.fingerprint,
            // Journalled before fingerprints: the same bytes, or the same content once
            // the stored copy is fingerprinted too (rare: only mail from before an upgrade).
            None => found.raw_sha256 == prepared.sha || stored_fingerprint(tx, config, &found)? == prepared.fingerprint,
        };
        if same {
            return Ok(Seen::Duplicate(
                found,
                "a mail with this Message-ID and the same content was already processed",
            ));
        }
        others.push(found);
    }
    Ok(if others.is_empty() { Seen::New } else { Seen::IdReused(others) })
}

/// The fingerprint of a journalled mail, from its stored raw copy.
fn stored_fingerprint(tx: Db<'_>, config: &Config, found: &MailRecord) -> anyhow::Result<String> {
    let dir = config.data_dir.join(packs::DIR);
    Ok(match mails::raw(tx, &dir, &found.raw_sha256)? {
        Some(raw) => prepare::fingerprint(&Parsed::of(config, &raw), &raw),
        None => String::new(),
    })
}

/// Audits a mail that reused an earlier mail's Message-ID (it was processed on its own).
/// When the two belong to different cases, the Message-ID no longer names one case, so
/// it stops routing replies: they go by the subject token or their other references.
pub(super) fn record_reuse(
    scope: &Scope<'_>,
    config: &Config,
    id: &str,
    earlier: &[MailRecord],
    report: &IngestReport,
) -> DbResult<()> {
    let names: Vec<String> = earlier
        .iter()
        .map(|m| match m.case_id {
            Some(c) => format!("mail #{} ({})", m.id, config.case_token(c)),
            None => format!("mail #{}", m.id),
        })
        .collect();
    let elsewhere = earlier.iter().filter_map(|m| m.case_id).any(|c| report.case.is_some_and(|mine| mine != c));
    let mut detail = format!("Message-ID <{id}> was used before by {} with other content", names.join(", "));
    if elsewhere {
        crate::store::cases::forget_message_id(scope.conn, id)?;
        detail.push_str("; it names more than one case now and no longer routes replies");
    }
    let record = AuditRecord {
        mail: report.mail_id,
        case: report.case,
        actor: None,
        action: AuditAction::MessageIdReused,
        detail: Some(&detail),
    };
    scope.audit(&record)?;
    let case = report.case.map(|c| config.case_token(c));
    tracing::info!(message_id = id, case = case.as_deref().unwrap_or("-"), "{detail}");
    Ok(())
}

/// The report of a duplicate: nothing was written; it names the first passage.
pub(super) fn duplicate_report(
    found: MailRecord,
    why: &str,
    message_id: Option<&str>,
    config: &Config,
) -> IngestReport {
    let case = found.case_id.map(|c| config.case_token(c));
    let first = match &case {
        Some(c) => format!("{} ({c})", found.outcome),
        None => found.outcome.to_string(),
    };
    IngestReport {
        mail_id: None,
        message_id: message_id.map(str::to_string).or(found.message_id),
        outcome: Outcome::Duplicate,
        case: found.case_id,
        reason: Some(format!("{why}: mail #{} from {}, outcome {first}", found.id, found.origin)),
        first_outcome: Some(found.outcome),
        events: Vec::new(),
    }
}
