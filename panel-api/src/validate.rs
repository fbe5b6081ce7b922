//! Laravel-style validation of loosely typed JSON input (reference §3.2): the same
//! rule semantics (implicit rules, `nullable`, `sometimes`, size by type), the same
//! English messages, `meta.source_field` with dots and `meta.rule` in snake_case,
//! one error per message, fields in rule order.

use crate::error::{ApiError, FieldError};
use regex::Regex;
use serde_json::Value;

#[derive(Clone)]
pub enum Rule {
    Required,
    Present,
    Filled,
    Nullable,
    Sometimes,
    String,
    Integer,
    Numeric,
    Boolean,
    Array,
    Email,
    Max(f64),
    Min(f64),
    Between(f64, f64),
    Size(f64),
    In(&'static [&'static str]),
    /// `in:a,b` from a rule string (egg variables).
    InList(Vec<String>),
    /// `regex:/…/` from a rule string (egg variables).
    Pattern(Regex),
    AlphaDash,
    /// A regex, optionally reported under another rule name with its own message
    /// (upstream's `p_username` is a regex with a custom message).
    Regex(&'static Regex),
    Custom {
        rule: &'static str,
        message: &'static str,
        test: fn(&Value) -> bool,
    },
    /// Required when the given (dotted) key is absent or empty.
    RequiredWithout(&'static str),
    /// Required when the given key is present and not empty.
    RequiredWith(&'static str),
}

impl Rule {
    fn implicit(&self) -> bool {
        matches!(
            self,
            Rule::Required | Rule::Present | Rule::RequiredWithout(_) | Rule::RequiredWith(_)
        )
    }
    fn name(&self) -> &'static str {
        match self {
            Rule::Required => "required",
            Rule::Present => "present",
            Rule::Filled => "filled",
            Rule::Nullable => "nullable",
            Rule::Sometimes => "sometimes",
            Rule::String => "string",
            Rule::Integer => "integer",
            Rule::Numeric => "numeric",
            Rule::Boolean => "boolean",
            Rule::Array => "array",
            Rule::Email => "email",
            Rule::Max(_) => "max",
            Rule::Min(_) => "min",
            Rule::Between(..) => "between",
            Rule::Size(_) => "size",
            Rule::In(_) | Rule::InList(_) => "in",
            Rule::Pattern(_) => "regex",
            Rule::AlphaDash => "alpha_dash",
            Rule::Regex(_) => "regex",
            Rule::Custom { rule, .. } => rule,
            Rule::RequiredWithout(_) => "required_without",
            Rule::RequiredWith(_) => "required_with",
        }
    }
}

/// Looks up a dotted key (`limits.memory`) in a JSON object.
pub fn lookup<'a>(data: &'a Value, key: &str) -> Option<&'a Value> {
    let mut cur = data;
    for part in key.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

/// PHP `is_numeric`.
pub fn is_numeric(v: &Value) -> bool {
    match v {
        Value::Number(_) => true,
        Value::String(s) => {
            crate::regex!(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$").is_match(s)
        }
        _ => false,
    }
}

/// PHP `filter_var($v, FILTER_VALIDATE_INT)`.
pub fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
            !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && t.parse::<i64>().is_ok()
                && (digits == "0" || !digits.starts_with('0'))
        }
        _ => false,
    }
}

/// Reads a validated numeric value as an integer (numeric strings and floats truncate).
pub fn as_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

/// Reads a validated boolean (`true`, `false`, `0`, `1`, `"0"`, `"1"`).
pub fn as_bool(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Reads a string value (numbers print as PHP would cast them).
pub fn as_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("1".into()),
        Value::Bool(false) => Some(String::new()),
        _ => None,
    }
}

