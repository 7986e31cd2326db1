//! The schema, as an ordered list of migrations applied by the program itself.
//!
//! `PRAGMA user_version` records how many have been applied. A migration is never edited
//! once released: changes are new entries at the end. Each runs in its own transaction.

use rusqlite::{Connection, Transaction};

/// One step of the schema: SQL, or code for what SQL cannot say.
pub enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// Migration `i` (0-based) brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    // 1: the core tables.
    Migration::Sql(
        r#"
    -- Every mail that reached casegate, once per distinct mail: the processed-mail journal.
    CREATE TABLE mails (
        id            INTEGER PRIMARY KEY,
        received_at   TEXT NOT NULL,
        origin        TEXT NOT NULL,              -- human-readable: file path, imap mailbox/uid...
        source        TEXT,                       -- mailbox name, for source-position lookups
        source_key    TEXT,                       -- position within the source, e.g. "uidvalidity:uid"
        message_id    TEXT,
        dedupe_key    TEXT NOT NULL UNIQUE,       -- "mid:<Message-ID>" or "sha256:<hex of raw>"
        raw_sha256    TEXT NOT NULL REFERENCES raw_mails(sha256),
        from_addr     TEXT,
        subject       TEXT,
        outcome       TEXT NOT NULL CHECK (outcome IN ('created','replied','command','ignored','quarantined')),
        case_id       INTEGER REFERENCES cases(id),
        reason        TEXT
    );
    CREATE UNIQUE INDEX mails_by_position ON mails(source, source_key) WHERE source IS NOT NULL;
    CREATE INDEX mails_by_case ON mails(case_id);

    -- Raw mails as received, deduplicated by content, so any decision can be replayed.
    -- `data` is LZ4-compressed (size-prepended block format); `size` is the original size.
    CREATE TABLE raw_mails (
        sha256  TEXT PRIMARY KEY,
        size    INTEGER NOT NULL,
        data    BLOB NOT NULL
    );

    CREATE TABLE cases (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        subject      TEXT NOT NULL,          -- the description is the first thread entry's body
        status       TEXT NOT NULL CHECK (status IN ('new','open','resolved','closed')),
        impact       TEXT NOT NULL CHECK (impact IN ('high','medium','low')),
        account      TEXT,
        environment  TEXT,
        linked_case  INTEGER REFERENCES cases(id),  -- the closed case this one follows up
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE INDEX cases_by_status ON cases(status);

    -- Requester, contact and watchers; how and by whom each was added. Watchers who
    -- leave keep their row with removed_at set, for the audit trail.
    CREATE TABLE participants (
        case_id     INTEGER NOT NULL REFERENCES cases(id),
        address     TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('requester','contact','watcher')),
        added_via   TEXT NOT NULL,      -- sender, to, cc, forward, command, cli, contact-line
        added_by    TEXT,
        added_at    TEXT NOT NULL,
        removed_at  TEXT,
        PRIMARY KEY (case_id, role, address)
    ) WITHOUT ROWID;
    CREATE INDEX participants_by_address ON participants(address);

    -- The thread of a case.
    CREATE TABLE messages (
        id          INTEGER PRIMARY KEY,
        case_id     INTEGER NOT NULL REFERENCES cases(id),
        mail_id     INTEGER REFERENCES mails(id),   -- NULL for entries not from a mail
        message_id  TEXT,                           -- RFC 5322 Message-ID, if any
        kind        TEXT NOT NULL CHECK (kind IN ('customer','staff','note','system','auto')),
        from_addr   TEXT,
        body        TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX messages_by_case ON messages(case_id);

    -- Attachment metadata; the bytes are files under data_dir/blobs named by SHA-256.
    CREATE TABLE attachments (
        id            INTEGER PRIMARY KEY,
        message       INTEGER NOT NULL REFERENCES messages(id),
        filename      TEXT NOT NULL,
        content_type  TEXT NOT NULL,
        disposition   TEXT NOT NULL CHECK (disposition IN ('attachment','inline','message')),
        content_id    TEXT,
        size          INTEGER NOT NULL,
        sha256        TEXT NOT NULL
    );
    CREATE INDEX attachments_by_message ON attachments(message);

    -- Every Message-ID known to belong to a case, inbound and outbound, for routing
    -- replies whose subject lost the token.
    CREATE TABLE case_message_ids (
        message_id  TEXT PRIMARY KEY,
        case_id     INTEGER NOT NULL REFERENCES cases(id),
        direction   TEXT NOT NULL CHECK (direction IN ('in','out'))
    ) WITHOUT ROWID;

    -- Mail that could not be applied, kept raw with its reason until released.
    CREATE TABLE quarantine (
        id             INTEGER PRIMARY KEY,
        mail_id        INTEGER NOT NULL REFERENCES mails(id),
        reason         TEXT NOT NULL,
        detail         TEXT,
        created_at     TEXT NOT NULL,
        released_at    TEXT,
        released_outcome TEXT
    );
    CREATE INDEX quarantine_open ON quarantine(released_at);

    -- Notifications to send, written in the same transaction as the event that causes them.
    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY,
        case_id          INTEGER REFERENCES cases(id),
        event            TEXT NOT NULL,
        recipients       TEXT NOT NULL,          -- JSON array of addresses
        subject          TEXT NOT NULL,
        message_id       TEXT NOT NULL UNIQUE,
        payload          BLOB,                   -- the rendered RFC 5322 mail
        status           TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued','sent','failed')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        last_error       TEXT,
        next_attempt_at  TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        sent_at          TEXT
    );
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);

    -- Per IMAP folder: the UIDVALIDITY seen and the highest UID whose mail is committed.
    CREATE TABLE mailbox_state (
        source       TEXT PRIMARY KEY,
        uidvalidity  INTEGER NOT NULL,
        last_uid     INTEGER NOT NULL,
        updated_at   TEXT NOT NULL
    );

    -- Every decision, in order: what happened to which mail and case, and why.
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY,
        at       TEXT NOT NULL,
        mail_id  INTEGER,
        case_id  INTEGER,
        actor    TEXT,
        action   TEXT NOT NULL,
        detail   TEXT
    );
    CREATE INDEX audit_by_case ON audit(case_id);
    "#,
    ),
    // 2: notifications hold one recipient per row (`recipients` is a one-element array),
    // and answers to a sender are rate-limited by looking up what they were sent lately.
    Migration::Sql(
        r#"
    CREATE INDEX outbox_by_recipient ON outbox(recipients, event, created_at);
    "#,
    ),
    // 3: surveys (see src/survey/store.rs).
    Migration::Sql(
        r#"
    -- Who was offered the survey of which case, once per person and case. `expires_at` is
    -- the expiry signed into the link; `message_id` is the survey mail's, once queued.
    CREATE TABLE survey_invitations (
        case_id     INTEGER NOT NULL REFERENCES cases(id),
        recipient   TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        expires_at  TEXT NOT NULL,
        message_id  TEXT,
        PRIMARY KEY (case_id, recipient)
    ) WITHOUT ROWID;
    CREATE INDEX survey_invitations_by_created ON survey_invitations(created_at);
    CREATE UNIQUE INDEX survey_invitations_by_message_id ON survey_invitations(message_id)
        WHERE message_id IS NOT NULL;

    -- One answer per invitation, changed in place until the link expires.
    CREATE TABLE survey_answers (
        case_id      INTEGER NOT NULL,
        recipient    TEXT NOT NULL,
        score        INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        solved       INTEGER CHECK (solved IN (0, 1)),     -- NULL: not said (mail answers)
        comment      TEXT,
        channel      TEXT NOT NULL CHECK (channel IN ('web','mail')),
        answered_at  TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (case_id, recipient),
        FOREIGN KEY (case_id, recipient) REFERENCES survey_invitations(case_id, recipient)
    ) WITHOUT ROWID;
    "#,
    ),
    // 4: notifications are rendered when sent; until then a row holds what to render.
    Migration::Sql(
        r#"
    ALTER TABLE outbox ADD COLUMN spec TEXT;
    "#,
    ),
    // 5: only the answers to senders are looked up by recipient (rate limit of
    // `not-applied`); indexing every notification by recipient cost a random page write each.
    Migration::Sql(
        r#"
    DROP INDEX outbox_by_recipient;
    CREATE INDEX outbox_not_applied ON outbox(recipients, case_id, created_at) WHERE event = 'not-applied';
    "#,
    ),
    // 6: raw mails are kept in pack files under data_dir/raw (src/store/packs.rs); a row
    // says where, and its `data` is empty. Rows written before keep their bytes in `data`.
    Migration::Sql(
        r#"
    ALTER TABLE raw_mails ADD COLUMN pack TEXT;
    ALTER TABLE raw_mails ADD COLUMN pack_offset INTEGER;
    ALTER TABLE raw_mails ADD COLUMN pack_length INTEGER;
    "#,
    ),
    // 7: CHECK constraints that list three or more values (`kind IN ('customer', …)`) cost
    // SQLite a temporary table on every insert or update of the row; the same constraints
    // written as comparisons (`kind = 'customer' OR …`) cost a few instructions. Only the
    // text of the constraints changes, not what they allow, nor anything stored.
    Migration::Code(check_lists_as_comparisons),
    // 8: journal keys carry a content fingerprint (`mid:<id> <fp>`, `fp:<fp>`), so a mail
    // that reuses another's Message-ID is processed instead of taken for a duplicate; a
    // Message-ID that mails on different cases share no longer routes replies.
    Migration::Sql(
        r#"
    CREATE TABLE ambiguous_message_ids (
        message_id  TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    "#,
    ),
    // 9: mail hygiene. Outbox rows may also be `bounced` (a report came back) or
    // `suppressed` (held back: a dead address, the loop breaker); bounces are recorded per
    // address, and addresses are suppressed for a while; answers to one address are
    // counted through their own index (the loop breaker's daily limit).
    Migration::Code(hygiene),
    // 10: one row the daemon rewrites when asked whether the database is writable
    // (`/readyz`): a real commit, which fails as the mail's would (disk full, read-only).
    Migration::Sql(
        r#"
    CREATE TABLE health_probe (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        checked_at  TEXT NOT NULL
    );
    "#,
    ),
    // 11: the key of the words a case was opened with (`classify::gist_key`), so the loop
    // breaker finds a sender who keeps writing the same text with one lookup instead of
    // reading and reducing their latest cases' descriptions.
    Migration::Sql(
        "ALTER TABLE cases ADD COLUMN opening_gist TEXT;
         CREATE INDEX cases_by_opening_gist ON cases (opening_gist) WHERE opening_gist IS NOT NULL;",
    ),
    // 12: the data lifecycle (src/store/lifecycle/): retention, erasure, compaction of
    // the raw-mail packs, cases that close themselves.
    Migration::Sql(
        r#"
    -- A journal row whose mail was removed (retention, purge, erasure) keeps only what
    -- recognises the mail if it comes again (source position, dedupe key, Message-ID);
    -- its raw copy is gone and its sender, subject and reason are cleared.
    ALTER TABLE mails ADD COLUMN removed_at TEXT;
    -- Compaction reads the records of one pack at a time.
    CREATE INDEX raw_mails_by_pack ON raw_mails(pack, pack_offset) WHERE pack IS NOT NULL;
    -- Whether a file is still used by another attachment, when one is removed.
    CREATE INDEX attachments_by_sha256 ON attachments(sha256);
    -- When each periodic job last ran: one that runs once a day does so across restarts
    -- (and, on a shared database, across nodes: the run is claimed by one UPDATE).
    CREATE TABLE job_runs (
        name         TEXT PRIMARY KEY,
        last_run_at  TEXT NOT NULL
    );
    -- The reminder a Resolved case got before it closes itself: the wait it belongs to
    -- (the solution, or the newest staff answer after it) and the date it promised.
    CREATE TABLE close_reminders (
        case_id        INTEGER PRIMARY KEY REFERENCES cases(id),
        waiting_since  TEXT NOT NULL,
        reminded_at    TEXT NOT NULL,
        closes_at      TEXT NOT NULL
    );
    "#,
    ),
    // 13: several nodes (src/store/nodes.rs): the nodes that run, the lease of each
    // mailbox with its fencing number, the periodic jobs that run once across nodes; the
    // journal names the node that recorded each mail. The same tables as PostgreSQL's
    // (src/store/pg_migrations.rs), so one node on SQLite works as one of many.
    Migration::Sql(
        r#"
    CREATE TABLE nodes (
        name        TEXT PRIMARY KEY,
        instance    TEXT NOT NULL,      -- random for each start of the process
        started_at  TEXT NOT NULL,
        seen_at     TEXT NOT NULL,      -- the heartbeat
        stopped_at  TEXT,               -- stopped cleanly, leases handed back
        detail      TEXT                -- host, process, version
    );
    CREATE TABLE mailbox_leases (
        mailbox      TEXT PRIMARY KEY,
        node         TEXT,              -- NULL: free
        instance     TEXT,
        fencing      INTEGER NOT NULL,  -- raised by every takeover; checked by every commit
        acquired_at  TEXT NOT NULL,
        renewed_at   TEXT NOT NULL,
        expires_at   TEXT NOT NULL
    );
    CREATE TABLE periodic_jobs (
        name    TEXT PRIMARY KEY,
        due_at  TEXT NOT NULL,
        node    TEXT,                   -- who ran it last
        ran_at  TEXT
    );
    ALTER TABLE mails ADD COLUMN node TEXT;
    "#,
    ),
    // 14: the data lifecycle's daily retention claims its run in `periodic_jobs`, as every
    // periodic job does; `job_runs` goes (a retention due by it runs once more, which
    // removes only what is due).
    Migration::Sql("DROP TABLE job_runs;"),
];

