//! The panel's client for its nodes' daemons (reference wings-protocol §5): every
//! call upstream's panel makes, with upstream's headers and timeouts, and the
//! mapping of daemon failures to `DaemonConnectionException` (§3.4).

use crate::error::{ApiError, DAEMON_UNREACHABLE};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Where and how to reach one node.
#[derive(Clone, Debug)]
pub struct NodeConn {
    pub scheme: String,
    pub fqdn: String,
    pub port: i64,
    /// The decrypted daemon token.
    pub token: String,
}

impl NodeConn {
    pub fn base_url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.fqdn, self.port)
    }
}

#[derive(Clone)]
pub struct DaemonClient {
    http: reqwest::Client,
}

/// A failed daemon call.
#[derive(Debug)]
pub enum DaemonError {
    /// No connection could be made (or it timed out).
    Unreachable(String),
    /// The daemon answered with an error status.
    Status {
        status: u16,
        error: Option<String>,
        request_id: Option<String>,
    },
}

impl DaemonError {
    pub fn status(&self) -> Option<u16> {
        match self {
            DaemonError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> ApiError {
        match e {
            DaemonError::Unreachable(why) => {
                tracing::warn!(error = %why, "daemon unreachable");
                ApiError::http(
                    StatusCode::GATEWAY_TIMEOUT,
                    "DaemonConnectionException",
                    DAEMON_UNREACHABLE,
                )
            }
            DaemonError::Status {
                status,
                error,
                request_id,
            } => {
                let rid = request_id.unwrap_or_else(|| "<nil>".into());
                if (400..500).contains(&status) {
                    ApiError::http(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                        "DaemonConnectionException",
                        format!(
                            "An error occurred on the remote host: {}. (request id: {rid})",
                            error.unwrap_or_default()
                        ),
                    )
                } else {
                    let st = if status < 400 {
                        StatusCode::BAD_GATEWAY
                    } else {
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
                    };
                    ApiError::http(
                        st,
                        "DaemonConnectionException",
                        format!(
                            "There was an error while communicating with the machine running this server. This error has been logged, please try again. (code: {status}) (request_id: {rid})"
                        ),
                    )
                }
            }
        }
    }
}

impl DaemonClient {
    pub fn new(timeout_secs: u64) -> anyhow::Result<DaemonClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout_secs))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("Ferrodactyl Panel/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(DaemonClient { http })
    }

