//! The file manager on the client API (reference §7.4 "Files"): every route checks
//! the subuser permission, validates as upstream, and is proxied to the node's
//! daemon (which jails every path to the server's directory); signed upload and
//! download URLs are JWTs minted with the node's token.

use super::{active, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Auth;
use crate::http::fractal;
use crate::http::input::{Body, Params};
use crate::ratelimit::Decision;
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/files/list", get(list))
        .route("/servers/{server}/files/contents", get(contents))
        .route("/servers/{server}/files/download", get(download))
        .route("/servers/{server}/files/rename", put(rename))
        .route("/servers/{server}/files/copy", post(copy))
        .route("/servers/{server}/files/write", post(write))
        .route("/servers/{server}/files/compress", post(compress))
        .route("/servers/{server}/files/decompress", post(decompress))
        .route("/servers/{server}/files/delete", post(delete))
        .route("/servers/{server}/files/create-folder", post(create_folder))
        .route("/servers/{server}/files/chmod", post(chmod))
        .route("/servers/{server}/files/pull", post(pull))
        .route("/servers/{server}/files/upload", get(upload))
}

/// Wings' RFC 3339 timestamps re-emitted as `Y-m-d\TH:i:sP`, keeping the offset.
fn reformat(ts: Option<&Value>) -> Value {
    let Some(s) = ts.and_then(|v| v.as_str()) else {
        return Value::Null;
    };
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()),
        Err(_) => Value::String(s.to_string()),
    }
}

/// The `file_object` transformer over a Wings stat object.
pub fn file_object(stat: &Value) -> Value {
    json!({
        "name": stat.get("name").and_then(|v| v.as_str()).unwrap_or(""),
        "mode": stat.get("mode").and_then(|v| v.as_str()).unwrap_or(""),
        "mode_bits": stat.get("mode_bits").and_then(|v| v.as_str()).unwrap_or(""),
        "size": stat.get("size").and_then(|v| v.as_i64()).unwrap_or(0),
        "is_file": stat.get("file").and_then(|v| v.as_bool()).unwrap_or(true),
        "is_symlink": stat.get("symlink").and_then(|v| v.as_bool()).unwrap_or(false),
        "mimetype": stat.get("mime").and_then(|v| v.as_str()).unwrap_or("application/octet-stream"),
        "created_at": reformat(stat.get("created")),
        "modified_at": reformat(stat.get("modified")),
    })
}

fn path(ctx: &Ctx, rest: &str) -> String {
    format!("/api/servers/{}/files/{rest}", ctx.server.uuid)
}

async fn call_json(
    st: &AppState,
    ctx: &Ctx,
    method: reqwest::Method,
    rest: &str,
    body: &Value,
    timeout: Option<Duration>,
) -> ApiResult<reqwest::Response> {
    let mut rb = st
        .daemon
        .builder(&ctx.conn(st)?, method, &path(ctx, rest))
        .json(body);
    if let Some(t) = timeout {
        rb = rb.timeout(t);
    }
    Ok(st.daemon.send(rb).await?)
}

fn required_query(p: &Params, key: &str) -> ApiResult<String> {
    match p.get(key) {
        Some(v) => Ok(v.to_string()),
        None => Err(ApiError::field(
            key,
            "required",
            format!("The {key} field is required."),
        )),
    }
}