/// Migration 9: the outbox's status constraint gains `bounced` and `suppressed` (through
/// `writable_schema`, as migration 7: the stored rows stay as they are), and the tables
/// and index of bounces, suppressions and automatic answers.
fn hygiene(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let old = "CHECK (status = 'queued' OR status = 'sent' OR status = 'failed')";
    let new = "CHECK (status = 'queued' OR status = 'sent' OR status = 'failed' OR status = 'bounced' OR status = 'suppressed')";
    let sql: String =
        tx.query_row("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'outbox'", [], |r| r.get(0))?;
    if !sql.contains(old) {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the outbox table's status constraint is not the one this migration knows: {sql}"
        )));
    }
    let version: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    tx.pragma_update(None, "writable_schema", true)?;
    tx.execute("UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = 'outbox'", [sql.replace(old, new)])?;
    tx.pragma_update(None, "schema_version", version + 1)?;
    tx.pragma_update(None, "writable_schema", false)?;
    tx.execute_batch(
        r#"
    -- Every bounce of a notification: the row it was, the address, what the report said.
    CREATE TABLE bounces (
        id          INTEGER PRIMARY KEY,
        address     TEXT NOT NULL,
        outbox_id   INTEGER REFERENCES outbox(id),
        mail_id     INTEGER REFERENCES mails(id),
        status      TEXT,
        cause       TEXT NOT NULL,
        hard        INTEGER NOT NULL,
        diagnostic  TEXT,
        at          TEXT NOT NULL
    );
    CREATE INDEX bounces_by_address ON bounces(address, at);

    -- Addresses not mailed for now, and why; a lifted suppression keeps its row.
    CREATE TABLE suppressions (
        address    TEXT PRIMARY KEY,
        reason     TEXT NOT NULL,
        since      TEXT NOT NULL,
        until      TEXT NOT NULL,
        lifted_at  TEXT,
        lifted_by  TEXT
    ) WITHOUT ROWID;

    -- Automatic answers by recipient and time, for the loop breaker's daily limit.
    CREATE INDEX outbox_automatic ON outbox(recipients, created_at)
        WHERE event = 'acknowledgement' OR event = 'follow-up-opened' OR event = 'not-applied'
           OR event = 'command-refused' OR event = 'reason-required' OR event = 'case-list';
    "#,
    )
}

