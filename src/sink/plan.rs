//! A batch of one table's changes as SQL statements.
//!
//! Policy: the statements leave the table as applying every change in
//! order would. Changes of one key are reduced to its last one (and the
//! batch written as one multi-row DELETE and multi-row upserts) only when
//! `independent`: the key is the table's only unique index, so no row's
//! presence constrains another's and order across keys cannot matter.
//! Otherwise every change is one statement, in order. An update that moves
//! a row to a new key is a delete of the old key followed by an upsert of
//! the new one. A truncate empties the table with `DELETE` (TRUNCATE would
//! commit the transaction the batch and its offsets share) and is a
//! barrier: nothing is reduced across it. Values arrive as literals
//! (`values.rs`); identifiers are quoted with backticks.

use std::collections::HashMap;
use std::sync::Arc;

/// A target table as the planner needs it.
#[derive(Debug, Clone)]
pub struct Table {
    pub db: String,
    pub name: String,
    /// The columns that identify a row (primary key or configured).
    pub key: Vec<String>,
    /// True when `key` is the only unique index.
    pub independent: bool,
}

/// A row to write: column names (shared among rows of one shape) and
/// their literals.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cols: Arc<[String]>,
    pub vals: Vec<String>,
}

/// One change, its values already literals.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Upsert `row`, whose key literals are `key`; `moved_from`: the old
    /// key of an update that changed it.
    Put {
        key: Vec<String>,
        moved_from: Option<Vec<String>>,
        row: Row,
    },
    Del {
        key: Vec<String>,
    },
    Truncate,
}

/// Statements no longer than this are built (well under MySQL's default
/// `max_allowed_packet` of 16 MiB; MariaDB's is the same).
const MAX_STATEMENT: usize = 1 << 20;

pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

impl Table {
    fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.db), ident(&self.name))
    }
}

/// The statements for `ops`, in order.
pub fn plan(t: &Table, ops: Vec<Op>) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for op in ops {
        match op {
            Op::Truncate => {
                flush(t, std::mem::take(&mut run), &mut out);
                out.push(format!("DELETE FROM {}", t.qualified()));
            }
            Op::Put {
                key,
                moved_from: Some(old),
                row,
            } if old != key => {
                run.push(Op::Del { key: old });
                run.push(Op::Put {
                    key,
                    moved_from: None,
                    row,
                });
            }
            other => run.push(other),
        }
    }
    flush(t, run, &mut out);
    out
}

fn flush(t: &Table, ops: Vec<Op>, out: &mut Vec<String>) {
    if ops.is_empty() {
        return;
    }
    if !t.independent {
        for op in ops {
            match op {
                Op::Del { key } => out.extend(deletes(t, &[key])),
                Op::Put { row, .. } => out.extend(upserts(t, &[row])),
                Op::Truncate => {}
            }
        }
        return;
    }
    // Last change of each key wins; keys keep the order they first came in.
    let mut last: HashMap<Vec<String>, usize> = HashMap::new();
    let mut order: Vec<Option<Op>> = Vec::new();
    for op in ops {
        let key = match &op {
            Op::Del { key } | Op::Put { key, .. } => key.clone(),
            Op::Truncate => continue,
        };
        match last.get(&key) {
            Some(&i) => order[i] = Some(op),
            None => {
                last.insert(key, order.len());
                order.push(Some(op));
            }
        }
    }
    let (mut dels, mut puts) = (Vec::new(), Vec::new());
    for op in order.into_iter().flatten() {
        match op {
            Op::Del { key } => dels.push(key),
            Op::Put { row, .. } => puts.push(row),
            Op::Truncate => {}
        }
    }
    out.extend(deletes(t, &dels));
    // One statement per row shape (the same columns), in order of shape.
    let mut shapes: Vec<(Arc<[String]>, Vec<Row>)> = Vec::new();
    for r in puts {
        match shapes.iter_mut().find(|(c, _)| *c == r.cols) {
            Some((_, rows)) => rows.push(r),
            None => shapes.push((r.cols.clone(), vec![r])),
        }
    }
    for (_, rows) in shapes {
        out.extend(upserts(t, &rows));
    }
}

