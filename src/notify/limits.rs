//! The loop breaker: which notifications are held back rather than sent. A held-back
//! notification is still written to the outbox — `suppressed`, with the reason in
//! `last_error` — so `outbox list` shows what casegate did not send and why; the event it
//! is about is on the case whatever happens here.
//!
//! In the order they are checked, the first that applies giving the reason:
//!
//! 1. **A suppressed address** (a hard bounce, or too many soft ones: `decide::bounce`):
//!    nothing is sent to it until the suppression ends or staff lift it.
//! 2. **Loop evidence in the mail being answered** — automatic answers only ([`AUTOMATIC`]),
//!    to that mail's sender: it quotes the text of our own automatic mails back (an
//!    autoresponder that returns what it got), or it says what the sender's earlier
//!    mails opening cases today said ([`REPEATS`] of them, digits aside: an autoresponder
//!    writes the same words with a new ticket number each time).
//! 3. **The daily limit**: at most `limits.auto_replies_per_address_per_day` automatic
//!    answers (acknowledgements, not-applied and other answers, case lists) to one address
//!    in 24 hours, however many mails it sends. Notifications a person asked for by
//!    acting on a case (a reply, a status change, a watcher added) do not count.
//! 4. **The per-case brake**: when the mail's sender and the recipient have each written
//!    `limits.case_exchange_limit` entries on the case within
//!    `limits.case_exchange_minutes`, the notification about the sender's latest mail is
//!    not sent to the recipient: two programs are answering each other through the case
//!    (two autoresponders watching it, say), faster than people write.
//!
//! The checks are made just before each notification is written, inside the unit of
//! work, so the notifications of the same batch count too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use chrono::{DateTime, Duration, Utc};

use super::recipients::Recipient;
use super::Said;
use crate::address::Address;
use crate::case::{CaseId, Event};
use crate::classify::{gist, Gist};
use crate::config::Config;
use crate::parse::InboundMail;
use crate::store::db::Db;
use crate::store::{bounces, loops, outbox, stamp};

/// The notification kinds that answer a mail automatically; the daily limit counts them
/// (and the store's `outbox_automatic` index lists the same kinds).
pub const AUTOMATIC: &[&str] = &outbox::AUTOMATIC_EVENTS;

/// Earlier mails opening cases today with the same words that make a loop.
pub const REPEATS: usize = 2;

/// How many of a case's newest entries the per-case brake reads.
const BRAKE_ENTRIES: usize = 50;
/// Shortest line of our templates that counts as quoted back when found in a mail.
const MIN_QUOTED_LINE: usize = 40;

/// The loop breaker for one batch of events.
pub(super) struct Limits<'a> {
    conn: Db<'a>,
    config: &'a Config,
    now: DateTime<Utc>,
    trigger: Option<&'a InboundMail>,
    /// What the trigger mail says, if worked out already.
    said: Option<Said<'a>>,
    /// Loop evidence in the trigger mail, once worked out.
    evidence: Option<Option<String>>,
    /// Entries per author within the brake's window, per case (read once per batch).
    authors: HashMap<CaseId, HashMap<String, usize>>,
    /// Whether any address is suppressed now (read once per batch: usually none is, and
    /// then no recipient needs a lookup of its own).
    any_suppressed: Option<bool>,
}

