//! Partition awareness (Ignite's IEP-23): which node is primary for a key.
//!
//! Policy: the map comes from OP_CACHE_PARTITIONS (legacy layout, no
//! feature bits negotiated) and is tagged with the affinity topology
//! version it was computed for. A key's partition is Ignite's
//! `RendezvousAffinityFunction.calculatePartition` over the key's Java
//! `hashCode()` — `Long.hashCode` for token keys, `Arrays.hashCode(byte[])`
//! (signed bytes) for entry keys — so proxy and cluster agree without
//! asking. A cache the server calls "not applicable" (custom affinity, a
//! replicated cache) or a key whose partition has no primary in the map has
//! no answer: the caller sends the request anywhere and Ignite forwards it,
//! which is slower, never wrong.

use std::collections::HashMap;

use super::codec::{self, Obj};
use super::IgniteError;

/// A node as partition maps and handshakes name it.
pub type NodeId = [u8; 16];

/// Primaries per partition, per cache, at one topology version.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionMap {
    pub version: (i64, i32),
    caches: HashMap<i32, Vec<Option<NodeId>>>,
}

impl PartitionMap {
    /// The primary node of a key with Java hash `hash` in `cache_id`.
    pub fn primary(&self, cache_id: i32, hash: i32) -> Option<NodeId> {
        let parts = self.caches.get(&cache_id)?;
        *parts.get(partition(hash, parts.len())?)?
    }

    /// Number of partitions of `cache_id` (0 when not applicable).
    pub fn partitions(&self, cache_id: i32) -> usize {
        self.caches.get(&cache_id).map_or(0, Vec::len)
    }

    /// Every node that is primary for some partition of `cache_id`.
    pub fn nodes(&self, cache_id: i32) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for n in self.caches.get(&cache_id).into_iter().flatten().flatten() {
            if !out.contains(n) {
                out.push(*n);
            }
        }
        out
    }
}

/// `RendezvousAffinityFunction.calculatePartition`: a mask when the count
/// is a power of two, else `safeAbs(hash % parts)`.
pub fn partition(hash: i32, parts: usize) -> Option<usize> {
    if parts == 0 {
        return None;
    }
    if parts.is_power_of_two() {
        let h = hash ^ ((hash as u32) >> 16) as i32;
        return Some((h as u32 as usize) & (parts - 1));
    }
    let r = hash.wrapping_rem(parts as i32).wrapping_abs();
    Some(if r < 0 { 0 } else { r as usize })
}

/// Java's `Long.hashCode()`.
pub fn long_hash(v: i64) -> i32 {
    (v ^ ((v as u64) >> 32) as i64) as i32
}

/// Java's `Arrays.hashCode(byte[])` (bytes are signed).
pub fn bytes_hash(b: &[u8]) -> i32 {
    b.iter().fold(1i32, |h, &x| {
        h.wrapping_mul(31).wrapping_add(x as i8 as i32)
    })
}

/// Parses an OP_CACHE_PARTITIONS payload: `long, int` topology version,
/// then groups of `bool applicable, int n, n × (int cache id [, key
/// configs])` and, when applicable, `int m, m × (UUID node, int k, k × int
/// partition)`.
pub fn parse_partitions(mut b: &[u8]) -> Result<PartitionMap, IgniteError> {
    let version = (codec::take_i64(&mut b)?, codec::take_i32(&mut b)?);
    let mut map = PartitionMap {
        version,
        caches: HashMap::new(),
    };
    for _ in 0..count(&mut b)? {
        let applicable = codec::take_u8(&mut b)? != 0;
        let mut ids = Vec::new();
        for _ in 0..count(&mut b)? {
            ids.push(codec::take_i32(&mut b)?);
            if applicable {
                for _ in 0..count(&mut b)? {
                    codec::take_i32(&mut b)?; // key type id
                    codec::take_i32(&mut b)?; // affinity key field id
                }
            }
        }
        if !applicable {
            continue;
        }
        let mut owners: Vec<(NodeId, i32)> = Vec::new();
        for _ in 0..count(&mut b)? {
            let Obj::Uuid(node) = codec::object(&mut b)? else {
                return Err(IgniteError::Protocol("partition map node is not a UUID"));
            };
            for _ in 0..count(&mut b)? {
                owners.push((node, codec::take_i32(&mut b)?));
            }
        }
        let parts = owners.len();
        let mut table = vec![None; parts];
        for (node, p) in owners {
            let slot = usize::try_from(p)
                .ok()
                .and_then(|p| table.get_mut(p))
                .ok_or(IgniteError::Protocol("partition number out of range"))?;
            *slot = Some(node);
        }
        for id in ids {
            map.caches.insert(id, table.clone());
        }
    }
    Ok(map)
}

