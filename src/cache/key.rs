//! The cache key's layout.
//!
//! Policy: a key holds everything that can change the response bytes (see
//! `cache/mod.rs`): a hash of the session state (`KeyState`), the protocol
//! byte, the statement bytes, and for a prepared statement its type-tagged
//! parameter values and their declared wire types. Built into a reused
//! buffer, so a hit allocates nothing; the session-state hash is computed
//! again only when the state changed (`StateHash`).

use std::hash::{DefaultHasher, Hash, Hasher};

use mysql_common::value::Value;

/// Protocol byte of a key.
pub const TEXT: u8 = b'T';
pub const BINARY: u8 = b'B';

/// The session state that is part of every cache key.
pub struct KeyState<'a> {
    /// None when entries are shared across users.
    pub user: Option<&'a str>,
    pub db: Option<&'a str>,
    pub names: &'a str,
    pub sql_mode: Option<&'a str>,
    pub time_zone: Option<&'a str>,
    pub deprecate_eof: bool,
}

/// The session-state hash of a key, computed again only when the state
/// changed: the inputs it was computed from are kept and compared (a few
/// short strings, far cheaper than hashing them), so no caller has to say
/// when the state changes and a stale hash cannot happen.
#[derive(Default)]
pub struct StateHash {
    inputs: Option<Inputs>,
    hash: u64,
}

type Inputs = (
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    bool,
);

impl StateHash {
    pub fn get(&mut self, s: &KeyState<'_>) -> u64 {
        let same = self.inputs.as_ref().is_some_and(|i| {
            i.0.as_deref() == s.user
                && i.1.as_deref() == s.db
                && i.2 == s.names
                && i.3.as_deref() == s.sql_mode
                && i.4.as_deref() == s.time_zone
                && i.5 == s.deprecate_eof
        });
        if !same {
            self.hash = state_hash(s);
            self.inputs = Some((
                s.user.map(str::to_string),
                s.db.map(str::to_string),
                s.names.to_string(),
                s.sql_mode.map(str::to_string),
                s.time_zone.map(str::to_string),
                s.deprecate_eof,
            ));
        }
        self.hash
    }
}

/// The hash of the session state in every key.
fn state_hash(s: &KeyState<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    (
        s.user,
        s.db,
        s.names,
        s.sql_mode,
        s.time_zone,
        s.deprecate_eof,
    )
        .hash(&mut h);
    h.finish()
}

/// Writes the cache key for a statement into `k` (reused: no allocation
/// once it has grown): a hash of the session state, the protocol byte, the
/// statement bytes, and the type-tagged parameters.
/// `params` are a prepared statement's values and declared types (two bytes
/// each: a BLOB or a DATE parameter gives other results than a VAR_STRING or
/// a DATETIME one of the same value).
pub fn build_key(
    k: &mut Vec<u8>,
    s: &KeyState<'_>,
    proto: u8,
    body: &[u8],
    params: (&[Value], &[u8]),
) {
    build_key_with(k, state_hash(s), proto, body, params);
}

/// `build_key` with the session-state hash already known (`StateHash`).
pub fn build_key_with(
    k: &mut Vec<u8>,
    state: u64,
    proto: u8,
    body: &[u8],
    params: (&[Value], &[u8]),
) {
    k.clear();
    k.extend_from_slice(&state.to_le_bytes());
    k.push(proto);
    k.extend_from_slice(&(body.len() as u32).to_le_bytes());
    k.extend_from_slice(body);
    for p in params.0 {
        encode_param(k, p);
    }
    k.extend_from_slice(params.1);
}

