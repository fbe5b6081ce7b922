//! Pterodactyl's Fractal envelope (reference §4) and its error envelope (§3).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"object": …, "attributes": {…}, "meta": {…}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Item<A> {
    pub object: Option<String>,
    pub attributes: A,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<A> Item<A> {
    pub fn new(object: &str, attributes: A) -> Self {
        Item {
            object: Some(object.to_string()),
            attributes,
            meta: None,
        }
    }
}

/// `{"object":"list","data":[…],"meta":{"pagination":{…}}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct List<A> {
    pub object: String,
    pub data: Vec<Item<A>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<A> List<A> {
    /// The pagination block of a paginated list.
    pub fn pagination(&self) -> Option<Pagination> {
        self.meta
            .as_ref()
            .and_then(|m| m.get("pagination"))
            .and_then(|p| serde_json::from_value(p.clone()).ok())
    }
}

/// `meta.pagination` (reference §4.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pagination {
    pub total: u64,
    pub count: u64,
    pub per_page: u64,
    pub current_page: u64,
    pub total_pages: u64,
    /// `previous` / `next` URLs; an empty object when there are neither.
    pub links: IndexMap<String, String>,
}

/// Relationships of a resource (`attributes.relationships`), in include order.
pub type Relationships = serde_json::Map<String, serde_json::Value>;

/// `{"errors":[…]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub errors: Vec<ErrorObject>,
}

/// One error: `code` is the upstream exception name, `status` the HTTP status as a string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorObject {
    pub code: String,
    pub status: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ErrorMeta>,
}

/// Validation errors name their field and rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorMeta {
    pub source_field: String,
    pub rule: String,
}
