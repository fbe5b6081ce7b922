//! A real websocket client (tokio-tungstenite) speaking wings' console protocol:
//! `{"event", "args"}` text frames, with helpers to wait for events.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Event = (String, Vec<String>);

pub struct Ws {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    /// Connects to `url` (`http://…` or `ws://…`) with `origin` as the `Origin`.
    pub async fn connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        Self::connect_from(None, url, origin).await
    }

    /// As [`Ws::connect`], from the local address `from` (e.g. `127.0.0.2`, so the
    /// address the daemon records is told apart from a default).
    pub async fn connect_from(
        from: Option<IpAddr>,
        url: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = url.replacen("http://", "ws://", 1);
        let mut req = url.as_str().into_client_request()?;
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        let stream = match from {
            None => tokio_tungstenite::connect_async(req).await?.0,
            Some(ip) => {
                let host = req.uri().host().unwrap().to_string();
                let port = req.uri().port_u16().unwrap();
                let addr = std::net::SocketAddr::new(host.parse().unwrap(), port);
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(std::net::SocketAddr::new(ip, 0))?;
                let tcp = sock.connect(addr).await?;
                tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
                    .await?
                    .0
            }
        };
        Ok(Ws { stream })
    }

    pub async fn send(&mut self, event: &str, args: Value) {
        let msg = json!({"event": event, "args": args}).to_string();
        self.stream.send(Message::Text(msg)).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_string()))
            .await
            .unwrap();
    }

    /// The next event within `timeout`; `None` on timeout or when the socket ends.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = tokio::time::timeout(left, self.stream.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                let args = v
                    .get("args")
                    .and_then(|a| a.as_array())
                    .map(|a| {
                        a.iter()
                            .map(|x| x.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                return Some((v["event"].as_str().unwrap().to_string(), args));
            }
        }
    }

    /// Waits for an event matching `pred`; on timeout, everything seen instead.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str, &[String]) -> bool,
    ) -> Result<Event, Vec<Event>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(seen);
            };
            match self.next(left).await {
                Some((e, a)) => {
                    if pred(&e, &a) {
                        return Ok((e, a));
                    }
                    seen.push((e, a));
                }
                None => return Err(seen),
            }
        }
    }

    /// Waits for `status` = `state`, panicking with what arrived instead.
    pub async fn wait_state(&mut self, state: &str, timeout: Duration) {
        if let Err(seen) = self
            .wait_for(timeout, |e, a| e == "status" && arg(a) == state)
            .await
        {
            panic!("never reached {state}; saw {seen:?}");
        }
    }

    /// Everything that arrives until `quiet` passes without an event.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Event> {
        let mut got = Vec::new();
        while let Some(m) = self.next(quiet).await {
            got.push(m);
        }
        got
    }
}

/// The first argument of an event ("" when there is none).
pub fn arg(a: &[String]) -> String {
    a.first().cloned().unwrap_or_default()
}