/// Appends a binary-protocol parameter, type-tagged, to a key.
fn encode_param(k: &mut Vec<u8>, v: &Value) {
    match v {
        Value::NULL => k.push(0),
        Value::Bytes(b) => {
            k.push(1);
            k.extend_from_slice(&(b.len() as u32).to_le_bytes());
            k.extend_from_slice(b);
        }
        Value::Int(i) => {
            k.push(2);
            k.extend_from_slice(&i.to_le_bytes());
        }
        Value::UInt(u) => {
            k.push(3);
            k.extend_from_slice(&u.to_le_bytes());
        }
        Value::Float(f) => {
            k.push(4);
            k.extend_from_slice(&f.to_le_bytes());
        }
        Value::Double(d) => {
            k.push(5);
            k.extend_from_slice(&d.to_le_bytes());
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            k.push(6);
            k.extend_from_slice(&y.to_le_bytes());
            k.extend_from_slice(&[*mo, *d, *h, *mi, *s]);
            k.extend_from_slice(&us.to_le_bytes());
        }
        Value::Time(neg, d, h, mi, s, us) => {
            k.push(7);
            k.push(*neg as u8);
            k.extend_from_slice(&d.to_le_bytes());
            k.extend_from_slice(&[*h, *mi, *s]);
            k.extend_from_slice(&us.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_hash_follows_every_change_of_the_state() {
        let mut memo = StateHash::default();
        let mut s = KeyState {
            user: Some("u"),
            db: Some("a"),
            names: "utf8mb4",
            sql_mode: None,
            time_zone: None,
            deprecate_eof: true,
        };
        assert_eq!(memo.get(&s), state_hash(&s));
        let first = memo.get(&s);
        s.db = Some("b");
        assert_ne!(memo.get(&s), first, "a new database, a new hash");
        assert_eq!(memo.get(&s), state_hash(&s));
        s.time_zone = Some("+00:00");
        assert_eq!(memo.get(&s), state_hash(&s));
        s.db = Some("a");
        s.time_zone = None;
        assert_eq!(memo.get(&s), first, "back to the first state");
    }

    #[test]
    fn every_part_of_the_state_changes_the_key() {
        let base = KeyState {
            user: Some("a"),
            db: Some("d"),
            names: "utf8mb4",
            sql_mode: None,
            time_zone: None,
            deprecate_eof: true,
        };
        let key = |s: &KeyState<'_>, proto: u8, body: &[u8]| {
            let mut k = Vec::new();
            build_key(&mut k, s, proto, body, (&[], &[]));
            k
        };
        let k0 = key(&base, TEXT, b"SELECT 1");
        let variants = [
            KeyState {
                user: Some("b"),
                ..base
            },
            KeyState { user: None, ..base },
            KeyState {
                db: Some("e"),
                ..base
            },
            KeyState {
                names: "latin1",
                ..base
            },
            KeyState {
                sql_mode: Some("'ANSI'"),
                ..base
            },
            KeyState {
                time_zone: Some("'+01:00'"),
                ..base
            },
            KeyState {
                deprecate_eof: false,
                ..base
            },
        ];
        for v in &variants {
            assert_ne!(key(v, TEXT, b"SELECT 1"), k0);
        }
        assert_ne!(key(&base, BINARY, b"SELECT 1"), k0);
        assert_ne!(key(&base, TEXT, b"SELECT 2"), k0);
        assert_eq!(key(&base, TEXT, b"SELECT 1"), k0);
    }

    #[test]
    fn params_are_type_tagged_in_keys() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_param(&mut a, &Value::Int(5));
        encode_param(&mut b, &Value::Bytes(b"5".to_vec()));
        assert_ne!(a, b);
    }

    #[test]
    fn declared_types_are_part_of_the_key() {
        let s = KeyState {
            user: None,
            db: None,
            names: "utf8mb4",
            sql_mode: None,
            time_zone: None,
            deprecate_eof: true,
        };
        let a = [Value::Bytes(b"A".to_vec())];
        let key = |types: &[u8]| {
            let mut k = Vec::new();
            build_key(&mut k, &s, BINARY, b"SELECT 'a' = ?", (&a, types));
            k
        };
        // BLOB (compared as binary) and VAR_STRING give different results.
        assert_ne!(key(&[252, 0]), key(&[253, 0]));
        assert_eq!(key(&[253, 0]), key(&[253, 0]));
    }
}
