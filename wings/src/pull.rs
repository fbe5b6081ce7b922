//! Remote file downloads ("pull", reference §1.6): at most 3 at a time per server,
//! no redirects, a 200 with a positive Content-Length required, 12 h timeout,
//! upstream's User-Agent. Destinations that resolve to loopback, private,
//! link-local (cloud metadata) or unique-local addresses are refused unless
//! `api.remote_download_allowed_ips` lists them; the check is made on the
//! addresses actually dialled (a custom resolver), so DNS rebinding cannot slip
//! past it.

use crate::filesystem::{jail, FileObject, Filesystem, FsError};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const MAX_PER_SERVER: usize = 3;
pub const USER_AGENT: &str = "Pterodactyl Panel (https://pterodactyl.io)";

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("The URL provided is not valid: {0}")]
    BadUrl(String),
    #[error("The requested URL resolves to a local or private network address and cannot be downloaded.")]
    Forbidden,
    #[error(
        "The remote server responded with an unexpected status or without a Content-Length ({0})."
    )]
    BadResponse(String),
    #[error("The download was cancelled.")]
    Cancelled,
    #[error("transport: {0}")]
    Transport(String),
    #[error(transparent)]
    Fs(#[from] FsError),
}

struct Entry {
    server: String,
    progress: Arc<AtomicU64>,
    cancel: CancellationToken,
}

/// Downloads in flight on this node.
#[derive(Default)]
pub struct Downloads {
    map: Mutex<HashMap<String, Entry>>,
}

/// One download as `GET files/pull` lists it (upstream's capitalised keys).
#[derive(serde::Serialize)]
pub struct Listed {
    #[serde(rename = "Identifier")]
    pub identifier: String,
    #[serde(rename = "Progress")]
    pub progress: f64,
}

impl Downloads {
    pub fn count(&self, server: &str) -> usize {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| e.server == server)
            .count()
    }

    pub fn list(&self, server: &str) -> Vec<Listed> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, e)| e.server == server)
            .map(|(id, e)| Listed {
                identifier: id.clone(),
                progress: f64::from_bits(e.progress.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Registers a download; `None` when the server already has the maximum.
    pub fn register(&self, server: &str) -> Option<(String, Arc<AtomicU64>, CancellationToken)> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.values().filter(|e| e.server == server).count() >= MAX_PER_SERVER {
            return None;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
        let cancel = CancellationToken::new();
        m.insert(
            id.clone(),
            Entry {
                server: server.to_string(),
                progress: progress.clone(),
                cancel: cancel.clone(),
            },
        );
        Some((id, progress, cancel))
    }

    pub fn finish(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Cancels a download if it belongs to `server`.
    pub fn cancel(&self, server: &str, id: &str) {
        if let Some(e) = self.map.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            if e.server == server {
                e.cancel.cancel();
            }
        }
    }

    /// Cancels every download of a deleted server.
    pub fn cancel_server(&self, server: &str) {
        for e in self.map.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if e.server == server {
                e.cancel.cancel();
            }
        }
    }
}

/// Loopback, private, link-local (incl. 169.254.169.254), unique-local,
/// unspecified, CGNAT, broadcast and multicast addresses.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

fn allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    !is_internal(ip) || allow.iter().any(|n| n.contains(&ip))
}

