//! The JWTs the panel mints for its nodes (websocket credentials, signed file and
//! backup URLs; reference §7.4, wings-protocol §2): HS256 with the node's daemon
//! token, upstream's claim order, integer time claims, a one-element `aud`, and the
//! `jti` repeated in the header.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Who a token is for, when it carries user claims.
pub struct TokenUser<'a> {
    pub id: i64,
    pub uuid: &'a str,
}

/// Mints a token. `identified_by` is hashed (md5) into the `jti`, as upstream does.
pub fn mint(
    node_token: &str,
    app_url: &str,
    node_address: &str,
    identified_by: &str,
    ttl_secs: i64,
    claims: Map<String, Value>,
    user: Option<TokenUser<'_>>,
) -> String {
    use md5::Digest;
    let jti = hex::encode(md5::Md5::digest(identified_by.as_bytes()));
    let now = chrono::Utc::now().timestamp();
    let mut header = Map::new();
    header.insert("typ".into(), "JWT".into());
    header.insert("alg".into(), "HS256".into());
    header.insert("jti".into(), Value::String(jti.clone()));
    let mut body = Map::new();
    body.insert("iss".into(), Value::String(app_url.to_string()));
    body.insert(
        "aud".into(),
        Value::Array(vec![Value::String(node_address.to_string())]),
    );
    body.insert("jti".into(), Value::String(jti));
    body.insert("iat".into(), now.into());
    body.insert("nbf".into(), (now - 300).into());
    body.insert("exp".into(), (now + ttl_secs).into());
    for (k, v) in claims {
        body.insert(k, v);
    }
    if let Some(u) = user {
        body.insert("user_uuid".into(), Value::String(u.uuid.to_string()));
        body.insert("user_id".into(), u.id.into());
    }
    body.insert(
        "unique_id".into(),
        Value::String(crate::crypto::random_string(16)),
    );
    let h = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    let b = URL_SAFE_NO_PAD.encode(Value::Object(body).to_string());
    let signing = format!("{h}.{b}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(node_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_with_the_node_token_and_carries_upstreams_claims() {
        let mut claims = Map::new();
        claims.insert("server_uuid".into(), "abc".into());
        let t = mint(
            "secret-token",
            "https://panel.test",
            "https://node.test:8080",
            "1abc",
            600,
            claims,
            Some(TokenUser { id: 7, uuid: "u-1" }),
        );
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_audience(&["https://node.test:8080"]);
        let data = jsonwebtoken::decode::<Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"secret-token"),
            &v,
        )
        .unwrap();
        let c = data.claims.as_object().unwrap();
        let keys: Vec<&str> = c.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "iss",
                "aud",
                "jti",
                "iat",
                "nbf",
                "exp",
                "server_uuid",
                "user_uuid",
                "user_id",
                "unique_id"
            ]
        );
        assert_eq!(c["user_id"], 7);
        assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() == 600);
        assert!(jsonwebtoken::decode::<Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"other"),
            &v
        )
        .is_err());
    }
}
