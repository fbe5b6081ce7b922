//! Verification of Panel-minted JWTs (reference §2.3, §3.2–§3.4): HS256 with the node
//! token, `exp` required, `nbf/iss/aud` ignored; websocket tokens must be issued after
//! boot and not denylisted by `jti`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openapi::wings::TokenClaims;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const ERR_NOT_PRESENT: &str = "jwt: no jwt present";
pub const ERR_NO_CONNECT: &str = "jwt: missing connect permission";
pub const ERR_UUID_MISMATCH: &str = "jwt: server uuid mismatch";
pub const ERR_DENYLIST: &str = "jwt: created too far in past (denylist)";
pub const ERR_EXPIRED: &str = "jwt: exp claim is invalid";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// One of upstream's JWT errors (sent to sockets as `jwt error`).
    #[error("{0}")]
    Jwt(&'static str),
    /// Bad signature, malformed token, …
    #[error("{0}")]
    Invalid(String),
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

pub fn now_secs() -> i64 {
    (now_nanos() / 1_000_000_000) as i64
}

/// Verifies signature and `exp` with the node secret.
pub fn verify(token: &str, secret: &str) -> Result<TokenClaims, TokenError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.validate_aud = false;
    v.validate_nbf = false;
    v.validate_exp = false;
    v.required_spec_claims = Default::default();
    let data = jsonwebtoken::decode::<TokenClaims>(
        token.trim(),
        &DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))?;
    let claims = data.claims;
    check_exp(&claims)?;
    Ok(claims)
}

/// `exp` is required; the token is invalid once now is past it.
pub fn check_exp(c: &TokenClaims) -> Result<(), TokenError> {
    match c.exp {
        Some(exp) if (exp as i128) * 1_000_000_000 >= now_nanos() => Ok(()),
        _ => Err(TokenError::Jwt(ERR_EXPIRED)),
    }
}

/// Whether the token holds `perm`; `*` grants everything except `admin.*`.
pub fn has_permission(c: &TokenClaims, perm: &str) -> bool {
    let perms = c.permissions.as_deref().unwrap_or(&[]);
    perms.iter().any(|p| p == perm)
        || (!perm.starts_with("admin") && perms.iter().any(|p| p == "*"))
}

/// Boot time and the process-wide `jti` denylist.
pub struct JwtState {
    boot_nanos: i128,
    denylist: Mutex<HashMap<String, i128>>,
    /// `unique_id`s of signed URLs already used, with when (kept 60 minutes).
    used: Mutex<HashMap<String, i128>>,
}

impl Default for JwtState {
    fn default() -> Self {
        Self::new()
    }
}

impl JwtState {
    pub fn new() -> JwtState {
        JwtState {
            boot_nanos: now_nanos(),
            denylist: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Marks a signed URL's `unique_id` used; false when it was already used in
    /// the last 60 minutes (or is missing), so every URL works once.
    pub fn use_once(&self, unique_id: Option<&str>) -> bool {
        let Some(id) = unique_id.filter(|s| !s.is_empty()) else {
            return false;
        };
        let now = now_nanos();
        let hour = 3_600 * 1_000_000_000i128;
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, t| now - *t < hour);
        if used.contains_key(id) {
            return false;
        }
        used.insert(id.to_string(), now);
        true
    }

    /// Boot time, whole seconds.
    pub fn boot_secs(&self) -> i64 {
        (self.boot_nanos / 1_000_000_000) as i64
    }

    /// Denies every token with this `jti` issued before now.
    pub fn deny(&self, jti: &str) {
        self.denylist
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(jti.to_string(), now_nanos());
    }

    /// `iat` missing, before boot, or before a deny entry for its `jti`.
    pub fn is_denylisted(&self, c: &TokenClaims) -> bool {
        let Some(iat) = c.iat else { return true };
        // `iat` has whole seconds; upstream compares it with the nanosecond boot time,
        // which refuses a token minted in the second wings booted. Compare seconds.
        if iat < self.boot_secs() {
            return true;
        }
        let iat = iat as i128 * 1_000_000_000;
        let Some(jti) = c.jti.as_deref() else {
            return false;
        };
        matches!(self.denylist.lock().unwrap_or_else(|e| e.into_inner()).get(jti), Some(t) if *t > iat)
    }
}

/// Signs claims with the node secret (tests and transfers mint tokens with it).
pub fn sign(
    claims: &serde_json::Value,
    secret: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn sign(c: &serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn valid_token_with_array_audience_and_header_jti_verifies() {
        let now = now_secs();
        let t = sign(
            &serde_json::json!({"aud":["http://x"],"iat":now,"nbf":now-300,"exp":now+60,"permissions":["*"]}),
            "s3cret",
        );
        let c = verify(&t, "s3cret").unwrap();
        assert!(has_permission(&c, "websocket.connect"));
        assert!(!has_permission(&c, "admin.websocket.errors"));
        assert!(matches!(verify(&t, "other"), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn expired_or_missing_exp_is_the_exp_error() {
        let now = now_secs();
        let t = sign(&serde_json::json!({"iat":now,"exp":now-5}), "k");
        assert_eq!(verify(&t, "k"), Err(TokenError::Jwt(ERR_EXPIRED)));
        let t = sign(&serde_json::json!({"iat":now}), "k");
        assert!(verify(&t, "k").is_err());
    }

    #[test]
    fn denylist_rules() {
        let st = JwtState::new();
        let mut c = TokenClaims {
            iat: None,
            ..Default::default()
        };
        assert!(st.is_denylisted(&c));
        c.iat = Some(st.boot_secs() - 10);
        assert!(st.is_denylisted(&c));
        c.iat = Some(st.boot_secs() + 5);
        c.jti = Some("j".into());
        assert!(!st.is_denylisted(&c));
        st.deny("j");
        assert!(
            !st.is_denylisted(&c),
            "a token issued after the deny entry stays valid"
        );
        c.iat = Some(st.boot_secs() + 1);
        // deny happened at ~boot, which is before boot+1: still valid
        assert!(!st.is_denylisted(&c));
    }
}