pub fn parse_allowlist(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

struct Resolver {
    allow: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allowed(a.ip(), &allow))
                .collect();
            if addrs.is_empty() {
                return Err(
                    Box::new(std::io::Error::other(PullError::Forbidden.to_string()))
                        as Box<dyn std::error::Error + Send + Sync>,
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What to download and where.
pub struct PullRequest {
    pub url: String,
    pub root: String,
    pub file_name: Option<String>,
    pub use_header: bool,
}

/// Validates the URL (scheme, literal addresses) before anything is registered.
pub fn check_url(raw: &str, allow: &[IpNet]) -> Result<url::Url, PullError> {
    let u = url::Url::parse(raw).map_err(|e| PullError::BadUrl(e.to_string()))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(PullError::BadUrl(
            "only http and https are supported".into(),
        ));
    }
    match u.host() {
        Some(url::Host::Ipv4(ip)) if !allowed(IpAddr::V4(ip), allow) => Err(PullError::Forbidden),
        Some(url::Host::Ipv6(ip)) if !allowed(IpAddr::V6(ip), allow) => Err(PullError::Forbidden),
        Some(_) => Ok(u),
        None => Err(PullError::BadUrl("missing host".into())),
    }
}

fn header_file_name(resp: &reqwest::Response) -> Option<String> {
    let cd = resp
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    cd.split(';').find_map(|p| {
        let p = p.trim();
        let v = p.strip_prefix("filename=")?;
        Some(v.trim_matches('"').to_string())
    })
}

/// Downloads into the server's filesystem and returns the new file's stat.
pub async fn run(
    fs: Filesystem,
    req: PullRequest,
    allow: Vec<IpNet>,
    progress: Arc<AtomicU64>,
    cancel: CancellationToken,
) -> Result<FileObject, PullError> {
    let url = check_url(&req.url, &allow)?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(12 * 3600))
        .user_agent(USER_AGENT)
        .dns_resolver(Arc::new(Resolver {
            allow: Arc::new(allow),
        }))
        .build()
        .map_err(|e| PullError::Transport(e.to_string()))?;
    let resp = tokio::select! {
        r = client.get(url.clone()).send() => r.map_err(|e| {
            if format!("{e:?}").contains("local or private") { PullError::Forbidden } else { PullError::Transport(e.to_string()) }
        })?,
        _ = cancel.cancelled() => return Err(PullError::Cancelled),
    };
    let len = resp.content_length().unwrap_or(0);
    if resp.status() != reqwest::StatusCode::OK || len == 0 {
        return Err(PullError::BadResponse(resp.status().to_string()));
    }
    let name = if req.use_header {
        header_file_name(&resp)
    } else {
        None
    }
    .or(req.file_name.clone().filter(|n| !n.is_empty()))
    .or_else(|| {
        url.path_segments()
            .and_then(|mut s| s.next_back().map(str::to_string))
            .filter(|s| !s.is_empty())
    })
    .unwrap_or_else(|| "download".into());
    let name = percent_encoding::percent_decode_str(&name)
        .decode_utf8_lossy()
        .into_owned();
    let base = jail::clean(&name)?;
    let base = jail::split(&base).1.to_string();
    if base.is_empty() {
        return Err(PullError::BadUrl("no file name".into()));
    }
    let target = jail::join(&req.root, &base)?;
    fs.check_denylist(&target)?;
    if !fs.has_space_for(len as i64) {
        return Err(FsError::NotEnoughSpace.into());
    }
    use futures::StreamExt;
    let counter = Arc::new(AtomicU64::new(0));
    let (c1, c2) = (counter.clone(), counter.clone());
    let stream = resp
        .bytes_stream()
        .map(|r| r.map_err(std::io::Error::other))
        .take_until(cancel.clone().cancelled_owned())
        .map(move |r| {
            if let Ok(b) = &r {
                let done = c1.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
                let p = (done as f64 / len as f64).min(1.0);
                progress.store(p.to_bits(), Ordering::Relaxed);
            }
            r
        })
        // A download that was cancelled or ended short fails, so its temporary
        // file is discarded instead of committed.
        .chain(futures::stream::once(async move {
            if c2.load(Ordering::Relaxed) < len {
                Err(std::io::Error::other("the download ended early"))
            } else {
                Ok(bytes::Bytes::new())
            }
        }));
    match fs.write_stream(&target, Box::pin(stream), 0o644).await {
        Ok(_) => {}
        Err(_) if cancel.is_cancelled() => return Err(PullError::Cancelled),
        Err(FsError::Io(e)) => return Err(PullError::Transport(e.to_string())),
        Err(e) => return Err(e.into()),
    }
    Ok(fs.stat_object(&target)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        assert!(!is_internal("1.1.1.1".parse().unwrap()));
        let allow = parse_allowlist(&["127.0.0.0/8".into()]);
        assert!(allowed("127.0.0.1".parse().unwrap(), &allow));
        assert!(check_url("http://169.254.169.254/latest", &[]).is_err());
        assert!(check_url("file:///etc/passwd", &[]).is_err());
    }
}