fn deletes(t: &Table, keys: &[Vec<String>]) -> Vec<String> {
    if keys.is_empty() {
        return Vec::new();
    }
    let cols: Vec<String> = t.key.iter().map(|c| ident(c)).collect();
    let head = format!(
        "DELETE FROM {} WHERE ({}) IN (",
        t.qualified(),
        cols.join(", ")
    );
    chunked(
        &head,
        ")",
        keys.iter().map(|k| format!("({})", k.join(", "))),
    )
}

fn upserts(t: &Table, rows: &[Row]) -> Vec<String> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let cols: Vec<String> = first.cols.iter().map(|c| ident(c)).collect();
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        t.qualified(),
        cols.join(", ")
    );
    let update: Vec<String> = cols.iter().map(|c| format!("{c} = VALUES({c})")).collect();
    let tail = format!(" ON DUPLICATE KEY UPDATE {}", update.join(", "));
    chunked(
        &head,
        &tail,
        rows.iter().map(|r| format!("({})", r.vals.join(", "))),
    )
}

/// `head item, item, … tail` statements of at most `MAX_STATEMENT` bytes
/// (a single larger item is a statement of its own).
fn chunked(head: &str, tail: &str, items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for item in items {
        if !cur.is_empty() && cur.len() + item.len() + tail.len() + 2 > MAX_STATEMENT {
            cur.push_str(tail);
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.push_str(head);
        } else {
            cur.push_str(", ");
        }
        cur.push_str(&item);
    }
    if !cur.is_empty() {
        cur.push_str(tail);
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(independent: bool) -> Table {
        Table {
            db: "d".into(),
            name: "t".into(),
            key: vec!["id".into()],
            independent,
        }
    }

    fn put(id: &str, v: &str) -> Op {
        Op::Put {
            key: vec![id.into()],
            moved_from: None,
            row: Row {
                cols: Arc::from(vec!["id".to_string(), "v".to_string()]),
                vals: vec![id.into(), v.into()],
            },
        }
    }

    fn del(id: &str) -> Op {
        Op::Del {
            key: vec![id.into()],
        }
    }

    #[test]
    fn independent_keys_reduce_to_their_last_change() {
        let s = plan(
            &table(true),
            vec![
                put("1", "'a'"),
                put("2", "'b'"),
                put("1", "'c'"),
                del("2"),
                put("3", "'d'"),
            ],
        );
        assert_eq!(
            s,
            vec![
                "DELETE FROM `d`.`t` WHERE (`id`) IN ((2))",
                "INSERT INTO `d`.`t` (`id`, `v`) VALUES (1, 'c'), (3, 'd') ON DUPLICATE KEY UPDATE `id` = VALUES(`id`), `v` = VALUES(`v`)",
            ]
        );
    }

    #[test]
    fn a_secondary_unique_index_keeps_every_change_in_order() {
        let s = plan(
            &table(false),
            vec![put("1", "'a'"), del("1"), put("2", "'a'")],
        );
        assert_eq!(s.len(), 3);
        assert!(s[0].starts_with("INSERT") && s[0].contains("(1, 'a')"));
        assert!(s[1].starts_with("DELETE") && s[1].contains("((1))"));
        assert!(s[2].starts_with("INSERT") && s[2].contains("(2, 'a')"));
    }

    #[test]
    fn a_moved_key_deletes_the_old_row_and_truncate_is_a_barrier() {
        let mut moved = put("5", "'x'");
        if let Op::Put { moved_from, .. } = &mut moved {
            *moved_from = Some(vec!["4".into()]);
        }
        let s = plan(
            &table(true),
            vec![put("1", "'a'"), Op::Truncate, moved, put("4", "'y'")],
        );
        assert!(
            s[0].starts_with("INSERT") && s[0].contains("(1, 'a')"),
            "{s:?}"
        );
        assert_eq!(s[1], "DELETE FROM `d`.`t`");
        // Key 4 was deleted by the move, then put again: its last change
        // wins (keys keep the order they first came in).
        assert!(
            s[2].starts_with("INSERT") && s[2].contains("(4, 'y'), (5, 'x')"),
            "{s:?}"
        );
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn long_batches_are_split_and_identifiers_quoted() {
        let big = "x".repeat(400_000);
        let ops = (0..5).map(|i| put(&i.to_string(), &big)).collect();
        let s = plan(&table(true), ops);
        assert!(
            s.len() >= 2 && s.iter().all(|q| q.len() <= MAX_STATEMENT),
            "{}",
            s.len()
        );
        assert_eq!(ident("a`b"), "`a``b`");
    }
}
