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
    let mut body = registered(app_url, node_address, &jti, ttl_secs);
    for (k, v) in claims {
        body.insert(k, v);
    }
    if let Some(u) = user {
        body.insert("user_uuid".into(), Value::String(u.uuid.to_string()));
        body.insert("user_id".into(), u.id.into());
    }
    sign(node_token, header(&jti, None), body)
}

/// The transfer token (upstream's admin `ServerTransferController`): signed with the
/// **destination** node's token, 15 minutes, `jti` = sha256 of the server uuid, and
/// `sub` = the server uuid in the claims and the header. The destination reads the
/// server from `sub`.
pub fn mint_transfer(
    dest_node_token: &str,
    app_url: &str,
    dest_node_address: &str,
    server_uuid: &str,
) -> String {
    use sha2::Digest;
    let jti = hex::encode(Sha256::digest(server_uuid.as_bytes()));
    let mut body = registered(app_url, dest_node_address, &jti, 15 * 60);
    body.insert("sub".into(), Value::String(server_uuid.to_string()));
    sign(dest_node_token, header(&jti, Some(server_uuid)), body)
}

fn header(jti: &str, sub: Option<&str>) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("typ".into(), "JWT".into());
    h.insert("alg".into(), "HS256".into());
    h.insert("jti".into(), Value::String(jti.to_string()));
    if let Some(sub) = sub {
        h.insert("sub".into(), Value::String(sub.to_string()));
    }
    h
}

/// `iss`, `aud` (one-element array), `jti`, integer `iat`, `nbf` (five minutes
/// back) and `exp`, in upstream's order.
fn registered(app_url: &str, node_address: &str, jti: &str, ttl_secs: i64) -> Map<String, Value> {
    let now = chrono::Utc::now().timestamp();
    let mut body = Map::new();
    body.insert("iss".into(), Value::String(app_url.to_string()));
    body.insert(
        "aud".into(),
        Value::Array(vec![Value::String(node_address.to_string())]),
    );
    body.insert("jti".into(), Value::String(jti.to_string()));
    body.insert("iat".into(), now.into());
    body.insert("nbf".into(), (now - 300).into());
    body.insert("exp".into(), (now + ttl_secs).into());
    body
}

/// Adds upstream's random `unique_id` last and signs.
fn sign(key: &str, header: Map<String, Value>, mut body: Map<String, Value>) -> String {
    body.insert(
        "unique_id".into(),
        Value::String(crate::crypto::random_string(16)),
    );
    let h = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    let b = URL_SAFE_NO_PAD.encode(Value::Object(body).to_string());
    let signing = format!("{h}.{b}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
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

    #[test]
    fn transfer_tokens_carry_sub_in_claims_and_header_with_a_sha256_jti() {
        let uuid = "8a9f5a8c-1d2e-4f00-9d7a-0123456789ab";
        let t = mint_transfer(
            "dest-secret",
            "https://panel.test",
            "https://dest:8080",
            uuid,
        );
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_audience(&["https://dest:8080"]);
        let data = jsonwebtoken::decode::<Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"dest-secret"),
            &v,
        )
        .unwrap();
        let c = data.claims.as_object().unwrap();
        assert_eq!(c["sub"], uuid);
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
        use sha2::Digest;
        let jti = hex::encode(Sha256::digest(uuid.as_bytes()));
        assert_eq!(c["jti"], jti.as_str());
        let head: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(head["sub"], uuid);
        assert_eq!(head["jti"], jti.as_str());
    }
}
