//! Fractal's envelope as Pterodactyl serialises it (reference §4): items, lists,
//! pagination meta with its links, `include` parsing, `filter[...]`/`sort`
//! handling, and the PHP-encoded JSON responses.

use crate::error::{ApiError, ApiResult};
use crate::http::input::Params;
use crate::json;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// A JSON success body encoded as PHP's `json_encode` would.
pub fn respond<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let mut resp = (status, json::compact(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn ok<T: Serialize + ?Sized>(body: &T) -> Response {
    respond(StatusCode::OK, body)
}

/// 204: no body, no Content-Type.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `{"object": name, "attributes": attrs}` with optional meta. Takes the attributes
/// already as JSON so nothing is copied again.
pub fn item(object: &str, attributes: Value, meta: Option<Value>) -> Value {
    let mut m = Map::with_capacity(3);
    m.insert("object".into(), Value::String(object.into()));
    m.insert("attributes".into(), attributes);
    if let Some(meta) = meta {
        m.insert("meta".into(), meta);
    }
    Value::Object(m)
}

pub fn null_resource() -> Value {
    json!({"object": "null_resource", "attributes": null})
}

/// A list without pagination (relationships, unpaginated endpoints).
pub fn list(object: &str, items: impl IntoIterator<Item = Value>) -> Value {
    let data: Vec<Value> = items.into_iter().map(|a| item(object, a, None)).collect();
    json!({"object": "list", "data": data})
}

/// `{"object":"list","data":[{"object": object, "attributes": item}, …]}` encoded
/// from typed items, the same bytes as [`list`] over their JSON.
pub struct TypedList<'a, T> {
    pub object: &'a str,
    pub items: &'a [T],
}

impl<T: Serialize> Serialize for TypedList<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Items<'b, T>(&'b str, &'b [T]);
        impl<T: Serialize> Serialize for Items<'_, T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.1.iter().map(|a| TypedItem {
                    object: self.0,
                    attributes: a,
                }))
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("object", "list")?;
        m.serialize_entry("data", &Items(self.object, self.items))?;
        m.end()
    }
}

/// `{"object": object, "attributes": attributes}` from a typed value.
#[derive(Serialize)]
pub struct TypedItem<'a, T> {
    pub object: &'a str,
    pub attributes: &'a T,
}

/// `{"object": object, "attributes": attributes, "meta": meta}` from typed values,
/// the same bytes as [`item`] with `Some(meta)`.
#[derive(Serialize)]
pub struct TypedItemMeta<'a, T, M> {
    pub object: &'a str,
    pub attributes: &'a T,
    pub meta: &'a M,
}

/// Requested includes, limited to two levels as upstream does.
#[derive(Clone, Debug, Default)]
pub struct Includes(Vec<String>);

impl Includes {
    pub fn from_params(p: &Params) -> Includes {
        Includes::from_list(p.includes())
    }