fn count(b: &mut &[u8]) -> Result<usize, IgniteError> {
    let n = codec::take_count(b)?;
    codec::need(b, n.min(1))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_codes() {
        // Long.hashCode and Arrays.hashCode(byte[]) as Java computes them
        // (pyignite's LongObject.hashcode and utils.hashcode agree).
        assert_eq!(long_hash(0), 0);
        assert_eq!(long_hash(1), 1);
        assert_eq!(long_hash(-1), 0);
        assert_eq!(long_hash(1 << 32), 1);
        assert_eq!(long_hash(i64::MIN / 2), -1_073_741_824);
        assert_eq!(bytes_hash(b""), 1);
        assert_eq!(bytes_hash(&[1, 2]), 31 * (31 + 1) + 2);
        assert_eq!(bytes_hash(&[0xff]), 31 - 1);
    }

    #[test]
    fn partitions_follow_rendezvous() {
        // Power of two: (h ^ (h >>> 16)) & mask.
        assert_eq!(partition(0x0001_0000, 1024), Some(1));
        assert_eq!(partition(-1, 1024), Some(0));
        assert_eq!(partition(0x0003_0001, 1024), Some(2));
        // Otherwise safeAbs(h % parts).
        assert_eq!(partition(-7, 10), Some(7));
        assert_eq!(partition(i32::MIN, 3), Some(2));
        assert_eq!(partition(5, 0), None);
    }

    fn frame(applicable: bool) -> Vec<u8> {
        let mut b = vec![];
        b.extend(7i64.to_le_bytes());
        b.extend(1i32.to_le_bytes());
        b.extend(1i32.to_le_bytes()); // one group
        b.push(applicable as u8);
        b.extend(2i32.to_le_bytes()); // two caches
        for id in [11i32, 12] {
            b.extend(id.to_le_bytes());
            if applicable {
                b.extend(0i32.to_le_bytes()); // no key configs
            }
        }
        if applicable {
            b.extend(2i32.to_le_bytes()); // two nodes
            for (node, parts) in [(1u8, [0i32, 2]), (2u8, [1, 3])] {
                b.push(codec::TYPE_UUID);
                b.extend([node; 16]);
                b.extend(2i32.to_le_bytes());
                for p in parts {
                    b.extend(p.to_le_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn parses_a_map_and_finds_primaries() {
        let m = parse_partitions(&frame(true)).unwrap();
        assert_eq!(m.version, (7, 1));
        assert_eq!(m.partitions(11), 4);
        assert_eq!(m.partitions(12), 4);
        assert_eq!(m.primary(11, 0), Some([1; 16]));
        assert_eq!(m.primary(12, 1), Some([2; 16]));
        assert_eq!(m.primary(11, 2), Some([1; 16]));
        assert_eq!(m.primary(99, 2), None);
        assert_eq!(m.nodes(11), vec![[1; 16], [2; 16]]);
        let n = parse_partitions(&frame(false)).unwrap();
        assert_eq!((n.partitions(11), n.primary(11, 0)), (0, None));
    }

    #[test]
    fn bad_maps_are_errors() {
        let good = frame(true);
        for cut in [3, 13, 30, good.len() - 1] {
            assert!(parse_partitions(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut out_of_range = good.clone();
        let at = out_of_range.len() - 4;
        out_of_range[at..].copy_from_slice(&9i32.to_le_bytes());
        assert!(parse_partitions(&out_of_range).is_err());
    }
}
