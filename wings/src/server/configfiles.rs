//! Egg configuration file rewriting before every start (reference §6.2 `configs`):
//! `properties`, `file`, `json`, `yaml`/`yml` and `ini` parsers; `{{config.*}}`
//! placeholders resolve against the node configuration. `xml` is logged and skipped.

use crate::config::Config;
use openapi::remote::{ConfigurationFile, ConfigurationReplacement};
use regex::Regex;
use serde_json::Value;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

static CONFIG_PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{\s*config\.([\w.\-]+)\s*\}\}").expect("static regex"));

/// The replacement as text, with `{{config.*}}` placeholders resolved.
fn replacement_text(r: &ConfigurationReplacement, cfg_json: &Value) -> String {
    let raw = match &r.replace_with {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    CONFIG_PLACEHOLDER
        .replace_all(&raw, |c: &regex::Captures| {
            let pointer = format!("/{}", c[1].replace('.', "/"));
            match cfg_json.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            }
        })
        .into_owned()
}

/// The replacement as a JSON value for structured formats.
fn replacement_value(r: &ConfigurationReplacement, cfg_json: &Value) -> Value {
    match &r.replace_with {
        Value::String(_) => Value::String(replacement_text(r, cfg_json)),
        v => v.clone(),
    }
}

/// Joins `file` onto the server root without escaping it.
fn safe_join(root: &Path, file: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(file).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Applies every configuration file of the egg inside `root`. Failures are logged per
/// file, as upstream does, and never block the start.
pub fn apply_all(root: &Path, files: &[ConfigurationFile], cfg: &Config) {
    let cfg_json = serde_json::to_value(cfg).unwrap_or(Value::Null);
    for f in files {
        let Some(path) = safe_join(root, &f.file) else {
            tracing::warn!(file = %f.file, "configuration file path escapes the server root");
            continue;
        };
        if let Err(e) = apply(root, &path, f, &cfg_json) {
            tracing::warn!(file = %f.file, parser = %f.parser, error = %e, "failed to update configuration file");
        }
    }
}

/// Refuses paths that leave the server root through symlinks (wings runs as root).
fn check_inside(root: &Path, path: &Path) -> anyhow::Result<()> {
    let root = std::fs::canonicalize(root)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(
            !meta.file_type().is_symlink(),
            "refusing to follow a symlink"
        );
    }
    let mut ancestor = path.parent();
    while let Some(a) = ancestor {
        if let Ok(real) = std::fs::canonicalize(a) {
            anyhow::ensure!(
                real.starts_with(&root),
                "path resolves outside the server root"
            );
            return Ok(());
        }
        ancestor = a.parent();
    }
    anyhow::bail!("path has no existing ancestor")
}

fn apply(root: &Path, path: &Path, f: &ConfigurationFile, cfg_json: &Value) -> anyhow::Result<()> {
    check_inside(root, path)?;
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let out = match f.parser.as_str() {
        "properties" => properties(&existing, &f.replace, cfg_json),
        "file" => plain(&existing, &f.replace, cfg_json),
        "ini" => ini(&existing, &f.replace, cfg_json),
        "json" => {
            let mut v: Value = if existing.trim().is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(&existing)?
            };
            for r in &f.replace {
                set_path(
                    &mut v,
                    &r.matches,
                    replacement_value(r, cfg_json),
                    r.if_value.as_deref(),
                );
            }
            serde_json::to_string_pretty(&v)? + "\n"
        }
        "yaml" | "yml" => {
            let mut v: Value = if existing.trim().is_empty() {
                Value::Object(Default::default())
            } else {
                serde_norway::from_str(&existing)?
            };
            for r in &f.replace {
                set_path(
                    &mut v,
                    &r.matches,
                    replacement_value(r, cfg_json),
                    r.if_value.as_deref(),
                );
            }
            serde_norway::to_string(&v)?
        }
        other => anyhow::bail!("unsupported configuration parser \"{other}\""),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    check_inside(root, path)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(out.as_bytes())?;
    Ok(())
}

