//! The Panel's Remote API client (Wings → Panel, reference §4.1): headers, retries
//! with exponential backoff on anything but 4xx, and upstream's boot pagination.

use crate::config::Config;
use openapi::remote::{
    ActivityBatch, InstallStatusRequest, InstallationScript, ServerConfigurationResponse,
};
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("panel returned HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("could not reach the panel: {0}")]
    Transport(String),
    #[error("could not decode the panel's response: {0}")]
    Decode(String),
}

impl RemoteError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RemoteError::Status { status: 404, .. })
    }
}

/// One server of the boot list, kept raw so a single bad entry is skipped instead of
/// failing the page (upstream behaviour).
#[derive(Debug, serde::Deserialize)]
pub struct RawServer {
    pub uuid: String,
    pub settings: serde_json::Value,
    pub process_configuration: serde_json::Value,
}

#[derive(Debug, serde::Deserialize)]
struct RawPage {
    data: Vec<RawServer>,
    meta: Meta,
}

#[derive(Debug, serde::Deserialize)]
struct Meta {
    current_page: u64,
    last_page: u64,
}

#[derive(Clone)]
pub struct RemoteClient {
    http: reqwest::Client,
    base: String,
    token_id: String,
    token: String,
    /// Total time budget for retries (upstream: about 30 s).
    pub retry_budget: Duration,
}

impl RemoteClient {
    pub fn new(cfg: &Config) -> anyhow::Result<RemoteClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.remote_query.timeout.max(1)))
            .build()?;
        Ok(RemoteClient {
            http,
            base: format!("{}/api/remote", cfg.panel_url()),
            token_id: cfg.token_id.clone(),
            token: cfg.token.clone(),
            retry_budget: Duration::from_secs(30),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, RemoteError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{}", self.base, path))
                .header(
                    "Authorization",
                    format!("Bearer {}.{}", self.token_id, self.token),
                )
                .header("Accept", "application/vnd.pterodactyl.v1+json")
                .header("Content-Type", "application/json")
                .header(
                    "User-Agent",
                    format!("Pterodactyl Wings/v{} (id:{})", VERSION, self.token_id),
                )
                .query(query);
            if method == reqwest::Method::POST || body.is_some() {
                let bytes = serde_json::to_vec(&body.clone().unwrap_or(serde_json::Value::Null))
                    .unwrap_or_else(|_| b"null".to_vec());
                req = req.body(bytes);
            }
            let outcome = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    let detail = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| {
                            v.pointer("/errors/0/detail")
                                .and_then(|d| d.as_str())
                                .map(str::to_string)
                        })
                        .unwrap_or(text);
                    let err = RemoteError::Status { status, detail };
                    if (400..500).contains(&status) {
                        return Err(err);
                    }
                    err
                }
                Err(e) => RemoteError::Transport(e.to_string()),
            };
            if started.elapsed() + backoff > self.retry_budget {
                return Err(outcome);
            }
            tracing::debug!(error = %outcome, "remote request failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(12));
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, RemoteError> {
        let resp = self.send(reqwest::Method::GET, path, query, None).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RemoteError::Transport(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Decode(e.to_string()))
    }

    /// Every server of this node: `page=0` first, then pages `current_page+1 ..=
    /// last_page` in parallel (§4.3).
    pub async fn get_servers(&self, per_page: u64) -> Result<Vec<RawServer>, RemoteError> {
        let first: RawPage = self
            .json(
                "/servers",
                &[("page", "0".into()), ("per_page", per_page.to_string())],
            )
            .await?;
        let mut out = first.data;
        if first.meta.last_page > first.meta.current_page {
            let pages = (first.meta.current_page + 1..=first.meta.last_page).map(|p| async move {
                self.json::<RawPage>(
                    "/servers",
                    &[("page", p.to_string()), ("per_page", per_page.to_string())],
                )
                .await
            });
            for page in futures::future::join_all(pages).await {
                out.extend(page?.data);
            }
        }
        Ok(out)
    }

    pub async fn get_server_configuration(
        &self,
        uuid: &str,
    ) -> Result<ServerConfigurationResponse, RemoteError> {
        self.json(&format!("/servers/{uuid}"), &[]).await
    }

    pub async fn reset_servers_state(&self) -> Result<(), RemoteError> {
        self.send(reqwest::Method::POST, "/servers/reset", &[], None)
            .await
            .map(|_| ())
    }

    pub async fn get_installation_script(
        &self,
        uuid: &str,
    ) -> Result<InstallationScript, RemoteError> {
        self.json(&format!("/servers/{uuid}/install"), &[]).await
    }

    pub async fn set_installation_status(
        &self,
        uuid: &str,
        successful: bool,
        reinstall: bool,
    ) -> Result<(), RemoteError> {
        let body = serde_json::to_value(InstallStatusRequest {
            successful,
            reinstall,
        })
        .map_err(|e| RemoteError::Decode(e.to_string()))?;
        self.send(
            reqwest::Method::POST,
            &format!("/servers/{uuid}/install"),
            &[],
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/remote/activity`.
    pub async fn send_activity(&self, batch: &ActivityBatch) -> Result<(), RemoteError> {
        let body = serde_json::to_value(batch).map_err(|e| RemoteError::Decode(e.to_string()))?;
        self.send(reqwest::Method::POST, "/activity", &[], Some(body))
            .await
            .map(|_| ())
    }

    /// `GET /api/remote/backups/{uuid}?size=` — presigned part URLs for S3.
    pub async fn backup_upload_urls(
        &self,
        uuid: &str,
        size: u64,
    ) -> Result<openapi::remote::BackupRemoteUploadResponse, RemoteError> {
        self.json(&format!("/backups/{uuid}"), &[("size", size.to_string())])
            .await
    }

    /// `POST /api/remote/backups/{uuid}` — a backup finished or failed.
    pub async fn set_backup_status(
        &self,
        uuid: &str,
        body: &openapi::remote::BackupStatusRequest,
    ) -> Result<(), RemoteError> {
        let body = serde_json::to_value(body).map_err(|e| RemoteError::Decode(e.to_string()))?;
        self.send(
            reqwest::Method::POST,
            &format!("/backups/{uuid}"),
            &[],
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/remote/backups/{uuid}/restore` — a restore finished.
    pub async fn set_restore_status(
        &self,
        uuid: &str,
        successful: bool,
    ) -> Result<(), RemoteError> {
        let body = serde_json::json!({ "successful": successful });
        self.send(
            reqwest::Method::POST,
            &format!("/backups/{uuid}/restore"),
            &[],
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/remote/sftp/auth`.
    pub async fn sftp_auth(
        &self,
        req: &openapi::remote::SftpAuthRequest,
    ) -> Result<openapi::remote::SftpAuthResponse, RemoteError> {
        let body = serde_json::to_value(req).map_err(|e| RemoteError::Decode(e.to_string()))?;
        let resp = self
            .send(reqwest::Method::POST, "/sftp/auth", &[], Some(body))
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RemoteError::Transport(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Decode(e.to_string()))
    }

    /// `POST /api/remote/servers/{uuid}/transfer/{success|failure}` (body `null`).
    pub async fn set_transfer_status(
        &self,
        uuid: &str,
        successful: bool,
    ) -> Result<(), RemoteError> {
        let what = if successful { "success" } else { "failure" };
        self.send(
            reqwest::Method::POST,
            &format!("/servers/{uuid}/transfer/{what}"),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }
}
