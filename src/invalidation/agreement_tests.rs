//! Property test: a write the proxy forwards and the same change read back
//! from the binlog invalidate the same entries.
//!
//! Generated writes (row, multi-row, key change, composite and string keys,
//! negative keys, tables with foreign keys and triggers, whole-table
//! writes) run against a model of the tables. The proxy path classifies the
//! SQL (`classify::classify`) and resolves `writes::events`; the feed path
//! builds the binlog's row images of what the model changed (cascades are
//! not logged, trigger rows are) and resolves `binlog::changes`. The proxy's
//! tags must always cover the feed's, and equal them when the write names
//! existing rows by an unchanged key of a table without triggers.

use std::sync::Arc;

use mysql_common::binlog::row::BinlogRow;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use mysql_common::value::Value;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{resolve_all, writes, ChangeEvent, Effect};
use crate::backend::schema::{SchemaCache, TableInfo};
use crate::binlog::changes as binlog;
use crate::binlog::{Item, RowKind};
use crate::cache::Tag;
use crate::classify::{classify, Verdict};

/// A model table: columns (name, integer?), primary-key column indexes in
/// declared order, its rows (every column as text).
#[derive(Clone)]
struct Table {
    name: &'static str,
    cols: Vec<(&'static str, bool)>,
    pk: Vec<usize>,
    triggers: bool,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(name: &'static str, cols: &[(&'static str, bool)], pk: &[usize]) -> Table {
        Table {
            name,
            cols: cols.to_vec(),
            pk: pk.to_vec(),
            triggers: false,
            rows: Vec::new(),
        }
    }
    fn key(&self, row: &[String]) -> Vec<String> {
        self.pk.iter().map(|i| row[*i].clone()).collect()
    }
    fn find(&self, key: &[String]) -> Option<usize> {
        self.rows.iter().position(|r| self.key(r) == key)
    }
    fn v(&self) -> usize {
        self.cols.iter().position(|(c, _)| *c == "v").unwrap_or(0)
    }
    fn info(&self) -> TableInfo {
        let (referenced_by, references) = match self.name {
            "parent" => (vec![("d".into(), "child".into())], vec![]),
            "child" => (vec![], vec![("d".into(), "parent".into())]),
            _ => (vec![], vec![]),
        };
        TableInfo {
            base: true,
            pk: self
                .pk
                .iter()
                .map(|i| (self.cols[*i].0.to_string(), self.cols[*i].1))
                .collect(),
            unique: vec![],
            has_triggers: self.triggers,
            referenced_by,
            references,
        }
    }
    /// A binlog row image, typed as the server would log it.
    fn image(&self, row: &[String]) -> BinlogRow {
        let cols: Arc<[Column]> = self
            .cols
            .iter()
            .enumerate()
            .map(|(i, (name, int))| {
                let ty = if *int {
                    ColumnType::MYSQL_TYPE_LONG
                } else {
                    ColumnType::MYSQL_TYPE_VAR_STRING
                };
                let c = Column::new(ty).with_name(name.as_bytes());
                if self.pk.contains(&i) {
                    c.with_flags(ColumnFlags::PRI_KEY_FLAG)
                } else {
                    c
                }
            })
            .collect::<Vec<_>>()
            .into();
        let values = row
            .iter()
            .zip(self.cols.iter())
            .map(|(v, (_, int))| {
                let v = match int {
                    true => Value::Int(v.parse().unwrap()),
                    false => Value::Bytes(v.clone().into_bytes()),
                };
                Some(BinlogValue::Value(v))
            })
            .collect();
        BinlogRow::new(values, cols)
    }
}

fn tables() -> Vec<Table> {
    let mut trig = Table::new("trig", &[("id", true), ("v", false)], &[0]);
    trig.triggers = true;
    vec![
        Table::new("ints", &[("id", true), ("v", false)], &[0]),
        // Declared key order differs from column order.
        Table::new("comp", &[("a", true), ("b", true), ("v", false)], &[1, 0]),
        Table::new("strs", &[("code", false), ("v", false)], &[0]),
        Table::new("parent", &[("id", true), ("v", false)], &[0]),
        Table::new("child", &[("id", true), ("pid", true), ("v", false)], &[0]),
        trig,
    ]
}

/// One generated write: its SQL, and whether the proxy's tags must equal
/// the feed's (every named row exists, no key moves, no triggers).
struct Write {
    sql: String,
    exact: bool,
}

/// A logged row change: table index, before image, after image.
type Logged = (usize, Option<Vec<String>>, Option<Vec<String>>);

