//! TOTP (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits) for account two-factor
//! authentication, with upstream's verification window.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A new 32-character base32 secret (160 bits), as upstream generates.
pub fn generate_secret() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut raw);
    data_encoding::BASE32_NOPAD.encode(&raw)
}

/// The code for `secret` at step `counter`.
pub fn code_at(secret: &str, counter: u64) -> Option<String> {
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.trim_end_matches('=').as_bytes())
        .ok()?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let bin = ((digest[offset] as u32 & 0x7f) << 24)
        | ((digest[offset + 1] as u32) << 16)
        | ((digest[offset + 2] as u32) << 8)
        | digest[offset + 3] as u32;
    Some(format!("{:06}", bin % 1_000_000))
}

/// Whether `code` is valid for `secret` at unix time `now`, `window` steps either side.
pub fn verify(secret: &str, code: &str, now: i64, window: i64) -> bool {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let step = now.div_euclid(30);
    (step - window..=step + window)
        .filter(|c| *c >= 0)
        .any(|c| {
            code_at(secret, c as u64)
                .is_some_and(|want| crate::crypto::eq_ct(want.as_bytes(), code.as_bytes()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B seed "12345678901234567890", 8 digits truncated to 6.
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        assert_eq!(code_at(&secret, 59 / 30).unwrap(), "287082");
        assert_eq!(code_at(&secret, 1111111109 / 30).unwrap(), "081804");
        assert!(verify(&secret, "287082", 59, 0));
        assert!(verify(&secret, "287082", 59 + 30 * 4, 4));
        assert!(!verify(&secret, "287082", 59 + 30 * 5, 4));
        assert!(!verify(&secret, "28708", 59, 4));
        assert_eq!(generate_secret().len(), 32);
    }
}
