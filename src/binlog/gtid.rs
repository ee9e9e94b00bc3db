//! GTIDs of both flavours, and the GTID state a reader resumes from.
//!
//! Policy: MariaDB's state is the last GTID of each replication domain
//! (`domain-server-seq,…`, as `@@gtid_binlog_pos` prints it); MySQL's is the
//! whole set of executed transactions (`uuid[:tag]:a-b[:c…],…`, as
//! `@@gtid_executed` prints it, tags from MySQL 8.4). The publisher saves
//! the text form beside file/offset; a reader resumes from it where the
//! server can (MariaDB always, MySQL with `gtid_mode = ON`), which also
//! survives a failover to another server holding the same transactions.
//! Parsing is strict: text that does not parse is refused, never guessed
//! at, because a set that lost members would make the server send again
//! (or refuse as purged) everything they named.

use std::collections::BTreeMap;
use std::fmt;

use mysql_async::binlog::events::GtidEvent;
use mysql_common::packets::{GnoInterval, Sid, Tag};

use super::flavor::MariaGtid;

/// A MySQL GTID: the originating server's UUID, an optional tag (8.4+),
/// the transaction number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MySqlGtid {
    pub uuid: [u8; 16],
    /// Empty when untagged.
    pub tag: String,
    pub gno: u64,
}

impl MySqlGtid {
    pub fn from_event(ev: &GtidEvent) -> MySqlGtid {
        MySqlGtid {
            uuid: ev.sid(),
            tag: ev.tag().map(|t| t.as_str().to_owned()).unwrap_or_default(),
            gno: ev.gno(),
        }
    }
}

impl fmt::Display for MySqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_uuid(f, &self.uuid)?;
        if !self.tag.is_empty() {
            write!(f, ":{}", self.tag)?;
        }
        write!(f, ":{}", self.gno)
    }
}

/// The GTID of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gtid {
    MariaDb(MariaGtid),
    MySql(MySqlGtid),
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb(g) => g.fmt(f),
            Gtid::MySql(g) => g.fmt(f),
        }
    }
}

/// A MariaDB GTID position: the last GTID of each replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPos(BTreeMap<u32, MariaGtid>);

impl GtidPos {
    /// Parses `domain-server-seq[,…]`.
    pub fn parse(s: &str) -> Option<GtidPos> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let g = MariaGtid {
                domain: it.next()?.parse().ok()?,
                server: it.next()?.parse().ok()?,
                seq: it.next()?.parse().ok()?,
            };
            if it.next().is_some() {
                return None;
            }
            m.insert(g.domain, g);
        }
        Some(GtidPos(m))
    }

    /// A transaction with this GTID was passed.
    pub fn advance(&mut self, g: MariaGtid) {
        self.0.insert(g.domain, g);
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            g.fmt(f)?;
        }
        Ok(())
    }
}

/// A MySQL GTID set: per (uuid, tag), sorted disjoint inclusive intervals
/// of transaction numbers, adjacent ones merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet(BTreeMap<SidKey, Vec<(u64, u64)>>);

/// Which server (uuid) and tag a run of transaction numbers belongs to.
type SidKey = ([u8; 16], String);

