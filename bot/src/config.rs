//! The bot's settings, from the environment (or flags).

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// serenity's gateway client.
    Gateway,
    /// The HTTP interactions endpoint (Discord posts signed interactions to us).
    Http,
}

#[derive(Clone, Debug, Parser)]
#[command(name = "bot", about = "Ferrodactyl's Discord bot")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Clone, Debug, Subcommand)]
pub enum Cmd {
    /// Run the bot (the default).
    Run,
    /// Print a new Fernet key for BOT_FERNET_KEY.
    GenKey,
    /// Run the migrations and exit.
    Migrate,
    /// Register the slash commands (globally, or in BOT_COMMAND_GUILD_ID) and exit.
    Register,
}

#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// The bot token.
    #[arg(long, env = "DISCORD_TOKEN", hide_env_values = true)]
    pub discord_token: Option<String>,
    /// The application id (needed for the HTTP mode and command registration).
    #[arg(long, env = "DISCORD_APPLICATION_ID")]
    pub application_id: Option<u64>,
    /// The application's public key (hex), to verify interaction signatures.
    #[arg(long, env = "DISCORD_PUBLIC_KEY")]
    pub public_key: Option<String>,
    /// Discord's REST base (tests point it at a local stand-in).
    #[arg(long, env = "DISCORD_API_BASE", default_value = "https://discord.com")]
    pub discord_api_base: String,
    #[arg(long, env = "BOT_MODE", value_enum, default_value = "gateway")]
    pub mode: Mode,
    /// Listen address of the interactions endpoint (HTTP mode).
    #[arg(long, env = "BOT_LISTEN", default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// Register the commands in this guild only (instant) instead of globally.
    #[arg(long, env = "BOT_COMMAND_GUILD_ID")]
    pub command_guild_id: Option<u64>,
    /// Register the commands at start-up.
    #[arg(long, env = "BOT_REGISTER_COMMANDS", default_value_t = true, action = clap::ArgAction::Set)]
    pub register_commands: bool,
    /// Fernet key (url-safe base64 of 32 bytes) encrypting panel URLs and keys at rest.
    #[arg(long, env = "BOT_FERNET_KEY", hide_env_values = true)]
    pub fernet_key: Option<String>,
    /// PostgreSQL URL; unset → the embedded cluster under BOT_DATA_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[arg(long, env = "BOT_DATA_DIR", default_value = ".data/bot")]
    pub data_dir: PathBuf,
    /// Commands per Discord user per minute.
    #[arg(long, env = "BOT_RATE_LIMIT", default_value_t = 20)]
    pub rate_limit_per_minute: u32,
    /// After this long a command is deferred and finished with a follow-up.
    #[arg(long, env = "BOT_DEFER_AFTER_MS", default_value_t = 2000)]
    pub defer_after_ms: u64,
    /// Timeout of a panel call, in seconds.
    #[arg(long, env = "BOT_PANEL_TIMEOUT", default_value_t = 15)]
    pub panel_timeout_secs: u64,
}

impl Config {
    /// Settings for tests: no token, nothing registered, a fixed API base.
    pub fn for_tests(fernet_key: String, discord_api_base: String, public_key: String) -> Config {
        Config {
            discord_token: Some("test-token".into()),
            application_id: Some(1_000_000_000_000_000_001),
            public_key: Some(public_key),
            discord_api_base,
            mode: Mode::Http,
            listen: "127.0.0.1:0".parse().expect("static addr"),
            command_guild_id: None,
            register_commands: false,
            fernet_key: Some(fernet_key),
            database_url: None,
            data_dir: std::env::temp_dir(),
            rate_limit_per_minute: 1000,
            defer_after_ms: 10_000,
            panel_timeout_secs: 5,
        }
    }
}
