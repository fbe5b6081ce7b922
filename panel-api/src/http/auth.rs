//! API-key authentication (reference §2), the legacy application ACL (§2.8),
//! `allowed_ips` (§2.6) and the order in which upstream's middleware answers
//! (§1.2): 401 → malformed JSON 400 → IP 403 → 429, then the handlers' 404 → 403.

use crate::crypto;
use crate::error::{ApiError, ApiResult};
use crate::http::input::{parse_body, Body};
use crate::ratelimit::{Decision, Limiter};
use crate::state::AppState;
use axum::body::Body as AxumBody;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::net::{IpAddr, SocketAddr};

pub const KEY_TYPE_ACCOUNT: i16 = 1;
pub const KEY_TYPE_APPLICATION: i16 = 2;

pub const READ: i16 = 1;
pub const WRITE: i16 = 2;

/// Application ACL resources (`r_*` columns).
#[derive(Clone, Copy, Debug)]
pub enum Acl {
    Servers,
    Nodes,
    Allocations,
    Users,
    Locations,
    Nests,
    Eggs,
    DatabaseHosts,
    ServerDatabases,
}

/// An API key joined with its user: what authentication reads (and caches,
/// `crate::authcache`).
#[derive(sqlx::FromRow)]
pub struct KeyRow {
    pub key_id: i64,
    pub key_type: i16,
    pub identifier: String,
    pub token_hash: Vec<u8>,
    pub allowed_ips: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub r_servers: i16,
    pub r_nodes: i16,
    pub r_allocations: i16,
    pub r_users: i16,
    pub r_locations: i16,
    pub r_nests: i16,
    pub r_eggs: i16,
    pub r_database_hosts: i16,
    pub r_server_databases: i16,
    pub user_id: i64,
    pub user_uuid: uuid::Uuid,
    pub username: String,
    pub email: String,
    pub root_admin: bool,
    pub use_totp: bool,
    /// The rest of what `GET /api/client/account` shows, read with the key so that
    /// route needs no statement of its own.
    pub name_first: String,
    pub name_last: String,
    pub language: String,
}

/// Names the key and its user, never the secret's hash or the user's details.
impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("key_id", &self.key_id)
            .field("key_type", &self.key_type)
            .field("identifier", &self.identifier)
            .field("user_id", &self.user_id)
            .field("root_admin", &self.root_admin)
            .finish_non_exhaustive()
    }
}

/// The authenticated user and key of a request (the key's fields through `Deref`).
#[derive(Clone, Debug)]
pub struct Auth {
    key: std::sync::Arc<KeyRow>,
    /// The caller's address (for activity logs).
    pub ip: Option<IpAddr>,
}

impl std::ops::Deref for Auth {
    type Target = KeyRow;
    fn deref(&self) -> &KeyRow {
        &self.key
    }
}

impl Auth {
    fn acl(&self, r: Acl) -> i16 {
        match r {
            Acl::Servers => self.r_servers,
            Acl::Nodes => self.r_nodes,
            Acl::Allocations => self.r_allocations,
            Acl::Users => self.r_users,
            Acl::Locations => self.r_locations,
            Acl::Nests => self.r_nests,
            Acl::Eggs => self.r_eggs,
            Acl::DatabaseHosts => self.r_database_hosts,
            Acl::ServerDatabases => self.r_server_databases,
        }
    }

    /// Upstream's AuthenticateApplicationUser + the request's ACL check. Called by
    /// handlers after the route's models are loaded, so an unknown id is a 404 even
    /// for a non-admin, as upstream.
    pub fn authorize(&self, r: Acl, bit: i16) -> ApiResult<()> {
        if !self.root_admin {
            return Err(ApiError::forbidden(crate::error::NO_API_PERMISSION));
        }
        // Only application keys carry the ACL; an admin's client key has full access.
        if self.key_type != KEY_TYPE_ACCOUNT && (self.acl(r) & bit) == 0 {
            return Err(ApiError::unauthorized_action());
        }
        Ok(())
    }

    /// Whether an include of resource `r` may be rendered (else `null_resource`).
    pub fn can_include(&self, r: Acl) -> bool {
        self.key_type == KEY_TYPE_ACCOUNT || (self.acl(r) & READ) != 0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Auth>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)
    }
}

/// The bearer string per §1.3: the last `Bearer ` (case-sensitive), cut at a comma.
pub fn bearer(value: &str) -> Option<&str> {
    let idx = value.rfind("Bearer ")?;
    let token = &value[idx + 7..];
    let token = token.split(',').next().unwrap_or("").trim();
    (!token.is_empty()).then_some(token)
}

