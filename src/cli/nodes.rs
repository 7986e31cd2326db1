//! `casegate nodes [--json]`: the nodes that work on this database, the mailboxes each
//! holds, and how old their leases and heartbeats are — which node watches which mailbox
//! when several `casegate run` share one PostgreSQL database (alone, one node holds all).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{print_json, table};
use crate::config::Config;
use crate::store::nodes::{self, LeaseRow, NodeRow};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON: {"nodes": [...], "free": [...]}
    #[arg(long)]
    json: bool,
}

/// One node as `nodes --json` shows it.
#[derive(Debug, Serialize)]
struct NodeView {
    name: String,
    /// `running` (heartbeat within a lease), `silent` (none since: dead, paused or cut
    /// off) or `stopped` (stopped cleanly, its mailboxes handed back).
    state: &'static str,
    started_at: String,
    seen_at: String,
    /// Seconds since its last heartbeat.
    seen_secs_ago: i64,
    stopped_at: Option<String>,
    detail: Option<String>,
    mailboxes: Vec<MailboxView>,
}

/// One held lease.
#[derive(Debug, Serialize)]
struct MailboxView {
    mailbox: String,
    fencing: i64,
    acquired_at: String,
    renewed_at: String,
    expires_at: String,
    /// Seconds since the lease was taken.
    held_secs: i64,
    /// Seconds since it was last renewed.
    renewed_secs_ago: i64,
    /// Seconds until it runs out (negative: it ran out, another node may take it).
    expires_in_secs: i64,
}

#[derive(Debug, Serialize)]
struct View {
    nodes: Vec<NodeView>,
    /// Mailboxes no node holds now (handed back, or never taken).
    free: Vec<String>,
}

pub fn run(config: Arc<Config>, args: Args) -> anyhow::Result<()> {
    let store = Store::open(&config)?;
    let (rows, leases) = (nodes::nodes(store.db())?, nodes::leases(store.db())?);
    let view = view(rows, leases, config.storage.lease, Utc::now());
    if args.json {
        return print_json(&view);
    }
    print!("{}", render(&view));
    Ok(())
}

fn view(rows: Vec<NodeRow>, leases: Vec<LeaseRow>, lease: std::time::Duration, now: DateTime<Utc>) -> View {
    let secs = |at: &str| DateTime::parse_from_rfc3339(at).map_or(0, |t| (now - t.with_timezone(&Utc)).num_seconds());
    let lease_secs = i64::try_from(lease.as_secs()).unwrap_or(i64::MAX);
    let mut free = Vec::new();
    let mut nodes: Vec<NodeView> = rows
        .into_iter()
        .map(|n| {
            let seen = secs(&n.seen_at);
            let state = match (&n.stopped_at, seen <= lease_secs) {
                (Some(_), _) => "stopped",
                (None, true) => "running",
                (None, false) => "silent",
            };
            NodeView {
                name: n.name,
                state,
                started_at: n.started_at,
                seen_at: n.seen_at,
                seen_secs_ago: seen,
                stopped_at: n.stopped_at,
                detail: n.detail,
                mailboxes: Vec::new(),
            }
        })
        .collect();
    for l in leases {
        let Some(owner) = l.node.as_deref() else {
            free.push(l.mailbox);
            continue;
        };
        let held = MailboxView {
            held_secs: secs(&l.acquired_at),
            renewed_secs_ago: secs(&l.renewed_at),
            expires_in_secs: -secs(&l.expires_at),
            mailbox: l.mailbox,
            fencing: l.fencing,
            acquired_at: l.acquired_at,
            renewed_at: l.renewed_at,
            expires_at: l.expires_at,
        };
        match nodes.iter_mut().find(|n| n.name == owner) {
            Some(node) => node.mailboxes.push(held),
            // A lease names a node that never registered: shown under its name all the same.
            None => nodes.push(NodeView {
                name: owner.to_string(),
                state: "silent",
                started_at: String::new(),
                seen_at: String::new(),
                seen_secs_ago: 0,
                stopped_at: None,
                detail: None,
                mailboxes: vec![held],
            }),
        }
    }
    View { nodes, free }
}

fn render(view: &View) -> String {
    if view.nodes.is_empty() {
        return "No node has run on this database yet.\n".to_string();
    }
    let rows: Vec<Vec<String>> = view
        .nodes
        .iter()
        .map(|n| {
            let held: Vec<String> = n
                .mailboxes
                .iter()
                .map(|m| format!("{} (held {}s, renewed {}s ago)", m.mailbox, m.held_secs, m.renewed_secs_ago))
                .collect();
            let held = if held.is_empty() { "-".to_string() } else { held.join(", ") };
            vec![n.name.clone(), n.state.to_string(), format!("{}s ago", n.seen_secs_ago), held]
        })
        .collect();
    let mut out = table::render(&["NODE", "STATE", "SEEN", "MAILBOXES"], &rows, 120);
    if !view.free.is_empty() {
        out.push_str(&format!("Free mailboxes: {}\n", view.free.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, seen_at: &str, stopped_at: Option<&str>) -> NodeRow {
        NodeRow {
            name: name.into(),
            started_at: "2030-01-01T00:00:00.000Z".into(),
            seen_at: seen_at.into(),
            stopped_at: stopped_at.map(str::to_string),
            detail: None,
        }
    }

    fn lease(mailbox: &str, node: Option<&str>, renewed_at: &str, expires_at: &str) -> LeaseRow {
        LeaseRow {
            mailbox: mailbox.into(),
            node: node.map(str::to_string),
            fencing: 3,
            acquired_at: "2030-01-01T00:00:00.000Z".into(),
            renewed_at: renewed_at.into(),
            expires_at: expires_at.into(),
        }
    }

    #[test]
    fn nodes_show_their_state_their_mailboxes_and_the_ages_of_their_leases() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:01:00Z").unwrap().with_timezone(&Utc);
        let rows = vec![
            node("a", "2030-01-01T00:00:55.000Z", None),
            node("b", "2030-01-01T00:00:10.000Z", None),
            node("c", "2030-01-01T00:00:50.000Z", Some("2030-01-01T00:00:50.000Z")),
        ];
        let leases = vec![
            lease("sales", Some("a"), "2030-01-01T00:00:55.000Z", "2030-01-01T00:01:25.000Z"),
            lease("support", Some("b"), "2030-01-01T00:00:10.000Z", "2030-01-01T00:00:40.000Z"),
            lease("billing", None, "2030-01-01T00:00:50.000Z", "2030-01-01T00:00:50.000Z"),
        ];
        let v = view(rows, leases, std::time::Duration::from_secs(30), now);
        let states: Vec<(&str, &str)> = v.nodes.iter().map(|n| (n.name.as_str(), n.state)).collect();
        assert_eq!(states, [("a", "running"), ("b", "silent"), ("c", "stopped")]);
        let sales = &v.nodes[0].mailboxes[0];
        assert_eq!((sales.held_secs, sales.renewed_secs_ago, sales.expires_in_secs), (60, 5, 25));
        assert_eq!(v.nodes[1].mailboxes[0].expires_in_secs, -20, "ran out 20 s ago");
        assert_eq!(v.free, ["billing"]);
        let text = render(&v);
        assert!(text.contains("sales (held 60s, renewed 5s ago)"), "{text}");
        assert!(text.contains("Free mailboxes: billing"), "{text}");
    }
}
