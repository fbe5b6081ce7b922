//! panel-api's binary: the server, and an operator CLI in the spirit of upstream's
//! artisan commands.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use panel_api::config::Config;
use panel_api::crypto::Encrypter;
use panel_api::http::auth::KEY_TYPE_APPLICATION;
use panel_api::http::input::Body;
use panel_api::state::AppState;
use panel_api::{apikeys, db, eggs};
use serde_json::json;

/// mimalloc in place of glibc's malloc: under load, glibc's allocator took about a
/// sixth of panel-api's CPU (arena locks, consolidation); see the README's benchmarks.
/// Built with `no_thp`: with transparent huge pages its arenas kept ~10 MiB more
/// resident at idle.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "panel-api",
    version,
    about = "Ferrodactyl panel: Pterodactyl's Application, Client and Remote APIs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API (the default).
    Serve {
        /// Seed an admin, a location, a node for a local wings and the generic egg when
        /// missing, and print a fresh admin application key.
        #[arg(long)]
        quickstart: bool,
        /// With --quickstart: write the credentials (shell syntax) to this file.
        #[arg(long)]
        credentials_file: Option<std::path::PathBuf>,
    },
    /// Run the database migrations and exit.
    Migrate,
    /// Print a new APP_KEY.
    KeyGenerate,
    /// Print the OpenAPI document.
    Openapi,
    /// Eggs.
    #[command(subcommand)]
    Egg(EggCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Application API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Locations.
    #[command(subcommand)]
    Location(LocationCmd),
    /// Nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Servers.
    #[command(subcommand)]
    Server(ServerCmd),
}

#[derive(Subcommand)]
enum ServerCmd {
    List,
    /// Move a server to another node (as upstream's admin "Transfer Server" form, and
    /// `POST /api/application/servers/{id}/transfer`).
    Transfer {
        /// Server id.
        server: i64,
        /// Target node id.
        #[arg(long)]
        node: i64,
        /// Primary allocation on the target node (default: its lowest free one).
        #[arg(long)]
        allocation: Option<i64>,
        /// Additional allocations on the target node, comma-separated.
        #[arg(long, value_delimiter = ',')]
        additional: Vec<i64>,
        /// Wait for the transfer to finish and exit non-zero if it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Show a server's latest transfer.
    TransferStatus {
        server: i64,
    },
}

#[derive(Subcommand)]
enum EggCmd {
    /// Import an egg export (PTDL_v1 / PTDL_v2).
    Import {
        file: std::path::PathBuf,
        /// Nest id, or a nest name (created when missing).
        #[arg(long, default_value = "Imported")]
        nest: String,
    },
    /// List eggs.
    List,
}

#[derive(Subcommand)]
enum UserCmd {
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "Admin")]
        first_name: String,
        #[arg(long, default_value = "User")]
        last_name: String,
        /// Read from the environment so it stays out of shell history and `ps`.
        #[arg(long, env = "PANEL_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    List,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create an application key for an admin; the secret is printed once.
    Create {
        /// User id or username.
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
}

#[derive(Subcommand)]
enum LocationCmd {
    Create {
        #[arg(long)]
        short: String,
        #[arg(long)]
        long: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
enum NodeCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        location: i64,
        #[arg(long)]
        fqdn: String,
        #[arg(long, default_value = "http")]
        scheme: String,
        #[arg(long, default_value_t = 8192)]
        memory: i64,
        #[arg(long, default_value_t = 65536)]
        disk: i64,
        #[arg(long, default_value_t = 8080)]
        daemon_listen: i64,
        #[arg(long, default_value_t = 2022)]
        daemon_sftp: i64,
        #[arg(long, default_value = "/var/lib/pterodactyl/volumes")]
        daemon_base: String,
        /// Allocations to add: IP and port specs (`25565`, `25565-25600`).
        #[arg(long)]
        ip: Option<String>,
        #[arg(long, value_delimiter = ',')]
        ports: Vec<String>,
    },
    List,
}

async fn open(cfg: &Config) -> Result<(db::Database, AppState)> {
    let database = db::open(cfg).await?;
    db::migrate(&database.pool).await?;
    let enc = Encrypter::load_or_create(cfg.app_key.as_deref(), &cfg.data_dir)?;
    let state = AppState::new(database.pool.clone(), cfg.clone(), enc)?;
    Ok((database, state))
}

