//! Many rows in one statement: how a transaction's deferred writes (PostgreSQL, see
//! `db::PgConn`) are put together before they are sent. A unit of work that takes in a
//! batch of mail writes a journal row, a raw copy, a thread entry, an audit record and a
//! few outbox rows for each mail; sent one statement a row, the server spends most of
//! its time on the statements rather than the rows. Grouped, the rows of one kind go in
//! one statement (`INSERT … SELECT … FROM unnest(…)`, each parameter an array of a
//! column's values).
//!
//! What may move, and what may not:
//! - a row of an [`Appendable`] kind (an insert that reads no other table's rows the
//!   transaction writes) is grouped with the other rows of its kind written between two
//!   barriers; the groups go in the order of their kinds' ranks, a kind whose rows others
//!   reference first, and each group keeps its rows' order;
//! - a late write (a case's fields: nothing deferred reads them) goes after the groups,
//!   in its order among the late writes;
//! - anything else is a barrier: everything deferred before it goes first, then it.
//!
//! Within a group, a row whose conflict key an earlier row of the group has is left out
//! (one statement may not touch a row twice): written one by one, it would change
//! nothing — the earlier one inserted the key, or found it and did what its
//! `ON CONFLICT` says, which the later one then finds done ([`Appendable::key`] is set
//! only for kinds where that holds).

/// A kind of row that may be written together with others of its kind.
#[derive(Debug, PartialEq)]
pub struct Appendable {
    /// Its place among the kinds written together: lower first (rows referenced by
    /// others' keys first).
    pub rank: u8,
    /// The statement for one row; its parameters are the row's values.
    pub one: &'static str,
    /// The statement for many rows: its parameters are arrays of the columns' values,
    /// in the same order.
    pub many: &'static str,
    /// The values (by index) that make up the row's conflict key, if it has one. Only
    /// for a kind whose conflict action, once done, leaves nothing for a second row of
    /// the same key to do (`DO NOTHING`, or an update its own condition then refuses):
    /// such a row is left out of its group.
    pub key: &'static [usize],
}

/// A deferred write.
#[derive(Debug)]
pub enum Item<S, V> {
    /// A statement that goes in its place.
    Barrier(S, Vec<V>),
    /// A statement that may go after the rows around it.
    Late(S, Vec<V>),
    /// A row of a kind that may be grouped.
    Row(&'static Appendable, Vec<V>),
}

/// What is sent: one statement, or the rows of one kind, as columns.
#[derive(Debug, PartialEq)]
pub enum Step<S, V> {
    One(S, Vec<V>),
    Many(&'static Appendable, Vec<Vec<V>>),
}

/// The deferred writes `items`, in the order they are sent (see the module
/// documentation).
pub fn group<S, V: PartialEq>(items: Vec<Item<S, V>>) -> Vec<Step<S, V>> {
    let mut steps = Vec::new();
    let mut rows: Vec<(&'static Appendable, Vec<V>)> = Vec::new();
    let mut late: Vec<(S, Vec<V>)> = Vec::new();
    for item in items {
        match item {
            Item::Barrier(statement, values) => {
                close(&mut steps, &mut rows, &mut late);
                steps.push(Step::One(statement, values));
            }
            Item::Late(statement, values) => late.push((statement, values)),
            Item::Row(kind, values) => rows.push((kind, values)),
        }
    }
    close(&mut steps, &mut rows, &mut late);
    steps
}

/// Ends a stretch between barriers: its groups, then its late writes.
fn close<S, V: PartialEq>(
    steps: &mut Vec<Step<S, V>>,
    rows: &mut Vec<(&'static Appendable, Vec<V>)>,
    late: &mut Vec<(S, Vec<V>)>,
) {
    let mut groups: Vec<(&'static Appendable, Vec<Vec<V>>)> = Vec::new();
    for (kind, values) in rows.drain(..) {
        let at = match groups.iter().position(|(k, _)| std::ptr::eq(*k, kind)) {
            Some(at) => at,
            None => {
                groups.push((kind, Vec::new()));
                groups.len() - 1
            }
        };
        let group = &mut groups[at].1;
        let same_key = |earlier: &Vec<V>| kind.key.iter().all(|&i| earlier.get(i) == values.get(i));
        if kind.key.is_empty() || !group.iter().any(same_key) {
            group.push(values);
        }
    }
    // Stable: kinds of one rank keep the order they first came in.
    groups.sort_by_key(|(kind, _)| kind.rank);
    for (kind, group) in groups {
        steps.push(Step::Many(kind, columns(group)));
    }
    steps.extend(late.drain(..).map(|(statement, values)| Step::One(statement, values)));
}

/// Rows as columns.
fn columns<V>(rows: Vec<Vec<V>>) -> Vec<Vec<V>> {
    let width = rows.first().map_or(0, Vec::len);
    let mut columns: Vec<Vec<V>> = (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
    for row in rows {
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    static CASES: Appendable = Appendable { rank: 0, one: "cases", many: "cases[]", key: &[] };
    static MAILS: Appendable = Appendable { rank: 2, one: "mails", many: "mails[]", key: &[] };
    static PEOPLE: Appendable = Appendable { rank: 4, one: "people", many: "people[]", key: &[0, 1] };

    #[test]
    fn rows_are_grouped_by_kind_in_rank_order_between_barriers_and_late_writes_follow_their_stretch() {
        let items = vec![
            Item::Row(&MAILS, vec![1, 10]),
            Item::Late("touch 7", vec![7]),
            Item::Row(&CASES, vec![8]),
            Item::Row(&PEOPLE, vec![8, 100]),
            Item::Row(&MAILS, vec![2, 8]),
            Item::Row(&PEOPLE, vec![8, 100]),
            Item::Row(&PEOPLE, vec![8, 101]),
            Item::Barrier("forget", vec![0]),
            Item::Row(&MAILS, vec![3, 8]),
            Item::Late("status 8", vec![8]),
        ];
        let steps = group(items);
        assert_eq!(
            steps,
            vec![
                Step::Many(&CASES, vec![vec![8]]),
                Step::Many(&MAILS, vec![vec![1, 2], vec![10, 8]]),
                // The second row with key (8, 100) is left out: it would change nothing.
                Step::Many(&PEOPLE, vec![vec![8, 8], vec![100, 101]]),
                Step::One("touch 7", vec![7]),
                Step::One("forget", vec![0]),
                Step::Many(&MAILS, vec![vec![3], vec![8]]),
                Step::One("status 8", vec![8]),
            ]
        );
    }

    #[test]
    fn nothing_deferred_sends_nothing() {
        assert!(group::<&str, i64>(Vec::new()).is_empty());
    }
}
