//! The HTTP interactions endpoint: Discord posts each interaction, signed with the
//! application's Ed25519 key (`X-Signature-Ed25519` over `X-Signature-Timestamp` ‖
//! body); unsigned or badly signed requests get a 401, pings a pong.

use crate::Bot;
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use ed25519_dalek::{Signature, VerifyingKey};
use serenity::all::Interaction;
use std::sync::Arc;

#[derive(Clone)]
struct Endpoint {
    bot: Arc<Bot>,
    key: VerifyingKey,
}

/// Parses the application's public key (64 hex characters).
pub fn public_key(hex_key: &str) -> Result<VerifyingKey> {
    let bytes = hex::decode(hex_key.trim()).context("DISCORD_PUBLIC_KEY is not hex")?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("DISCORD_PUBLIC_KEY must be 32 bytes (64 hex characters)"))?;
    VerifyingKey::from_bytes(&arr).context("DISCORD_PUBLIC_KEY is not an Ed25519 key")
}

/// `POST /interactions` (and `/` for setups that point Discord at the root).
pub fn router(bot: Arc<Bot>) -> Result<Router> {
    let key = public_key(
        bot.cfg
            .public_key
            .as_deref()
            .context("the HTTP mode needs DISCORD_PUBLIC_KEY (the application's public key)")?,
    )?;
    let ep = Endpoint { bot, key };
    Ok(Router::new()
        .route("/interactions", post(handle))
        .route("/", post(handle))
        .with_state(ep))
}

pub fn verify(key: &VerifyingKey, headers: &HeaderMap, body: &[u8]) -> bool {
    let sig = headers
        .get("x-signature-ed25519")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| hex::decode(v).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok());
    let ts = headers
        .get("x-signature-timestamp")
        .and_then(|v| v.to_str().ok());
    let (Some(sig), Some(ts)) = (sig, ts) else {
        return false;
    };
    let mut msg = Vec::with_capacity(ts.len() + body.len());
    msg.extend_from_slice(ts.as_bytes());
    msg.extend_from_slice(body);
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
        .is_ok()
}

async fn handle(State(ep): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    if !verify(&ep.key, &headers, &body) {
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    let interaction: Interaction = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "an interaction did not decode");
            return (StatusCode::BAD_REQUEST, "unsupported interaction").into_response();
        }
    };
    let resp = ep.bot.respond(interaction).await;
    Json(resp.to_json()).into_response()
}

/// Serves the endpoint until `shutdown` resolves.
pub async fn serve(
    bot: Arc<Bot>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = router(bot)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