fn is_bool(v: &Value) -> bool {
    match v {
        Value::Bool(_) => true,
        Value::Number(n) => matches!(n.as_i64(), Some(0) | Some(1)),
        Value::String(s) => s == "0" || s == "1",
        _ => false,
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

static EMAIL: once_cell::sync::Lazy<Regex> = once_cell::sync::Lazy::new(|| {
    Regex::new(r"^[^\s@<>(),;:\\\x22\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
        .expect("static regex")
});

/// Collects the messages of one request.
pub struct Validator<'a> {
    data: &'a Value,
    errors: Vec<(usize, FieldError)>,
    seq: usize,
}

impl<'a> Validator<'a> {
    pub fn new(data: &'a Value) -> Self {
        Validator {
            data,
            errors: Vec::new(),
            seq: 0,
        }
    }

    pub fn data(&self) -> &'a Value {
        self.data
    }

    /// Validates `key` with the default attribute name (`_` → space).
    pub fn check(&mut self, key: &str, rules: &[Rule]) -> bool {
        let attr = key.replace('_', " ");
        self.check_as(key, &attr, rules)
    }

    /// Validates `key`, naming it `attr` in messages. Returns whether it passed.
    pub fn check_as(&mut self, key: &str, attr: &str, rules: &[Rule]) -> bool {
        self.seq += 1;
        let seq = self.seq;
        let value = lookup(self.data, key);
        let present = value.is_some();
        if rules.iter().any(|r| matches!(r, Rule::Sometimes)) && !present {
            return true;
        }
        let nullable = rules.iter().any(|r| matches!(r, Rule::Nullable));
        let numeric_ctx = rules
            .iter()
            .any(|r| matches!(r, Rule::Numeric | Rule::Integer));
        let mut ok = true;
        for rule in rules {
            if matches!(rule, Rule::Nullable | Rule::Sometimes) {
                continue;
            }
            if !rule.implicit() {
                // Non-implicit rules only run on present, non-empty-string values,
                // and not on null when the field is nullable.
                match value {
                    None => continue,
                    Some(Value::String(s)) if s.trim().is_empty() => continue,
                    Some(Value::Null) if nullable => continue,
                    _ => {}
                }
            }
            if let Some(message) = self.run(rule, key, attr, value, numeric_ctx) {
                ok = false;
                self.errors.push((
                    seq,
                    FieldError {
                        field: key.to_string(),
                        rule: rule.name().to_string(),
                        message,
                    },
                ));
                if rule.implicit() {
                    break;
                }
            }
        }
        ok
    }

    fn run(
        &self,
        rule: &Rule,
        _key: &str,
        attr: &str,
        value: Option<&Value>,
        numeric_ctx: bool,
    ) -> Option<String> {
        let v = value.unwrap_or(&Value::Null);
        let size = || -> Option<f64> {
            match v {
                Value::Array(a) => Some(a.len() as f64),
                Value::Object(o) => Some(o.len() as f64),
                _ if numeric_ctx && is_numeric(v) => match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                },
                Value::String(s) => Some(s.chars().count() as f64),
                Value::Number(n) => Some(n.to_string().chars().count() as f64),
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                Value::Null => Some(0.0),
            }
        };
        let kind = || -> &'static str {
            match v {
                Value::Array(_) | Value::Object(_) => "array",
                _ if numeric_ctx && is_numeric(v) => "numeric",
                _ => "string",
            }
        };
        match rule {
            Rule::Required => is_empty(value).then(|| format!("The {attr} field is required.")),
            Rule::Present => value
                .is_none()
                .then(|| format!("The {attr} field must be present.")),
            Rule::Filled => is_empty(value).then(|| format!("The {attr} field is required.")),
            Rule::RequiredWithout(other) => (is_empty(lookup(self.data, other)) && is_empty(value))
                .then(|| {
                    format!(
                        "The {attr} field is required when {} is not present.",
                        other.replace('_', " ")
                    )
                }),
            Rule::RequiredWith(other) => (!is_empty(lookup(self.data, other)) && is_empty(value))
                .then(|| {
                    format!(
                        "The {attr} field is required when {} is present.",
                        other.replace('_', " ")
                    )
                }),
            Rule::Nullable | Rule::Sometimes => None,
            Rule::String => (!v.is_string()).then(|| format!("The {attr} must be a string.")),
            Rule::Integer => (!is_integer(v)).then(|| format!("The {attr} must be an integer.")),
            Rule::Numeric => (!is_numeric(v)).then(|| format!("The {attr} must be a number.")),
            Rule::Boolean => {
                (!is_bool(v)).then(|| format!("The {attr} field must be true or false."))
            }
            Rule::Array => {
                (!(v.is_array() || v.is_object())).then(|| format!("The {attr} must be an array."))
            }
            Rule::Email => {
                let ok = v.as_str().map(|s| EMAIL.is_match(s)).unwrap_or(false);
                (!ok).then(|| format!("The {attr} must be a valid email address."))
            }
            Rule::Max(max) => {
                let s = size()?;
                (s > *max).then(|| match kind() {
                    "numeric" => format!("The {attr} may not be greater than {}.", fmt_num(*max)),
                    "array" => {
                        format!("The {attr} may not have more than {} items.", fmt_num(*max))
                    }
                    _ => format!(
                        "The {attr} may not be greater than {} characters.",
                        fmt_num(*max)
                    ),
                })
            }
            Rule::Min(min) => {
                let s = size()?;
                (s < *min).then(|| match kind() {
                    "numeric" => format!("The {attr} must be at least {}.", fmt_num(*min)),
                    "array" => format!("The {attr} must have at least {} items.", fmt_num(*min)),
                    _ => format!("The {attr} must be at least {} characters.", fmt_num(*min)),
                })
            }
            Rule::Between(min, max) => {
                let s = size()?;
                (s < *min || s > *max).then(|| match kind() {
                    "numeric" => format!(
                        "The {attr} must be between {} and {}.",
                        fmt_num(*min),
                        fmt_num(*max)
                    ),
                    "array" => format!(
                        "The {attr} must have between {} and {} items.",
                        fmt_num(*min),
                        fmt_num(*max)
                    ),
                    _ => format!(
                        "The {attr} must be between {} and {} characters.",
                        fmt_num(*min),
                        fmt_num(*max)
                    ),
                })
            }
            Rule::Size(n) => {
                let s = size()?;
                (s != *n).then(|| match kind() {
                    "numeric" => format!("The {attr} must be {}.", fmt_num(*n)),
                    "array" => format!("The {attr} must contain {} items.", fmt_num(*n)),
                    _ => format!("The {attr} must be {} characters.", fmt_num(*n)),
                })
            }
            Rule::In(list) => {
                let s = match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
                    _ => None,
                };
                let ok = s.map(|s| list.contains(&s.as_str())).unwrap_or(false);
                (!ok).then(|| format!("The selected {attr} is invalid."))
            }
            Rule::InList(list) => {
                let s = as_string(Some(v)).filter(|_| !v.is_array() && !v.is_object());
                let ok = s.map(|s| list.contains(&s)).unwrap_or(false);
                (!ok).then(|| format!("The selected {attr} is invalid."))
            }
            Rule::Pattern(re) => {
                let s = as_string(Some(v)).filter(|_| v.is_string() || v.is_number());
                let ok = s.map(|s| re.is_match(&s)).unwrap_or(false);
                (!ok).then(|| format!("The {attr} format is invalid."))
            }
            Rule::AlphaDash => {
                let s = as_string(Some(v)).filter(|_| v.is_string() || v.is_number());
                let ok = s
                    .map(|s| {
                        s.chars()
                            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
                    })
                    .unwrap_or(false);
                (!ok).then(|| format!("The {attr} may only contain letters, numbers, and dashes."))
            }
            Rule::Regex(re) => {
                let s = as_string(Some(v)).filter(|_| v.is_string() || v.is_number());
                let ok = s.map(|s| re.is_match(&s)).unwrap_or(false);
                (!ok).then(|| format!("The {attr} format is invalid."))
            }
            Rule::Custom { message, test, .. } => {
                (!test(v)).then(|| message.replace(":attribute", attr))
            }
        }
    }

    /// Whether `key` already has an error (dependent checks skip then).
    pub fn has_error(&self, key: &str) -> bool {
        self.errors.iter().any(|(_, e)| e.field == key)
    }

    /// Adds a message for `key` (from a check that needs the database, such as
    /// `unique`), ordered with that field's other messages.
    pub fn add(&mut self, key: &str, rule: &str, message: impl Into<String>) {
        let seq = self
            .errors
            .iter()
            .find(|(_, e)| e.field == key)
            .map(|(s, _)| *s)
            .unwrap_or(usize::MAX / 2 + self.errors.len());
        self.errors.push((
            seq,
            FieldError {
                field: key.into(),
                rule: rule.into(),
                message: message.into(),
            },
        ));
    }

    /// Adds a message for `key` ordered as if its checks ran at position `seq_of` —
    /// the field named there.
    pub fn add_after(
        &mut self,
        anchor_seq: usize,
        key: &str,
        rule: &str,
        message: impl Into<String>,
    ) {
        self.errors.push((
            anchor_seq,
            FieldError {
                field: key.into(),
                rule: rule.into(),
                message: message.into(),
            },
        ));
    }

    /// The sequence number the next `check` call will get.
    pub fn next_seq(&self) -> usize {
        self.seq + 1
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// 422 with every message, or Ok.
    pub fn finish(mut self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|(s, _)| *s);
        Err(ApiError::Validation(
            self.errors.into_iter().map(|(_, e)| e).collect(),
        ))
    }
}

