//! The panel's error type and Pterodactyl's error envelope (reference §3): one place
//! decides the `code`, the status, the detail text and whether the body is compact
//! or pretty JSON, so every route answers the same way.

use crate::json;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openapi::envelope::{ErrorEnvelope, ErrorMeta, ErrorObject};

pub const NOT_FOUND: &str = "The requested resource could not be found on the server.";
pub const UNAUTHORIZED: &str = "This action is unauthorized.";
pub const NO_API_PERMISSION: &str = "This account does not have permission to access the API.";
pub const GENERIC_500: &str =
    "An unexpected error was encountered while processing this request, please try again.";
pub const DAEMON_UNREACHABLE: &str =
    "Could not establish a connection to the machine running this server. Please try again.";

/// One validation message (rendered as one element of `errors`).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
    pub message: String,
}

#[derive(Debug)]
pub enum ApiError {
    /// 401, compact.
    Unauthenticated,
    /// An HTTP exception: pretty JSON with the given code (e.g. `NotFoundHttpException`).
    Http {
        status: StatusCode,
        code: &'static str,
        detail: String,
        headers: Vec<(header::HeaderName, String)>,
    },
    /// 422, compact, one element per message.
    Validation(Vec<FieldError>),
    /// `DisplayException` family: compact JSON, status usually 400.
    Display {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    /// Anything unexpected: logged, answered with the fixed 500 text.
    Internal(anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn not_found() -> Self {
        Self::http(StatusCode::NOT_FOUND, "NotFoundHttpException", NOT_FOUND)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::http(StatusCode::FORBIDDEN, "AccessDeniedHttpException", detail)
    }
    pub fn unauthorized_action() -> Self {
        Self::forbidden(UNAUTHORIZED)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::http(StatusCode::BAD_REQUEST, "BadRequestHttpException", detail)
    }
    /// A 400 HTTP exception with its own code (pretty JSON).
    pub fn bad_request_code(code: &'static str, detail: impl Into<String>) -> Self {
        Self::http(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::http(StatusCode::CONFLICT, code, detail)
    }
    pub fn http(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Http {
            status,
            code,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }
    pub fn display(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Display {
            status: StatusCode::BAD_REQUEST,
            code,
            detail: detail.into(),
        }
    }
    pub fn field(field: &str, rule: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
        }])
    }
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Http { status, .. } | ApiError::Display { status, .. } => *status,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => ApiError::not_found(),
            e => ApiError::Internal(e.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

fn obj(code: &str, status: StatusCode, detail: String) -> ErrorObject {
    ErrorObject {
        code: code.to_string(),
        status: status.as_u16().to_string(),
        detail,
        meta: None,
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Unauthenticated => {
                let env = ErrorEnvelope {
                    errors: vec![obj(
                        "AuthenticationException",
                        status,
                        "Unauthenticated.".into(),
                    )],
                };
                json_response(status, json::compact(&env))
            }
            ApiError::Validation(errors) => {
                let env = ErrorEnvelope {
                    errors: errors
                        .into_iter()
                        .map(|e| ErrorObject {
                            code: "ValidationException".into(),
                            status: "422".into(),
                            detail: e.message,
                            meta: Some(ErrorMeta {
                                source_field: e.field,
                                rule: e.rule,
                            }),
                        })
                        .collect(),
                };
                json_response(status, json::compact(&env))
            }
            ApiError::Display { code, detail, .. } => {
                let env = ErrorEnvelope {
                    errors: vec![obj(code, status, detail)],
                };
                json_response(status, json::compact(&env))
            }
            ApiError::Http {
                code,
                detail,
                headers,
                ..
            } => {
                let env = ErrorEnvelope {
                    errors: vec![obj(code, status, detail)],
                };
                let mut resp = json_response(status, json::pretty(&env));
                for (k, v) in headers {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        resp.headers_mut().insert(k, v);
                    }
                }
                resp
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "unexpected error while handling a request");
                let env = ErrorEnvelope {
                    errors: vec![obj("HttpException", status, GENERIC_500.into())],
                };
                json_response(status, json::pretty(&env))
            }
        }
    }
}