/// The model: every table's rows, and row images logged per table.
struct Model {
    tables: Vec<Table>,
    logged: Vec<Logged>,
    fresh: u64,
}

impl Model {
    fn new(rng: &mut StdRng) -> Model {
        let mut m = Model {
            tables: tables(),
            logged: vec![],
            fresh: 0,
        };
        for t in 0..m.tables.len() {
            for _ in 0..rng.gen_range(0..5) {
                let key = m.random_key(rng, t);
                if m.tables[t].find(&key).is_none() {
                    let row = m.row_with(rng, t, &key);
                    m.tables[t].rows.push(row);
                }
            }
        }
        m
    }

    fn text(&mut self) -> String {
        self.fresh += 1;
        format!("x{}", self.fresh)
    }

    fn random_key(&self, rng: &mut StdRng, t: usize) -> Vec<String> {
        let table = &self.tables[t];
        let existing = !table.rows.is_empty() && rng.gen_bool(0.7);
        if existing {
            let r = &table.rows[rng.gen_range(0..table.rows.len())];
            return table.key(r);
        }
        table
            .pk
            .iter()
            .map(|i| match table.cols[*i].1 {
                true => rng.gen_range(-3i64..6).to_string(),
                false => ["ab", "Ab", "b c", "é"][rng.gen_range(0..4)].to_string(),
            })
            .collect()
    }

    fn row_with(&mut self, rng: &mut StdRng, t: usize, key: &[String]) -> Vec<String> {
        let v = self.text();
        let table = &self.tables[t];
        let mut row: Vec<String> = table
            .cols
            .iter()
            .map(|(_, int)| match int {
                true => rng.gen_range(1i64..4).to_string(),
                false => v.clone(),
            })
            .collect();
        for (k, i) in key.iter().zip(table.pk.iter()) {
            row[*i] = k.clone();
        }
        row
    }

    /// Changes row `i` of table `t` (None: deletes it), logging its images
    /// and what a trigger changes; cascades change the child unlogged.
    fn change(&mut self, t: usize, i: usize, after: Option<Vec<String>>) {
        let before = self.tables[t].rows[i].clone();
        match &after {
            Some(row) => self.tables[t].rows[i] = row.clone(),
            None => {
                self.tables[t].rows.remove(i);
            }
        }
        self.logged.push((t, Some(before.clone()), after.clone()));
        if self.tables[t].name == "parent" {
            self.cascade(&before[0], after.as_ref().map(|r| r[0].clone()));
        }
        if self.tables[t].triggers {
            self.trigger();
        }
    }

    fn insert(&mut self, t: usize, row: Vec<String>) {
        self.tables[t].rows.push(row.clone());
        self.logged.push((t, None, Some(row)));
        if self.tables[t].triggers {
            self.trigger();
        }
    }

    /// ON DELETE / ON UPDATE CASCADE: inside InnoDB, not in the binlog.
    fn cascade(&mut self, old: &str, new: Option<String>) {
        let child = self.index("child");
        let rows = std::mem::take(&mut self.tables[child].rows);
        self.tables[child].rows = rows
            .into_iter()
            .filter_map(|mut r| match (&new, r[1] == old) {
                (_, false) => Some(r),
                (None, true) => None,
                (Some(n), true) => {
                    r[1] = n.clone();
                    Some(r)
                }
            })
            .collect();
    }

    /// The trigger on `trig` updates `ints` row 1 (logged as its own row).
    fn trigger(&mut self) {
        let ints = self.index("ints");
        if let Some(i) = self.tables[ints].find(&["1".to_string()]) {
            let before = self.tables[ints].rows[i].clone();
            let mut row = before.clone();
            row[1] = self.text();
            self.tables[ints].rows[i] = row.clone();
            self.logged.push((ints, Some(before), Some(row)));
        }
    }

    fn index(&self, name: &str) -> usize {
        self.tables.iter().position(|t| t.name == name).unwrap()
    }

    /// The binlog's row events of what was logged, through the feed's own
    /// decoding.
    fn feed_events(&self) -> Vec<ChangeEvent> {
        self.logged
            .iter()
            .flat_map(|(t, before, after)| {
                let table = &self.tables[*t];
                let kind = match (before, after) {
                    (Some(_), Some(_)) => RowKind::Update,
                    (None, _) => RowKind::Insert,
                    (_, None) => RowKind::Delete,
                };
                binlog::changes(&Item::Rows {
                    db: "d".into(),
                    table: table.name.into(),
                    table_id: *t as u64,
                    kind,
                    rows: vec![(
                        before.as_ref().map(|r| table.image(r)),
                        after.as_ref().map(|r| table.image(r)),
                    )],
                })
            })
            .collect()
    }
}