/// Parses a Laravel rule string (`required|string|max:20`) as eggs carry them.
/// Unknown rules are ignored, as a rule we cannot check must not block a save.
pub fn parse_rules(spec: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    // `regex:` may itself contain `|`; it takes the rest of the string.
    let mut rest = spec;
    while !rest.is_empty() {
        if rest.starts_with("regex:") {
            parts.push(rest.to_string());
            break;
        }
        match rest.split_once('|') {
            Some((a, b)) => {
                parts.push(a.to_string());
                rest = b;
            }
            None => {
                parts.push(rest.to_string());
                break;
            }
        }
    }
    for part in parts {
        let (name, arg) = match part.split_once(':') {
            Some((n, a)) => (n.trim().to_string(), Some(a.to_string())),
            None => (part.trim().to_string(), None),
        };
        let num = |a: &Option<String>| a.as_deref().and_then(|s| s.trim().parse::<f64>().ok());
        let rule = match name.as_str() {
            "required" => Some(Rule::Required),
            "nullable" => Some(Rule::Nullable),
            "sometimes" => Some(Rule::Sometimes),
            "present" => Some(Rule::Present),
            "filled" => Some(Rule::Filled),
            "string" => Some(Rule::String),
            "integer" | "int" => Some(Rule::Integer),
            "numeric" => Some(Rule::Numeric),
            "boolean" | "bool" => Some(Rule::Boolean),
            "array" => Some(Rule::Array),
            "email" => Some(Rule::Email),
            "alpha_dash" => Some(Rule::AlphaDash),
            "max" => num(&arg).map(Rule::Max),
            "min" => num(&arg).map(Rule::Min),
            "size" => num(&arg).map(Rule::Size),
            "between" => arg
                .as_deref()
                .and_then(|a| a.split_once(','))
                .and_then(|(a, b)| {
                    Some(Rule::Between(
                        a.trim().parse().ok()?,
                        b.trim().parse().ok()?,
                    ))
                }),
            "in" => arg.map(|a| Rule::InList(a.split(',').map(|s| s.to_string()).collect())),
            "regex" => arg.and_then(|a| php_regex(&a)).map(Rule::Pattern),
            _ => None,
        };
        out.extend(rule);
    }
    out
}

