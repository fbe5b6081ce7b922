//! `GET /api/system` and `POST /api/update` (reference §1.4).

use super::{ApiError, JsonBody};
use crate::App;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openapi::wings::{SystemInformationV2, UpdateConfigurationResponse};
use std::collections::HashMap;
use std::sync::Arc;

pub async fn info(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if q.get("v").map(String::as_str) == Some("2") {
        let docker = app.shared.env.info().await.map_err(ApiError::internal)?;
        return Ok(Json(SystemInformationV2 {
            version: crate::remote::VERSION.into(),
            docker,
            system: crate::system::host(),
        })
        .into_response());
    }
    Ok(Json(crate::system::information()).into_response())
}

pub async fn update(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<UpdateConfigurationResponse>, ApiError> {
    let current = app.config();
    if current.ignore_panel_config_updates {
        return Ok(Json(UpdateConfigurationResponse { applied: false }));
    }
    if !body.is_object() {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            super::MSG_UNPARSABLE,
        ));
    }
    let merged = current
        .merged_with_panel(&body)
        .map_err(|_| ApiError::new(axum::http::StatusCode::BAD_REQUEST, super::MSG_UNPARSABLE))?;
    merged.save(&app.config_path).map_err(ApiError::internal)?;
    app.shared
        .replace_config(merged)
        .map_err(ApiError::internal)?;
    Ok(Json(UpdateConfigurationResponse { applied: true }))
}
