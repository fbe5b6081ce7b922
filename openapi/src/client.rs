//! A typed HTTP client for the Pterodactyl-compatible APIs, used by the bot and the
//! end-to-end tests. Errors keep the panel's error envelope so callers can tell a
//! 401 from a 403, 404, 422 or 429 and read `Retry-After`.

use crate::application as app;
use crate::envelope::{ErrorEnvelope, Item, List};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The panel answered with an error status.
    #[error("panel answered {status}: {}", .body.as_ref().and_then(|b| b.errors.first()).map(|e| e.detail.as_str()).unwrap_or(""))]
    Api {
        status: u16,
        body: Option<ErrorEnvelope>,
        retry_after: Option<u64>,
    },
    /// The panel could not be reached, or its answer was not what the API promises.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("could not read the panel's answer: {0}")]
    Decode(String),
}

impl Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one panel with one API key (`ptla_…` or `ptlc_…`).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("ferrodactyl-openapi/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self::with_http(http, base_url, api_key))
    }

    pub fn with_http(http: reqwest::Client, base_url: &str, api_key: &str) -> Self {
        Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            key: api_key.to_string(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .header("Accept", "Application/vnd.pterodactyl.v1+json")
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        if status >= 400 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let body = resp
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            return Err(Error::Api {
                status,
                body,
                retry_after,
            });
        }
        Ok(resp)
    }

    async fn json<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T, Error> {
        let resp = self.send(rb).await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// GET a path (with query) and decode it.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.json(self.request(reqwest::Method::GET, path)).await
    }

    /// Send a JSON body and decode the answer.
    pub async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        self.json(self.request(method, path).json(body)).await
    }

    /// Send a JSON body (or none) to a route that answers 204/202.
    pub async fn send_empty<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), Error> {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.send(rb).await.map(|_| ())
    }

    // ---- Application API -------------------------------------------------------

    pub async fn list_users(&self, query: &str) -> Result<List<app::User>, Error> {
        self.get(&format!("/api/application/users{}", q(query)))
            .await
    }
    pub async fn get_user(&self, id: i64) -> Result<Item<app::User>, Error> {
        self.get(&format!("/api/application/users/{id}")).await
    }
    pub async fn get_user_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Item<app::User>, Error> {
        self.get(&format!(
            "/api/application/users/external/{}",
            seg(external_id)
        ))
        .await
    }
    pub async fn create_user(&self, req: &app::UserRequest) -> Result<Item<app::User>, Error> {
        self.send_json(reqwest::Method::POST, "/api/application/users", req)
            .await
    }
    pub async fn update_user(
        &self,
        id: i64,
        req: &app::UserRequest,
    ) -> Result<Item<app::User>, Error> {
        self.send_json(
            reqwest::Method::PATCH,
            &format!("/api/application/users/{id}"),
            req,
        )
        .await
    }
    pub async fn delete_user(&self, id: i64) -> Result<(), Error> {
        self.send_empty::<()>(
            reqwest::Method::DELETE,
            &format!("/api/application/users/{id}"),
            None,
        )
        .await
    }

    pub async fn list_locations(&self, query: &str) -> Result<List<app::Location>, Error> {
        self.get(&format!("/api/application/locations{}", q(query)))
            .await
    }
    pub async fn get_location(&self, id: i64) -> Result<Item<app::Location>, Error> {
        self.get(&format!("/api/application/locations/{id}")).await
    }
    pub async fn create_location(
        &self,
        req: &app::LocationRequest,
    ) -> Result<Item<app::Location>, Error> {
        self.send_json(reqwest::Method::POST, "/api/application/locations", req)
            .await
    }
    pub async fn update_location(
        &self,
        id: i64,
        req: &app::LocationRequest,
    ) -> Result<Item<app::Location>, Error> {
        self.send_json(
            reqwest::Method::PATCH,
            &format!("/api/application/locations/{id}"),
            req,
        )
        .await
    }
    pub async fn delete_location(&self, id: i64) -> Result<(), Error> {
        self.send_empty::<()>(
            reqwest::Method::DELETE,
            &format!("/api/application/locations/{id}"),
            None,
        )
        .await
    }

    pub async fn list_nodes(&self, query: &str) -> Result<List<app::Node>, Error> {
        self.get(&format!("/api/application/nodes{}", q(query)))
            .await
    }
    pub async fn get_node(&self, id: i64) -> Result<Item<app::Node>, Error> {
        self.get(&format!("/api/application/nodes/{id}")).await
    }
    pub async fn node_configuration(&self, id: i64) -> Result<app::NodeConfiguration, Error> {
        self.get(&format!("/api/application/nodes/{id}/configuration"))
            .await
    }
    pub async fn create_node(&self, req: &app::NodeRequest) -> Result<Item<app::Node>, Error> {
        self.send_json(reqwest::Method::POST, "/api/application/nodes", req)
            .await
    }
    pub async fn update_node(
        &self,
        id: i64,
        req: &app::NodeRequest,
    ) -> Result<Item<app::Node>, Error> {
        self.send_json(
            reqwest::Method::PATCH,
            &format!("/api/application/nodes/{id}"),
            req,
        )
        .await
    }
    pub async fn delete_node(&self, id: i64) -> Result<(), Error> {
        self.send_empty::<()>(
            reqwest::Method::DELETE,
            &format!("/api/application/nodes/{id}"),
            None,
        )
        .await
    }
    pub async fn list_allocations(
        &self,
        node: i64,
        query: &str,
    ) -> Result<List<app::Allocation>, Error> {
        self.get(&format!(
            "/api/application/nodes/{node}/allocations{}",
            q(query)
        ))
        .await
    }
    pub async fn create_allocations(
        &self,
        node: i64,
        req: &app::AllocationRequest,
    ) -> Result<(), Error> {
        self.send_empty(
            reqwest::Method::POST,
            &format!("/api/application/nodes/{node}/allocations"),
            Some(req),
        )
        .await
    }
    pub async fn delete_allocation(&self, node: i64, id: i64) -> Result<(), Error> {
        self.send_empty::<()>(
            reqwest::Method::DELETE,
            &format!("/api/application/nodes/{node}/allocations/{id}"),
            None,
        )
        .await
    }

    pub async fn list_servers(&self, query: &str) -> Result<List<app::Server>, Error> {
        self.get(&format!("/api/application/servers{}", q(query)))
            .await
    }
    pub async fn get_server(&self, id: i64) -> Result<Item<app::Server>, Error> {
        self.get(&format!("/api/application/servers/{id}")).await
    }
    pub async fn create_server(
        &self,
        req: &app::CreateServerRequest,
    ) -> Result<Item<app::Server>, Error> {
        self.send_json(reqwest::Method::POST, "/api/application/servers", req)
            .await
    }
    pub async fn suspend_server(&self, id: i64) -> Result<(), Error> {
        self.send_empty::<()>(
            reqwest::Method::POST,
            &format!("/api/application/servers/{id}/suspend"),
            None,
        )
        .await
    }
    pub async fn unsuspend_server(&self, id: i64) -> Result<(), Error> {
        self.send_empty::<()>(
            reqwest::Method::POST,
            &format!("/api/application/servers/{id}/unsuspend"),
            None,
        )
        .await
    }
    pub async fn reinstall_server(&self, id: i64) -> Result<(), Error> {
        self.send_empty::<()>(
            reqwest::Method::POST,
            &format!("/api/application/servers/{id}/reinstall"),
            None,
        )
        .await
    }
    pub async fn delete_server(&self, id: i64, force: bool) -> Result<(), Error> {
        let path = if force {
            format!("/api/application/servers/{id}/force")
        } else {
            format!("/api/application/servers/{id}")
        };
        self.send_empty::<()>(reqwest::Method::DELETE, &path, None)
            .await
    }

    pub async fn list_nests(&self) -> Result<List<app::Nest>, Error> {
        self.get("/api/application/nests").await
    }
    pub async fn list_eggs(&self, nest: i64) -> Result<List<app::Egg>, Error> {
        self.get(&format!("/api/application/nests/{nest}/eggs"))
            .await
    }
}

fn q(query: &str) -> String {
    if query.is_empty() || query.starts_with('?') {
        query.to_string()
    } else {
        format!("?{query}")
    }
}

fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