/// `key=value` files: existing keys are replaced in place, missing keys appended.
fn properties(existing: &str, replace: &[ConfigurationReplacement], cfg_json: &Value) -> String {
    let mut lines: Vec<String> = existing.lines().map(str::to_string).collect();
    for r in replace {
        let value = replacement_text(r, cfg_json);
        let mut found = false;
        for line in lines.iter_mut() {
            let t = line.trim_start();
            if t.starts_with('#') || t.starts_with('!') {
                continue;
            }
            let Some((k, v)) = t.split_once(['=', ':']) else {
                continue;
            };
            if k.trim() != r.matches {
                continue;
            }
            found = true;
            if r.if_value.as_deref().is_some_and(|iv| iv != v.trim()) {
                continue;
            }
            *line = format!("{}={}", r.matches, value);
        }
        if !found && r.if_value.is_none() {
            lines.push(format!("{}={}", r.matches, value));
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Plain text: a line starting with `match` is replaced by the replacement.
fn plain(existing: &str, replace: &[ConfigurationReplacement], cfg_json: &Value) -> String {
    let mut out = String::new();
    for line in existing.lines() {
        let mut l = line.to_string();
        for r in replace {
            if l.starts_with(&r.matches) {
                l = replacement_text(r, cfg_json);
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// INI: `section.key` (or a bare `key` before any section).
fn ini(existing: &str, replace: &[ConfigurationReplacement], cfg_json: &Value) -> String {
    let mut lines: Vec<String> = existing.lines().map(str::to_string).collect();
    for r in replace {
        let (section, key) = match r.matches.rsplit_once('.') {
            Some((s, k)) => (s.to_string(), k.to_string()),
            None => (String::new(), r.matches.clone()),
        };
        let value = replacement_text(r, cfg_json);
        let mut current = String::new();
        let mut done = false;
        let mut section_end: Option<usize> = if section.is_empty() { Some(0) } else { None };
        for (i, line) in lines.iter_mut().enumerate() {
            let t = line.trim();
            if t.starts_with('[') && t.ends_with(']') {
                current = t[1..t.len() - 1].trim().to_string();
                continue;
            }
            if current == section {
                section_end = Some(i + 1);
                if let Some((k, v)) = t.split_once('=') {
                    if k.trim() == key {
                        if r.if_value.as_deref().is_none_or(|iv| iv == v.trim()) {
                            *line = format!("{key} = {value}");
                        }
                        done = true;
                    }
                }
            }
        }
        if !done && r.if_value.is_none() {
            match section_end {
                Some(i) if !section.is_empty() || lines.is_empty() => {
                    lines.insert(i.min(lines.len()), format!("{key} = {value}"))
                }
                Some(_) => lines.insert(0, format!("{key} = {value}")),
                None => {
                    lines.push(format!("[{section}]"));
                    lines.push(format!("{key} = {value}"));
                }
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Sets a dotted path (`a.b.c`, `list.*.key` for every element) in a JSON value.
fn set_path(root: &mut Value, path: &str, value: Value, if_value: Option<&str>) {
    let parts: Vec<&str> = path.split('.').collect();
    set_parts(root, &parts, &value, if_value);
}

fn set_parts(node: &mut Value, parts: &[&str], value: &Value, if_value: Option<&str>) {
    let Some((head, rest)) = parts.split_first() else {
        return;
    };
    if *head == "*" {
        if let Value::Array(items) = node {
            for item in items {
                set_parts(item, rest, value, if_value);
            }
        }
        return;
    }
    if !node.is_object() {
        *node = Value::Object(Default::default());
    }
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        if let Some(iv) = if_value {
            let current = match obj.get(*head) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => return,
            };
            if current != iv {
                return;
            }
        }
        obj.insert(head.to_string(), value.clone());
        return;
    }
    let child = obj
        .entry(head.to_string())
        .or_insert(Value::Object(Default::default()));
    set_parts(child, rest, value, if_value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rep(m: &str, with: Value, if_value: Option<&str>) -> ConfigurationReplacement {
        ConfigurationReplacement {
            matches: m.into(),
            if_value: if_value.map(str::to_string),
            replace_with: with,
        }
    }

    #[test]
    fn properties_replace_in_place_honour_if_value_and_append() {
        let cfg = json!({"docker": {"network": {"interface": "172.18.0.1"}}});
        let out = properties(
            "#comment\nserver-port=25565\nonline-mode=true\nmotd=hi\n",
            &[
                rep("server-port", json!(25570), None),
                rep("online-mode", json!("false"), Some("false")),
                rep(
                    "motd",
                    json!("on {{config.docker.network.interface}}"),
                    None,
                ),
                rep("query.port", json!(25570), None),
            ],
            &cfg,
        );
        assert_eq!(
            out,
            "#comment\nserver-port=25570\nonline-mode=true\nmotd=on 172.18.0.1\nquery.port=25570\n"
        );
    }

    #[test]
    fn json_and_yaml_paths_with_wildcards() {
        let mut v = json!({"listeners": [{"host": "0.0.0.0:25577"}, {"host": "x"}], "a": {"b": 1}});
        set_path(&mut v, "listeners.*.host", json!("0.0.0.0:30000"), None);
        set_path(&mut v, "a.b", json!(2), Some("1"));
        set_path(&mut v, "a.c", json!(3), Some("9"));
        assert_eq!(
            v,
            json!({"listeners": [{"host": "0.0.0.0:30000"}, {"host": "0.0.0.0:30000"}], "a": {"b": 2}})
        );
    }

    #[test]
    fn file_and_ini_parsers() {
        let out = plain(
            "port 1\nname x\n",
            &[rep("port", json!("port 2"), None)],
            &Value::Null,
        );
        assert_eq!(out, "port 2\nname x\n");
        let out = ini(
            "[server]\nport = 1\n[other]\nx = y\n",
            &[
                rep("server.port", json!(5), None),
                rep("other.z", json!("w"), None),
            ],
            &Value::Null,
        );
        assert_eq!(out, "[server]\nport = 5\n[other]\nx = y\nz = w\n");
    }

    #[test]
    fn symlinks_out_of_the_root_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, "keep").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("server.properties")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let f = |file: &str| ConfigurationFile {
            file: file.into(),
            parser: "properties".into(),
            replace: vec![rep("a", json!("b"), None)],
        };
        apply_all(
            &root,
            &[f("server.properties"), f("up/secret"), f("ok/x.properties")],
            &Config::default(),
        );
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(root.join("ok/x.properties")).unwrap(),
            "a=b\n"
        );
    }

    #[test]
    fn paths_cannot_escape_the_root() {
        assert!(safe_join(Path::new("/srv/a"), "../etc/passwd").is_none());
        assert_eq!(
            safe_join(Path::new("/srv/a"), "/cfg/x.yml").unwrap(),
            PathBuf::from("/srv/a/cfg/x.yml")
        );
    }
}
