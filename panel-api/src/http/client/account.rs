//! The caller's own account (reference §7.3): details, email and password changes,
//! TOTP two-factor with recovery tokens, client API keys, SSH keys and activity.

use super::{atom, atom_opt};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Auth, KEY_TYPE_ACCOUNT};
use crate::http::fractal;
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(index))
        .route(
            "/account/two-factor",
            get(two_factor_setup).post(two_factor_enable),
        )
        .route("/account/two-factor/disable", post(two_factor_disable))
        .route("/account/email", put(update_email))
        .route("/account/password", put(update_password))
        .route("/account/activity", get(activity))
        .route("/account/api-keys", get(api_keys).post(api_key_store))
        .route("/account/api-keys/{identifier}", delete(api_key_delete))
        .route("/account/ssh-keys", get(ssh_keys).post(ssh_key_store))
        .route("/account/ssh-keys/remove", post(ssh_key_delete))
}

async fn log(st: &AppState, auth: &Auth, event: &str, properties: Value) {
    let subjects = [crate::activity::Subject {
        kind: "user",
        id: auth.user_id,
    }];
    super::log_as(st, auth, event, properties, &subjects).await
}

#[derive(sqlx::FromRow)]
struct Me {
    id: i64,
    email: String,
    password: String,
    use_totp: bool,
    totp_secret: Option<String>,
}

async fn me(st: &AppState, auth: &Auth) -> ApiResult<Me> {
    Ok(
        sqlx::query_as(
            "SELECT id, email, password, use_totp, totp_secret FROM users WHERE id = $1",
        )
        .bind(auth.user_id)
        .fetch_one(&st.db)
        .await?,
    )
}

#[utoipa::path(get, path = "/api/client/account", tag = "client account",
    responses((status = 200, description = "`user` (account)")), security(("api_key" = [])))]
pub async fn index(auth: Auth) -> ApiResult<Response> {
    // The user row was read with the key (`http::auth`), in the same statement.
    #[derive(serde::Serialize)]
    struct Account<'a> {
        id: i64,
        admin: bool,
        username: &'a str,
        email: &'a str,
        first_name: &'a str,
        last_name: &'a str,
        language: &'a str,
    }
    Ok(fractal::ok(&fractal::TypedItem {
        object: "user",
        attributes: &Account {
            id: auth.user_id,
            admin: auth.root_admin,
            username: &auth.username,
            email: &auth.email,
            first_name: &auth.name_first,
            last_name: &auth.name_last,
            language: &auth.language,
        },
    }))
}

/// Upstream's issuer encoding: whitespace removed, form-encoded, then raw-encoded.
fn issuer(app_name: &str) -> String {
    let compact: String = app_name.chars().filter(|c| !c.is_whitespace()).collect();
    let form: String = url::form_urlencoded::byte_serialize(compact.as_bytes()).collect();
    raw_encode(&form)
}

fn raw_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RAW).to_string()
}

