//! Reading back the statements a program sent, from PostgreSQL's own log
//! (`log_statement = all` with the line prefix `@@<pid>@@ `), so the pgbench side of
//! the benchmark runs exactly what the handler ran, not our reading of its source.

use anyhow::{bail, Result};

/// The prefix the capture window sets (`log_line_prefix`): the backend's pid.
pub const LINE_PREFIX: &str = "@@%p@@ ";

/// One statement as a backend executed it, with its bound parameters (`None` = NULL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub pid: u32,
    pub sql: String,
    pub params: Vec<Option<String>>,
}

/// Statements in the order they were logged. Lines continuing a multi-line statement
/// start with a tab; `DETAIL:  parameters:` lines belong to the backend's previous
/// `execute`.
pub fn parse(log: &str) -> Result<Vec<Statement>> {
    // Join continuation lines to the entry they belong to.
    let mut entries: Vec<String> = Vec::new();
    // Lines written before the prefix took effect start entries too (then skipped),
    // so that their continuation lines are not glued to one of ours.
    for line in log.lines() {
        if let Some(cont) = line.strip_prefix('\t') {
            if let Some(last) = entries.last_mut() {
                last.push('\n');
                last.push_str(cont);
            }
        } else {
            entries.push(line.to_string());
        }
    }
    let mut out: Vec<Statement> = Vec::new();
    for e in entries {
        let Some(rest) = e.strip_prefix("@@") else {
            continue;
        };
        let Some((pid, rest)) = rest.split_once("@@ ") else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if let Some(msg) = rest.strip_prefix("LOG:  execute ") {
            // `execute <name>: SQL`; the name is `<unnamed>` or e.g. `sqlx_s_3`.
            let Some((_, sql)) = msg.split_once(": ") else {
                continue;
            };
            out.push(Statement {
                pid,
                sql: sql.to_string(),
                params: Vec::new(),
            });
        } else if let Some(sql) = rest.strip_prefix("LOG:  statement: ") {
            out.push(Statement {
                pid,
                sql: sql.to_string(),
                params: Vec::new(),
            });
        } else if let Some(params) = rest.strip_prefix("DETAIL:  parameters: ") {
            let Some(stmt) = out.iter_mut().rev().find(|s| s.pid == pid) else {
                continue;
            };
            stmt.params = parse_params(params)?;
        }
    }
    Ok(out)
}

/// `$1 = 'a''b', $2 = NULL` → `[Some("a'b"), None]`.
pub fn parse_params(s: &str) -> Result<Vec<Option<String>>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            bail!("parameter list: expected `$` at {i} in {s:?}");
        }
        let n_start = i + 1;
        let mut j = n_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let n: usize = s[n_start..j].parse()?;
        if n != out.len() + 1 {
            bail!("parameter list: ${n} out of order in {s:?}");
        }
        let Some(rest) = s[j..].strip_prefix(" = ") else {
            bail!("parameter list: expected ` = ` after ${n} in {s:?}");
        };
        i = j + 3;
        if rest.starts_with("NULL") {
            out.push(None);
            i += 4;
        } else if rest.starts_with('\'') {
            let mut val = String::new();
            let mut k = i + 1;
            loop {
                let Some(c) = s[k..].chars().next() else {
                    bail!("parameter list: unterminated value of ${n} in {s:?}");
                };
                if c == '\'' {
                    if s[k + 1..].starts_with('\'') {
                        val.push('\'');
                        k += 2;
                        continue;
                    }
                    k += 1;
                    break;
                }
                val.push(c);
                k += c.len_utf8();
            }
            out.push(Some(val));
            i = k;
        } else {
            bail!("parameter list: unexpected value of ${n} in {s:?}");
        }
        if s[i..].starts_with(", ") {
            i += 2;
        } else if i < b.len() {
            bail!("parameter list: expected `, ` at {i} in {s:?}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_multiline_statements_and_attaches_parameters_per_backend() {
        let log = "2026-01-01 00:00:00 UTC [9] LOG:  statement: SELECT b\n\tFROM other\n\
                   @@10@@ LOG:  execute sqlx_s_1: SELECT a\n\tFROM t WHERE id = $1\n\
                   @@11@@ LOG:  statement: SELECT 1\n\
                   @@10@@ DETAIL:  parameters: $1 = '42'\n\
                   @@10@@ LOG:  execute <unnamed>: SELECT COUNT(*) FROM users WHERE TRUE\n\
                   @@12@@ LOG:  duration: 1 ms\n";
        let s = parse(log).unwrap();
        assert_eq!(
            s,
            vec![
                Statement {
                    pid: 10,
                    sql: "SELECT a\nFROM t WHERE id = $1".into(),
                    params: vec![Some("42".into())]
                },
                Statement {
                    pid: 11,
                    sql: "SELECT 1".into(),
                    params: vec![]
                },
                Statement {
                    pid: 10,
                    sql: "SELECT COUNT(*) FROM users WHERE TRUE".into(),
                    params: vec![]
                },
            ]
        );
    }

    #[test]
    fn parameters_unquote_doubled_quotes_and_keep_nulls_commas_and_utf8() {
        assert_eq!(
            parse_params("$1 = 'it''s, ok', $2 = NULL, $3 = '{1,2,3}', $4 = 'é'").unwrap(),
            vec![
                Some("it's, ok".into()),
                None,
                Some("{1,2,3}".into()),
                Some("é".into())
            ]
        );
        assert!(parse_params("$2 = '1'").is_err());
        assert!(parse_params("$1 = 'open").is_err());
    }
}
