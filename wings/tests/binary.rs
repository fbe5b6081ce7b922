//! The `wings` executable's own command line: what an operator sees before any
//! daemon runs. (Building this test also makes cargo build `target/<profile>/wings`,
//! which the end-to-end CLI tests in `tests/tests/daemon_cli.rs` run.)

use std::process::Command;

fn wings() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wings"))
}

#[test]
fn version_names_the_package_version() {
    let out = wings().arg("--version").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("wings {}", env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );
}

#[test]
fn a_missing_configuration_is_a_clear_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("wings-bin-{}", std::process::id()));
    let missing = dir.join("no-such-config.yml");
    let out = wings().arg("--config").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "exit status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("wings: "), "{stderr}");
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the error names the file: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unknown_subcommand_is_refused_with_usage() {
    let out = wings().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Usage"), "{stderr}");
}
