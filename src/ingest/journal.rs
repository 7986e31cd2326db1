//! The journal's side of a mail's passage: is it a mail seen before (a duplicate, which
//! writes nothing), a new mail, or a new mail that reuses an earlier one's Message-ID?

use std::collections::{HashMap, HashSet};

use super::{IngestReport, Origin, Prepared};
use crate::case::{AuditAction, Outcome};
use crate::config::Config;
use crate::prepare::{self, Parsed};
use crate::store::db::{Db, DbResult, Row, Value};
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

/// What the journal held for the mails of a batch when the batch began, read in one round
/// trip (PostgreSQL, where a lookup per mail is a round trip each), and what the batch
/// wrote since: a key the batch wrote is looked up in the database again, where the
/// batch's own rows are; any other key's answer is what the database would say (a row
/// another node writes meanwhile under the same key is refused by the journal's unique
/// keys, and the batch written again).
/// A batch's questions to the journal (see [`Known::lists`]).
pub(super) struct Lists {
    sources: String,
    source_keys: String,
    keys: String,
    prefixes: String,
}

impl Lists {
    /// The queries, in the order [`Known::take`] numbers them.
    pub(super) fn queries(&self) -> [(&'static str, Vec<Value<'_>>); 3] {
        [
            (mails::BY_POSITIONS, vec![Value::from(&self.sources), Value::from(&self.source_keys)]),
            (mails::BY_KEYS, vec![Value::from(&self.keys)]),
            (mails::BY_PREFIXES, vec![Value::from(&self.prefixes)]),
        ]
    }
}

#[derive(Default)]
pub(super) struct Known {
    by_position: HashMap<(String, String), MailRecord>,
    by_key: HashMap<String, MailRecord>,
    by_message_id: HashMap<String, Vec<(MailRecord, String)>>,
    /// The lookup keys (see [`Known::keys`]) the batch has written under.
    written: HashSet<String>,
}

impl Known {
    /// The questions to the journal about `mails`, to be sent in one round trip with
    /// others; their rows go to [`Known::take`].
    pub(super) fn lists(mails: &[(Prepared, &Origin)]) -> Lists {
        let (mut sources, mut source_keys, mut keys, mut prefixes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (prepared, origin) in mails {
            if let (Some(source), Some(key)) = (&origin.source, &origin.source_key) {
                sources.push(source.as_str());
                source_keys.push(key.as_str());
            }
            match prepared.message_id() {
                Some(id) => prefixes.push(format!("mid:{id}")),
                None => keys.push(dedupe_key(None, prepared)),
            }
        }
        // The lists go as text, a line each (no key holds a line break: see `listable`).
        Lists {
            sources: sources.join("\n"),
            source_keys: source_keys.join("\n"),
            keys: keys.join("\n"),
            prefixes: prefixes.join("\n"),
        }
    }

    /// A row of query `i` of [`Lists::queries`].
    pub(super) fn take(&mut self, i: usize, r: &Row<'_>) -> DbResult<()> {
        let (found, key) = mails::journal_row(r)?;
        match i {
            0 => {
                let position: (String, String) = (r.get(8)?, r.get(9)?);
                self.by_position.insert(position, found);
            }
            1 => {
                self.by_key.insert(key, found);
            }
            _ => {
                let prefix: String = r.get(8)?;
                if mails::is_of_message_id(&key, &prefix) {
                    self.by_message_id.entry(prefix).or_default().push((found, key));
                }
            }
        }
        Ok(())
    }

    /// Whether every key of `mails` can go in a list of lines.
    pub(super) fn listable(mails: &[(Prepared, &Origin)]) -> bool {
        mails.iter().all(|(prepared, origin)| {
            let texts = [prepared.message_id(), origin.source.as_deref(), origin.source_key.as_deref()];
            texts.into_iter().flatten().all(|t| !t.contains(['\n', '\r']))
        })
    }

    /// The lookup keys of a mail: its position, its Message-ID or its bytes' key.
    fn keys(origin: &Origin, message_id: Option<&str>, prepared: &Prepared) -> Vec<String> {
        let mut keys = Vec::new();
        if let (Some(source), Some(key)) = (&origin.source, &origin.source_key) {
            keys.push(format!("position {source} {key}"));
        }
        keys.push(match message_id {
            Some(id) => format!("mid:{id}"),
            None => dedupe_key(None, prepared),
        });
        keys
    }

    /// Notes that the batch wrote (or may have written) a mail's journal row.
    pub(super) fn wrote(&mut self, origin: &Origin, message_id: Option<&str>, prepared: &Prepared) {
        self.written.extend(Known::keys(origin, message_id, prepared));
    }

    /// Whether the answers for this mail are as read when the batch began.
    fn still_holds(&self, origin: &Origin, message_id: Option<&str>, prepared: &Prepared) -> bool {
        Known::keys(origin, message_id, prepared).iter().all(|k| !self.written.contains(k))
    }
}

/// A mail is a duplicate only when it is the same mail: from the same source position, or
/// with the same Message-ID and the same content fingerprint (or, without a Message-ID,
/// the same bytes). The same Message-ID with other content is another mail. `known`: what
/// the journal held when the batch began, if it was read ahead.
pub(super) fn seen_before(
    tx: Db<'_>,
    config: &Config,
    origin: &Origin,
    message_id: Option<&str>,
    prepared: &Prepared,
    known: Option<&Known>,
) -> anyhow::Result<Seen> {
    let known = known.filter(|k| k.still_holds(origin, message_id, prepared));
    if let (Some(source), Some(key)) = (&origin.source, &origin.source_key) {
        let found = match known {
            Some(k) => k.by_position.get(&(source.clone(), key.clone())).cloned(),
            None => mails::find_by_position(tx, source, key)?,
        };
        if let Some(found) = found {
            return Ok(Seen::Duplicate(found, "already processed from this source position"));
        }
    }
    let Some(id) = message_id else {
        let key = dedupe_key(None, prepared);
        let found = match known {
            Some(k) => k.by_key.get(&key).cloned(),
            None => mails::find_by_dedupe_key(tx, &key)?,
        };
        return Ok(match found {
            Some(found) => Seen::Duplicate(found, "identical mail already processed"),
            None => Seen::New,
        });
    };
    let prefix = format!("mid:{id}");
    let rows = match known {
        Some(k) => k.by_message_id.get(&prefix).cloned().unwrap_or_default(),
        None => mails::find_by_message_id_key(tx, &prefix)?,
    };
    let mut others = Vec::new();
    for (found, key) in rows {
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
