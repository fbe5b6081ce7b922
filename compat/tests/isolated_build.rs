//! Runs `tests/pterodactyl_api.rs` in cargo invocations of its own, so that the
//! workspace build keeps one crypto provider (ring) and the third-party client keeps
//! the one it was published with (aws-lc-rs, through reqwest 0.13's defaults):
//!
//! 1. `cargo tree` shows that the workspace build has neither aws-lc-rs nor OpenSSL,
//!    and that the client's own build has no ring: no binary links two providers;
//! 2. `cargo build -p panel-api -p wings`, unless the workspace build made them
//!    already: the programs under test, as shipped;
//! 3. `cargo test -p ferrodactyl-compat --features upstream-client --test
//!    pterodactyl_api`, pointed at those binaries.
//!
//! Under nextest (CI) the nested builds share this build's target folder; under
//! plain `cargo test`, which holds that folder's lock while tests run, they use
//! `<target>/compat-isolated` instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    // <target>/<profile>/deps/<this test>
    let profile_dir = ferrodactyl_compat::bin_dir().expect("profile folder");
    let target = profile_dir.parent().expect("target folder").to_path_buf();
    if std::env::var_os("NEXTEST").is_some() || std::env::var_os("NEXTEST_RUN_ID").is_some() {
        target
    } else {
        target.join("compat-isolated")
    }
}

fn run(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(cargo());
    cmd.args(args);
    // `cargo tree` builds nothing and takes no target folder.
    if args.first() != Some(&"tree") {
        cmd.arg("--target-dir").arg(target_dir());
    }
    cmd.current_dir(workspace())
        // What cargo set for this test binary describes this package, not the nested
        // invocations.
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .env_remove("CARGO_TARGET_DIR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running cargo {args:?}: {e}"))
}

fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The packages `cargo tree` prints for `args` (`name vX.Y.Z` per line, deduplicated).
fn tree(args: &[&str]) -> String {
    let mut full = vec![
        "tree",
        "--locked",
        "-e",
        "normal,build,dev",
        "--prefix",
        "none",
        "-f",
        "{p}",
    ];
    full.extend_from_slice(args);
    let out = run(&full, &[]);
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has(tree: &str, krate: &str) -> bool {
    tree.lines()
        .any(|l| l.split_whitespace().next() == Some(krate))
}

#[test]
fn pterodactyl_api_runs_in_its_own_build_against_the_shipped_binaries() {
    // 1. One provider per build.
    let workspace_tree = tree(&["--workspace"]);
    for banned in [
        "aws-lc-rs",
        "aws-lc-sys",
        "openssl-sys",
        "native-tls",
        "pterodactyl_api",
    ] {
        assert!(
            !has(&workspace_tree, banned),
            "{banned} is in the workspace build"
        );
    }
    assert!(has(&workspace_tree, "ring"), "the workspace's provider");
    let client_tree = tree(&["-p", "ferrodactyl-compat", "--features", "upstream-client"]);
    assert!(has(&client_tree, "pterodactyl_api"));
    assert!(has(&client_tree, "aws-lc-rs"), "the client's own provider");
    for banned in [
        "ring",
        "openssl-sys",
        "native-tls",
        "panel-api",
        "wings",
        "sqlx",
    ] {
        assert!(
            !has(&client_tree, banned),
            "{banned} is in the client's build: it would meet the client's aws-lc-rs"
        );
    }

    // 2. The programs under test. Under nextest the workspace test build has just
    //    made them (panel-api's and wings' own integration tests make cargo build
    //    their binaries); building them again here could replace the executables
    //    while other tests of the run are starting them.
    let bins = target_dir().join("debug");
    if !(bins.join("panel-api").is_file() && bins.join("wings").is_file()) {
        let out = run(
            &["build", "--locked", "-p", "panel-api", "-p", "wings"],
            &[],
        );
        assert!(
            out.status.success(),
            "cargo build -p panel-api -p wings:\n{}",
            tail(&out.stderr, 60)
        );
    }

    // 3. The client's test, in its own build.
    let out = run(
        &[
            "test",
            "--locked",
            "-p",
            "ferrodactyl-compat",
            "--features",
            "upstream-client",
            "--test",
            "pterodactyl_api",
        ],
        &[("FERRO_COMPAT_BIN_DIR", &bins)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the pterodactyl_api test failed:\n{}\n{}",
        tail(&out.stdout, 200),
        tail(&out.stderr, 80)
    );
    assert!(
        stdout.contains("test result: ok. 1 passed; 0 failed"),
        "exactly the one test ran and passed:\n{stdout}"
    );
}