    pub fn from_list(list: Vec<String>) -> Includes {
        let mut out: Vec<String> = Vec::new();
        for inc in list {
            let parts: Vec<&str> = inc.split('.').filter(|s| !s.is_empty()).take(2).collect();
            if parts.is_empty() {
                continue;
            }
            // A nested include implies its parent.
            for n in 1..=parts.len() {
                let s = parts[..n].join(".");
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        Includes(out)
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s == name)
    }

    /// The includes below `name` (`servers.allocations` → `allocations`).
    pub fn nested(&self, name: &str) -> Includes {
        let prefix = format!("{name}.");
        Includes(
            self.0
                .iter()
                .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `page` / `per_page` of a paginated list.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

/// Upstream has no cap on the application API; we bound it so one request cannot
/// ask the database for millions of rows.
pub const MAX_PER_PAGE: i64 = 1000;

impl Page {
    /// Reads `page` (anything but an integer ≥ 1 is page 1, as upstream) and
    /// `per_page` (0 → 15 as Eloquent; non-integers, negatives and values above
    /// `max` are a 422 where upstream would answer 500 or read everything).
    pub fn from_params(p: &Params, default: i64, max: i64) -> ApiResult<Page> {
        let page = p
            .get("page")
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1);
        let per_page = match p.get("per_page") {
            None => default,
            Some(s) => match s.parse::<i64>() {
                Ok(0) => 15,
                Ok(n) if (1..=max).contains(&n) => n,
                Ok(n) if n > max => {
                    return Err(ApiError::field(
                        "per_page",
                        "max",
                        format!("The per page may not be greater than {max}."),
                    ))
                }
                Ok(_) => {
                    return Err(ApiError::field(
                        "per_page",
                        "min",
                        "The per page must be at least 1.",
                    ))
                }
                Err(_) => {
                    return Err(ApiError::field(
                        "per_page",
                        "integer",
                        "The per page must be an integer.",
                    ))
                }
            },
        };
        Ok(Page { page, per_page })
    }

    /// Like upstream's client lists: `min(per_page, cap)`.
    pub fn capped(p: &Params, default: i64, cap: i64) -> ApiResult<Page> {
        let page = p
            .get("page")
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1);
        let per_page = match p.get("per_page") {
            None => default,
            Some(s) => match s.parse::<i64>() {
                Ok(0) => 15,
                Ok(n) if n >= 1 => n.min(cap),
                Ok(_) => {
                    return Err(ApiError::field(
                        "per_page",
                        "min",
                        "The per page must be at least 1.",
                    ))
                }
                Err(_) => cap,
            },
        };
        Ok(Page { page, per_page })
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

/// `meta.pagination` (reference §4.2). `base` is the absolute URL without query;
/// `keep_query` carries the incoming query (client lists) with `page` replaced.
pub fn pagination(
    total: i64,
    count: usize,
    page: &Page,
    base: &str,
    keep_query: Option<&Params>,
) -> Value {
    let total_pages = ((total + page.per_page - 1) / page.per_page).max(1);
    let link = |n: i64| -> String {
        match keep_query {
            None => format!("{base}?page={n}"),
            Some(p) => {
                let mut ser = url::form_urlencoded::Serializer::new(String::new());
                let mut placed = false;
                for (k, v) in &p.pairs {
                    if k == "page" {
                        if !placed {
                            ser.append_pair("page", &n.to_string());
                            placed = true;
                        }
                    } else {
                        ser.append_pair(k, v.as_deref().unwrap_or(""));
                    }
                }
                if !placed {
                    ser.append_pair("page", &n.to_string());
                }
                format!("{base}?{}", ser.finish().replace('+', "%20"))
            }
        }
    };
    let mut links = Map::new();
    if page.page > 1 {
        links.insert("previous".into(), Value::String(link(page.page - 1)));
    }
    if page.page < total_pages {
        links.insert("next".into(), Value::String(link(page.page + 1)));
    }
    json!({
        "pagination": {
            "total": total,
            "count": count,
            "per_page": page.per_page,
            "current_page": page.page,
            "total_pages": total_pages,
            "links": Value::Object(links),
        }
    })
}

/// A paginated list body.
pub fn paginated(object: &str, items: Vec<Value>, meta: Value) -> Value {
    let data: Vec<Value> = items.into_iter().map(|a| item(object, a, None)).collect();
    json!({"object": "list", "data": data, "meta": meta})
}

/// One allowed filter: its public name, the column, and how it matches.
pub struct FilterSpec {
    pub name: &'static str,
    pub column: &'static str,
    pub kind: FilterKind,
}

pub enum FilterKind {
    /// `LOWER(col) LIKE %v%`, comma-separated values OR-ed.
    Partial,
    /// `col = v`.
    Exact,
    /// Allocation `server_id`: digits → equals, anything else → unassigned.
    ServerId,
    /// Accepted here, applied by the endpoint itself.
    Custom,
}

/// Validates `filter[...]` names and `sort` against the endpoint's lists and adds
/// the matching `AND …` clauses / `ORDER BY` to `qb`.
pub fn apply_filters<'a>(
    qb: &mut sqlx::QueryBuilder<'a, sqlx::Postgres>,
    p: &Params,
    filters: &[FilterSpec],
) -> ApiResult<()> {
    let requested = p.filters();
    let unknown: Vec<&str> = requested
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !filters.iter().any(|f| f.name == *n))
        .collect();
    if !unknown.is_empty() {
        let allowed: Vec<&str> = filters.iter().map(|f| f.name).collect();
        return Err(ApiError::http(
            StatusCode::BAD_REQUEST,
            "InvalidFilterQuery",
            format!(
                "Requested filter(s) `{}` are not allowed. Allowed filter(s) are `{}`.",
                unknown.join(", "),
                allowed.join(", ")
            ),
        ));
    }
    for (name, value) in requested {
        let Some(spec) = filters.iter().find(|f| f.name == name) else {
            continue;
        };
        match spec.kind {
            FilterKind::Partial => {
                // An empty value filters nothing, as upstream.
                let Some(value) = value else { continue };
                let values: Vec<String> = value
                    .split(',')
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect();
                if values.is_empty() {
                    continue;
                }
                qb.push(" AND (");
                for (i, v) in values.into_iter().enumerate() {
                    if i > 0 {
                        qb.push(" OR ");
                    }
                    let escaped = v
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    qb.push(format!("LOWER({}::text) LIKE ", spec.column));
                    qb.push_bind(format!("%{escaped}%"));
                }
                qb.push(")");
            }
            FilterKind::Exact => {
                let Some(value) = value else { continue };
                qb.push(format!(" AND {}::text = ", spec.column));
                qb.push_bind(value);
            }
            FilterKind::Custom => {}
            FilterKind::ServerId => match value.filter(|v| v.chars().all(|c| c.is_ascii_digit())) {
                Some(v) => {
                    let id: i64 = v.parse().unwrap_or(-1);
                    qb.push(format!(" AND {} = ", spec.column));
                    qb.push_bind(id);
                }
                None => {
                    qb.push(format!(" AND {} IS NULL", spec.column));
                }
            },
        }
    }
    Ok(())
}

/// Validates `sort` and returns the `ORDER BY` clause (database order when absent).
pub fn order_by(
    p: &Params,
    sorts: &[(&'static str, &'static str)],
    default: &str,
) -> ApiResult<String> {
    let Some(sort) = p.get("sort") else {
        return Ok(format!(" ORDER BY {default}"));
    };
    let mut parts = Vec::new();
    let mut unknown = Vec::new();
    for s in sort.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (desc, name) = match s.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, s),
        };
        match sorts.iter().find(|(n, _)| *n == name) {
            Some((_, col)) => parts.push(format!("{col} {}", if desc { "DESC" } else { "ASC" })),
            None => unknown.push(name.to_string()),
        }
    }
    if !unknown.is_empty() {
        let allowed: Vec<&str> = sorts.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::http(
            StatusCode::BAD_REQUEST,
            "InvalidSortQuery",
            format!(
                "Requested sort(s) `{}` is not allowed. Allowed sort(s) are `{}`.",
                unknown.join(", "),
                allowed.join(", ")
            ),
        ));
    }
    if parts.is_empty() {
        return Ok(format!(" ORDER BY {default}"));
    }
    Ok(format!(" ORDER BY {}, {default}", parts.join(", ")))
}