impl GtidSet {
    /// Parses `@@gtid_executed` text: `uuid:1-5:7,uuid2:1-3`, tags as
    /// `uuid:1-5:tag:1-3` (8.4), whitespace and newlines ignored.
    pub fn parse(s: &str) -> Option<GtidSet> {
        let mut set = GtidSet::default();
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = parse_uuid(it.next()?)?;
            let mut tag = String::new();
            let mut intervals = 0;
            for c in it {
                if c.starts_with(|ch: char| ch.is_ascii_digit()) {
                    let (a, b) = match c.split_once('-') {
                        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                        None => {
                            let n = c.parse().ok()?;
                            (n, n)
                        }
                    };
                    if a == 0 || b < a {
                        return None;
                    }
                    set.insert((uuid, tag.clone()), a, b);
                    intervals += 1;
                } else {
                    Tag::new(c).ok()?;
                    tag = c.to_owned();
                }
            }
            if intervals == 0 {
                return None;
            }
        }
        Some(set)
    }

    /// The transaction `g` was executed.
    pub fn add(&mut self, g: &MySqlGtid) {
        if g.gno > 0 {
            self.insert((g.uuid, g.tag.clone()), g.gno, g.gno);
        }
    }

    fn insert(&mut self, key: SidKey, a: u64, b: u64) {
        let v = self.0.entry(key).or_default();
        // The usual case, transaction after transaction: extend the last run.
        if let Some(last) = v.last_mut() {
            if last.0 <= a && a <= last.1.saturating_add(1) {
                last.1 = last.1.max(b);
                return;
            }
        }
        v.push((a, b));
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for &(a, b) in v.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *v = merged;
    }

    /// The set as COM_BINLOG_DUMP_GTID carries it (intervals end-exclusive).
    pub fn to_sids(&self) -> Vec<Sid<'static>> {
        self.0
            .iter()
            .map(|((uuid, tag), iv)| {
                let mut sid = Sid::new(*uuid).with_intervals(
                    iv.iter()
                        .map(|&(a, b)| GnoInterval::new(a, b + 1))
                        .collect(),
                );
                if !tag.is_empty() {
                    let tag = Tag::new(tag.clone()).expect("validated when parsed or read");
                    sid = sid.with_tag(tag);
                }
                sid
            })
            .collect()
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last_uuid: Option<[u8; 16]> = None;
        for ((uuid, tag), iv) in &self.0 {
            if last_uuid != Some(*uuid) {
                if last_uuid.is_some() {
                    f.write_str(",")?;
                }
                write_uuid(f, uuid)?;
                last_uuid = Some(*uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(a, b) in iv {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

/// The GTID state of one flavour, advanced transaction by transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gtids {
    MariaDb(GtidPos),
    MySql(GtidSet),
}

impl Gtids {
    /// Parses saved text for a server of `flavor` (empty text: nothing yet).
    pub fn parse(flavor: super::Flavor, s: &str) -> Option<Gtids> {
        match flavor {
            super::Flavor::MariaDb => GtidPos::parse(s).map(Gtids::MariaDb),
            super::Flavor::MySql(..) => GtidSet::parse(s).map(Gtids::MySql),
        }
    }

    /// The transaction `g` was passed (a GTID of the other flavour cannot
    /// occur on one server and is ignored).
    pub fn advance(&mut self, g: &Gtid) {
        match (self, g) {
            (Gtids::MariaDb(p), Gtid::MariaDb(g)) => p.advance(*g),
            (Gtids::MySql(s), Gtid::MySql(g)) => s.add(g),
            _ => {}
        }
    }
}

impl fmt::Display for Gtids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtids::MariaDb(p) => p.fmt(f),
            Gtids::MySql(s) => s.fmt(f),
        }
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || s.len() != 36 || !s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn write_uuid(f: &mut fmt::Formatter<'_>, u: &[u8; 16]) -> fmt::Result {
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_str("-")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::proto::MySerialize;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "0f5e3d2c-1b2a-4c3d-8e9f-a0b1c2d3e4f5";

    fn gtid(uuid: &str, tag: &str, gno: u64) -> MySqlGtid {
        MySqlGtid {
            uuid: parse_uuid(uuid).unwrap(),
            tag: tag.into(),
            gno,
        }
    }

    #[test]
    fn mariadb_positions_parse_advance_and_print() {
        let mut p = GtidPos::parse("0-1-10,2-5-7").unwrap();
        p.advance(MariaGtid {
            domain: 0,
            server: 1,
            seq: 11,
        });
        p.advance(MariaGtid {
            domain: 1,
            server: 3,
            seq: 1,
        });
        assert_eq!(p.to_string(), "0-1-11,1-3-1,2-5-7");
        assert_eq!(GtidPos::parse("").unwrap(), GtidPos::default());
        assert!(GtidPos::parse("0-1").is_none());
        assert!(GtidPos::parse("a-1-2").is_none());
    }

    #[test]
    fn mysql_sets_parse_as_gtid_executed_prints_them() {
        // MySQL prints uppercase on old versions, lowercase now, and breaks
        // lines after commas.
        let text = format!("{},\n{}:1-5:7:9-12", B.to_uppercase() + ":1-3", A);
        let s = GtidSet::parse(&text).unwrap();
        assert_eq!(s.to_string(), format!("{B}:1-3,{A}:1-5:7:9-12"));
        assert_eq!(GtidSet::parse("").unwrap(), GtidSet::default());
        for bad in [
            A,                     // no interval
            "3e11fa47-71ca:1-5",   // short uuid
            &format!("{A}:0-3"),   // gno 0
            &format!("{A}:5-3"),   // backwards
            &format!("{A}:Tag:1"), // invalid tag
            &format!("{A}:1-x"),   // not a number
            "zz11fa47-71ca-11e1-9e33-c80aa9429562:1",
        ] {
            assert!(GtidSet::parse(bad).is_none(), "{bad} should not parse");
        }
    }

    #[test]
    fn tagged_sets_keep_their_tags() {
        let s = GtidSet::parse(&format!("{A}:1-5:alpha:1-3:beta:4")).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-5:alpha:1-3:beta:4"));
        let sids = s.to_sids();
        assert_eq!(sids.len(), 3);
        assert_eq!(sids[1].tag().map(|t| t.as_str()), Some("alpha"));
    }

    #[test]
    fn adding_transactions_merges_intervals() {
        let mut s = GtidSet::parse(&format!("{A}:1-5:8")).unwrap();
        s.add(&gtid(A, "", 6));
        assert_eq!(s.to_string(), format!("{A}:1-6:8"));
        s.add(&gtid(A, "", 7));
        assert_eq!(s.to_string(), format!("{A}:1-8"));
        s.add(&gtid(A, "", 3));
        assert_eq!(s.to_string(), format!("{A}:1-8"));
        s.add(&gtid(B, "", 1));
        s.add(&gtid(A, "t", 2));
        assert_eq!(s.to_string(), format!("{B}:1,{A}:1-8:t:2"));
        assert_eq!(gtid(A, "t", 2).to_string(), format!("{A}:t:2"));
        assert_eq!(Gtid::MySql(gtid(A, "", 42)).to_string(), format!("{A}:42"));
    }

    #[test]
    fn the_dump_request_carries_end_exclusive_intervals() {
        let s = GtidSet::parse(&format!("{A}:1-5:7")).unwrap();
        let sids = s.to_sids();
        assert_eq!(sids.len(), 1);
        assert_eq!(sids[0].uuid(), parse_uuid(A).unwrap());
        let iv: Vec<(u64, u64)> = sids[0]
            .intervals()
            .iter()
            .map(|i| (i.start(), i.end()))
            .collect();
        assert_eq!(iv, vec![(1, 6), (7, 8)]);
        // mysql_common's own text form of the same block agrees with ours.
        assert_eq!(sids[0].to_string(), format!("{A}:1-5:7"));
        let mut wire = Vec::new();
        sids[0].serialize(&mut wire);
        assert_eq!(wire.len(), 16 + 8 + 2 * 16);
    }

    #[test]
    fn gtids_advance_in_their_own_flavour() {
        use super::super::Flavor;
        let mut m = Gtids::parse(Flavor::MariaDb, "0-1-5").unwrap();
        m.advance(&Gtid::MariaDb(MariaGtid {
            domain: 0,
            server: 1,
            seq: 6,
        }));
        m.advance(&Gtid::MySql(gtid(A, "", 1)));
        assert_eq!(m.to_string(), "0-1-6");
        let mut y = Gtids::parse(Flavor::MySql(8, 0), "").unwrap();
        y.advance(&Gtid::MySql(gtid(A, "", 1)));
        assert_eq!(y.to_string(), format!("{A}:1"));
        assert!(Gtids::parse(Flavor::MySql(8, 0), "0-1-5").is_none());
    }
}