/// Migration 7: rewrites `CHECK (col IN ('a', 'b', 'c'))` as `CHECK (col = 'a' OR col =
/// 'b' OR col = 'c')` in the stored table definitions, through `writable_schema` — the
/// procedure SQLite documents for changes that leave the stored rows as they are (see
/// "Making Other Kinds Of Table Schema Changes" in its ALTER TABLE page).
fn check_lists_as_comparisons(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let list = regex::Regex::new(r"CHECK \((\w+) IN \(('[^']*'(?:\s*,\s*'[^']*'){2,})\)\)").expect("constant regex");
    let value = regex::Regex::new(r"'[^']*'").expect("constant regex");
    let tables: Vec<(String, String)> = tx
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%CHECK (%'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut edits = Vec::new();
    for (name, sql) in tables {
        let rewritten = list.replace_all(&sql, |c: &regex::Captures<'_>| {
            let column = &c[1];
            let tests: Vec<String> = value.find_iter(&c[2]).map(|v| format!("{column} = {}", v.as_str())).collect();
            format!("CHECK ({})", tests.join(" OR "))
        });
        if rewritten != sql {
            edits.push((name, rewritten.into_owned()));
        }
    }
    if edits.is_empty() {
        return Ok(());
    }
    let version: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    tx.pragma_update(None, "writable_schema", true)?;
    for (name, sql) in &edits {
        tx.execute("UPDATE sqlite_schema SET sql = ?2 WHERE type = 'table' AND name = ?1", [name, sql])?;
    }
    // Every connection, this one included, reads the schema again.
    tx.pragma_update(None, "schema_version", version + 1)?;
    tx.pragma_update(None, "writable_schema", false)?;
    Ok(())
}