/// One page of a filtered, sorted list: the `count` statement (`SELECT COUNT(*) …
/// WHERE TRUE`) and the `select` statement (`SELECT … WHERE TRUE`) get the same
/// filter clauses; the select gets the order and the page. Returns the rows and the
/// total.
pub struct ListQuery<'a> {
    pub count: &'a str,
    pub select: &'a str,
    pub filters: &'a [FilterSpec],
    pub sorts: &'a [(&'static str, &'static str)],
    pub default_order: &'a str,
}

impl ListQuery<'_> {
    pub async fn fetch<R>(
        &self,
        db: &crate::db::Db,
        p: &Params,
        page: &Page,
    ) -> ApiResult<(Vec<R>, i64)>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let order = order_by(p, self.sorts, self.default_order)?;
        let mut count = sqlx::QueryBuilder::new(self.count);
        apply_filters(&mut count, p, self.filters)?;
        let mut q = sqlx::QueryBuilder::new(self.select);
        apply_filters(&mut q, p, self.filters)?;
        q.push(order)
            .push(" LIMIT ")
            .push_bind(page.per_page)
            .push(" OFFSET ")
            .push_bind(page.offset());
        // The count and the page do not depend on each other: one round trip's wait.
        let (total, rows): (i64, Vec<R>) = futures::try_join!(
            count.build_query_scalar().fetch_one(db),
            q.build_query_as().fetch_all(db)
        )?;
        Ok((rows, total))
    }
}

