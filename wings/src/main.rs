//! The `wings` binary: run the daemon, `configure` from the Panel, `diagnostics`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use wings::config::{Config, DEFAULT_CONFIG_PATH};

#[derive(Parser)]
#[command(
    name = "wings",
    version,
    about = "Ferrodactyl's drop-in Pterodactyl Wings daemon"
)]
struct Cli {
    /// Location of the configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Debug logging (not persisted).
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch this node's configuration from the Panel and write config.yml.
    Configure {
        /// The Panel base URL, e.g. https://panel.example.com
        #[arg(long = "panel-url", short = 'p')]
        panel_url: String,
        /// An Application API key.
        #[arg(long, short = 't')]
        token: String,
        /// The node id.
        #[arg(long, short = 'n')]
        node: String,
        /// Overwrite an existing configuration file.
        #[arg(long)]
        r#override: bool,
        /// Skip TLS certificate verification.
        #[arg(long)]
        allow_insecure: bool,
    },
    /// Print a redacted diagnostics report.
    Diagnostics,
}

/// Logs to stderr and, like upstream, to `<log_directory>/wings.log`.
fn init_logging(debug: bool, log_directory: Option<&str>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = if debug { "debug" } else { "info" };
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let file = log_directory.and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::path::Path::new(dir).join("wings.log"))
            .ok()
    });
    let file_layer = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
    });
    let _ = tracing_subscriber::registry()
        .with(env)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(file_layer)
        .try_init();
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.config, cli.debug).await,
        Some(Command::Configure {
            panel_url,
            token,
            node,
            r#override,
            allow_insecure,
        }) => {
            configure(
                &cli.config,
                &panel_url,
                &token,
                &node,
                r#override,
                allow_insecure,
            )
            .await
        }
        Some(Command::Diagnostics) => diagnostics(&cli.config).await,
    };
    if let Err(e) = result {
        eprintln!("wings: {e:#}");
        std::process::exit(1);
    }
}

async fn run(path: PathBuf, debug: bool) -> anyhow::Result<()> {
    let mut cfg = Config::load(&path)?;
    if debug {
        cfg.debug = true;
    }
    init_logging(cfg.debug, Some(&cfg.system.log_directory));
    let tls = if cfg.api.ssl.enabled {
        Some(wings::daemon::tls_acceptor(
            std::path::Path::new(&cfg.api.ssl.cert),
            std::path::Path::new(&cfg.api.ssl.key),
        )?)
    } else {
        None
    };
    let bind = format!("{}:{}", cfg.api.host, cfg.api.port);
    let sftp_bind = format!(
        "{}:{}",
        cfg.system.sftp.bind_address, cfg.system.sftp.bind_port
    );
    let app = wings::boot(cfg, wings::BootOptions::new(path)).await?;
    // A failing SFTP listener is logged; the HTTP API keeps serving the Panel.
    match tokio::net::TcpListener::bind(&sftp_bind).await {
        Ok(sftp) => {
            tracing::info!(bind = %sftp_bind, "sftp server listening for connections");
            let sftp_app = app.clone();
            tokio::spawn(async move {
                if let Err(e) = wings::sftp::serve(sftp_app, sftp).await {
                    tracing::error!(error = %e, "the SFTP server stopped");
                }
            });
        }
        Err(e) => tracing::error!(bind = %sftp_bind, error = %e, "could not listen for SFTP"),
    }
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("could not listen on {bind}"))?;
    tracing::info!(%bind, tls = tls.is_some(), "configuring internal webserver");
    match tls {
        Some(acceptor) => wings::daemon::serve_tls(app, listener, acceptor).await,
        None => wings::serve(app, listener).await,
    }
}

async fn configure(
    path: &Path,
    panel_url: &str,
    token: &str,
    node: &str,
    overwrite: bool,
    allow_insecure: bool,
) -> anyhow::Result<()> {
    if path.exists() && !overwrite {
        anyhow::bail!(
            "a configuration file already exists at {}; use --override to replace it",
            path.display()
        );
    }
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(allow_insecure)
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let url = format!(
        "{}/api/application/nodes/{}/configuration",
        panel_url.trim_end_matches('/'),
        node
    );
    let resp = client
        .get(&url)
        .bearer_auth(token)
        .header("Accept", "application/vnd.pterodactyl.v1+json")
        .send()
        .await
        .with_context(|| format!("could not reach {url}"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!("the authentication credentials provided were not valid");
    }
    if !status.is_success() {
        anyhow::bail!("the panel answered HTTP {status}");
    }
    let body: serde_json::Value = resp.json().await.context("invalid configuration JSON")?;
    let cfg =
        Config::from_panel(&body).context("the panel's configuration could not be applied")?;
    cfg.save(path)?;
    println!("Successfully configured wings ({}).", path.display());
    Ok(())
}

async fn diagnostics(path: &Path) -> anyhow::Result<()> {
    use std::fmt::Write;
    let mut out = String::new();
    writeln!(out, "|\n| Versions\n| ------------------------------")?;
    writeln!(out, "{:>20}: {}", "Wings", env!("CARGO_PKG_VERSION"))?;
    let docker = wings::environment::docker::DockerEnvironment::connect().await;
    match &docker {
        Ok(d) => {
            use wings::environment::Environment;
            match d.info().await {
                Ok(i) => {
                    writeln!(out, "{:>20}: {}", "Docker", i.version)?;
                    writeln!(out, "{:>20}: {}", "Storage driver", i.storage.driver)?;
                    writeln!(
                        out,
                        "{:>20}: {} v{}",
                        "Cgroups", i.cgroups.driver, i.cgroups.version
                    )?;
                    writeln!(
                        out,
                        "{:>20}: {}/{}",
                        "Containers (running)", i.containers.running, i.containers.total
                    )?;
                }
                Err(e) => writeln!(out, "{:>20}: error: {e}", "Docker")?,
            }
        }
        Err(e) => writeln!(out, "{:>20}: unavailable: {e:#}", "Docker")?,
    }
    writeln!(out, "{:>20}: {}", "Kernel", wings::system::kernel_version())?;
    writeln!(out, "{:>20}: {}", "OS", wings::system::host().os)?;
    writeln!(out, "{:>20}: {}", "Architecture", wings::system::go_arch())?;
    writeln!(out, "{:>20}: {}", "CPU threads", wings::system::cpu_count())?;
    writeln!(
        out,
        "\n|\n| Wings Configuration ({})\n| ------------------------------",
        path.display()
    )?;
    match Config::load(path) {
        Ok(cfg) => {
            let red = cfg.redacted();
            out.push_str(&serde_norway::to_string(&red)?);
            let log = std::path::Path::new(&cfg.system.log_directory).join("wings.log");
            if let Ok(text) = std::fs::read_to_string(&log) {
                writeln!(
                    out,
                    "\n|\n| Latest Wings Logs\n| ------------------------------"
                )?;
                let lines: Vec<&str> = text.lines().collect();
                for l in &lines[lines.len().saturating_sub(200)..] {
                    let mut l = l.to_string();
                    if !cfg.token.is_empty() {
                        l = l.replace(&cfg.token, "{redacted}");
                    }
                    writeln!(out, "{l}")?;
                }
            }
        }
        Err(e) => writeln!(out, "could not load configuration: {e:#}")?,
    }
    print!("{out}");
    Ok(())
}