fn str_field(body: &Body, key: &str) -> Option<String> {
    body.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

#[utoipa::path(get, path = "/api/client/servers/{server}/files/list", tag = "client files",
    params(("server" = String, Path), ("directory" = Option<String>, Query)), responses((status = 200, description = "list of `file_object`")), security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.read")?;
    let dir = p.get("directory").unwrap_or("/").to_string();
    let rb = st
        .daemon
        .builder(
            &ctx.conn(&st)?,
            reqwest::Method::GET,
            &path(&ctx, "list-directory"),
        )
        .query(&[("directory", dir.as_str())]);
    let resp = st.daemon.send(rb).await?;
    let items: Value = resp
        .json()
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("daemon listing: {e}")))?;
    let objects: Vec<Value> = items
        .as_array()
        .map(|a| a.iter().map(file_object).collect())
        .unwrap_or_default();
    Ok(fractal::ok(&fractal::list("file_object", objects)))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/files/contents", tag = "client files",
    params(("server" = String, Path), ("file" = String, Query)),
    responses((status = 200, description = "the file's bytes"), (status = 400, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn contents(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.read-content")?;
    let file = required_query(&p, "file")?;
    let rb = st
        .daemon
        .builder(
            &ctx.conn(&st)?,
            reqwest::Method::GET,
            &path(&ctx, "contents"),
        )
        .query(&[("file", file.as_str())]);
    let resp = st.daemon.send(rb).await?;
    let max = st.cfg.files_max_edit_size;
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(ApiError::display(
            "FileSizeTooLargeException",
            "The file you are attempting to open is too large to view in the file editor.",
        ));
    }
    // Never buffer more than the editor limit, whatever the daemon claims.
    let mut body = Vec::new();
    let mut stream = resp;
    while let Some(chunk) = stream
        .chunk()
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("daemon contents: {e}")))?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(ApiError::display(
                "FileSizeTooLargeException",
                "The file you are attempting to open is too large to view in the file editor.",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    ctx.log(&st, "server:file.read", json!({"file": file}))
        .await;
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/client/servers/{server}/files/download", tag = "client files",
    params(("server" = String, Path), ("file" = String, Query)), responses((status = 200, description = "`signed_url`")), security(("api_key" = [])))]
pub async fn download(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.read-content")?;
    let file = required_query(&p, "file")?;
    let decoded = percent_encoding::percent_decode_str(&file)
        .decode_utf8_lossy()
        .to_string();
    let mut claims = Map::new();
    claims.insert("file_path".into(), Value::String(decoded));
    claims.insert("server_uuid".into(), ctx.server.uuid.to_string().into());
    let item = ctx.signed_url(&st, "/download/file", claims)?;
    ctx.log(&st, "server:file.download", json!({"file": file}))
        .await;
    Ok(fractal::ok(&item))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/files/upload", tag = "client files",
    params(("server" = String, Path)), responses((status = 200, description = "`signed_url`")), security(("api_key" = [])))]
pub async fn upload(
    State(st): State<AppState>,
    auth: Auth,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.create")?;
    let mut claims = Map::new();
    claims.insert("server_uuid".into(), ctx.server.uuid.to_string().into());
    Ok(fractal::ok(&ctx.signed_url(&st, "/upload/file", claims)?))
}

/// `root`: `required|nullable|string` (required wins: null and "" are refused).
fn root_required(v: &mut Validator<'_>) {
    v.check("root", &[Rule::Required, Rule::Nullable, Rule::String]);
}

#[utoipa::path(put, path = "/api/client/servers/{server}/files/rename", tag = "client files",
    params(("server" = String, Path)), request_body = Object, responses((status = 204)), security(("api_key" = [])))]
pub async fn rename(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.update")?;
    let mut v = Validator::new(&body.0);
    root_required(&mut v);
    if v.check("files", &[Rule::Required, Rule::Array]) {
        let n = body
            .get("files")
            .and_then(|f| f.as_array())
            .map_or(0, Vec::len);
        for i in 0..n {
            v.check(&format!("files.{i}.from"), &[Rule::Required, Rule::String]);
            v.check(&format!("files.{i}.to"), &[Rule::Required, Rule::String]);
        }
    }
    v.finish()?;
    let root = str_field(&body, "root").unwrap_or_else(|| "/".into());
    let files = body.get("files").cloned().unwrap_or(json!([]));
    call_json(
        &st,
        &ctx,
        reqwest::Method::PUT,
        "rename",
        &json!({"root": root, "files": files}),
        None,
    )
    .await?;
    ctx.log(
        &st,
        "server:file.rename",
        json!({"directory": root, "files": files}),
    )
    .await;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/copy", tag = "client files",
    params(("server" = String, Path)), request_body = Object, responses((status = 204)), security(("api_key" = [])))]
