//! Tag tokens: the freshness protocol of DESIGN.md, lock-free.
//!
//! Policy: a tag (a row `(db, table, pk)` or a table `(db, table)`) hashes to
//! one of `SLOTS` atomic counters; invalidating a tag increments its slot, and
//! a global counter invalidates everything. A fill reads the tokens of its
//! tags *before* querying MySQL and stores them (`Guard`); a lookup is a hit
//! only if every stored token still equals the current one. So a fill that
//! raced with an invalidation is never served. Two tags sharing a slot only
//! cost hit rate (an invalidation of one also invalidates the other), never
//! correctness. Names are lower-cased for hashing, which can only merge tags.

use std::sync::atomic::{AtomicU64, Ordering};

/// Joins the parts of a composite key in a row tag (a control character
/// no integer text contains).
const KEY_SEP: char = '\u{1f}';

/// Number of token slots (8 MiB of counters).
pub const SLOTS: usize = 1 << 20;

/// What an entry depends on, or what a write changed.
///
/// * `Row`: one row by canonical primary key; bumped by writes naming it.
/// * `Table`: bumped by writes that cannot name their rows.
/// * `AnyWrite`: bumped by every write to the table, row-level or not.
///
/// A read by primary key depends on `Row` + `Table`; a read that names its
/// row any other way (unique key, non-integer key) depends on `AnyWrite`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    Row {
        db: String,
        table: String,
        pk: String,
    },
    Table {
        db: String,
        table: String,
    },
    AnyWrite {
        db: String,
        table: String,
    },
}

impl Tag {
    pub fn row(db: &str, table: &str, pk: &str) -> Tag {
        Tag::Row {
            db: db.to_ascii_lowercase(),
            table: table.to_ascii_lowercase(),
            pk: pk.to_owned(),
        }
    }

    /// The row tag of a primary key given as canonical integer texts
    /// (`canonical_int`), one per key column in key order. The one builder
    /// of row tags: reads, forwarded writes and feeds all name rows here.
    pub fn row_of<S: AsRef<str>>(db: &str, table: &str, key: &[S]) -> Tag {
        let mut pk = String::new();
        for (i, part) in key.iter().enumerate() {
            if i > 0 {
                pk.push(KEY_SEP);
            }
            pk.push_str(part.as_ref());
        }
        Tag::row(db, table, &pk)
    }

    pub fn table(db: &str, table: &str) -> Tag {
        Tag::Table {
            db: db.to_ascii_lowercase(),
            table: table.to_ascii_lowercase(),
        }
    }

    pub fn any_write(db: &str, table: &str) -> Tag {
        Tag::AnyWrite {
            db: db.to_ascii_lowercase(),
            table: table.to_ascii_lowercase(),
        }
    }

    /// Both tags that cover every entry of a table (a write that changes
    /// it without naming its rows).
    pub fn whole_table(db: &str, table: &str) -> [Tag; 2] {
        [Tag::table(db, table), Tag::any_write(db, table)]
    }

    /// The slot index: FNV-1a over the tag's parts, a function fixed here
    /// (not std's unspecified hasher) because proxies built by different
    /// compilers share slots through the shared tier.
    pub fn slot(&self) -> u32 {
        let (kind, db, table, pk) = match self {
            Tag::Row { db, table, pk } => (0u8, db, table, pk.as_str()),
            Tag::Table { db, table } => (1u8, db, table, ""),
            Tag::AnyWrite { db, table } => (2u8, db, table, ""),
        };
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&[kind]);
        eat(db.as_bytes());
        eat(&[0xff]);
        eat(table.as_bytes());
        eat(&[0xff]);
        eat(pk.as_bytes());
        (h % SLOTS as u64) as u32
    }
}

/// Tokens read before a fill, checked on every hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    slots: Vec<(u32, u64)>,
    global: u64,
}

impl Guard {
    /// Makes the guard never fresh (as if an invalidate-all came after
    /// it: the global token only grows), so nothing is stored under it.
    pub fn expire(&mut self) {
        self.global = self.global.wrapping_sub(1);
    }
}

pub struct TagTokens {
    slots: Box<[AtomicU64]>,
    global: AtomicU64,
}

impl Default for TagTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl TagTokens {
    pub fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
        }
    }

    /// Reads the current tokens of `tags` (call before querying MySQL).
    pub fn guard(&self, tags: &[Tag]) -> Guard {
        // Global first: an invalidate-all racing with this read is caught
        // either by the global token or by the slot tokens.
        let global = self.global.load(Ordering::Acquire);
        let slots = tags
            .iter()
            .map(|t| {
                let s = t.slot();
                (s, self.slots[s as usize].load(Ordering::Acquire))
            })
            .collect();
        Guard { slots, global }
    }

    /// True if nothing the guarded entry depends on was invalidated since.
    pub fn is_fresh(&self, g: &Guard) -> bool {
        g.global == self.global.load(Ordering::Acquire)
            && g.slots
                .iter()
                .all(|&(s, t)| self.slots[s as usize].load(Ordering::Acquire) == t)
    }

    pub fn invalidate(&self, tag: &Tag) {
        self.slots[tag.slot() as usize].fetch_add(1, Ordering::AcqRel);
    }

    /// Bumps one slot (a tag already hashed: `Tag::slot`).
    pub fn invalidate_slot(&self, slot: u32) {
        self.slots[slot as usize % SLOTS].fetch_add(1, Ordering::AcqRel);
    }

    pub fn invalidate_all(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_that_raced_an_invalidation_is_never_fresh() {
        let t = TagTokens::new();
        let row = Tag::row("d", "t", "5");
        let table = Tag::table("d", "t");
        // Fill starts: tokens read before the query …
        let g = t.guard(&[row.clone(), table.clone()]);
        // … a write commits and invalidates the row while the query runs …
        t.invalidate(&row);
        // … the fill stores what it read: it must never be served.
        assert!(!t.is_fresh(&g));
        // A fill that starts after the invalidation is fresh.
        let g2 = t.guard(&[row.clone(), table.clone()]);
        assert!(t.is_fresh(&g2));
        t.invalidate(&table);
        assert!(!t.is_fresh(&g2));
        let g3 = t.guard(&[row]);
        t.invalidate_all();
        assert!(!t.is_fresh(&g3));
    }

    #[test]
    fn other_rows_stay_fresh_and_names_fold_case() {
        let t = TagTokens::new();
        let g = t.guard(&[Tag::row("d", "t", "5")]);
        t.invalidate(&Tag::row("d", "t", "6"));
        assert!(t.is_fresh(&g) || Tag::row("d", "t", "5").slot() == Tag::row("d", "t", "6").slot());
        t.invalidate(&Tag::row("D", "T", "5"));
        assert!(!t.is_fresh(&g));
    }

    #[test]
    fn slots_are_stable() {
        // The slot function is part of the shared tier's protocol: these
        // figures must never change (proxies of different builds share it).
        assert_eq!(Tag::table("d", "t").slot(), 659_700);
        assert_eq!(Tag::row("shop", "items", "42").slot(), 99_395);
        assert_ne!(Tag::table("d", "t").slot(), Tag::table("d", "u").slot());
    }
}
