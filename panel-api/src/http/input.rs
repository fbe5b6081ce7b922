//! Request input as upstream sees it (reference §1.3, §1.6): the JSON body (parsed
//! only when `Content-Type` says JSON), strings trimmed except passwords, empty
//! strings turned into null; and the query string with `filter[...]`, `include`,
//! `sort`, `page` and `per_page`.

use crate::error::{ApiError, ApiResult};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::{Map, Value};

/// Keys that TrimStrings leaves alone.
const UNTRIMMED: &[&str] = &["password", "password_confirmation"];

/// Upstream's TrimStrings + ConvertEmptyStringsToNull, recursively.
pub fn normalize(v: &mut Value, key: Option<&str>) {
    match v {
        Value::String(s) => {
            // PostgreSQL text cannot hold NUL; it never matches or stores anything.
            if s.contains('\0') {
                *s = s.replace('\0', "");
            }
            if !key.map(|k| UNTRIMMED.contains(&k)).unwrap_or(false) {
                let t = s.trim();
                if t.len() != s.len() {
                    *s = t.to_string();
                }
            }
            if s.is_empty() {
                *v = Value::Null;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, None)),
        Value::Object(o) => o
            .iter_mut()
            .for_each(|(k, x)| normalize(x, Some(k.as_str()))),
        _ => {}
    }
}

pub fn is_json_content_type(ct: Option<&str>) -> bool {
    ct.map(|c| c.contains("/json") || c.contains("+json"))
        .unwrap_or(false)
}

/// Parses a request body as upstream's IsValidJson middleware does.
pub fn parse_body(content_type: Option<&str>, bytes: &[u8]) -> ApiResult<Value> {
    if !is_json_content_type(content_type) || bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            normalize(&mut v, None);
            Ok(v)
        }
        Err(e) => {
            let reason = if e.is_syntax() || e.is_eof() {
                "Syntax error"
            } else {
                "Malformed UTF-8 characters, possibly incorrectly encoded"
            };
            Err(ApiError::bad_request(format!(
                "The JSON data passed in the request appears to be malformed: {reason}"
            )))
        }
    }
}

/// The parsed, normalised JSON body (an empty object when there is none).
#[derive(Clone, Debug)]
pub struct Body(pub Value);

impl Body {
    pub fn get(&self, key: &str) -> Option<&Value> {
        crate::validate::lookup(&self.0, key)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Body {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Body>()
            .cloned()
            .unwrap_or(Body(Value::Object(Map::new()))))
    }
}

/// The query string, decoded and normalised.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub pairs: Vec<(String, Option<String>)>,
    pub raw: String,
}

impl Params {
    pub fn parse(raw: &str) -> Params {
        let pairs = url::form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| {
                let v = v.replace('\0', "");
                let t = v.trim();
                (
                    k.into_owned(),
                    if t.is_empty() {
                        None
                    } else {
                        Some(t.to_string())
                    },
                )
            })
            .collect();
        Params {
            pairs,
            raw: raw.to_string(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// Every `filter[name]=value` (the last one of each name wins).
    pub fn filters(&self) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for (k, v) in &self.pairs {
            if let Some(name) = k.strip_prefix("filter[").and_then(|r| r.strip_suffix(']')) {
                out.retain(|(n, _)| n != name);
                out.push((name.to_string(), v.clone()));
            }
        }
        out
    }

    /// `include=a,b` or `include[]=a&include[]=b`.
    pub fn includes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.pairs {
            if k == "include" || k == "include[]" || (k.starts_with("include[") && k.ends_with(']'))
            {
                if let Some(v) = v {
                    out.extend(
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty()),
                    );
                }
            }
        }
        out
    }

    /// A multi-valued parameter (`name[]=1&name[]=2` or `name=1,2`).
    pub fn list(&self, name: &str) -> Vec<String> {
        let bracket = format!("{name}[]");
        let mut out = Vec::new();
        for (k, v) in &self.pairs {
            if k == &bracket || (k.starts_with(&format!("{name}[")) && k.ends_with(']')) {
                if let Some(v) = v {
                    out.push(v.clone());
                }
            } else if k == name {
                if let Some(v) = v {
                    out.extend(v.split(',').map(|s| s.trim().to_string()));
                }
            }
        }
        out
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trims_strings_but_not_passwords_and_nulls_empty_strings() {
        let mut v = json!({"name": "  a b  ", "password": "  p  ", "current_password": " c ", "x": "   ", "n": [" y "]});
        normalize(&mut v, None);
        assert_eq!(
            v,
            json!({"name": "a b", "password": "  p  ", "current_password": "c", "x": null, "n": ["y"]})
        );
    }

    #[test]
    fn malformed_json_is_a_400_and_non_json_bodies_are_ignored() {
        assert!(matches!(
            parse_body(Some("application/json"), b"{nope"),
            Err(ApiError::Http { .. })
        ));
        assert_eq!(parse_body(Some("text/plain"), b"{nope").unwrap(), json!({}));
        assert_eq!(
            parse_body(Some("application/json"), b"").unwrap(),
            json!({})
        );
    }

    #[test]
    fn reads_filters_and_both_include_forms() {
        let p = Params::parse("filter%5Bemail%5D=a%40b&include=servers,%20x&include[]=y&page=2");
        assert_eq!(
            p.filters(),
            vec![("email".to_string(), Some("a@b".to_string()))]
        );
        assert_eq!(p.includes(), vec!["servers", "x", "y"]);
        assert_eq!(p.get("page"), Some("2"));
    }
}