const RAW: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[utoipa::path(get, path = "/api/client/account/two-factor", tag = "client account",
    responses((status = 200, description = "`{\"data\":{\"image_url_data\",\"secret\"}}`"), (status = 400, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn two_factor_setup(State(st): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let u = me(&st, &auth).await?;
    if u.use_totp {
        return Err(ApiError::bad_request(
            "Two-factor authentication is already enabled on this account.",
        ));
    }
    let secret = crate::totp::generate_secret();
    sqlx::query("UPDATE users SET totp_secret = $2, updated_at = now() WHERE id = $1")
        .bind(u.id)
        .bind(st.enc.encrypt(&secret))
        .execute(&st.db)
        .await?;
    let iss = issuer(&st.cfg.app_name);
    let url = format!(
        "otpauth://totp/{iss}:{}?secret={}&issuer={iss}",
        raw_encode(&u.email),
        raw_encode(&secret)
    );
    Ok(fractal::ok(
        &json!({"data": {"image_url_data": url, "secret": secret}}),
    ))
}

fn bad_password() -> ApiError {
    ApiError::bad_request("The password provided was not valid.")
}

#[utoipa::path(post, path = "/api/client/account/two-factor", tag = "client account", request_body = Object,
    responses((status = 200, description = "`recovery_tokens`"), (status = 400, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn two_factor_enable(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let mut v = Validator::new(&body.0);
    v.check("code", &[Rule::Required, Rule::String, Rule::Size(6.0)]);
    v.check("password", &[Rule::Required, Rule::String]);
    v.finish()?;
    let u = me(&st, &auth).await?;
    let password = body.get("password").and_then(|p| p.as_str()).unwrap_or("");
    if !crate::crypto::verify_password(password, &u.password) {
        return Err(bad_password());
    }
    let code = body.get("code").and_then(|p| p.as_str()).unwrap_or("");
    let secret = match &u.totp_secret {
        Some(s) => st.enc.decrypt(s)?,
        None => String::new(),
    };
    if secret.is_empty()
        || !crate::totp::verify(
            &secret,
            code,
            chrono::Utc::now().timestamp(),
            st.cfg.two_factor_window,
        )
    {
        return Err(ApiError::display(
            "TwoFactorAuthenticationTokenInvalid",
            "The token provided is not valid.",
        ));
    }
    let tokens: Vec<String> = (0..10).map(|_| crate::crypto::random_string(10)).collect();
    let mut tx = st.db.begin().await?;
    sqlx::query("DELETE FROM recovery_tokens WHERE user_id = $1")
        .bind(u.id)
        .execute(&mut *tx)
        .await?;
    for t in &tokens {
        sqlx::query("INSERT INTO recovery_tokens (user_id, token) VALUES ($1, $2)")
            .bind(u.id)
            .bind(crate::crypto::hash_password(t).map_err(ApiError::internal)?)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE users SET use_totp = TRUE, totp_authenticated_at = now(), updated_at = now() WHERE id = $1")
        .bind(u.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    st.auth_cache.forget_user(u.id);
    log(&st, &auth, "user:two-factor.create", json!({})).await;
    Ok(fractal::ok(&fractal::item(
        "recovery_tokens",
        json!({"tokens": tokens}),
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/account/two-factor/disable", tag = "client account", request_body = Object,
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn two_factor_disable(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let u = me(&st, &auth).await?;
    let password = body.get("password").and_then(|p| p.as_str()).unwrap_or("");
    if password.is_empty() || !crate::crypto::verify_password(password, &u.password) {
        return Err(bad_password());
    }
    sqlx::query("UPDATE users SET use_totp = FALSE, totp_authenticated_at = now(), updated_at = now() WHERE id = $1")
        .bind(u.id)
        .execute(&st.db)
        .await?;
    st.auth_cache.forget_user(u.id);
    log(&st, &auth, "user:two-factor.delete", json!({})).await;
    Ok(fractal::no_content())
}

fn invalid_password() -> ApiError {
    ApiError::display(
        "InvalidPasswordProvidedException",
        "The password provided was invalid for this account.",
    )
}

#[utoipa::path(put, path = "/api/client/account/email", tag = "client account", request_body = Object,
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update_email(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let u = me(&st, &auth).await?;
    // The password is checked before the fields, as upstream's request does.
    let password = body.get("password").and_then(|p| p.as_str()).unwrap_or("");
    if !crate::crypto::verify_password(password, &u.password) {
        return Err(invalid_password());
    }
    let mut v = Validator::new(&body.0);
    v.check(
        "email",
        &[Rule::Required, Rule::Email, Rule::Between(1.0, 191.0)],
    );
    v.finish()?;
    let email = body
        .get("email")
        .and_then(|e| e.as_str())
        .unwrap_or_default()
        .to_string();
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2)",
    )
    .bind(&email)
    .bind(u.id)
    .fetch_one(&st.db)
    .await?;
    if taken {
        return Err(ApiError::field(
            "email",
            "unique",
            "The email has already been taken.",
        ));
    }
    sqlx::query("UPDATE users SET email = $2, updated_at = now() WHERE id = $1")
        .bind(u.id)
        .bind(&email)
        .execute(&st.db)
        .await
        .map_err(|e| {
            super::super::application::unique_violation(
                &e,
                &[("users_email_unique", "email", "email")],
            )
            .unwrap_or_else(|| e.into())
        })?;
    st.auth_cache.forget_user(u.id);
    if u.email != email {
        log(
            &st,
            &auth,
            "user:account.email-changed",
            json!({"old": u.email, "new": email}),
        )
        .await;
    }
    Ok(fractal::no_content())
}

#[utoipa::path(put, path = "/api/client/account/password", tag = "client account", request_body = Object,
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update_password(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let u = me(&st, &auth).await?;
    let current = body
        .get("current_password")
        .and_then(|p| p.as_str())
        .unwrap_or("");
    if !crate::crypto::verify_password(current, &u.password) {
        return Err(invalid_password());
    }
    let mut v = Validator::new(&body.0);
    if v.check("password", &[Rule::Required, Rule::String, Rule::Min(8.0)])
        && body.get("password") != body.get("password_confirmation")
    {
        v.add(
            "password",
            "confirmed",
            "The password confirmation does not match.",
        );
    }
    v.finish()?;
    let new = body.get("password").and_then(|p| p.as_str()).unwrap_or("");
    let hash = crate::crypto::hash_password(new).map_err(ApiError::internal)?;
    sqlx::query("UPDATE users SET password = $2, updated_at = now() WHERE id = $1")
        .bind(u.id)
        .bind(hash)
        .execute(&st.db)
        .await?;
    log(&st, &auth, "user:account.password-changed", json!({})).await;
    Ok(fractal::no_content())
}

#[utoipa::path(get, path = "/api/client/account/activity", tag = "client account",
    params(("filter[event]" = Option<String>, Query), ("sort" = Option<String>, Query), ("include" = Option<String>, Query, description = "actor")),
    responses((status = 200, description = "paginated `activity_log`")), security(("api_key" = [])))]
pub async fn activity(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult<Response> {
    super::servers::activity_page(
        &st,
        &auth,
        &p,
        "user",
        auth.user_id,
        None,
        &format!("{}/api/client/account/activity", st.cfg.app_url),
    )
    .await
}

// ---- API keys ---------------------------------------------------------------------

type KeyRow = (
    String,
    String,
    Value,
    Option<chrono::DateTime<chrono::Utc>>,
    chrono::DateTime<chrono::Utc>,
);

fn key_attrs(k: &KeyRow) -> Value {
    json!({"identifier": k.0, "description": k.1, "allowed_ips": k.2, "last_used_at": atom_opt(&k.3), "created_at": atom(&k.4)})
}

#[utoipa::path(get, path = "/api/client/account/api-keys", tag = "client account",
    responses((status = 200, description = "list of `api_key`")), security(("api_key" = [])))]
pub async fn api_keys(State(st): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT identifier, memo, allowed_ips, last_used_at, created_at FROM api_keys WHERE user_id = $1 AND key_type = $2 ORDER BY id",
    )
    .bind(auth.user_id)
    .bind(KEY_TYPE_ACCOUNT)
    .fetch_all(&st.db)
    .await?;
    Ok(fractal::ok(&fractal::list(
        "api_key",
        rows.iter().map(key_attrs),
    )))
}

#[utoipa::path(post, path = "/api/client/account/api-keys", tag = "client account", request_body = Object,
    responses((status = 200, description = "`api_key` with meta.secret_token"), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn api_key_store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let mut v = Validator::new(&body.0);
    v.check(
        "description",
        &[
            Rule::Required,
            Rule::Nullable,
            Rule::String,
            Rule::Max(500.0),
        ],
    );
    if v.check(
        "allowed_ips",
        &[Rule::Nullable, Rule::Array, Rule::Max(50.0)],
    ) {
        if let Some(list) = body.get("allowed_ips").and_then(|a| a.as_array()) {
            for (i, ip) in list.iter().enumerate() {
                let field = format!("allowed_ips.{i}");
                match ip.as_str() {
                    Some(s) if crate::http::auth::parse_range(s).is_some() => {}
                    Some(s) => v.add(
                        &field,
                        "",
                        format!("\"{s}\" is not a valid IP address or CIDR range."),
                    ),
                    None => v.add(&field, "string", format!("The {field} must be a string.")),
                }
            }
        }
    }
    v.finish()?;
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND key_type = $2")
            .bind(auth.user_id)
            .bind(KEY_TYPE_ACCOUNT)
            .fetch_one(&st.db)
            .await?;
    if count >= 25 {
        return Err(ApiError::display(
            "DisplayException",
            "You have reached the account limit for number of API keys.",
        ));
    }
    let memo = body
        .get("description")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    let ips: Vec<String> = body
        .get("allowed_ips")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let key = crate::apikeys::create(&st.db, auth.user_id, KEY_TYPE_ACCOUNT, &memo, &ips).await?;
    let row: KeyRow = sqlx::query_as(
        "SELECT identifier, memo, allowed_ips, last_used_at, created_at FROM api_keys WHERE id = $1",
    )
    .bind(key.id)
    .fetch_one(&st.db)
    .await?;
    log(
        &st,
        &auth,
        "user:api-key.create",
        json!({"identifier": key.identifier}),
    )
    .await;
    Ok(fractal::ok(&fractal::item(
        "api_key",
        key_attrs(&row),
        Some(json!({"secret_token": key.secret})),
    )))
}

#[utoipa::path(delete, path = "/api/client/account/api-keys/{identifier}", tag = "client account",
    params(("identifier" = String, Path)), responses((status = 204), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn api_key_delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(identifier): Path<String>,
) -> ApiResult<Response> {
    let res = sqlx::query(
        "DELETE FROM api_keys WHERE user_id = $1 AND key_type = $2 AND identifier = $3",
    )
    .bind(auth.user_id)
    .bind(KEY_TYPE_ACCOUNT)
    .bind(&identifier)
    .execute(&st.db)
    .await?;
    st.auth_cache.forget_key(&identifier);
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found());
    }
    log(
        &st,
        &auth,
        "user:api-key.delete",
        json!({"identifier": identifier}),
    )
    .await;
    Ok(fractal::no_content())
}

// ---- SSH keys ---------------------------------------------------------------------

type SshRow = (String, String, String, chrono::DateTime<chrono::Utc>);

fn ssh_attrs(k: &SshRow) -> Value {
    json!({"name": k.0, "fingerprint": k.1, "public_key": k.2, "created_at": atom(&k.3)})
}

#[utoipa::path(get, path = "/api/client/account/ssh-keys", tag = "client account",
    responses((status = 200, description = "list of `ssh_key`")), security(("api_key" = [])))]
pub async fn ssh_keys(State(st): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let rows: Vec<SshRow> = sqlx::query_as(
        "SELECT name, fingerprint, public_key, created_at FROM user_ssh_keys WHERE user_id = $1 AND deleted_at IS NULL ORDER BY id",
    )
    .bind(auth.user_id)
    .fetch_all(&st.db)
    .await?;
    Ok(fractal::ok(&fractal::list(
        "ssh_key",
        rows.iter().map(ssh_attrs),
    )))
}

#[utoipa::path(post, path = "/api/client/account/ssh-keys", tag = "client account", request_body = Object,
    responses((status = 200, description = "`ssh_key`"), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn ssh_key_store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let mut v = Validator::new(&body.0);
    v.check("name", &[Rule::Required, Rule::String, Rule::Max(191.0)]);
    let mut parsed = None;
    if v.check("public_key", &[Rule::Required, Rule::String]) {
        let raw = body
            .get("public_key")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        match crate::ssh::parse(raw) {
            Ok(k) => {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM user_ssh_keys WHERE user_id = $1 AND fingerprint = $2 AND deleted_at IS NULL)",
                )
                .bind(auth.user_id)
                .bind(&k.fingerprint)
                .fetch_one(&st.db)
                .await?;
                if exists {
                    v.add(
                        "public_key",
                        "",
                        "The public key provided already exists on your account.",
                    );
                } else {
                    parsed = Some(k);
                }
            }
            Err(e) => v.add("public_key", "", e.message()),
        }
    }
    v.finish()?;
    let k = parsed.ok_or_else(|| ApiError::internal(anyhow::anyhow!("parsed key missing")))?;
    let name = body
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let row: SshRow = sqlx::query_as(
        "INSERT INTO user_ssh_keys (user_id, name, fingerprint, public_key) VALUES ($1, $2, $3, $4)
         RETURNING name, fingerprint, public_key, created_at",
    )
    .bind(auth.user_id)
    .bind(&name)
    .bind(&k.fingerprint)
    .bind(&k.pem)
    .fetch_one(&st.db)
    .await?;
    log(
        &st,
        &auth,
        "user:ssh-key.create",
        json!({"fingerprint": k.fingerprint}),
    )
    .await;
    Ok(fractal::ok(&fractal::item(
        "ssh_key",
        ssh_attrs(&row),
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/account/ssh-keys/remove", tag = "client account", request_body = Object,
    responses((status = 204), (status = 422, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn ssh_key_delete(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let mut v = Validator::new(&body.0);
    v.check("fingerprint", &[Rule::Required, Rule::String]);
    v.finish()?;
    let fp = body
        .get("fingerprint")
        .and_then(|f| f.as_str())
        .unwrap_or("")
        .to_string();
    let res = sqlx::query(
        "UPDATE user_ssh_keys SET deleted_at = now() WHERE user_id = $1 AND fingerprint = $2 AND deleted_at IS NULL",
    )
    .bind(auth.user_id)
    .bind(&fp)
    .execute(&st.db)
    .await?;
    if res.rows_affected() > 0 {
        log(
            &st,
            &auth,
            "user:ssh-key.delete",
            json!({"fingerprint": fp}),
        )
        .await;
    }
    Ok(fractal::no_content())
}