    async fn call(
        &self,
        node: &NodeConn,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, DaemonError> {
        let mut rb = self
            .http
            .request(method, format!("{}{}", node.base_url(), path))
            .bearer_auth(&node.token)
            .header("Accept", "application/json");
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.send(rb).await
    }

    /// A request to the daemon with the node token, for the routes that need more
    /// than JSON in and out (file contents, raw writes, long timeouts).
    pub fn builder(
        &self,
        node: &NodeConn,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", node.base_url(), path))
            .bearer_auth(&node.token)
            .header("Accept", "application/json")
    }

    /// Sends a request built by [`Self::builder`]; non-2xx answers become errors.
    pub async fn send(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, DaemonError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| DaemonError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let error = resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
        Err(DaemonError::Status {
            status,
            error,
            request_id,
        })
    }

    async fn call_json(
        &self,
        node: &NodeConn,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DaemonError> {
        let resp = self.call(node, method, path, body).await?;
        resp.json::<Value>()
            .await
            .map_err(|e| DaemonError::Unreachable(e.to_string()))
    }

    /// `POST /api/servers` — create a server on the node.
    pub async fn create_server(
        &self,
        node: &NodeConn,
        uuid: &str,
        start_on_completion: bool,
    ) -> Result<(), DaemonError> {
        let body = serde_json::json!({"uuid": uuid, "start_on_completion": start_on_completion});
        self.call(node, reqwest::Method::POST, "/api/servers", Some(&body))
            .await
            .map(|_| ())
    }

    /// `POST /api/servers/{uuid}/sync`.
    pub async fn sync_server(&self, node: &NodeConn, uuid: &str) -> Result<(), DaemonError> {
        self.call(
            node,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/sync"),
            None::<&Value>,
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /api/servers/{uuid}`.
    pub async fn delete_server(&self, node: &NodeConn, uuid: &str) -> Result<(), DaemonError> {
        self.call(
            node,
            reqwest::Method::DELETE,
            &format!("/api/servers/{uuid}"),
            None::<&Value>,
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/servers/{uuid}/reinstall`.
    pub async fn reinstall_server(&self, node: &NodeConn, uuid: &str) -> Result<(), DaemonError> {
        self.call(
            node,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/reinstall"),
            None::<&Value>,
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/servers/{uuid}/transfer` on the **source** node (reference
    /// wings-protocol §1.9): push the server to `dest_url` (`…/api/transfers` on the
    /// destination) with `token`, sent as upstream's panel sends it (`Bearer ` prefix).
    pub async fn transfer_notify(
        &self,
        source: &NodeConn,
        uuid: &str,
        dest_url: &str,
        token: &str,
    ) -> Result<(), DaemonError> {
        let body = serde_json::json!({
            "server_id": uuid,
            "url": dest_url,
            "token": format!("Bearer {token}"),
            "server": {"uuid": uuid, "start_on_completion": false},
        });
        self.call(
            source,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/transfer"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// `GET /api/servers/{uuid}` — state and resource usage.
    pub async fn server_details(&self, node: &NodeConn, uuid: &str) -> Result<Value, DaemonError> {
        self.call_json(
            node,
            reqwest::Method::GET,
            &format!("/api/servers/{uuid}"),
            None,
        )
        .await
    }

    /// `POST /api/servers/{uuid}/power`.
    pub async fn power(
        &self,
        node: &NodeConn,
        uuid: &str,
        action: &str,
    ) -> Result<(), DaemonError> {
        let body = serde_json::json!({"action": action});
        self.call(
            node,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/power"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/servers/{uuid}/commands`.
    pub async fn commands(
        &self,
        node: &NodeConn,
        uuid: &str,
        commands: &[String],
    ) -> Result<(), DaemonError> {
        let body = serde_json::json!({"commands": commands});
        self.call(
            node,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/commands"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/servers/{uuid}/ws/deny`.
    pub async fn revoke_jtis(
        &self,
        node: &NodeConn,
        uuid: &str,
        jtis: &[String],
    ) -> Result<(), DaemonError> {
        let body = serde_json::json!({"jtis": jtis});
        self.call(
            node,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/ws/deny"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/servers/{uuid}/backup`.
    pub async fn backup(
        &self,
        node: &NodeConn,
        uuid: &str,
        adapter: &str,
        backup: &str,
        ignore: &str,
    ) -> Result<(), DaemonError> {
        let body = serde_json::json!({"adapter": adapter, "uuid": backup, "ignore": ignore});
        self.call(
            node,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/backup"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/servers/{uuid}/backup/{backup}/restore`.
    pub async fn restore_backup(
        &self,
        node: &NodeConn,
        uuid: &str,
        backup: &str,
        adapter: &str,
        truncate: bool,
        download_url: &str,
    ) -> Result<(), DaemonError> {
        let body = serde_json::json!({"adapter": adapter, "truncate_directory": truncate, "download_url": download_url});
        self.call(
            node,
            reqwest::Method::POST,
            &format!("/api/servers/{uuid}/backup/{backup}/restore"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /api/servers/{uuid}/backup/{backup}`.
    pub async fn delete_backup(
        &self,
        node: &NodeConn,
        uuid: &str,
        backup: &str,
    ) -> Result<(), DaemonError> {
        self.call(
            node,
            reqwest::Method::DELETE,
            &format!("/api/servers/{uuid}/backup/{backup}"),
            None::<&Value>,
        )
        .await
        .map(|_| ())
    }

    /// `GET /api/system`.
    pub async fn system(&self, node: &NodeConn) -> Result<Value, DaemonError> {
        self.call_json(node, reqwest::Method::GET, "/api/system", None)
            .await
    }

    /// `POST /api/update` — push a node's new configuration.
    pub async fn update_configuration(
        &self,
        node: &NodeConn,
        config: &Value,
    ) -> Result<(), DaemonError> {
        self.call(node, reqwest::Method::POST, "/api/update", Some(config))
            .await
            .map(|_| ())
    }
}
