//! API keys (reference §2.1): `ptla_`/`ptlc_` + 11 random characters as the
//! identifier, a 32-character secret of which only a hash is stored.

use crate::db::Db;
use crate::error::ApiResult;
use crate::http::auth::{KEY_TYPE_ACCOUNT, KEY_TYPE_APPLICATION};

pub struct NewKey {
    pub id: i64,
    pub identifier: String,
    pub secret: String,
}

impl NewKey {
    /// The usable bearer string: identifier followed by the secret (48 characters).
    pub fn token(&self) -> String {
        format!("{}{}", self.identifier, self.secret)
    }
}

/// Creates a key. Application keys get full read/write on every resource, like a
/// key made in upstream's admin UI with every permission set.
pub async fn create(
    db: &Db,
    user_id: i64,
    key_type: i16,
    memo: &str,
    allowed_ips: &[String],
) -> ApiResult<NewKey> {
    let prefix = if key_type == KEY_TYPE_APPLICATION {
        "ptla_"
    } else {
        "ptlc_"
    };
    let identifier = format!("{prefix}{}", crate::crypto::random_string(11));
    let secret = crate::crypto::random_string(32);
    let acl: i16 = if key_type == KEY_TYPE_APPLICATION {
        3
    } else {
        0
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_keys (user_id, key_type, identifier, token_hash, allowed_ips, memo,
            r_servers, r_nodes, r_allocations, r_users, r_locations, r_nests, r_eggs, r_database_hosts, r_server_databases)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $7, $7, $7, $7, $7, $7) RETURNING id",
    )
    .bind(user_id)
    .bind(key_type)
    .bind(&identifier)
    .bind(crate::crypto::hash_token(&secret))
    .bind(serde_json::json!(allowed_ips))
    .bind(memo)
    .bind(acl)
    .fetch_one(db)
    .await?;
    let _ = KEY_TYPE_ACCOUNT;
    Ok(NewKey {
        id,
        identifier,
        secret,
    })
}
