//! Credentials at rest: panel URLs and API keys are Fernet tokens under a key from the
//! environment. The key itself is never logged or stored.

use anyhow::{bail, Result};

/// How to make a key, for the refusal message.
pub const HOW_TO_MAKE_A_KEY: &str = "set BOT_FERNET_KEY to a Fernet key (url-safe base64 of 32 random bytes); \
make one with `bot gen-key` (or `python3 -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`)";

#[derive(Clone)]
pub struct Vault {
    fernet: std::sync::Arc<fernet::Fernet>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// The vault for `key`; refuses a missing or malformed key and says how to make one.
    pub fn new(key: Option<&str>) -> Result<Vault> {
        let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) else {
            bail!("BOT_FERNET_KEY is not set: {HOW_TO_MAKE_A_KEY}");
        };
        let Some(f) = fernet::Fernet::new(key) else {
            bail!("BOT_FERNET_KEY is not a valid Fernet key: {HOW_TO_MAKE_A_KEY}");
        };
        Ok(Vault {
            fernet: std::sync::Arc::new(f),
        })
    }

    pub fn generate_key() -> String {
        fernet::Fernet::generate_key()
    }

    pub fn encrypt(&self, plain: &str) -> String {
        self.fernet.encrypt(plain.as_bytes())
    }

    pub fn decrypt(&self, token: &str) -> Result<String> {
        let bytes = self.fernet.decrypt(token).map_err(|_| {
            anyhow::anyhow!("a stored credential does not decrypt under BOT_FERNET_KEY")
        })?;
        Ok(String::from_utf8(bytes)?)
    }
}

/// `ptlc_AbCd…` → `ptlc_AbCd••••` : enough to recognise a key, never enough to use it.
pub fn mask_key(key: &str) -> String {
    let shown: String = key.chars().take(9).collect();
    format!("{shown}••••••••")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_without_a_key_and_says_how_to_make_one() {
        let e = Vault::new(None).expect_err("no key").to_string();
        assert!(e.contains("bot gen-key"), "{e}");
        let e = Vault::new(Some("short")).expect_err("bad key").to_string();
        assert!(e.contains("not a valid Fernet key"), "{e}");
    }

    #[test]
    fn round_trips_and_does_not_store_plaintext() {
        let v = Vault::new(Some(Vault::generate_key().as_str())).expect("vault");
        let t = v.encrypt("ptlc_secret");
        assert!(!t.contains("ptlc_secret"));
        assert_eq!(v.decrypt(&t).expect("decrypt"), "ptlc_secret");
    }

    #[test]
    fn mask_hides_the_secret_part() {
        let k = "ptlc_AbCdEfGhIjK0123456789abcdefghijklmnopqrstu";
        let m = mask_key(k);
        assert!(m.starts_with("ptlc_AbCd"));
        assert!(!m.contains("EfGh"));
    }
}
