// sqlcache patch: log in with a `mysql_native_password` credential the
// caller holds only as its stage-1 hash, SHA1(password), never the password.
//
// A password of the form `STAGE1_PREFIX` + 40 hex digits is that hash: the
// scramble is SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))), which
// the hash alone determines. Such a credential answers only
// mysql_native_password; any other plugin gets no data (the server then
// refuses the login), so the hash is never sent, not even to a cleartext
// plugin.

use mysql_common::packets::{AuthPlugin, AuthPluginData};
use sha1::{Digest, Sha1};

/// Marks a password that is a stage-1 hash (no real password starts with NUL).
pub const STAGE1_PREFIX: &str = "\u{0}sqlcache-native-stage1:";

/// `AuthPlugin::gen_data`, but answering a stage-1 credential itself.
pub fn gen_data<'b>(
    plugin: &AuthPlugin<'_>,
    pass: Option<&'b str>,
    nonce: &[u8],
) -> Option<AuthPluginData<'b>> {
    match pass.and_then(|p| p.strip_prefix(STAGE1_PREFIX)) {
        None => plugin.gen_data(pass, nonce),
        Some(hex) => match plugin {
            AuthPlugin::MysqlNativePassword => scramble(hex, nonce).map(AuthPluginData::Native),
            _ => None,
        },
    }
}

fn scramble(hex: &str, nonce: &[u8]) -> Option<[u8; 20]> {
    let mut stage1 = [0u8; 20];
    if hex.len() != 40 {
        return None;
    }
    for (i, b) in stage1.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(nonce.get(..20).unwrap_or(nonce));
    h.update(stage2);
    let mix = h.finalize();
    let mut out = [0u8; 20];
    for i in 0..20 {
        out[i] = stage1[i] ^ mix[i];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage1_scrambles_like_the_password() {
        let nonce = [7u8; 20];
        let stage1 = Sha1::digest(b"s3cret");
        let hex: String = stage1.iter().map(|b| format!("{b:02x}")).collect();
        let pass = format!("{STAGE1_PREFIX}{hex}");
        let native = AuthPlugin::MysqlNativePassword;
        let want = native.gen_data(Some("s3cret"), &nonce);
        assert_eq!(gen_data(&native, Some(&pass), &nonce), want);
        assert!(want.is_some());
        assert_eq!(
            gen_data(&AuthPlugin::MysqlClearPassword, Some(&pass), &nonce),
            None,
            "never sent in the clear"
        );
    }
}