/// Brings the database up to the newest schema. Returns (from, to) versions.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<(usize, usize)> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?.try_into().unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {current}, newer than this casegate knows ({}); upgrade casegate",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(step) => step(&tx)?,
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "Database schema migrated");
    }
    if current < MIGRATIONS.len() {
        // A migration that edited the stored schema changed its version; one statement now
        // makes this connection read it again, before any statement is prepared for good.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))?;
    }
    Ok((current, MIGRATIONS.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_file_to_the_newest_version_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), (0, MIGRATIONS.len()));
        drop(conn);
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), (MIGRATIONS.len(), MIGRATIONS.len()));
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('mails','raw_mails','cases','participants','messages','attachments','case_message_ids','quarantine','outbox','mailbox_state','audit')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 11);
    }

    #[test]
    fn value_lists_in_check_constraints_become_comparisons_that_still_refuse_other_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        migrate(&mut conn).unwrap();
        let messages: String =
            conn.query_row("SELECT sql FROM sqlite_schema WHERE name = 'messages'", [], |r| r.get(0)).unwrap();
        assert!(
            messages.contains(
                "CHECK (kind = 'customer' OR kind = 'staff' OR kind = 'note' OR kind = 'system' OR kind = 'auto')"
            ),
            "{messages}"
        );
        let lists: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%IN (''%'',''%'',''%'')%'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(lists, 0, "no list of three or more values is left");
        // Two-value lists cost nothing and stay.
        let ids: String =
            conn.query_row("SELECT sql FROM sqlite_schema WHERE name = 'case_message_ids'", [], |r| r.get(0)).unwrap();
        assert!(ids.contains("direction IN ('in','out')"), "{ids}");
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");

        // What the constraints allow is unchanged, in this connection and in a new one.
        conn.execute(
            "INSERT INTO cases (subject, status, impact, created_at, updated_at) VALUES ('s', 'new', 'low', 't', 't')",
            [],
        )
        .unwrap();
        drop(conn);
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        for bad in [
            "INSERT INTO cases (subject, status, impact, created_at, updated_at) VALUES ('s', 'pending', 'low', 't', 't')",
            "INSERT INTO cases (subject, status, impact, created_at, updated_at) VALUES ('s', 'new', 'urgent', 't', 't')",
            "INSERT INTO messages (case_id, kind, body, created_at) VALUES (1, 'robot', 'b', 't')",
            "UPDATE cases SET status = 'gone' WHERE id = 1",
        ] {
            let err = conn.execute(bad, []).unwrap_err().to_string();
            assert!(err.contains("CHECK constraint failed"), "{bad}: {err}");
        }
        conn.execute("INSERT INTO messages (case_id, kind, body, created_at) VALUES (1, 'auto', 'b', 't')", [])
            .unwrap();
        // And inserting no longer builds a temporary table for the list.
        let ops: Vec<String> = conn
            .prepare("EXPLAIN INSERT INTO messages (case_id, kind, body, created_at) VALUES (1, 'auto', 'b', 't')")
            .unwrap()
            .query_map([], |r| r.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!ops.iter().any(|op| op == "OpenEphemeral"), "{ops:?}");
    }

    #[test]
    fn refuses_a_database_from_a_newer_casegate() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("upgrade casegate"), "{err}");
    }
}