/// Converts a PHP `/pattern/flags` regex into a Rust one.
fn php_regex(src: &str) -> Option<Regex> {
    let src = src.trim();
    let delim = src.chars().next()?;
    let end = src.rfind(delim)?;
    if end == 0 {
        return None;
    }
    let body = &src[delim.len_utf8()..end];
    let flags: String = src[end + delim.len_utf8()..]
        .chars()
        .filter(|c| matches!(c, 'i' | 'm' | 's' | 'x' | 'u'))
        .filter(|c| *c != 'u')
        .collect();
    let pattern = if flags.is_empty() {
        body.to_string()
    } else {
        format!("(?{flags}){body}")
    };
    Regex::new(&pattern).ok()
}

/// Compiles a static regex once.
#[macro_export]
macro_rules! regex {
    ($re:literal) => {{
        static RE: once_cell::sync::Lazy<regex::Regex> =
            once_cell::sync::Lazy::new(|| regex::Regex::new($re).expect("static regex"));
        &*RE
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(v: Validator) -> Vec<(String, String, String)> {
        match v.finish() {
            Ok(()) => vec![],
            Err(ApiError::Validation(e)) => e
                .into_iter()
                .map(|e| (e.field, e.rule, e.message))
                .collect(),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn required_stops_the_field_and_reports_once() {
        let d = json!({"name": null});
        let mut v = Validator::new(&d);
        v.check("name", &[Rule::Required, Rule::String, Rule::Max(191.0)]);
        assert_eq!(
            msgs(v),
            vec![(
                "name".into(),
                "required".into(),
                "The name field is required.".into()
            )]
        );
    }

    #[test]
    fn non_implicit_rules_skip_absent_fields_and_nullable_nulls() {
        let d = json!({"b": null});
        let mut v = Validator::new(&d);
        v.check("a", &[Rule::String]);
        v.check("b", &[Rule::Nullable, Rule::String]);
        assert!(msgs(v).is_empty());
        let d = json!({"b": null});
        let mut v = Validator::new(&d);
        v.check("b", &[Rule::String]);
        assert_eq!(msgs(v)[0].2, "The b must be a string.");
    }

    #[test]
    fn size_rules_depend_on_type() {
        let d =
            json!({"limits": {"memory": "-5", "io": 5000}, "name": "abcdef", "list": [1, 2, 3]});
        let mut v = Validator::new(&d);
        v.check(
            "limits.memory",
            &[Rule::Required, Rule::Numeric, Rule::Min(0.0)],
        );
        v.check(
            "limits.io",
            &[Rule::Required, Rule::Numeric, Rule::Between(10.0, 1000.0)],
        );
        v.check("name", &[Rule::String, Rule::Max(3.0)]);
        v.check("list", &[Rule::Array, Rule::Max(2.0)]);
        let m: Vec<String> = msgs(v).into_iter().map(|m| m.2).collect();
        assert_eq!(
            m,
            vec![
                "The limits.memory must be at least 0.",
                "The limits.io must be between 10 and 1000.",
                "The name may not be greater than 3 characters.",
                "The list may not have more than 2 items.",
            ]
        );
    }

    #[test]
    fn every_failing_rule_reports_after_a_passing_required() {
        let d = json!({"email": 12});
        let mut v = Validator::new(&d);
        v.check(
            "email",
            &[Rule::Required, Rule::Email, Rule::Between(1.0, 1.0)],
        );
        let m = msgs(v);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, "email");
        assert_eq!(m[1].1, "between");
    }

    #[test]
    fn integer_and_numeric_follow_php() {
        for ok in [json!(5), json!("5"), json!("-12")] {
            assert!(is_integer(&ok), "{ok}");
        }
        for bad in [
            json!(1.5),
            json!("1.5"),
            json!("abc"),
            json!(""),
            json!(true),
            json!("05"),
        ] {
            assert!(!is_integer(&bad), "{bad}");
        }
        for ok in [json!(1.5), json!("1.5"), json!("1e3"), json!(" 7")] {
            assert!(is_numeric(&ok), "{ok}");
        }
        for bad in [
            json!("abc"),
            json!("0x1A"),
            json!(null),
            json!([1]),
            json!("inf"),
            json!("nan"),
        ] {
            assert!(!is_numeric(&bad), "{bad}");
        }
    }
}