fn api_err(e: panel_api::error::ApiError) -> anyhow::Error {
    match e {
        panel_api::error::ApiError::Validation(errs) => {
            anyhow::anyhow!(errs
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("\n"))
        }
        panel_api::error::ApiError::Display { detail, .. }
        | panel_api::error::ApiError::Http { detail, .. } => anyhow::anyhow!(detail),
        panel_api::error::ApiError::Internal(e) => e,
        panel_api::error::ApiError::Unauthenticated => anyhow::anyhow!("unauthenticated"),
    }
}

async fn find_user(st: &AppState, user: &str) -> Result<(i64, bool)> {
    let row: Option<(i64, bool)> = match user.parse::<i64>() {
        Ok(id) => {
            sqlx::query_as("SELECT id, root_admin FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&st.db)
                .await?
        }
        Err(_) => {
            sqlx::query_as("SELECT id, root_admin FROM users WHERE lower(username) = lower($1)")
                .bind(user)
                .fetch_optional(&st.db)
                .await?
        }
    };
    row.context("no such user")
}

async fn quickstart(st: &AppState, file: Option<&std::path::Path>) -> Result<()> {
    let admin: Option<i64> =
        sqlx::query_scalar("SELECT id FROM users WHERE root_admin ORDER BY id LIMIT 1")
            .fetch_optional(&st.db)
            .await?;
    let mut password_line = String::new();
    let admin = match admin {
        Some(id) => id,
        None => {
            let password = panel_api::crypto::random_string(20);
            let body = Body(
                json!({"email": "admin@example.com", "username": "admin", "first_name": "Admin", "last_name": "User",
                "password": password, "root_admin": true}),
            );
            let u = panel_api::http::application::users::create(st, &body)
                .await
                .map_err(api_err)?;
            password_line = format!("PANEL_ADMIN_PASSWORD={password}\n");
            u.id
        }
    };
    let loc: Option<i64> = sqlx::query_scalar("SELECT id FROM locations ORDER BY id LIMIT 1")
        .fetch_optional(&st.db)
        .await?;
    let loc = match loc {
        Some(id) => id,
        None => {
            panel_api::http::application::locations::create(
                st,
                &Body(json!({"short": "local", "long": "This machine"})),
            )
            .await
            .map_err(api_err)?
            .id
        }
    };
    let node: Option<i64> = sqlx::query_scalar("SELECT id FROM nodes ORDER BY id LIMIT 1")
        .fetch_optional(&st.db)
        .await?;
    let node = match node {
        Some(id) => id,
        None => {
            let wings_port: i64 = std::env::var("WINGS_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080);
            let sftp_port: i64 = std::env::var("WINGS_SFTP_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(2022);
            let base = std::env::var("WINGS_DATA")
                .unwrap_or_else(|_| "/var/lib/pterodactyl/volumes".into());
            let n = panel_api::http::application::nodes::create(
                st,
                &Body(json!({"name": "local", "location_id": loc, "fqdn": "127.0.0.1", "scheme": "http", "memory": 8192,
                    "memory_overallocate": 0, "disk": 65536, "disk_overallocate": 0, "daemon_listen": wings_port,
                    "daemon_sftp": sftp_port, "daemon_base": base})),
            )
            .await
            .map_err(api_err)?;
            panel_api::http::application::nodes::add_allocations(
                st,
                n.id,
                &Body(json!({"ip": "127.0.0.1", "ports": ["25565-25575"]})),
            )
            .await
            .map_err(api_err)?;
            n.id
        }
    };
    let has_egg: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM eggs)")
        .fetch_one(&st.db)
        .await?;
    if !has_egg {
        eggs::import(
            &st.db,
            eggs::NestRef::Name("Ferrodactyl".into()),
            eggs::GENERIC_EGG,
        )
        .await?;
    }
    let key = apikeys::create(&st.db, admin, KEY_TYPE_APPLICATION, "quickstart", &[])
        .await
        .map_err(api_err)?;
    let text = format!(
        "PANEL_URL={}\nPANEL_APPLICATION_KEY={}\nPANEL_NODE_ID={node}\n{password_line}",
        st.cfg.app_url,
        key.token()
    );
    match file {
        Some(f) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(f)?;
            out.write_all(text.as_bytes())?;
            println!(
                "panel-api quick start: credentials written to {}",
                f.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let cfg = Config::from_env()?;
    match cli.cmd.unwrap_or(Cmd::Serve {
        quickstart: false,
        credentials_file: None,
    }) {
        Cmd::KeyGenerate => {
            println!("{}", Encrypter::generate_key());
        }
        Cmd::Openapi => {
            use utoipa::OpenApi;
            println!(
                "{}",
                panel_api::openapi::ApiDoc::openapi().to_pretty_json()?
            );
        }
        Cmd::Migrate => {
            let _ = open(&cfg).await?;
            println!("migrations applied");
        }
        Cmd::Serve {
            quickstart: qs,
            credentials_file,
        } => {
            // The handlers are installed before anything else: a SIGTERM that arrives
            // while the cluster starts or the port is bound is held and ends the
            // server gracefully as soon as it serves, instead of killing the process
            // with the embedded cluster left running.
            let shutdown = shutdown_signal()?;
            let (database, state) = open(&cfg).await?;
            if qs {
                quickstart(&state, credentials_file.as_deref()).await?;
            }
            let listener = tokio::net::TcpListener::bind(cfg.bind)
                .await
                .with_context(|| format!("binding {}", cfg.bind))?;
            tracing::info!(addr = %cfg.bind, url = %cfg.app_url, embedded_db = database.cluster.is_some(), "panel-api listening");
            println!(
                "panel-api listening on http://{} (APP_URL {})",
                listener.local_addr()?,
                cfg.app_url
            );
            panel_api::serve(state, listener, shutdown).await?;
            drop(database);
        }
        Cmd::Egg(EggCmd::Import { file, nest }) => {
            let (_db, st) = open(&cfg).await?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let nest = match nest.parse::<i64>() {
                Ok(id) => eggs::NestRef::Id(id),
                Err(_) => eggs::NestRef::Name(nest),
            };
            let id = eggs::import(&st.db, nest, &text).await?;
            println!("imported egg {id}");
        }
        Cmd::Egg(EggCmd::List) => {
            let (_db, st) = open(&cfg).await?;
            let rows: Vec<(i64, i64, String)> =
                sqlx::query_as("SELECT id, nest_id, name FROM eggs ORDER BY id")
                    .fetch_all(&st.db)
                    .await?;
            for (id, nest, name) in rows {
                println!("{id}\tnest {nest}\t{name}");
            }
        }
        Cmd::User(UserCmd::Create {
            email,
            username,
            first_name,
            last_name,
            password,
            admin,
        }) => {
            let (_db, st) = open(&cfg).await?;
            let body = Body(
                json!({"email": email, "username": username, "first_name": first_name, "last_name": last_name,
                "password": password, "root_admin": admin}),
            );
            let u = panel_api::http::application::users::create(&st, &body)
                .await
                .map_err(api_err)?;
            println!(
                "created user {} ({}){}",
                u.id,
                u.username,
                if admin { " as admin" } else { "" }
            );
        }
        Cmd::User(UserCmd::List) => {
            let (_db, st) = open(&cfg).await?;
            let rows: Vec<(i64, String, String, bool)> =
                sqlx::query_as("SELECT id, username, email, root_admin FROM users ORDER BY id")
                    .fetch_all(&st.db)
                    .await?;
            for (id, u, e, a) in rows {
                println!("{id}\t{u}\t{e}{}", if a { "\tadmin" } else { "" });
            }
        }
        Cmd::Key(KeyCmd::Create { user, description }) => {
            let (_db, st) = open(&cfg).await?;
            let (uid, admin) = find_user(&st, &user).await?;
            if !admin {
                bail!("application keys can only be used by root admins; make the user an admin first");
            }
            let k = apikeys::create(&st.db, uid, KEY_TYPE_APPLICATION, &description, &[])
                .await
                .map_err(api_err)?;
            println!("{}", k.token());
            eprintln!("(shown once: only a hash of the secret is stored)");
        }
        Cmd::Key(KeyCmd::List) => {
            let (_db, st) = open(&cfg).await?;
            let rows: Vec<(String, i64, String)> = sqlx::query_as(
                "SELECT identifier, user_id, memo FROM api_keys WHERE key_type = $1 ORDER BY id",
            )
            .bind(KEY_TYPE_APPLICATION)
            .fetch_all(&st.db)
            .await?;
            for (ident, uid, memo) in rows {
                println!("{ident}\tuser {uid}\t{memo}");
            }
        }
        Cmd::Location(LocationCmd::Create { short, long }) => {
            let (_db, st) = open(&cfg).await?;
            let l = panel_api::http::application::locations::create(
                &st,
                &Body(json!({"short": short, "long": long})),
            )
            .await
            .map_err(api_err)?;
            println!("created location {} ({})", l.id, l.short);
        }
        Cmd::Location(LocationCmd::List) => {
            let (_db, st) = open(&cfg).await?;
            let rows: Vec<(i64, String, Option<String>)> =
                sqlx::query_as("SELECT id, short, long FROM locations ORDER BY id")
                    .fetch_all(&st.db)
                    .await?;
            for (id, s, l) in rows {
                println!("{id}\t{s}\t{}", l.unwrap_or_default());
            }
        }
        Cmd::Node(NodeCmd::Create {
            name,
            location,
            fqdn,
            scheme,
            memory,
            disk,
            daemon_listen,
            daemon_sftp,
            daemon_base,
            ip,
            ports,
        }) => {
            let (_db, st) = open(&cfg).await?;
            let n = panel_api::http::application::nodes::create(
                &st,
                &Body(json!({"name": name, "location_id": location, "fqdn": fqdn, "scheme": scheme, "memory": memory,
                    "memory_overallocate": 0, "disk": disk, "disk_overallocate": 0, "daemon_listen": daemon_listen,
                    "daemon_sftp": daemon_sftp, "daemon_base": daemon_base})),
            )
            .await
            .map_err(api_err)?;
            if let Some(ip) = ip {
                panel_api::http::application::nodes::add_allocations(
                    &st,
                    n.id,
                    &Body(json!({"ip": ip, "ports": ports})),
                )
                .await
                .map_err(api_err)?;
            }
            println!("created node {} ({})", n.id, n.name);
        }
        Cmd::Node(NodeCmd::List) => {
            let (_db, st) = open(&cfg).await?;
            let rows: Vec<(i64, String, String, i32)> =
                sqlx::query_as("SELECT id, name, fqdn, daemon_listen FROM nodes ORDER BY id")
                    .fetch_all(&st.db)
                    .await?;
            for (id, n, f, p) in rows {
                println!("{id}\t{n}\t{f}:{p}");
            }
        }
        Cmd::Server(ServerCmd::List) => {
            let (_db, st) = open(&cfg).await?;
            let rows: Vec<(i64, String, String, i64, Option<String>)> = sqlx::query_as(
                "SELECT id, uuid_short, name, node_id, status FROM servers ORDER BY id",
            )
            .fetch_all(&st.db)
            .await?;
            for (id, short, name, node, status) in rows {
                let status = status.unwrap_or_else(|| "-".into());
                println!("{id}\t{short}\t{name}\tnode {node}\t{status}");
            }
        }
        Cmd::Server(ServerCmd::Transfer {
            server,
            node,
            allocation,
            additional,
            wait,
        }) => {
            use panel_api::http::application::{servers, transfers};
            let (_db, st) = open(&cfg).await?;
            let s = servers::find(&st, server)
                .await
                .map_err(|_| anyhow::anyhow!("no server with id {server}"))?;
            let t = transfers::initiate(
                &st,
                &s,
                transfers::TransferRequest {
                    node_id: node,
                    allocation_id: allocation,
                    additional,
                },
            )
            .await
            .map_err(api_err)?;
            println!(
                "transfer {} started: server {} from node {} to node {} (allocation {})",
                t.id, server, t.old_node, t.new_node, t.new_allocation
            );
            if wait {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let cur = transfers::latest(&st, server).await.map_err(api_err)?;
                    match cur.and_then(|c| (c.id == t.id).then_some(c.successful)) {
                        Some(None) => continue,
                        Some(Some(true)) => {
                            println!(
                                "transfer {} finished: the server is on node {}",
                                t.id, t.new_node
                            );
                            break;
                        }
                        Some(Some(false)) => bail!(
                            "transfer {} failed; the server stays on node {}",
                            t.id,
                            t.old_node
                        ),
                        None => bail!("transfer {} disappeared", t.id),
                    }
                }
            }
        }
        Cmd::Server(ServerCmd::TransferStatus { server }) => {
            let (_db, st) = open(&cfg).await?;
            match panel_api::http::application::transfers::latest(&st, server)
                .await
                .map_err(api_err)?
            {
                None => println!("server {server} has never been transferred"),
                Some(t) => {
                    let state = match t.successful {
                        None => "running",
                        Some(true) => "successful",
                        Some(false) => "failed",
                    };
                    println!(
                        "transfer {}: node {} -> node {}, {state}, started {}",
                        t.id, t.old_node, t.new_node, t.created_at
                    );
                }
            }
        }
    }
    Ok(())
}

/// SIGTERM or SIGINT, registered now (not on first poll), so a signal that comes
/// before the server polls the future is not lost to the default action.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("panel-api: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("panel-api: {e:#}");
        std::process::exit(1);
    }
}