impl<'a> Limits<'a> {
    pub(super) fn new(
        conn: Db<'a>,
        config: &'a Config,
        now: DateTime<Utc>,
        trigger: Option<&'a InboundMail>,
        said: Option<Said<'a>>,
        events: &[Event],
    ) -> Limits<'a> {
        // A case opened by this batch has only the entries of the mail being answered, all
        // by its sender: the brake, which needs both parties' entries, cannot hold it.
        let authors = events
            .iter()
            .filter_map(|e| match e {
                Event::Created { case, .. } => Some((*case, HashMap::new())),
                _ => None,
            })
            .collect();
        Limits { conn, config, now, trigger, said, evidence: None, authors, any_suppressed: None }
    }

    /// Why the notification about `event` to `r` is held back, if it is.
    pub(super) fn held_back(&mut self, event: &Event, r: &Recipient) -> anyhow::Result<Option<String>> {
        let now = stamp(self.now);
        let any_suppressed = match self.any_suppressed {
            Some(known) => known,
            None => *self.any_suppressed.insert(bounces::any_suppression(self.conn, &now)?),
        };
        if any_suppressed {
            if let Some(s) = bounces::suppression(self.conn, &r.address, &now)? {
                return Ok(Some(format!("suppressed until {}: {}", day(&s.until), s.reason)));
            }
        }
        let sender = self.trigger.and_then(InboundMail::from_address);
        if AUTOMATIC.contains(&r.rule.template) {
            if sender == Some(&r.address) {
                if let Some(why) = self.loop_evidence(event)? {
                    return Ok(Some(format!("loop breaker: {why}")));
                }
            }
            let limit = self.config.auto_replies_per_address_per_day;
            let since = stamp(self.now - Duration::hours(24));
            let sent = outbox::automatic_answers_since(self.conn, &r.address, &since)?;
            if sent >= limit {
                return Ok(Some(format!(
                    "loop breaker: {sent} automatic mails to {} in 24 hours (limits.auto_replies_per_address_per_day = {limit})",
                    r.address
                )));
            }
        }
        match (sender, event.case()) {
            (Some(sender), case) if case != 0 && *sender != r.address => {
                let sender = sender.clone();
                self.brake(case, &sender, &r.address)
            }
            _ => Ok(None),
        }
    }

    /// Loop evidence in the trigger mail (worked out once per batch), from what its
    /// sender wrote reduced to its words (see [`gist`]; worked out while the mail was
    /// prepared, off the database writer's thread).
    fn loop_evidence(&mut self, event: &Event) -> anyhow::Result<Option<String>> {
        if let Some(known) = &self.evidence {
            return Ok(known.clone());
        }
        let Some(mail) = self.trigger else { return Ok(None) };
        let (quoted, key) = match self.said {
            Some(said) => (said.quotes_ours.map(str::to_string), said.gist.key.clone()),
            None => {
                let gist = Gist::of(&mail.text);
                (quotes_our_text(self.config, &gist.words), gist.key)
            }
        };
        let case = Some(event.case()).filter(|c| *c != 0);
        let mut found = quoted;
        if found.is_none() {
            found = self.repeats(mail, key.as_deref(), case)?;
        }
        self.evidence = Some(found.clone());
        Ok(found)
    }

    /// The mail says what `REPEATS` or more of its sender's cases opened in the last 24
    /// hours said: one lookup of the key stored with each case a mail opens.
    fn repeats(&self, mail: &InboundMail, key: Option<&str>, case: Option<CaseId>) -> anyhow::Result<Option<String>> {
        let (Some(from), Some(key)) = (mail.from_address(), key) else { return Ok(None) };
        let since = stamp(self.now - Duration::hours(24));
        let same = loops::openings_saying(self.conn, &crate::classify::opening_key(key, from.as_str()), &since, case)?;
        let more = if same.or_more { " or more" } else { "" };
        Ok((same.count >= REPEATS)
            .then(|| format!("{from} sent the same text {}{more} times before today", same.count)))
    }

    /// The per-case brake (see the module documentation).
    fn brake(&mut self, case: CaseId, sender: &Address, to: &Address) -> anyhow::Result<Option<String>> {
        let limit = self.config.case_exchange_limit as usize;
        let window = Duration::from_std(self.config.case_exchange_window).unwrap_or(Duration::minutes(10));
        if !self.authors.contains_key(&case) {
            let since = stamp(self.now - window);
            let mut by: HashMap<String, usize> = HashMap::new();
            for (from, at) in crate::store::thread::recent_authors(self.conn, case, BRAKE_ENTRIES)? {
                if at < since {
                    break;
                }
                if let Some(from) = from {
                    *by.entry(from).or_default() += 1;
                }
            }
            self.authors.insert(case, by);
        }
        let by = &self.authors[&case];
        let (a, b) = (by.get(sender.as_str()).copied().unwrap_or(0), by.get(to.as_str()).copied().unwrap_or(0));
        if a < limit || b < limit {
            return Ok(None);
        }
        Ok(Some(format!(
            "loop breaker: {sender} and {to} wrote {} entries on {} within {} minutes",
            a + b,
            self.config.case_token(case),
            window.num_minutes()
        )))
    }
}

/// `2026-01-02T10:00:00.000Z` → `2026-01-02`.
fn day(stored: &str) -> &str {
    stored.get(..10).unwrap_or(stored)
}

/// Whether what the sender wrote (as [`gist`] reduces it) quotes a line of our own
/// automatic mails: what an autoresponder does that returns the mail it got. (A person
/// quotes below their answer, and the quoted history is not part of what they wrote.)
pub(super) fn quotes_our_text(config: &Config, words: &str) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let ours = template_lines(config);
    let found = ours.finder.as_ref()?.find(words)?;
    let shown: String = ours.lines[found.pattern().as_usize()].chars().take(60).collect();
    Some(format!("the mail quotes our own automatic mail (\"{shown}…\")"))
}