pub async fn copy(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.create")?;
    let mut v = Validator::new(&body.0);
    v.check("location", &[Rule::Required, Rule::String]);
    v.finish()?;
    let location = str_field(&body, "location").unwrap_or_default();
    call_json(
        &st,
        &ctx,
        reqwest::Method::POST,
        "copy",
        &json!({"location": location}),
        None,
    )
    .await?;
    ctx.log(&st, "server:file.copy", json!({"file": location}))
        .await;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/write", tag = "client files",
    params(("server" = String, Path), ("file" = String, Query)), request_body(content = String, content_type = "text/plain"),
    responses((status = 204)), security(("api_key" = [])))]
pub async fn write(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(server): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.create")?;
    let file = required_query(&p, "file")?;
    let rb = st
        .daemon
        .builder(&ctx.conn(&st)?, reqwest::Method::POST, &path(&ctx, "write"))
        .query(&[("file", file.as_str())])
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes);
    st.daemon.send(rb).await?;
    ctx.log(&st, "server:file.write", json!({"file": file}))
        .await;
    Ok(fractal::no_content())
}

fn files_array(v: &mut Validator<'_>, body: &Body) {
    if v.check("files", &[Rule::Required, Rule::Array]) {
        let n = body
            .get("files")
            .and_then(|f| f.as_array())
            .map_or(0, Vec::len);
        for i in 0..n {
            v.check(&format!("files.{i}"), &[Rule::String]);
        }
    }
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/compress", tag = "client files",
    params(("server" = String, Path)), request_body = Object, responses((status = 200, description = "`file_object`")), security(("api_key" = [])))]
pub async fn compress(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.archive")?;
    let mut v = Validator::new(&body.0);
    v.check("root", &[Rule::Nullable, Rule::String]);
    files_array(&mut v, &body);
    v.finish()?;
    let root = str_field(&body, "root").unwrap_or_else(|| "/".into());
    let files = body.get("files").cloned().unwrap_or(json!([]));
    let resp = call_json(
        &st,
        &ctx,
        reqwest::Method::POST,
        "compress",
        &json!({"root": root, "files": files}),
        Some(Duration::from_secs(900)),
    )
    .await?;
    let stat: Value = resp
        .json()
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("daemon compress: {e}")))?;
    ctx.log(
        &st,
        "server:file.compress",
        json!({"directory": root, "files": files}),
    )
    .await;
    Ok(fractal::ok(&fractal::item(
        "file_object",
        file_object(&stat),
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/decompress", tag = "client files",
    params(("server" = String, Path)), request_body = Object, responses((status = 204)), security(("api_key" = [])))]
pub async fn decompress(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.create")?;
    let mut v = Validator::new(&body.0);
    v.check("root", &[Rule::Nullable, Rule::String]);
    v.check("file", &[Rule::Required, Rule::String]);
    v.finish()?;
    let root = str_field(&body, "root").unwrap_or_else(|| "/".into());
    let file = str_field(&body, "file").unwrap_or_default();
    call_json(
        &st,
        &ctx,
        reqwest::Method::POST,
        "decompress",
        &json!({"root": root, "file": file}),
        Some(Duration::from_secs(900)),
    )
    .await?;
    ctx.log(
        &st,
        "server:file.decompress",
        json!({"directory": root, "files": file}),
    )
    .await;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/delete", tag = "client files",
    params(("server" = String, Path)), request_body = Object, responses((status = 204)), security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.delete")?;
    let mut v = Validator::new(&body.0);
    root_required(&mut v);
    files_array(&mut v, &body);
    v.finish()?;
    let root = str_field(&body, "root").unwrap_or_else(|| "/".into());
    let files = body.get("files").cloned().unwrap_or(json!([]));
    call_json(
        &st,
        &ctx,
        reqwest::Method::POST,
        "delete",
        &json!({"root": root, "files": files}),
        None,
    )
    .await?;
    ctx.log(
        &st,
        "server:file.delete",
        json!({"directory": root, "files": files}),
    )
    .await;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/create-folder", tag = "client files",
    params(("server" = String, Path)), request_body = Object, responses((status = 204)), security(("api_key" = [])))]