fn literal(table: &Table, col: usize, v: &str) -> String {
    match table.cols[col].1 {
        true => v.to_string(),
        false => format!("'{v}'"),
    }
}

fn key_condition(rng: &mut StdRng, table: &Table, key: &[String]) -> String {
    let mut parts: Vec<String> = table
        .pk
        .iter()
        .zip(key)
        .map(|(i, k)| format!("{} = {}", table.cols[*i].0, literal(table, *i, k)))
        .collect();
    if rng.gen_bool(0.5) {
        parts.reverse();
    }
    parts.join(" AND ")
}

fn values(table: &Table, row: &[String]) -> String {
    let vals: Vec<String> = (0..row.len()).map(|i| literal(table, i, &row[i])).collect();
    format!("({})", vals.join(", "))
}

fn columns(table: &Table) -> String {
    let names: Vec<&str> = table.cols.iter().map(|(c, _)| *c).collect();
    format!("({})", names.join(", "))
}

/// A random write on the model; applies it.
fn generate(rng: &mut StdRng, m: &mut Model) -> Write {
    let t = rng.gen_range(0..m.tables.len());
    let name = m.tables[t].name;
    let plain = !m.tables[t].triggers;
    match rng.gen_range(0..8) {
        0 | 1 => {
            // UPDATE … WHERE <key>
            let key = m.random_key(rng, t);
            let cond = key_condition(rng, &m.tables[t], &key);
            let v = m.text();
            let found = m.tables[t].find(&key);
            if let Some(i) = found {
                let mut row = m.tables[t].rows[i].clone();
                row[m.tables[t].v()] = v.clone();
                m.change(t, i, Some(row));
            }
            let sql = format!("UPDATE {name} SET v = '{v}' WHERE {cond}");
            Write {
                sql,
                exact: plain && found.is_some(),
            }
        }
        2 => {
            // DELETE … WHERE <key>
            let key = m.random_key(rng, t);
            let cond = key_condition(rng, &m.tables[t], &key);
            let found = m.tables[t].find(&key);
            if let Some(i) = found {
                m.change(t, i, None);
            }
            Write {
                sql: format!("DELETE FROM {name} WHERE {cond}"),
                exact: plain && found.is_some(),
            }
        }
        3 => multi_row_update(rng, m, t),
        4 => insert(rng, m, t),
        5 => key_move(rng, m, t),
        6 => {
            // Not by key: the proxy cannot name the rows.
            let v = m.text();
            let ids: Vec<usize> = (0..m.tables[t].rows.len()).collect();
            for i in ids {
                let mut row = m.tables[t].rows[i].clone();
                row[m.tables[t].v()] = v.clone();
                m.change(t, i, Some(row));
            }
            Write {
                sql: format!("UPDATE {name} SET v = '{v}'"),
                exact: false,
            }
        }
        _ => {
            while !m.tables[t].rows.is_empty() {
                let last = m.tables[t].rows.len() - 1;
                m.change(t, last, None);
            }
            Write {
                sql: format!("DELETE FROM {name}"),
                exact: false,
            }
        }
    }
}

/// UPDATE … WHERE id IN (…) on a one-column key (else a single key).
fn multi_row_update(rng: &mut StdRng, m: &mut Model, t: usize) -> Write {
    let table = m.tables[t].clone();
    if table.pk.len() != 1 {
        let key = m.random_key(rng, t);
        let cond = key_condition(rng, &table, &key);
        let found = table.find(&key);
        if let Some(i) = found {
            m.change(t, i, None);
        }
        return Write {
            sql: format!("DELETE FROM {} WHERE {cond}", table.name),
            exact: !table.triggers && found.is_some(),
        };
    }
    let keys: Vec<Vec<String>> = (0..rng.gen_range(1..4))
        .map(|_| m.random_key(rng, t))
        .collect();
    let v = m.text();
    let mut all_found = true;
    let mut done: Vec<&Vec<String>> = Vec::new();
    for k in &keys {
        if done.contains(&k) {
            continue;
        }
        done.push(k);
        match m.tables[t].find(k) {
            Some(i) => {
                let mut row = m.tables[t].rows[i].clone();
                row[table.v()] = v.clone();
                m.change(t, i, Some(row));
            }
            None => all_found = false,
        }
    }
    let col = table.pk[0];
    let list: Vec<String> = keys.iter().map(|k| literal(&table, col, &k[0])).collect();
    Write {
        sql: format!(
            "UPDATE {} SET v = '{v}' WHERE {} IN ({})",
            table.name,
            table.cols[col].0,
            list.join(", ")
        ),
        exact: !table.triggers && all_found,
    }
}