const KEY_LOOKUP: &str = "SELECT k.id AS key_id, k.key_type, k.identifier, k.token_hash, k.allowed_ips, k.expires_at, k.last_used_at,
        k.r_servers, k.r_nodes, k.r_allocations, k.r_users, k.r_locations, k.r_nests, k.r_eggs,
        k.r_database_hosts, k.r_server_databases,
        u.id AS user_id, u.uuid AS user_uuid, u.username, u.email, u.root_admin, u.use_totp,
        u.name_first, u.name_last, u.language
 FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.identifier = $1";

async fn authenticate(st: &AppState, token: &str) -> ApiResult<Auth> {
    // Sanctum quirk: a `|` means `<digits>|…`; real keys never contain it.
    if token.contains('|') {
        return Err(ApiError::Unauthenticated);
    }
    if token.len() <= 16 || !token.is_char_boundary(16) {
        return Err(ApiError::Unauthenticated);
    }
    let (identifier, secret) = token.split_at(16);
    let entry = match st.auth_cache.get(identifier) {
        Some(e) => e,
        None => {
            let epoch = st.auth_cache.epoch();
            let row: Option<KeyRow> = sqlx::query_as(KEY_LOOKUP)
                .bind(identifier)
                .fetch_optional(&st.db)
                .await?;
            // Unknown identifiers are not remembered: they would let anyone fill
            // the cache.
            let Some(row) = row else {
                return Err(ApiError::Unauthenticated);
            };
            st.auth_cache.insert(epoch, row)
        }
    };
    let key = &entry.row;
    if !crypto::eq_ct(&key.token_hash, &crypto::hash_token(secret)) {
        return Err(ApiError::Unauthenticated);
    }
    let now = Utc::now();
    if key.expires_at.is_some_and(|e| e < now) {
        return Err(ApiError::Unauthenticated);
    }
    // `last_used_at` is kept to the second; writing it at most once a second per key
    // keeps a busy key from turning every read into a write.
    if entry.claim_last_used(now.timestamp_millis()) {
        sqlx::query("UPDATE api_keys SET last_used_at = $1, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(key.key_id)
            .execute(&st.db)
            .await?;
    }
    Ok(Auth {
        key: key.clone(),
        ip: None,
    })
}

/// Whether `ip` falls in one of the `allowed_ips` entries (IP, CIDR, `a-b` range,
/// `*` wildcards). An empty list allows everything.
pub fn ip_allowed(list: &serde_json::Value, ip: IpAddr) -> bool {
    let entries: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    entries.is_empty() || entries.iter().any(|e| range_contains(e, ip))
}

/// Parses an allowed-IP entry; `None` when it is not a valid address or range.
pub fn parse_range(entry: &str) -> Option<(IpAddr, IpAddr)> {
    let e = entry.trim();
    if let Some((a, b)) = e.split_once('-') {
        let a: IpAddr = a.trim().parse().ok()?;
        let b: IpAddr = b.trim().parse().ok()?;
        return (a.is_ipv4() == b.is_ipv4()).then_some((a, b));
    }
    if e.contains('*') {
        let parts: Vec<&str> = e.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        let lo: Vec<String> = parts
            .iter()
            .map(|p| if *p == "*" { "0".into() } else { p.to_string() })
            .collect();
        let hi: Vec<String> = parts
            .iter()
            .map(|p| {
                if *p == "*" {
                    "255".into()
                } else {
                    p.to_string()
                }
            })
            .collect();
        return Some((lo.join(".").parse().ok()?, hi.join(".").parse().ok()?));
    }
    if e.contains('/') {
        let net: ipnet::IpNet = e.parse().ok()?;
        return Some((net.network(), net.broadcast()));
    }
    let ip: IpAddr = e.parse().ok()?;
    Some((ip, ip))
}

fn range_contains(entry: &str, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match parse_range(entry) {
        Some((lo, hi)) => lo.is_ipv4() == ip.is_ipv4() && lo <= ip && ip <= hi,
        None => false,
    }
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn add_rate_headers(resp: &mut Response, limit: u32, remaining: u32) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
}

/// Which API group a request is in (they differ in limits and in key rules).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Application,
    Client,
}