/// The literal lines of our automatic mails and one automaton that finds any of them in a
/// text in a single pass (this runs on the database writer's thread, once per mail).
struct OurLines {
    lines: Vec<String>,
    /// `None` when there are no lines to find (or, defensively, the automaton could not
    /// be built: then nothing counts as quoted, as before the lines were known).
    finder: Option<AhoCorasick>,
}

/// The literal lines (no template values) of the text templates of our automatic mails,
/// as [`gist`] reduces them; the overrides in `templates_dir` replace the built-in ones.
/// Worked out once per process and templates directory.
fn template_lines(config: &Config) -> Arc<OurLines> {
    type Cache = Mutex<Vec<(Option<PathBuf>, Arc<OurLines>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let dir = config.templates_dir.clone();
    if let Some((_, lines)) = cache.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(d, _)| *d == dir) {
        return Arc::clone(lines);
    }
    let mut lines = Vec::new();
    for kind in AUTOMATIC {
        let name = format!("{kind}.text");
        let overridden = dir.as_ref().and_then(|d| std::fs::read_to_string(d.join(format!("{name}.hbs"))).ok());
        let builtin = super::templates::BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, s)| s.to_string());
        let Some(source) = overridden.or(builtin) else { continue };
        for line in source.lines().filter(|l| !l.contains("{{")) {
            let line = gist(line);
            if line.len() >= MIN_QUOTED_LINE && !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    // A DFA without a prefilter: the texts are lower-case letters and spaces only, so a
    // prefilter for rare bytes fires at every few letters and costs more than it saves.
    let finder = if lines.is_empty() {
        None
    } else {
        AhoCorasick::builder().kind(Some(AhoCorasickKind::DFA)).prefilter(false).build(&lines).ok()
    };
    let ours = Arc::new(OurLines { lines, finder });
    cache.lock().unwrap_or_else(|e| e.into_inner()).push((dir, Arc::clone(&ours)));
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gist_ignores_case_digits_and_punctuation() {
        assert_eq!(gist("Thank you! Ticket #4711 received.\n\nRegards"), "thank you ticket received regards");
        assert_eq!(gist("Ticket 1"), gist("TICKET 2"));
        assert_eq!(gist("12 34"), "");
    }

    #[test]
    fn a_mail_that_quotes_our_acknowledgement_in_its_own_words_is_a_loop() {
        let config =
            Config::from_toml("system_addresses = [\"support@example.com\"]", std::path::Path::new("/x/c.toml"))
                .expect("minimal config");
        let robot = "I am away.\n\nYour message:\nthank you for your mail. We opened case CASE-3 for it:\n\
                     An analyst will pick it up soon. To add information, reply to this mail and keep\n[CASE-3] in the subject.";
        let why = quotes_our_text(&config, &gist(robot)).expect("our text quoted back");
        assert!(why.starts_with("the mail quotes our own automatic mail (\"an analyst will pick it up soon"), "{why}");
        let person = "Thanks, I will keep the case number in the subject and add the logs later.";
        assert_eq!(quotes_our_text(&config, &gist(person)), None);
    }

    #[test]
    fn the_store_counts_exactly_the_automatic_kinds() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let conn = Db::Sqlite(&conn);
        let to = Address::parse("a@x.example").unwrap();
        for (i, kind) in super::super::templates::KINDS.iter().enumerate() {
            let n = outbox::NewNotification {
                case: None,
                event: kind,
                to: &to,
                subject: "s",
                message_id: &format!("{i}@x"),
                payload: Some(b"mail"),
                spec: None,
                error: None,
                not_before: None,
                held_back: None,
            };
            outbox::insert(conn, &n, "2026-01-01T10:00:00.000Z").unwrap();
        }
        let counted = outbox::automatic_answers_since(conn, &to, "2026-01-01T00:00:00.000Z").unwrap();
        assert_eq!(counted as usize, AUTOMATIC.len());
        assert!(AUTOMATIC.iter().all(|k| super::super::templates::KINDS.contains(k)));
    }

    #[test]
    fn our_automatic_mails_have_lines_long_enough_to_be_recognised() {
        let config =
            Config::from_toml("system_addresses = [\"support@example.com\"]", std::path::Path::new("/x/c.toml"))
                .expect("minimal config");
        let ours = template_lines(&config);
        let lines = &ours.lines;
        assert!(lines.iter().any(|l| l.starts_with("an analyst will pick it up soon")), "{lines:?}");
        assert!(lines.iter().all(|l| l.len() >= MIN_QUOTED_LINE));
        assert!(ours.finder.is_some(), "an automaton over {} lines", lines.len());
    }
}