/// INSERT of one or two rows under new keys.
fn insert(rng: &mut StdRng, m: &mut Model, t: usize) -> Write {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for _ in 0..rng.gen_range(1..3) {
        let key = m.random_key(rng, t);
        let taken =
            m.tables[t].find(&key).is_some() || rows.iter().any(|r| m.tables[t].key(r) == key);
        if !taken {
            let row = m.row_with(rng, t, &key);
            rows.push(row);
        }
    }
    let table = m.tables[t].clone();
    if rows.is_empty() {
        // Every key taken: a REPLACE of an existing row, logged as an update.
        // (The proxy resolves REPLACE per table: it may also delete rows
        // found by another unique key.)
        let i = rng.gen_range(0..table.rows.len());
        let key = table.key(&table.rows[i]);
        let row = m.row_with(rng, t, &key);
        m.change(t, i, Some(row.clone()));
        return Write {
            sql: format!(
                "REPLACE INTO {} {} VALUES {}",
                table.name,
                columns(&table),
                values(&table, &row)
            ),
            exact: false,
        };
    }
    let vals: Vec<String> = rows.iter().map(|r| values(&table, r)).collect();
    for r in rows {
        m.insert(t, r);
    }
    Write {
        sql: format!(
            "INSERT INTO {} {} VALUES {}",
            table.name,
            columns(&table),
            vals.join(", ")
        ),
        exact: !table.triggers,
    }
}

/// UPDATE … SET <key column> = <new> WHERE <key>.
fn key_move(rng: &mut StdRng, m: &mut Model, t: usize) -> Write {
    let table = m.tables[t].clone();
    let key = m.random_key(rng, t);
    let cond = key_condition(rng, &table, &key);
    let col = table.pk[0];
    let mut moved = key.clone();
    moved[0] = m.random_key(rng, t)[0].clone();
    if let (Some(i), None) = (table.find(&key), table.find(&moved)) {
        let mut row = table.rows[i].clone();
        row[col] = moved[0].clone();
        m.change(t, i, Some(row));
    }
    Write {
        sql: format!(
            "UPDATE {} SET {} = {} WHERE {cond}",
            table.name,
            table.cols[col].0,
            literal(&table, col, &moved[0])
        ),
        exact: false,
    }
}

/// Does `proxy` invalidate every entry `feed` does? (A row entry also
/// depends on its table's tag.)
fn covers(proxy: &Effect, feed: &Effect) -> bool {
    match (proxy, feed) {
        (Effect::Everything, _) => true,
        (Effect::Tags(_), Effect::Everything) => false,
        (Effect::Tags(p), Effect::Tags(f)) => f.iter().all(|t| {
            p.contains(t)
                || matches!(t, Tag::Row { db, table, .. } if p.contains(&Tag::table(db, table)))
        }),
    }
}

fn same(a: &Effect, b: &Effect) -> bool {
    match (a, b) {
        (Effect::Tags(a), Effect::Tags(b)) => {
            a.iter().all(|t| b.contains(t)) && b.iter().all(|t| a.contains(t))
        }
        (a, b) => a == b,
    }
}

#[test]
fn proxy_writes_and_the_binlog_resolve_to_the_same_tags() {
    let mut exact = 0;
    for seed in 0..4000u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = Model::new(&mut rng);
        let schema = SchemaCache::default();
        for t in &m.tables {
            schema.remember("d", t.name, Some(t.info()));
        }
        let w = generate(&mut rng, &mut m);
        let Verdict::Write(inv) = classify(&w.sql) else {
            panic!("seed {seed}: {} is not a write", w.sql);
        };
        let proxy = resolve_all(&writes::events(&inv, &[], Some("d"), &schema), &schema);
        let feed = resolve_all(&m.feed_events(), &schema);
        assert!(
            covers(&proxy, &feed),
            "seed {seed}: {}\nproxy {proxy:?}\nfeed {feed:?}",
            w.sql
        );
        if w.exact {
            exact += 1;
            assert!(
                same(&proxy, &feed),
                "seed {seed}: {}\nproxy {proxy:?}\nfeed {feed:?}",
                w.sql
            );
        }
    }
    // The exact cases are a good share, not a corner.
    assert!(exact * 4 > 4000, "{exact} exact cases of 4000");
}