async fn guard(st: AppState, group: Group, req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_string);
    let Some(token) = token else {
        return ApiError::Unauthenticated.into_response();
    };
    let auth = match authenticate(&st, &token).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    // Malformed JSON is refused before anything else looks at the request.
    let (mut parts, body) = req.into_parts();
    let too_large = || {
        ApiError::http(StatusCode::PAYLOAD_TOO_LARGE, "PostTooLargeException", "").into_response()
    };
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > st.cfg.max_body_bytes)
    {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, st.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Raw-body routes (file writes) keep their bytes; everything else is JSON input.
    match parse_body(ct.as_deref(), &bytes) {
        Ok(v) => {
            parts.extensions.insert(Body(v));
        }
        Err(e) => return e.into_response(),
    }
    let full_path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(parts.uri.path(), |u| u.0.path());
    if two_factor_missing(&st, &auth, group, parts.method.as_str(), full_path) {
        return ApiError::bad_request_code(
            "TwoFactorAuthRequiredException",
            "Two-factor authentication is required on this account in order to access this endpoint.",
        )
        .into_response();
    }
    if !ip_allowed(&auth.allowed_ips, ip) {
        let mut e = crate::activity::Event::new("auth:ip-blocked");
        e.actor_user = Some(auth.user_id);
        e.api_key_id = Some(auth.key_id);
        let ip_s = ip.to_string();
        e.ip = Some(&ip_s);
        e.properties = serde_json::json!({"identifier": auth.identifier});
        let subjects = [crate::activity::Subject {
            kind: "user",
            id: auth.user_id,
        }];
        e.subjects = &subjects;
        let _ = crate::activity::log(&st.db, &e).await;
        return ApiError::forbidden(format!(
            "This IP address ({ip}) does not have permission to access the API using these credentials."
        ))
        .into_response();
    }

    let limiter: &Limiter = match group {
        Group::Application => &st.application_limiter,
        Group::Client => &st.client_limiter,
    };
    let (limit, remaining) = match limiter.check(auth.user_id) {
        Decision::Allowed { limit, remaining } => (limit, remaining),
        Decision::Limited {
            limit,
            retry_after_secs,
        } => {
            let reset = Utc::now().timestamp() + retry_after_secs as i64;
            let mut resp = ApiError::Http {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "ThrottleRequestsException",
                detail: "Too Many Attempts.".into(),
                headers: vec![
                    (header::RETRY_AFTER, retry_after_secs.to_string()),
                    (
                        header::HeaderName::from_static("x-ratelimit-reset"),
                        reset.to_string(),
                    ),
                ],
            }
            .into_response();
            add_rate_headers(&mut resp, limit, 0);
            return resp;
        }
    };
    // Server routes resolve `{server}` first (an unknown server is a 404 even for an
    // application key); `http::client::load` refuses the key after that.
    if group == Group::Client
        && auth.key_type == KEY_TYPE_APPLICATION
        && !full_path.starts_with("/api/client/servers/")
    {
        let mut resp = application_key_refused().into_response();
        add_rate_headers(&mut resp, limit, remaining);
        return resp;
    }
    let mut auth = auth;
    auth.ip = Some(ip);
    parts.extensions.insert(auth);
    let req = Request::from_parts(parts, AxumBody::from(bytes));
    let mut resp = next.run(req).await;
    add_rate_headers(&mut resp, limit, remaining);
    resp
}

pub fn application_key_refused() -> ApiError {
    ApiError::forbidden(
        "You are attempting to use an application API key on an endpoint that requires a client API key.",
    )
}

/// `APP_2FA_REQUIRED` (reference §2.9): whether this user must enable TOTP before
/// using this route. The account and two-factor routes stay open so they can.
fn two_factor_missing(st: &AppState, auth: &Auth, group: Group, method: &str, path: &str) -> bool {
    let applies = match st.cfg.two_factor_required {
        1 => auth.root_admin,
        2 => true,
        _ => false,
    };
    if !applies || auth.use_totp {
        return false;
    }
    let path = path.trim_end_matches('/');
    let exempt = group == Group::Client
        && matches!(
            (method, path),
            ("GET", "/api/client/account")
                | ("GET", "/api/client/account/two-factor")
                | ("POST", "/api/client/account/two-factor")
                | ("POST", "/api/client/account/two-factor/disable")
        );
    !exempt
}

pub async fn application_guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    guard(st, Group::Application, req, next).await
}

pub async fn client_guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    guard(st, Group::Client, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bearer_is_case_sensitive_last_and_cut_at_comma() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), None);
        assert_eq!(bearer("Bearer one, Bearer two,three"), Some("two"));
    }

    #[test]
    fn allowed_ips_accept_ips_cidrs_ranges_and_wildcards() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(ip_allowed(&json!([]), ip));
        assert!(ip_allowed(&json!(["10.0.0.0/8"]), ip));
        assert!(ip_allowed(&json!(["10.1.2.1-10.1.2.9"]), ip));
        assert!(ip_allowed(&json!(["10.1.*.*"]), ip));
        assert!(!ip_allowed(&json!(["192.168.0.0/16", "10.1.2.4"]), ip));
        assert!(ip_allowed(
            &json!(["10.1.2.3"]),
            "::ffff:10.1.2.3".parse().unwrap()
        ));
        assert!(parse_range("nonsense").is_none());
    }
}