/// [`ListQuery`] in one statement: the total rides on the page as its last column,
/// an uncorrelated `(SELECT COUNT(*) FROM … WHERE TRUE <filters>)` that PostgreSQL
/// runs once, so a page costs one round trip instead of two. `from` is
/// `FROM … WHERE TRUE` of both the count and the page, `columns` the page's columns
/// (decoders read them by position, the total comes after them). Only a page past
/// the end (no row to carry the total) runs the count on its own.
pub struct FoldedListQuery<'a> {
    pub columns: &'a str,
    /// `FROM … WHERE TRUE` of the page.
    pub from: &'a str,
    /// `FROM … WHERE TRUE` of the count (the page's without its joins).
    pub count_from: &'a str,
    pub filters: &'a [FilterSpec],
    pub sorts: &'a [(&'static str, &'static str)],
    pub default_order: &'a str,
}

impl FoldedListQuery<'_> {
    pub async fn fetch<R>(
        &self,
        db: &crate::db::Db,
        p: &Params,
        page: &Page,
    ) -> ApiResult<(Vec<R>, i64)>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        use sqlx::Row;
        let order = order_by(p, self.sorts, self.default_order)?;
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {}, (SELECT COUNT(*) {}",
            self.columns, self.count_from
        ));
        apply_filters(&mut q, p, self.filters)?;
        q.push(") ").push(self.from);
        apply_filters(&mut q, p, self.filters)?;
        q.push(order)
            .push(" LIMIT ")
            .push_bind(page.per_page)
            .push(" OFFSET ")
            .push_bind(page.offset());
        let rows: Vec<sqlx::postgres::PgRow> = q.build().fetch_all(db).await?;
        let total = match rows.first() {
            Some(r) => r.try_get::<i64, _>(r.len() - 1)?,
            None if page.page > 1 => {
                let mut count =
                    sqlx::QueryBuilder::new(format!("SELECT COUNT(*) {}", self.count_from));
                apply_filters(&mut count, p, self.filters)?;
                count.build_query_scalar().fetch_one(db).await?
            }
            // An empty first page: nothing matches.
            None => 0,
        };
        let rows = rows
            .iter()
            .map(R::from_row)
            .collect::<Result<Vec<R>, sqlx::Error>>()?;
        Ok((rows, total))
    }
}

/// The paginated list response for `items` rendered from one page.
pub fn page_response(
    object: &str,
    items: Vec<Value>,
    total: i64,
    page: &Page,
    url: &str,
) -> Response {
    let mut w = ListWriter::new(object, items.len());
    for attrs in &items {
        w.push(attrs);
    }
    w.finish_paginated(total, page, url)
}

/// Encodes a list body straight into one buffer, item by item, from any
/// `Serialize` attributes (typed transformer output or JSON), byte for byte what
/// `ok(&paginated(object, items, pagination(…)))` produces, without building the
/// envelope as a JSON tree first.
pub struct ListWriter {
    buf: Vec<u8>,
    /// `{"object":"<object>","attributes":`, encoded once.
    head: Vec<u8>,
    count: usize,
}

impl ListWriter {
    /// `items` sizes the buffer (an item is typically a few hundred bytes).
    pub fn new(object: &str, items: usize) -> ListWriter {
        ListWriter::with_item_size(object, items, 640)
    }

