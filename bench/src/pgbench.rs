//! The real `pgbench` running a custom script made of captured statements: each `$n`
//! becomes a pgbench variable defined with `-D`, so `-M prepared` binds it as a
//! parameter of a prepared statement, as the handler's driver does.

use crate::sqllog::Statement;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A pgbench script and the `-D name=value` definitions it needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Script {
    pub text: String,
    pub defines: Vec<(String, String)>,
}

/// One transaction = the statements, in order. NULL parameters become `NULL` literals.
pub fn script(stmts: &[Statement]) -> Script {
    let mut text = String::new();
    let mut defines = Vec::new();
    for (i, s) in stmts.iter().enumerate() {
        let mut sql = String::with_capacity(s.sql.len());
        let mut chars = s.sql.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                let mut end = at + 1;
                while let Some((j, d)) = chars.peek().copied() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    end = j + 1;
                    chars.next();
                }
                let n: usize = s.sql[at + 1..end].parse().unwrap_or(0);
                match s.params.get(n.wrapping_sub(1)) {
                    Some(Some(v)) => {
                        let name = format!("q{}_{}", i + 1, n);
                        sql.push(':');
                        sql.push_str(&name);
                        if !defines.iter().any(|(k, _)| *k == name) {
                            defines.push((name, v.clone()));
                        }
                    }
                    Some(None) => sql.push_str("NULL"),
                    None => sql.push_str(&s.sql[at..end]),
                }
                continue;
            }
            sql.push(c);
        }
        // A script command may span lines; a semicolon ends it.
        text.push_str(sql.trim_end().trim_end_matches(';'));
        text.push_str(";\n");
    }
    Script { text, defines }
}

/// `pgbench` from the PostgreSQL installation the cluster runs on.
pub fn find_binary() -> Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("pgbench");
            if p.exists() {
                return Ok(p);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("bin/pgbench"))
            .filter(|p| p.exists())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Ok(p);
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("pgbench");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("pgbench not found: install Debian's postgresql-contrib (or postgresql-client) package")
}

/// What pgbench printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    pub transactions: Option<u64>,
    pub failed: Option<u64>,
}

pub fn parse_output(out: &str) -> Result<Outcome> {
    let mut tps = None;
    let mut latency_avg_ms = None;
    let mut transactions = None;
    let mut failed = None;
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tps = ") {
            // `tps = 1234.5 (without initial connection time)`; older versions also
            // print an `including connections establishing` line first.
            if tps.is_none() || rest.contains("without") || rest.contains("excluding") {
                tps = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            }
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            latency_avg_ms = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ")
        {
            transactions = rest.split(['/', ' ']).next().and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            failed = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        }
    }
    Ok(Outcome {
        tps: tps.with_context(|| format!("no `tps = ` line in pgbench's output:\n{out}"))?,
        latency_avg_ms,
        transactions,
        failed,
    })
}

/// Connection and load settings for one pgbench run.
pub struct Run<'a> {
    pub binary: &'a Path,
    pub socket_dir: &'a Path,
    pub port: u16,
    pub user: &'a str,
    pub database: &'a str,
    pub clients: u32,
    pub threads: u32,
    pub seconds: u64,
}

pub fn run(r: &Run<'_>, script: &Script, script_path: &Path) -> Result<Outcome> {
    std::fs::write(script_path, &script.text)?;
    let mut cmd = Command::new(r.binary);
    cmd.arg("-n") // no vacuum: the tables are ours, not pgbench's
        .args(["-M", "prepared"])
        .args(["-c", &r.clients.to_string()])
        .args(["-j", &r.threads.to_string()])
        .args(["-T", &r.seconds.to_string()])
        .arg("-h")
        .arg(r.socket_dir)
        .args(["-p", &r.port.to_string()])
        .args(["-U", r.user])
        .arg("-f")
        .arg(script_path);
    for (k, v) in &script.defines {
        cmd.arg("-D").arg(format!("{k}={v}"));
    }
    cmd.arg(r.database);
    let out = cmd
        .output()
        .with_context(|| format!("running {}", r.binary.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_output(&stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_pgbench_variables_and_nulls_literals() {
        let s = script(&[
            Statement {
                pid: 1,
                sql: "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $10".into(),
                params: vec![
                    Some("x".into()),
                    None,
                    Some("3".into()),
                    Some("4".into()),
                    Some("5".into()),
                    Some("6".into()),
                    Some("7".into()),
                    Some("8".into()),
                    Some("9".into()),
                    Some("{1,2}".into()),
                ],
            },
            Statement {
                pid: 1,
                sql: "SELECT COUNT(*)\nFROM users;".into(),
                params: vec![],
            },
        ]);
        assert_eq!(
            s.text,
            "SELECT * FROM t WHERE a = :q1_1 AND b = NULL AND c = :q1_10;\nSELECT COUNT(*)\nFROM users;\n"
        );
        assert_eq!(
            s.defines,
            vec![
                ("q1_1".to_string(), "x".to_string()),
                ("q1_10".to_string(), "{1,2}".to_string())
            ]
        );
    }

    #[test]
    fn reads_tps_without_connection_time_and_counts() {
        let out = "transaction type: bench.sql\nscaling factor: 1\nquery mode: prepared\n\
                   number of clients: 32\nnumber of threads: 2\n\
                   number of transactions actually processed: 12345\n\
                   number of failed transactions: 0 (0.000%)\n\
                   latency average = 25.900 ms\ninitial connection time = 40.1 ms\n\
                   tps = 1234.567890 (without initial connection time)\n";
        let o = parse_output(out).unwrap();
        assert_eq!(o.tps, 1234.56789);
        assert_eq!(o.latency_avg_ms, Some(25.9));
        assert_eq!(o.transactions, Some(12345));
        assert_eq!(o.failed, Some(0));
        assert!(parse_output("pgbench: error").is_err());
    }
}
