//! Client API (`/api/client`) types the bot reads — the client `server` transformer
//! (reference §9.1), `stats` (§9), the account (`GET /account`), the power and command
//! bodies — and the typed client's methods for those routes. Panels differ in
//! optional fields (upstream Pterodactyl vs Pelican), so everything not guaranteed
//! by every panel defaults instead of failing to decode, and unknown fields are ignored.

use crate::client::{Client, Error};
use crate::envelope::{Item, List};
use serde::{Deserialize, Serialize};

/// `server.limits` as the client transformer prints it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientServerLimits {
    #[serde(default, deserialize_with = "null_default")]
    pub memory: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub swap: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub disk: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub io: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub cpu: i64,
    #[serde(default)]
    pub threads: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub oom_disabled: bool,
}

/// `server.feature_limits`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientFeatureLimits {
    #[serde(default)]
    pub databases: Option<i64>,
    #[serde(default)]
    pub allocations: Option<i64>,
    #[serde(default)]
    pub backups: Option<i64>,
}

/// `server.sftp_details`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SftpDetails {
    #[serde(default, deserialize_with = "null_default")]
    pub ip: String,
    #[serde(default, deserialize_with = "null_default")]
    pub port: i64,
}

/// The client `server` transformer (§9.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientServer {
    #[serde(default, deserialize_with = "null_default")]
    pub server_owner: bool,
    pub identifier: String,
    #[serde(default)]
    pub internal_id: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub uuid: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub node: String,
    #[serde(default, deserialize_with = "null_default")]
    pub is_node_under_maintenance: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub sftp_details: SftpDetails,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub limits: ClientServerLimits,
    #[serde(default)]
    pub invocation: Option<String>,
    #[serde(default)]
    pub docker_image: Option<String>,
    #[serde(default)]
    pub egg_features: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_default")]
    pub feature_limits: ClientFeatureLimits,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub is_suspended: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub is_installing: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub is_transferring: bool,
    #[serde(default)]
    pub relationships: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `stats.resources` (values passed through from Wings; 0 when absent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, deserialize_with = "null_default")]
    pub memory_bytes: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_absolute: f64,
    #[serde(default, deserialize_with = "null_default")]
    pub disk_bytes: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub network_rx_bytes: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub network_tx_bytes: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub uptime: u64,
}

/// The `stats` object of `GET /servers/{server}/resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    #[serde(default = "stopped", deserialize_with = "null_stopped")]
    pub current_state: String,
    #[serde(default, deserialize_with = "null_default")]
    pub is_suspended: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub resources: Resources,
}

fn stopped() -> String {
    "stopped".to_string()
}

/// A field some panels send as `null` (or leave out): its default instead.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn null_stopped<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(stopped))
}

/// The `user` of `GET /api/client/account` (AccountTransformer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    #[serde(default, deserialize_with = "null_default")]
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub admin: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub username: String,
    #[serde(default, deserialize_with = "null_default")]
    pub email: String,
    #[serde(default, deserialize_with = "null_default")]
    pub first_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub last_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub language: String,
}

/// A power signal for `POST /servers/{server}/power`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerSignal {
    Start,
    Stop,
    Restart,
    Kill,
}

impl PowerSignal {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerSignal::Start => "start",
            PowerSignal::Stop => "stop",
            PowerSignal::Restart => "restart",
            PowerSignal::Kill => "kill",
        }
    }

    pub fn parse(s: &str) -> Option<PowerSignal> {
        match s {
            "start" => Some(PowerSignal::Start),
            "stop" => Some(PowerSignal::Stop),
            "restart" => Some(PowerSignal::Restart),
            "kill" => Some(PowerSignal::Kill),
            _ => None,
        }
    }
}

/// `POST /servers/{server}/power`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerRequest {
    pub signal: PowerSignal,
}

/// `POST /servers/{server}/command`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub command: String,
}

fn server_seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Client {
    /// `GET /api/client` — servers the key's user owns or is a subuser of.
    pub async fn list_client_servers(&self, query: &str) -> Result<List<ClientServer>, Error> {
        let path = if query.is_empty() {
            "/api/client".to_string()
        } else if query.starts_with('?') {
            format!("/api/client{query}")
        } else {
            format!("/api/client?{query}")
        };
        self.get(&path).await
    }

    /// `GET /api/client/servers/{server}` (identifier or uuid).
    pub async fn client_server(&self, server: &str) -> Result<Item<ClientServer>, Error> {
        self.get(&format!("/api/client/servers/{}", server_seg(server)))
            .await
    }

    /// `GET /api/client/servers/{server}/resources`.
    pub async fn resources(&self, server: &str) -> Result<Item<Stats>, Error> {
        self.get(&format!(
            "/api/client/servers/{}/resources",
            server_seg(server)
        ))
        .await
    }

    /// `POST /api/client/servers/{server}/power` (204).
    pub async fn power(&self, server: &str, signal: PowerSignal) -> Result<(), Error> {
        self.send_empty(
            reqwest::Method::POST,
            &format!("/api/client/servers/{}/power", server_seg(server)),
            Some(&PowerRequest { signal }),
        )
        .await
    }

    /// `POST /api/client/servers/{server}/command` (204).
    pub async fn command(&self, server: &str, command: &str) -> Result<(), Error> {
        self.send_empty(
            reqwest::Method::POST,
            &format!("/api/client/servers/{}/command", server_seg(server)),
            Some(&CommandRequest {
                command: command.to_string(),
            }),
        )
        .await
    }

    /// `GET /api/client/account`.
    pub async fn account(&self) -> Result<Item<Account>, Error> {
        self.get("/api/client/account").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_server_tolerates_missing_optional_fields() {
        let v = serde_json::json!({"identifier": "abcd1234", "name": "x", "pelican_extra": 1});
        let s: ClientServer = serde_json::from_value(v).expect("decode");
        assert_eq!(s.identifier, "abcd1234");
        assert_eq!(s.limits.memory, 0);
    }

    #[test]
    fn null_optional_fields_decode_to_defaults() {
        // Shapes seen on other panels: nulls where ours prints numbers or objects.
        let v = serde_json::json!({
            "identifier": "abcd1234", "name": "x", "uuid": null, "node": null,
            "limits": {"memory": null, "cpu": 100, "disk": null, "threads": null},
            "sftp_details": null, "feature_limits": null, "is_suspended": null,
        });
        let s: ClientServer = serde_json::from_value(v).expect("decode");
        assert_eq!((s.limits.memory, s.limits.cpu), (0, 100));
        assert!(!s.is_suspended);
        let st: Stats = serde_json::from_value(serde_json::json!({
            "current_state": null, "resources": {"memory_bytes": 5, "cpu_absolute": 1, "uptime": null}
        }))
        .expect("decode");
        assert_eq!(st.current_state, "stopped");
        assert_eq!(
            (st.resources.memory_bytes, st.resources.cpu_absolute),
            (5, 1.0)
        );
        let a: Account = serde_json::from_value(serde_json::json!({"id": 1})).expect("decode");
        assert_eq!(a.username, "");
    }

    #[test]
    fn stats_defaults_to_stopped() {
        let s: Stats = serde_json::from_value(serde_json::json!({})).expect("decode");
        assert_eq!(s.current_state, "stopped");
    }

    #[test]
    fn power_body_is_lowercase() {
        let b = serde_json::to_value(PowerRequest {
            signal: PowerSignal::Kill,
        })
        .expect("encode");
        assert_eq!(b, serde_json::json!({"signal": "kill"}));
    }
}