    /// Like [`ListWriter::new`] with the expected encoded size of one item, so a
    /// page of large items is not copied while the buffer grows.
    pub fn with_item_size(object: &str, items: usize, item_bytes: usize) -> ListWriter {
        let mut buf = Vec::with_capacity(512 + items * item_bytes);
        buf.extend_from_slice(br#"{"object":"list","data":["#);
        let mut head = br#"{"object":"#.to_vec();
        json::str_into(&mut head, object);
        head.extend_from_slice(br#","attributes":"#);
        ListWriter {
            buf,
            head,
            count: 0,
        }
    }

    /// Appends `{"object": object, "attributes": attrs}`.
    pub fn push<T: Serialize + ?Sized>(&mut self, attrs: &T) {
        if self.count > 0 {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(&self.head);
        let mark = self.buf.len();
        if !json::compact_into(&mut self.buf, attrs) {
            // Our types do not fail to serialise; keep the body valid if one does.
            self.buf.truncate(mark);
            self.buf.extend_from_slice(b"{}");
        }
        self.buf.push(b'}');
        self.count += 1;
    }

    /// Closes the list with `meta.pagination` and answers 200.
    pub fn finish_paginated(self, total: i64, page: &Page, base: &str) -> Response {
        self.finish_paginated_query(total, page, base, None)
    }

    /// [`ListWriter::finish_paginated`] with the links keeping the incoming query
    /// (client lists), as [`pagination`]'s `keep_query`.
    pub fn finish_paginated_query(
        mut self,
        total: i64,
        page: &Page,
        base: &str,
        keep_query: Option<&Params>,
    ) -> Response {
        self.buf.extend_from_slice(br#"],"meta":"#);
        let meta = pagination(total, self.count, page, base, keep_query);
        json::compact_into(&mut self.buf, &meta);
        self.buf.push(b'}');
        let mut resp = (StatusCode::OK, self.buf).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_links_are_an_empty_object_and_total_pages_at_least_one() {
        let p = Page {
            page: 1,
            per_page: 50,
        };
        let m = pagination(0, 0, &p, "http://x/api/application/users", None);
        assert_eq!(m["pagination"]["total_pages"], 1);
        assert_eq!(m["pagination"]["links"], json!({}));
        let p = Page {
            page: 2,
            per_page: 10,
        };
        let m = pagination(35, 10, &p, "http://x/u", None);
        assert_eq!(
            m["pagination"]["links"],
            json!({"previous": "http://x/u?page=1", "next": "http://x/u?page=3"})
        );
    }

    #[test]
    fn list_writer_matches_the_json_envelope_byte_for_byte() {
        let p = Page {
            page: 2,
            per_page: 2,
        };
        let items = vec![
            json!({"id": 1, "name": "a/b é", "relationships": {"x": {"object": "list", "data": []}}}),
            json!({"id": 2, "name": null}),
        ];
        let expected = json::compact(&paginated(
            "user",
            items.clone(),
            pagination(5, 2, &p, "http://x/api/application/users", None),
        ));
        let mut w = ListWriter::new("user", items.len());
        for i in &items {
            w.push(i);
        }
        let resp = w.finish_paginated(5, &p, "http://x/api/application/users");
        let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&expected)
        );
        let empty = ListWriter::new("server", 0).finish_paginated(0, &p, "u");
        let body = futures::executor::block_on(axum::body::to_bytes(empty.into_body(), usize::MAX))
            .unwrap();
        let expected = json::compact(&paginated(
            "server",
            vec![],
            pagination(0, 0, &p, "u", None),
        ));
        assert_eq!(&body[..], &expected[..]);
    }

    #[test]
    fn includes_keep_two_levels_and_imply_parents() {
        let i = Includes::from_list(vec!["servers.allocations.node".into(), "user".into()]);
        assert!(i.has("servers") && i.has("servers.allocations") && i.has("user"));
        assert!(!i.has("servers.allocations.node"));
        assert!(i.nested("servers").has("allocations"));
    }
}
