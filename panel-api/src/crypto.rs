//! Secrets: random tokens, API-key hashing, password hashing, and the application
//! key that encrypts the secrets we must be able to read back (node daemon tokens,
//! database passwords).

use anyhow::{Context, Result};
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::path::Path;

/// `n` random characters from `[A-Za-z0-9]`.
pub fn random_string(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// SHA-256 of an API key's secret part; the only form in which it is stored.
pub fn hash_token(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Constant-time comparison.
pub fn eq_ct(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// bcrypt at upstream's cost (10). Upstream writes `$2y$`; both verify the same.
pub fn hash_password(password: &str) -> Result<String> {
    Ok(bcrypt::hash(password, 10)?)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// Encrypts and decrypts with the application key (Fernet: AES-128-CBC + HMAC-SHA256).
#[derive(Clone)]
pub struct Encrypter {
    fernet: std::sync::Arc<fernet::Fernet>,
}

impl Encrypter {
    pub fn new(key: &str) -> Result<Self> {
        let fernet = fernet::Fernet::new(key.trim())
            .context("APP_KEY is not a valid key (url-safe base64 of 32 bytes); make one with `panel-api key:generate`")?;
        Ok(Encrypter {
            fernet: std::sync::Arc::new(fernet),
        })
    }

    pub fn generate_key() -> String {
        fernet::Fernet::generate_key()
    }

    /// The key from `APP_KEY`, else from `<data_dir>/app.key`, created on first use.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<Self> {
        if let Some(k) = configured {
            return Self::new(k);
        }
        let path = data_dir.join("app.key");
        if let Ok(k) = std::fs::read_to_string(&path) {
            return Self::new(&k);
        }
        std::fs::create_dir_all(data_dir)?;
        let k = Self::generate_key();
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(k.as_bytes())?;
        }
        Self::new(&k)
    }

    pub fn encrypt(&self, plain: &str) -> String {
        self.fernet.encrypt(plain.as_bytes())
    }

    pub fn decrypt(&self, token: &str) -> Result<String> {
        let bytes = self
            .fernet
            .decrypt(token)
            .map_err(|_| anyhow::anyhow!("secret could not be decrypted with APP_KEY"))?;
        Ok(String::from_utf8(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_secrets_round_trip_and_differ_from_plaintext() {
        let e = Encrypter::new(&Encrypter::generate_key()).unwrap();
        let c = e.encrypt("s3cret-token");
        assert_ne!(c, "s3cret-token");
        assert!(!c.contains("s3cret"));
        assert_eq!(e.decrypt(&c).unwrap(), "s3cret-token");
        let other = Encrypter::new(&Encrypter::generate_key()).unwrap();
        assert!(other.decrypt(&c).is_err());
    }

    #[test]
    fn upstream_2y_bcrypt_hashes_verify() {
        let h = hash_password("password")
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        assert!(verify_password("password", &h));
        assert!(!verify_password("Password", &h));
    }
}
