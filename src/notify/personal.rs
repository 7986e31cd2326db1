//! What one notification carries for its one recipient, worked out when it is sent: the
//! files of the entry it reports (carried, or linked above `notify.attach_max_bytes`; see
//! [`super::files`]) and the personal links — the case page for the people of the case,
//! "My cases", downloads — signed for that recipient (see [`crate::links`]).
//!
//! Who gets which files follows who may see the entry: the view only holds an internal
//! note's entry for staff (`Facts::view`), so a note's files never reach a customer. The
//! author of the entry is not sent their own files back.

use crate::store::db::{Db, DbResult};
use chrono::{DateTime, Utc};

use super::files::{self, Choice};
use super::templates::{FileView, View};
use crate::address::Address;
use crate::config::Config;
use crate::links::Signer;
use crate::store::records::{self, StoredFile};

/// The files a mail carries, as `compose` writes them.
#[derive(Debug, Default)]
pub struct Carried {
    /// Inline images, each with its Content-ID.
    pub inline: Vec<(StoredFile, String)>,
    pub attached: Vec<StoredFile>,
}

/// Fills in `view`'s files and personal links for `to`, and returns the files to carry.
/// `secret` is the link secret, when links can be made; `message_id` the mail's own (the
/// Content-IDs of its inline images are made from it, so they are unique).
pub fn personalize(
    conn: Db<'_>,
    config: &Config,
    secret: Option<&[u8]>,
    view: &mut View,
    to: &Address,
    message_id: &str,
    now: DateTime<Utc>,
) -> DbResult<Carried> {
    let signer = secret.map(|s| Signer::new(config, s, now));
    links(view, to, signer.as_ref());
    let carried = files_for(conn, config, view, to, message_id, signer.as_ref())?;
    let linked = view.message.as_ref().is_some_and(|m| m.files.iter().any(|f| f.link.is_some()));
    if let (Some(signer), true) =
        (&signer, linked || !view.links.case_page.is_empty() || !view.links.my_cases.is_empty())
    {
        view.links.valid_until = crate::links::day(signer.expires);
    }
    Ok(carried)
}

/// Chooses the files of the reported entry for `to` and lists them in the view.
fn files_for(
    conn: Db<'_>,
    config: &Config,
    view: &mut View,
    to: &Address,
    message_id: &str,
    signer: Option<&Signer<'_>>,
) -> DbResult<Carried> {
    let Some(message) = view.message.as_mut() else { return Ok(Carried::default()) };
    let Some(entry) = message.entry else { return Ok(Carried::default()) };
    if message.from.as_deref() == Some(to.as_str()) {
        return Ok(Carried::default());
    }
    let choice = files::choose(records::files_of(conn, entry)?, config.notify.attach_max_bytes);
    let carried = Carried {
        inline: choice.inline.iter().map(|f| (f.clone(), format!("file{}.{message_id}", f.id))).collect(),
        attached: choice.attached.clone(),
    };
    message.files = file_views(&choice, &carried, to, signer);
    Ok(carried)
}

/// The case page for the people of the case, "My cases" for them (staff aside) and for
/// whoever asked for their list of cases; nothing for the staff alerts, whose readers
/// work from the mail and the terminal.
fn links(view: &mut View, to: &Address, signer: Option<&Signer<'_>>) {
    let Some(signer) = signer else { return };
    let takes_part = view.recipient.can_decide || view.recipient.is_watcher;
    if let (Some(case), true) = (&view.case, takes_part) {
        view.links.case_page = signer.case_page(case.number, to);
    }
    let asked_for_cases = view.kind == "case-list";
    if asked_for_cases || (takes_part && !view.recipient.is_staff) {
        view.links.my_cases = signer.my_cases(to);
    }
    if asked_for_cases {
        for line in &mut view.cases {
            if let Some(number) = line.token.rsplit_once('-').and_then(|(_, n)| n.parse().ok()) {
                line.page = signer.case_page(number, to);
            }
        }
    }
}

/// The entry's files as the templates list them, in their original order.
fn file_views(choice: &Choice, carried: &Carried, to: &Address, signer: Option<&Signer<'_>>) -> Vec<FileView> {
    let mut all: Vec<(&StoredFile, FileView)> = Vec::new();
    let view = |f: &StoredFile| FileView {
        name: f.filename.clone(),
        content_type: f.content_type.clone(),
        size: files::size_in_words(f.size),
        cid: None,
        attached: false,
        link: None,
    };
    for (f, cid) in &carried.inline {
        all.push((f, FileView { cid: Some(cid.clone()), ..view(f) }));
    }
    for f in &choice.attached {
        all.push((f, FileView { attached: true, ..view(f) }));
    }
    for f in &choice.linked {
        all.push((f, FileView { link: signer.map(|s| s.download(f.id, to)), ..view(f) }));
    }
    all.sort_by_key(|(f, _)| f.id);
    all.into_iter().map(|(_, v)| v).collect()
}
