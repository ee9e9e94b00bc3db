//! What the proxy holds for an account (`[[users]] password` or
//! `password_hash`), how a client's `mysql_native_password` proof is
//! checked against it, and the credential the proxy then logs in to MySQL
//! with as that user.
//!
//! Policy: with a plaintext password the proof is compared with the
//! scramble of the password, and the password is the backend credential.
//! With a hash (MySQL's stored form, `*` + hex of SHA1(SHA1(password))) the
//! proof itself yields SHA1(password): proof XOR SHA1(scramble + hash); it
//! is accepted only if its SHA1 is the hash, and then it is the backend
//! credential (the patched mysql_async scrambles with it for
//! `mysql_native_password` only, `vendor/README.md`). So no plaintext
//! password is needed anywhere, and the stage-1 hash exists only in memory,
//! learnt from the client's own login. An empty password is an empty hash.
//!
//! Invariants: comparisons are constant-time; nothing here logs a secret.

use sha1::{Digest, Sha1};

/// What the proxy holds for one account.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Plain(String),
    /// SHA1(SHA1(password)).
    Hash([u8; 20]),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(…)",
            Secret::Hash(_) => "Secret::Hash(…)",
        })
    }
}

/// Parses MySQL's stored `mysql_native_password` form: `*` + 40 hex digits
/// (`SELECT PASSWORD('…')`), or "" for an empty password.
pub fn parse_hash(s: &str) -> Option<Secret> {
    if s.is_empty() {
        return Some(Secret::Plain(String::new()));
    }
    let hex = s.strip_prefix('*').filter(|h| h.len() == 40)?;
    let mut h = [0u8; 20];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Secret::Hash(h))
}

impl Secret {
    /// Whether this secret is the empty password.
    pub fn is_empty(&self) -> bool {
        matches!(self, Secret::Plain(p) if p.is_empty())
    }

    /// Checks a `mysql_native_password` proof; on success, the credential
    /// to open backend connections as this user with.
    pub fn verify(&self, scramble: &[u8; 20], proof: &[u8]) -> Option<String> {
        match self {
            Secret::Plain(p) if p.is_empty() => proof.is_empty().then(String::new),
            Secret::Plain(p) => {
                let want = mysql_common::scramble::scramble_native(scramble, p.as_bytes())?;
                constant_time_eq(&want, proof).then(|| p.clone())
            }
            Secret::Hash(stage2) => {
                let mix = Sha1::new()
                    .chain_update(scramble)
                    .chain_update(stage2)
                    .finalize();
                let stage1: Vec<u8> = proof.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
                let ok = proof.len() == 20 && constant_time_eq(&Sha1::digest(&stage1), stage2);
                ok.then(|| {
                    let hex: String = stage1.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{}{hex}", mysql_async::STAGE1_PREFIX)
                })
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::AuthPlugin;

    fn mysql_hash(pw: &str) -> String {
        let h = Sha1::digest(Sha1::digest(pw.as_bytes()));
        format!(
            "*{}",
            h.iter().map(|b| format!("{b:02X}")).collect::<String>()
        )
    }

    #[test]
    fn a_hash_verifies_the_proof_and_yields_a_credential_that_logs_in() {
        let scramble = [0x41u8; 20];
        let secret = parse_hash(&mysql_hash("s3cret")).unwrap();
        let proof = mysql_common::scramble::scramble_native(&scramble, b"s3cret").unwrap();
        let cred = secret.verify(&scramble, &proof).expect("accepted");
        assert!(!cred.contains("s3cret"));
        // The credential answers a backend's scramble exactly as the
        // password would (the patched mysql_async's scramble).
        let nonce = [0x5au8; 20];
        let from_pw = AuthPlugin::MysqlNativePassword.gen_data(Some("s3cret"), &nonce);
        let from_cred = mysql_async_stage1(&cred, &nonce);
        assert_eq!(from_cred, from_pw.map(|d| d.to_vec()));
        // Wrong password, short or empty proofs are refused.
        let bad = mysql_common::scramble::scramble_native(&scramble, b"other").unwrap();
        assert_eq!(secret.verify(&scramble, &bad), None);
        assert_eq!(secret.verify(&scramble, &proof[..19]), None);
        assert_eq!(secret.verify(&scramble, b""), None);
    }

    /// What the patched mysql_async sends for a credential: checked by
    /// logging in through it against MariaDB in `tests/accounts.rs`; here
    /// the same arithmetic from the outside.
    fn mysql_async_stage1(cred: &str, nonce: &[u8; 20]) -> Option<Vec<u8>> {
        let hex = cred.strip_prefix(mysql_async::STAGE1_PREFIX)?;
        let stage1: Vec<u8> = (0..20)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let mix = Sha1::new()
            .chain_update(nonce)
            .chain_update(Sha1::digest(&stage1))
            .finalize();
        Some(stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect())
    }

    #[test]
    fn plain_and_empty_secrets() {
        let scramble = [0x33u8; 20];
        let pw = Secret::Plain("pw".into());
        let proof = mysql_common::scramble::scramble_native(&scramble, b"pw").unwrap();
        assert_eq!(pw.verify(&scramble, &proof).as_deref(), Some("pw"));
        assert_eq!(pw.verify(&scramble, b""), None);
        let empty = parse_hash("").unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.verify(&scramble, b"").as_deref(), Some(""));
        assert_eq!(empty.verify(&scramble, &proof), None);
        for bad in ["*12", "ABCDEF", "*ZZ34567890123456789012345678901234567890"] {
            assert!(parse_hash(bad).is_none(), "{bad}");
        }
        assert!(!format!("{:?}", pw).contains("pw"), "Debug hides secrets");
    }
}