pub async fn create_folder(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.create")?;
    let mut v = Validator::new(&body.0);
    v.check("root", &[Rule::Nullable, Rule::String]);
    v.check("name", &[Rule::Required, Rule::String]);
    v.finish()?;
    let root = str_field(&body, "root").unwrap_or_else(|| "/".into());
    let name = str_field(&body, "name").unwrap_or_default();
    call_json(
        &st,
        &ctx,
        reqwest::Method::POST,
        "create-directory",
        &json!({"name": name, "path": root}),
        None,
    )
    .await?;
    ctx.log(
        &st,
        "server:file.create-directory",
        json!({"directory": root, "name": name}),
    )
    .await;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/chmod", tag = "client files",
    params(("server" = String, Path)), request_body = Object, responses((status = 204)), security(("api_key" = [])))]
pub async fn chmod(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.update")?;
    let mut v = Validator::new(&body.0);
    root_required(&mut v);
    if v.check("files", &[Rule::Required, Rule::Array]) {
        let n = body
            .get("files")
            .and_then(|f| f.as_array())
            .map_or(0, Vec::len);
        for i in 0..n {
            v.check(&format!("files.{i}.file"), &[Rule::Required, Rule::String]);
            v.check(&format!("files.{i}.mode"), &[Rule::Required, Rule::Numeric]);
        }
    }
    v.finish()?;
    let root = str_field(&body, "root").unwrap_or_else(|| "/".into());
    // Upstream forwards a numeric `mode` unchanged and Wings refuses it (it wants a
    // string of octal digits); we send the digits as a string, which every client's
    // intent matches.
    let files: Vec<Value> = body
        .get("files")
        .and_then(|f| f.as_array())
        .map(|a| {
            a.iter()
                .map(|f| {
                    let mode = match &f["mode"] {
                        Value::Number(n) => n.to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({"file": f["file"], "mode": mode})
                })
                .collect()
        })
        .unwrap_or_default();
    call_json(
        &st,
        &ctx,
        reqwest::Method::POST,
        "chmod",
        &json!({"root": root, "files": files}),
        None,
    )
    .await?;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/client/servers/{server}/files/pull", tag = "client files",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 204), (status = 429, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn pull(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    if let Decision::Limited {
        retry_after_secs, ..
    } = st.pull_limiter.check(auth.user_id)
    {
        return Err(ApiError::Http {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "ThrottleRequestsException",
            detail: "Too Many Attempts.".into(),
            headers: vec![(header::RETRY_AFTER, retry_after_secs.to_string())],
        });
    }
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("file.create")?;
    let mut v = Validator::new(&body.0);
    if v.check("url", &[Rule::Required, Rule::String]) {
        let ok = body
            .get("url")
            .and_then(|u| u.as_str())
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            v.add("url", "url", "The url format is invalid.");
        }
    }
    v.check("directory", &[Rule::Nullable, Rule::String]);
    v.check("filename", &[Rule::Nullable, Rule::String]);
    v.check("use_header", &[Rule::Boolean]);
    v.check("foreground", &[Rule::Boolean]);
    v.finish()?;
    let url = str_field(&body, "url").unwrap_or_default();
    let directory = str_field(&body, "directory").unwrap_or_else(|| "/".into());
    let mut req = Map::new();
    req.insert("url".into(), Value::String(url.clone()));
    req.insert("root".into(), Value::String(directory.clone()));
    if let Some(f) = str_field(&body, "filename") {
        req.insert("file_name".into(), Value::String(f));
    }
    if let Some(b) = crate::validate::as_bool(body.get("use_header")) {
        req.insert("use_header".into(), Value::Bool(b));
    }
    if let Some(b) = crate::validate::as_bool(body.get("foreground")) {
        req.insert("foreground".into(), Value::Bool(b));
    }
    call_json(
        &st,
        &ctx,
        reqwest::Method::POST,
        "pull",
        &Value::Object(req),
        None,
    )
    .await?;
    ctx.log(
        &st,
        "server:file.pull",
        json!({"directory": directory, "url": url}),
    )
    .await;
    Ok(fractal::no_content())
}
