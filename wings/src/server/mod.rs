//! One game server: its Panel configuration, state machine, power actions, console,
//! crash detection, stats and disk usage (reference §6.8–§6.9). Everything that
//! touches containers goes through [`crate::environment::Environment`].

pub mod bus;
pub mod configfiles;
pub mod console;
pub mod install;
pub mod manager;
pub mod spec;

use crate::events::{ConsoleFramesBuilder, Event, Published, State};
use crate::Shared;
use console::{daemon_notice, Matcher, Throttle, Verdict};
use futures::StreamExt;
use openapi::remote::{ProcessConfiguration, ServerConfigurationResponse, ServerSettings};
use openapi::wings::{NetworkUsage, ResourceUsage, ServerConfiguration, ServerDetails};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Console lines kept in memory per server.
const RING_LINES: usize = 150;
/// Lines longer than this are cut into several events.
const MAX_LINE: usize = 64 * 1024;
/// Console lines per bus message at most, and bytes of their websocket frames (a
/// socket that lags holds at most the bus's capacity of these: 256 × 16 KiB).
const BATCH_LINES: usize = 128;
const BATCH_BYTES: usize = 16 * 1024;
/// Bus messages kept for sockets that have not read them yet.
const BUS_CAPACITY: usize = 256;
/// Backpressure (see `Server::wait_for_sockets`): once the slowest socket is more
/// than this many bus messages behind, the console reader waits for it, in steps
/// of `BUS_WAIT_STEP`, at most `BUS_WAIT_STEPS` of them per read of the container's
/// output (10 ms: upstream's sink pool waits up to 10 ms per line for a full socket
/// before dropping). A socket that read nothing in `BUS_STILL_WAITS` whole waits in
/// a row (100 ms or more) is taken as stuck, and the reader does not wait for it
/// again for `BUS_STALL_HOLDOFF` (it still waits for the others). One still wait
/// is not enough: a socket's writer takes up to 256 KiB of messages at once and
/// then moves only when that is written, and with a hundred sockets on two cores
/// a reading socket can look still for tens of milliseconds.
const BUS_HIGH: usize = BUS_CAPACITY / 2;
const BUS_WAIT_STEP: Duration = Duration::from_millis(1);
const BUS_WAIT_STEPS: u32 = 10;
const BUS_STILL_WAITS: u32 = 10;
const BUS_STALL_HOLDOFF: Duration = Duration::from_secs(2);

/// Console lines of one read, framed for the websocket on their way to the bus.
#[derive(Default)]
struct ConsoleBatch {
    frames: ConsoleFramesBuilder,
    /// Whether any socket listens (nobody listening: nothing to frame).
    listening: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    Start,
    Stop,
    Restart,
    Kill,
}

impl PowerAction {
    pub fn parse(s: &str) -> Option<PowerAction> {
        Some(match s {
            "start" => PowerAction::Start,
            "stop" => PowerAction::Stop,
            "restart" => PowerAction::Restart,
            "kill" => PowerAction::Kill,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
            PowerAction::Restart => "restart",
            PowerAction::Kill => "kill",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "another power action is currently being processed for this server, please try again later"
    )]
    Busy,
    #[error("server is running")]
    IsRunning,
    #[error("server is currently in a suspended state")]
    Suspended,
    #[error("server is currently installing")]
    Installing,
    #[error("server is currently being transferred")]
    Transferring,
    #[error("server is currently restoring a backup")]
    Restoring,
    #[error("server does not exist")]
    DoesNotExist,
    #[error("server is not attached")]
    NotAttached,
    #[error("server is exceeding its disk space limit")]
    NotEnoughDisk,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

struct Usage {
    sample: crate::environment::StatsSample,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
}

struct DiskCache {
    bytes: i64,
    checked: Option<Instant>,
}

pub struct Server {
    pub uuid: String,
    shared: Arc<Shared>,
    settings: RwLock<ServerSettings>,
    process: RwLock<ProcessConfiguration>,
    matchers: RwLock<Vec<Matcher>>,
    state: watch::Sender<State>,
    events: bus::Bus,
    power: tokio::sync::Mutex<()>,
    /// Counts kills; a start or restart under way gives up when it changes, so a
    /// kill that lands between a restart's stop and its start is not lost.
    kills: AtomicU64,
    stdin: tokio::sync::Mutex<Option<Pin<Box<dyn AsyncWrite + Send>>>>,
    attached: AtomicBool,
    attach_gen: AtomicU64,
    installing: AtomicBool,
    transferring: AtomicBool,
    restoring: AtomicBool,
    last_crash: Mutex<Option<Instant>>,
    usage: Mutex<Usage>,
    disk: Mutex<DiskCache>,
    disk_refreshing: AtomicBool,
    disk_stop_sent: AtomicBool,
    throttle: Mutex<Throttle>,
    ring: Mutex<VecDeque<String>>,
    cancel: CancellationToken,
}

impl Server {
    pub fn new(shared: Arc<Shared>, cfg: ServerConfigurationResponse) -> Arc<Server> {
        let (lines, interval) = {
            let c = shared.config();
            (c.throttles.lines, c.throttles.line_reset_interval)
        };
        let events = bus::Bus::new(BUS_CAPACITY);
        let (state, _) = watch::channel(State::Offline);
        let matchers = cfg
            .process_configuration
            .startup
            .done
            .iter()
            .map(|d| Matcher::compile(d))
            .collect();
        Arc::new(Server {
            uuid: cfg.settings.uuid.clone(),
            shared,
            settings: RwLock::new(cfg.settings),
            process: RwLock::new(cfg.process_configuration),
            matchers: RwLock::new(matchers),
            state,
            events,
            power: tokio::sync::Mutex::new(()),
            kills: AtomicU64::new(0),
            stdin: tokio::sync::Mutex::new(None),
            attached: AtomicBool::new(false),
            attach_gen: AtomicU64::new(0),
            installing: AtomicBool::new(false),
            transferring: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            last_crash: Mutex::new(None),
            usage: Mutex::new(Usage {
                sample: Default::default(),
                started_at: None,
            }),
            disk: Mutex::new(DiskCache {
                bytes: 0,
                checked: None,
            }),
            disk_refreshing: AtomicBool::new(false),
            disk_stop_sent: AtomicBool::new(false),
            throttle: Mutex::new(Throttle::new(lines, interval)),
            ring: Mutex::new(VecDeque::with_capacity(RING_LINES)),
            cancel: CancellationToken::new(),
        })
    }

    // ------------------------------------------------------------------ accessors

    pub fn settings(&self) -> ServerSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn process_configuration(&self) -> ProcessConfiguration {
        self.process
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    pub fn subscribe_state(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    pub fn subscribe(&self) -> bus::BusReceiver {
        self.events.subscribe()
    }

    /// Cancelled when the server is deleted.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub fn is_suspended(&self) -> bool {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .suspended
    }

    pub fn is_installing(&self) -> bool {
        self.installing.load(Ordering::SeqCst)
    }

    pub fn is_transferring(&self) -> bool {
        self.transferring.load(Ordering::SeqCst)
    }

    pub fn is_attached(&self) -> bool {
        self.attached.load(Ordering::SeqCst)
    }

    /// True while a power action holds the lock.
    pub fn executing_power_action(&self) -> bool {
        self.power.try_lock().is_err()
    }

    /// The in-memory console ring (most recent last).
    pub fn console_history(&self) -> Vec<String> {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn publish(&self, e: Event) {
        // Nobody listening: nothing to allocate (a send would drop it anyway).
        if self.events.receiver_count() == 0 {
            return;
        }
        self.events.send(Published::new(e));
    }

    /// Prints a Wings console notice (`[Pterodactyl Daemon]: …`).
    pub fn notice(&self, msg: &str) {
        let app = self.shared.config().app_name.clone();
        self.publish(Event::Console(daemon_notice(&app, msg)));
    }

    pub fn set_state(&self, new: State) {
        let old = self.state.send_replace(new);
        if old == new {
            return;
        }
        tracing::debug!(server = %self.uuid, from = old.as_str(), to = new.as_str(), "state change");
        self.publish(Event::Status(new));
        if new == State::Offline {
            {
                let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
                u.sample = Default::default();
                u.started_at = None;
            }
            self.publish_stats();
        }
    }

    /// `utilization` / the `stats` payload.
    pub fn proc_usage(&self) -> ResourceUsage {
        let u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let uptime = u
            .started_at
            .map(|s| (chrono::Utc::now() - s).num_milliseconds().max(0))
            .unwrap_or(0);
        ResourceUsage {
            memory_bytes: u.sample.memory_bytes,
            memory_limit_bytes: u.sample.memory_limit_bytes,
            cpu_absolute: u.sample.cpu_absolute,
            network: NetworkUsage {
                rx_bytes: u.sample.rx_bytes,
                tx_bytes: u.sample.tx_bytes,
            },
            uptime,
            state: self.state().as_str().to_string(),
            disk_bytes: self.disk.lock().unwrap_or_else(|e| e.into_inner()).bytes,
        }
    }

    pub fn publish_stats(&self) {
        let json = serde_json::to_string(&self.proc_usage()).unwrap_or_default();
        self.publish(Event::Stats(json));
    }

    /// Wings' own API representation (§1.5).
    pub fn details(&self) -> ServerDetails {
        let s = self.settings();
        let crash_default = self.shared.config().system.crash_detection.enabled;
        ServerDetails {
            state: self.state().as_str().to_string(),
            is_suspended: s.suspended,
            utilization: self.proc_usage(),
            configuration: ServerConfiguration {
                uuid: s.uuid.clone(),
                meta: s.meta.clone(),
                suspended: s.suspended,
                invocation: s.invocation.clone(),
                skip_egg_scripts: s.skip_egg_scripts,
                environment: s.environment.clone(),
                labels: s.labels.clone().unwrap_or_default(),
                allocations: s.allocations.clone(),
                build: s.build.clone(),
                crash_detection_enabled: s.crash_detection_enabled.unwrap_or(crash_default),
                mounts: s.mounts.clone(),
                egg: s.egg.clone(),
                container: openapi::wings::ServerConfigurationContainer {
                    image: s.container.image.clone(),
                },
            },
        }
    }

    pub fn data_path(&self) -> std::path::PathBuf {
        spec::data_path(&self.shared.config(), &self.uuid)
    }

    // ------------------------------------------------------------------ configuration

    /// Replaces the Panel-provided configuration (the egg denylist is kept, as
    /// upstream only loads it when the server object is created).
    pub fn apply_configuration(&self, cfg: ServerConfigurationResponse) {
        let matchers = cfg
            .process_configuration
            .startup
            .done
            .iter()
            .map(|d| Matcher::compile(d))
            .collect();
        {
            let mut s = self.settings.write().unwrap_or_else(|e| e.into_inner());
            let denylist = std::mem::take(&mut s.egg.file_denylist);
            *s = cfg.settings;
            s.egg.file_denylist = denylist;
        }
        *self.process.write().unwrap_or_else(|e| e.into_inner()) = cfg.process_configuration;
        *self.matchers.write().unwrap_or_else(|e| e.into_inner()) = matchers;
    }

    /// Re-fetches the configuration from the Panel and applies limits live (§1.5 sync).
    pub async fn sync(self: &Arc<Self>) -> Result<(), ServerError> {
        let cfg = self
            .shared
            .remote()
            .get_server_configuration(&self.uuid)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    ServerError::DoesNotExist
                } else {
                    ServerError::Other(e.into())
                }
            })?;
        self.apply_configuration(cfg);
        let suspended = self.is_suspended();
        let running = matches!(self.state(), State::Running | State::Starting);
        if running && !suspended {
            let r = spec::resources(&self.settings().build, &self.shared.config());
            if let Err(e) = self.shared.env.update_resources(&self.uuid, &r).await {
                tracing::warn!(server = %self.uuid, error = %e, "could not apply limits in place");
            }
        }
        if suspended && self.state() != State::Offline {
            let me = self.clone();
            tokio::spawn(async move {
                let _lock = me.power.lock().await;
                if let Err(e) = me.wait_for_stop(Duration::from_secs(60), true).await {
                    tracing::warn!(server = %me.uuid, error = %e, "could not stop suspended server");
                }
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------ power

    /// Runs a power action under the power lock. `wait` = how long to wait for the
    /// lock (`None`: try once).
    pub async fn handle_power(
        self: &Arc<Self>,
        action: PowerAction,
        wait: Option<Duration>,
    ) -> Result<(), ServerError> {
        if action == PowerAction::Kill {
            // Kill proceeds even when another action holds the lock; a start or
            // restart in progress sees the count change and does not (re)start.
            self.kills.fetch_add(1, Ordering::SeqCst);
            return self.terminate("SIGKILL").await;
        }
        let _guard = match wait {
            None => self.power.try_lock().map_err(|_| ServerError::Busy)?,
            Some(d) => tokio::time::timeout(d, self.power.lock())
                .await
                .map_err(|_| ServerError::Busy)?,
        };
        if self.is_installing() {
            return Err(ServerError::Installing);
        }
        if self.is_transferring() {
            return Err(ServerError::Transferring);
        }
        if self.restoring.load(Ordering::SeqCst) {
            return Err(ServerError::Restoring);
        }
        let kills = self.kills.load(Ordering::SeqCst);
        match action {
            PowerAction::Start => {
                if self.state() != State::Offline {
                    return Err(ServerError::IsRunning);
                }
                self.on_before_start().await?;
                self.start_container(kills).await
            }
            PowerAction::Stop => self.wait_for_stop(Duration::from_secs(600), true).await,
            PowerAction::Restart => {
                self.wait_for_stop(Duration::from_secs(600), true).await?;
                self.on_before_start().await?;
                self.start_container(kills).await
            }
            PowerAction::Kill => unreachable!("handled above"),
        }
    }

    /// Pre-flight of every start: sync with the Panel, refuse when suspended, disk
    /// check, permissions.
    async fn on_before_start(self: &Arc<Self>) -> Result<(), ServerError> {
        self.sync().await?;
        if self.is_suspended() {
            return Err(ServerError::Suspended);
        }
        let limit = self.settings().build.disk_space;
        if limit > 0 {
            self.notice("Checking server disk space usage, this could take a few seconds...");
            let used = self.disk_usage(false).await;
            if used > limit * 1024 * 1024 {
                return Err(ServerError::NotEnoughDisk);
            }
        }
        let cfg = self.shared.config();
        let dir = self.data_path();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(anyhow::Error::from)?;
        let files = self.process_configuration().configs;
        if !files.is_empty() {
            self.notice("Updating process configuration files...");
            let (root, c) = (dir.clone(), cfg.clone());
            tokio::task::spawn_blocking(move || configfiles::apply_all(&root, &files, &c))
                .await
                .map_err(anyhow::Error::from)?;
        }
        if cfg.system.check_permissions_on_boot {
            self.notice(
                "Ensuring file permissions are set correctly, this could take a few seconds...",
            );
            let (uid, gid) = (cfg.system.user.uid, cfg.system.user.gid);
            tokio::task::spawn_blocking(move || chown_recursive(&dir, uid, gid))
                .await
                .map_err(anyhow::Error::from)?;
        }
        Ok(())
    }

    /// Whether a kill arrived since `kills` was read.
    fn killed_since(&self, kills: u64) -> bool {
        self.kills.load(Ordering::SeqCst) != kills
    }

    /// Recreates the container, attaches, then starts it (§6.8 start) unless a
    /// kill arrived since the action began (`kills`): then the server stays off.
    async fn start_container(self: &Arc<Self>, kills: u64) -> Result<(), ServerError> {
        if self.killed_since(kills) {
            tracing::info!(server = %self.uuid, "start abandoned: the server was killed meanwhile");
            return Ok(());
        }
        let env = self.shared.env.clone();
        if let Some(st) = env.status(&self.uuid).await? {
            if st.running {
                self.set_state(State::Running);
                if !self.is_attached() {
                    self.attach().await?;
                }
                return Ok(());
            }
        }
        self.set_state(State::Starting);
        self.disk_stop_sent.store(false, Ordering::SeqCst);
        // Ok(false): a kill arrived before the container was started.
        let result: Result<bool, ServerError> = async {
            self.create_container().await?;
            self.attach().await?;
            if self.killed_since(kills) {
                return Ok(false);
            }
            env.start(&self.uuid).await?;
            if self.killed_since(kills) {
                // The kill raced the start call and may have found nothing running.
                self.terminate("SIGKILL").await?;
                return Ok(true);
            }
            if let Ok(Some(st)) = env.status(&self.uuid).await {
                self.usage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .started_at = parse_time(st.started_at.as_deref());
            }
            Ok(true)
        }
        .await;
        match result {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::info!(server = %self.uuid, "start abandoned: the server was killed meanwhile");
                self.attach_gen.fetch_add(1, Ordering::SeqCst);
                self.attached.store(false, Ordering::SeqCst);
                self.set_state(State::Offline);
                Ok(())
            }
            Err(e) => {
                // Detach the console task so its end is not taken for a crash.
                self.attach_gen.fetch_add(1, Ordering::SeqCst);
                self.attached.store(false, Ordering::SeqCst);
                self.set_state(State::Stopping);
                self.set_state(State::Offline);
                Err(e)
            }
        }
    }

    /// Removes any old container and creates it from the current configuration.
    pub async fn create_container(self: &Arc<Self>) -> Result<(), ServerError> {
        let cfg = self.shared.config();
        let settings = self.settings();
        let env = self.shared.env.clone();
        let me = self.clone();
        if !settings.container.image.starts_with('~') {
            self.notice(
                "Pulling Docker container image, this could take a few minutes to complete...",
            );
        }
        env.ensure_image(
            &settings.container.image,
            &cfg.docker.registries,
            &move |line| me.publish(Event::InstallOutput(line)),
        )
        .await?;
        if !settings.container.image.starts_with('~') {
            self.notice("Finished pulling Docker container image");
        }
        env.remove(&self.uuid).await?;
        if settings.allocations.force_outgoing_ip {
            env.ensure_outgoing_ip_network(
                &spec::network_mode(&settings, &cfg),
                &settings.allocations.default.ip,
            )
            .await?;
        }
        tokio::fs::create_dir_all(self.data_path())
            .await
            .map_err(anyhow::Error::from)?;
        env.create(&spec::server_container(&settings, &cfg)).await?;
        Ok(())
    }

    /// Attaches the console and the stats stream to the running/created container.
    pub async fn attach(self: &Arc<Self>) -> Result<(), ServerError> {
        let attached = self.shared.env.attach(&self.uuid).await?;
        let gen = self.attach_gen.fetch_add(1, Ordering::SeqCst) + 1;
        *self.stdin.lock().await = Some(attached.input);
        self.attached.store(true, Ordering::SeqCst);
        let me = self.clone();
        tokio::spawn(async move { me.run_console(gen, attached.output).await });
        let me = self.clone();
        tokio::spawn(async move { me.run_stats(gen).await });
        Ok(())
    }

    /// Marks a container found running at boot as running and re-attaches to it
    /// without restarting it.
    pub async fn reattach(self: &Arc<Self>) -> Result<(), ServerError> {
        if let Ok(Some(st)) = self.shared.env.status(&self.uuid).await {
            self.usage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .started_at = parse_time(st.started_at.as_deref());
        }
        self.set_state(State::Running);
        self.attach().await
    }

    async fn run_console(
        self: Arc<Self>,
        gen: u64,
        mut output: futures::stream::BoxStream<'static, anyhow::Result<bytes::Bytes>>,
    ) {
        let mut pending: Vec<u8> = Vec::new();
        let mut lines = ConsoleBatch::default();
        while let Some(chunk) = output.next().await {
            let Ok(chunk) = chunk else { break };
            pending.extend_from_slice(&chunk);
            // Every complete line of the chunk, then one shift of the remainder.
            lines.listening = self.events.receiver_count() > 0;
            let mut start = 0;
            while let Some(off) = memchr::memchr(b'\n', &pending[start..]) {
                self.handle_line(&pending[start..start + off], &mut lines);
                start += off + 1;
            }
            pending.drain(..start);
            if pending.len() >= MAX_LINE {
                let part: Vec<u8> = pending.drain(..MAX_LINE).collect();
                self.handle_line(&part, &mut lines);
            }
            self.flush_lines(&mut lines);
            self.wait_for_sockets().await;
        }
        if !pending.is_empty() {
            lines.listening = self.events.receiver_count() > 0;
            self.handle_line(&pending, &mut lines);
            self.flush_lines(&mut lines);
        }
        if self.attach_gen.load(Ordering::SeqCst) != gen {
            return;
        }
        self.attached.store(false, Ordering::SeqCst);
        *self.stdin.lock().await = None;
        // The stream closes when the process exits; make sure Docker agrees before
        // reading the exit status.
        let _ =
            tokio::time::timeout(Duration::from_secs(10), self.shared.env.wait(&self.uuid)).await;
        if self.attach_gen.load(Ordering::SeqCst) != gen {
            return;
        }
        let previous = self.state();
        self.set_state(State::Offline);
        if matches!(previous, State::Starting | State::Running) && !self.cancel.is_cancelled() {
            let me = self.clone();
            tokio::spawn(async move { me.handle_crash().await });
        }
    }

    /// Backpressure on a container that prints faster than its sockets read: when
    /// a socket is more than `BUS_HIGH` bus messages behind, the next read of the
    /// container's output waits (up to `BUS_WAIT_STEPS` × `BUS_WAIT_STEP`) until
    /// every such socket is back under, so Docker holds the output and the container's
    /// writes slow down, instead of wings reading lines that the sockets then lose
    /// (the bus drops what a socket has not read once it is `BUS_CAPACITY` behind).
    /// On a machine where the container, Docker and the sockets share the CPU this
    /// leaves the CPU to delivering lines rather than to producing lines nobody
    /// gets. A quiet console never gets here (it takes `BUS_HIGH` unread messages).
    /// A socket that does not read at all must not slow the server down: once it
    /// has read nothing during `BUS_STILL_WAITS` whole waits in a row, the reader
    /// does not wait for it for `BUS_STALL_HOLDOFF`, so such a socket costs the
    /// server at most that many waits per holdoff and loses lines as before, while
    /// the reader keeps waiting for the sockets that read. A socket that reads,
    /// however slowly, moves during a wait and is waited for.
    async fn wait_for_sockets(&self) {
        if self.events.len() <= BUS_HIGH {
            return;
        }
        let laggards = self.events.laggards(BUS_HIGH, BUS_STALL_HOLDOFF);
        if laggards.is_empty() {
            return;
        }
        for _ in 0..BUS_WAIT_STEPS {
            tokio::time::sleep(BUS_WAIT_STEP).await;
            if self.events.caught_up(&laggards, BUS_HIGH) {
                self.events.moved(&laggards);
                return;
            }
        }
        self.events.waited(&laggards, BUS_STILL_WAITS);
    }

    /// Publishes the lines collected so far as one bus message.
    fn flush_lines(&self, batch: &mut ConsoleBatch) {
        if !batch.frames.is_empty() {
            self.publish(Event::ConsoleLines(batch.frames.take()));
        }
    }

    /// One console line: state matching, the ring, the throttle, then into `batch`
    /// (published at the end of the read, or before anything else this line
    /// publishes, so the bus keeps the container's order).
    fn handle_line(&self, raw: &[u8], batch: &mut ConsoleBatch) {
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        let line = if line.contains(" \r") {
            line.replace(" \r", "\r\n")
        } else {
            line
        };
        match self.state() {
            State::Starting => {
                let strip = self
                    .process
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .startup
                    .strip_ansi;
                let test = if strip {
                    console::strip_ansi(&line)
                } else {
                    line.clone()
                };
                if self
                    .matchers
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .any(|m| m.matches(&test))
                {
                    self.flush_lines(batch);
                    self.set_state(State::Running);
                }
            }
            State::Running => {
                let p = self.process.read().unwrap_or_else(|e| e.into_inner());
                if p.stop.kind == "command" && line == p.stop.value {
                    drop(p);
                    self.flush_lines(batch);
                    self.set_state(State::Offline);
                }
            }
            _ => {}
        }
        let verdict = self
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check();
        if matches!(verdict, Verdict::Pass) && batch.listening {
            batch.frames.push(&line);
        }
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() == RING_LINES {
                ring.pop_front();
            }
            ring.push_back(line);
        }
        match verdict {
            Verdict::Pass => {
                if batch.frames.lines() >= BATCH_LINES || batch.frames.bytes() >= BATCH_BYTES {
                    self.flush_lines(batch);
                }
            }
            Verdict::Drop { notify: false } => {}
            Verdict::Drop { notify: true } => {
                self.flush_lines(batch);
                self.notice("Server is outputting console data too quickly -- throttling...")
            }
        }
    }

    async fn run_stats(self: Arc<Self>, gen: u64) {
        let mut stream = self.shared.env.stats(&self.uuid);
        while let Some(sample) = stream.next().await {
            if self.attach_gen.load(Ordering::SeqCst) != gen || !self.is_attached() {
                break;
            }
            let Ok(sample) = sample else { break };
            if self.state() == State::Offline {
                break;
            }
            self.usage.lock().unwrap_or_else(|e| e.into_inner()).sample = sample;
            let used = self.disk_usage(true).await;
            let limit = self.settings().build.disk_space * 1024 * 1024;
            if limit > 0 && used > limit && !self.disk_stop_sent.swap(true, Ordering::SeqCst) {
                self.notice(
                    "Server is exceeding the assigned disk space limit, stopping process now.",
                );
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me.wait_for_stop(Duration::from_secs(60), true).await;
                });
            }
            self.publish_stats();
        }
    }

    /// Crash detection and restart (§6.8).
    fn handle_crash(self: Arc<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.handle_crash_inner().await })
    }

    async fn handle_crash_inner(self: Arc<Self>) {
        let cfg = self.shared.config().system.crash_detection.clone();
        let enabled = self
            .settings()
            .crash_detection_enabled
            .unwrap_or(cfg.enabled);
        if !enabled {
            self.notice(
                "Aborting automatic restart, crash detection is disabled for this instance.",
            );
            return;
        }
        let st = match self.shared.env.status(&self.uuid).await {
            Ok(Some(st)) => st,
            _ => return,
        };
        if st.exit_code == 0 && !st.oom_killed && !cfg.detect_clean_exit_as_crash {
            return;
        }
        self.notice("---------- Detected server process in a crashed state! ----------");
        self.notice(&format!("Exit code: {}", st.exit_code));
        self.notice(&format!("Out of memory: {}", st.oom_killed));
        {
            let mut last = self.last_crash.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = *last {
                if cfg.timeout > 0 && t.elapsed() < Duration::from_secs(cfg.timeout as u64) {
                    drop(last);
                    self.notice(&format!(
                        "Aborting automatic restart, last crash occurred less than {} seconds ago.",
                        cfg.timeout
                    ));
                    return;
                }
            }
            *last = Some(Instant::now());
        }
        // Upstream tries the lock once; a short wait avoids losing the restart to the
        // start action that is still releasing the lock when a process dies instantly.
        if let Err(e) = self
            .handle_power(PowerAction::Start, Some(Duration::from_secs(10)))
            .await
        {
            tracing::error!(server = %self.uuid, error = %e, "failed to start server after crash detection");
        }
    }

    /// Sends the egg's stop signal/command, or `docker stop` (§6.8 stop).
    pub async fn stop(&self) -> Result<(), ServerError> {
        let running = matches!(self.shared.env.status(&self.uuid).await?, Some(st) if st.running);
        if !running {
            self.set_state(State::Offline);
            return Ok(());
        }
        let stop = self.process_configuration().stop;
        self.set_state(State::Stopping);
        match stop.kind.as_str() {
            "command" if self.is_attached() => {
                self.write_stdin(&stop.value).await?;
            }
            "signal" | "" => {
                let sig = crate::environment::docker_signal_name(&stop.value);
                self.shared.env.signal(&self.uuid, &sig).await?;
            }
            _ => {
                self.shared.env.stop(&self.uuid, None).await?;
            }
        }
        Ok(())
    }

    /// Stops and waits for `offline`; after `timeout` kills when `terminate`.
    pub async fn wait_for_stop(
        &self,
        timeout: Duration,
        terminate: bool,
    ) -> Result<(), ServerError> {
        if self.state() == State::Offline
            && !matches!(self.shared.env.status(&self.uuid).await?, Some(st) if st.running)
        {
            return Ok(());
        }
        self.stop().await?;
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|s| *s == State::Offline))
            .await
            .is_ok();
        if waited {
            return Ok(());
        }
        if !terminate {
            return Err(ServerError::Other(anyhow::anyhow!(
                "server did not stop in time"
            )));
        }
        self.terminate("SIGKILL").await?;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|s| *s == State::Offline),
        )
        .await;
        Ok(())
    }

    /// Sends a signal (SIGKILL for `kill`); the console task moves the state to offline.
    pub async fn terminate(&self, signal: &str) -> Result<(), ServerError> {
        let running = matches!(self.shared.env.status(&self.uuid).await?, Some(st) if st.running);
        if !running {
            self.set_state(State::Offline);
            return Ok(());
        }
        self.set_state(State::Stopping);
        self.shared.env.signal(&self.uuid, signal).await?;
        if !self.is_attached() {
            let _ = tokio::time::timeout(Duration::from_secs(30), self.shared.env.wait(&self.uuid))
                .await;
            self.set_state(State::Offline);
        }
        Ok(())
    }

    /// Writes a console command (the stop command first moves the state to stopping).
    pub async fn send_command(&self, command: &str) -> Result<(), ServerError> {
        let stop = self.process_configuration().stop;
        if stop.kind == "command" && stop.value == command {
            self.set_state(State::Stopping);
        }
        self.write_stdin(command).await
    }

    async fn write_stdin(&self, command: &str) -> Result<(), ServerError> {
        let mut guard = self.stdin.lock().await;
        let Some(stdin) = guard.as_mut() else {
            return Err(ServerError::NotAttached);
        };
        let mut data = command.as_bytes().to_vec();
        data.push(b'\n');
        stdin.write_all(&data).await.map_err(anyhow::Error::from)?;
        stdin.flush().await.map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// Whether Docker reports the container running.
    pub async fn is_running(&self) -> bool {
        matches!(self.shared.env.status(&self.uuid).await, Ok(Some(st)) if st.running)
    }

    /// The last `n` lines of the container log.
    pub async fn read_log(&self, n: usize) -> anyhow::Result<Vec<String>> {
        self.shared.env.logs(&self.uuid, n).await
    }

    // ------------------------------------------------------------------ disk

    /// Cached disk usage in bytes; recalculated when older than
    /// `disk_check_interval`. With `stale_ok` an old value is returned and refreshed
    /// in the background.
    pub async fn disk_usage(self: &Arc<Self>, stale_ok: bool) -> i64 {
        let interval = self.shared.config().system.disk_check_interval;
        if interval <= 0 {
            return 0;
        }
        let fresh = {
            let d = self.disk.lock().unwrap_or_else(|e| e.into_inner());
            d.checked
                .is_some_and(|t| t.elapsed() < Duration::from_secs(interval as u64))
        };
        if fresh {
            return self.disk.lock().unwrap_or_else(|e| e.into_inner()).bytes;
        }
        if stale_ok
            && self
                .disk
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .checked
                .is_some()
        {
            if !self.disk_refreshing.swap(true, Ordering::SeqCst) {
                let me = self.clone();
                tokio::spawn(async move {
                    me.compute_disk().await;
                    me.disk_refreshing.store(false, Ordering::SeqCst);
                });
            }
            return self.disk.lock().unwrap_or_else(|e| e.into_inner()).bytes;
        }
        self.compute_disk().await
    }

    /// The disk limit in bytes (0 = unlimited).
    pub fn disk_limit(&self) -> i64 {
        // Read in place: this runs on every upload write.
        let disk_space = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .build
            .disk_space;
        disk_space.max(0) * 1024 * 1024
    }

    /// Whether `delta` more bytes fit under the disk limit (cached usage, §6.9).
    pub fn has_space_for(&self, delta: i64) -> bool {
        let limit = self.disk_limit();
        if limit == 0 || delta <= 0 || self.shared.config().system.disk_check_interval <= 0 {
            return true;
        }
        self.disk.lock().unwrap_or_else(|e| e.into_inner()).bytes + delta <= limit
    }

    /// Adjusts the cached usage after a write through the API or SFTP.
    pub fn add_disk_usage(&self, delta: i64) {
        let mut d = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        d.bytes = (d.bytes + delta).max(0);
    }

    /// Forgets the cached usage so the next check walks the tree again.
    pub fn invalidate_disk_usage(&self) {
        self.disk.lock().unwrap_or_else(|e| e.into_inner()).checked = None;
    }

    /// Marks the server transferring (power actions are refused meanwhile).
    pub fn set_transferring(&self, v: bool) -> bool {
        self.transferring.swap(v, Ordering::SeqCst)
    }

    /// Marks the server restoring a backup (power actions are refused meanwhile).
    pub fn set_restoring(&self, v: bool) -> bool {
        self.restoring.swap(v, Ordering::SeqCst)
    }

    pub fn is_restoring(&self) -> bool {
        self.restoring.load(Ordering::SeqCst)
    }

    /// Sets the suspended flag locally (restores suspend the server meanwhile).
    pub fn set_suspended(&self, v: bool) {
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .suspended = v;
    }

    async fn compute_disk(&self) -> i64 {
        let dir = self.data_path();
        let bytes = tokio::task::spawn_blocking(move || dir_size(&dir))
            .await
            .unwrap_or(0);
        let mut d = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        d.bytes = bytes;
        d.checked = Some(Instant::now());
        bytes
    }

    // ------------------------------------------------------------------ delete

    /// Deletes the server (§1.5): suspend, `deleted` event, close sockets, remove the
    /// container; the data directory is removed in the background.
    pub async fn destroy(&self) -> Result<(), ServerError> {
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .suspended = true;
        if self.is_transferring() {
            self.publish(Event::TransferStatus("completed".into()));
        }
        self.publish(Event::Deleted);
        self.attach_gen.fetch_add(1, Ordering::SeqCst);
        self.cancel.cancel();
        self.shared.env.remove(&self.uuid).await?;
        self.shared
            .env
            .remove(&format!("{}_installer", self.uuid))
            .await?;
        let dir = self.data_path();
        tokio::spawn(async move {
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove server data");
                }
            }
        });
        Ok(())
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn set_installing(&self, v: bool) -> bool {
        self.installing.swap(v, Ordering::SeqCst)
    }
}

fn parse_time(s: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = chrono::DateTime::parse_from_rfc3339(s?)
        .ok()?
        .with_timezone(&chrono::Utc);
    // Docker reports year 1 for never-started containers.
    (t.timestamp() > 0).then_some(t)
}

fn dir_size(dir: &std::path::Path) -> i64 {
    let mut total = 0i64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len() as i64;
            }
        }
    }
    total
}

fn chown_recursive(dir: &std::path::Path, uid: u32, gid: u32) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let _ = std::os::unix::fs::lchown(&p, Some(uid), Some(gid));
        if let Ok(meta) = std::fs::symlink_metadata(&p) {
            if meta.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            }
        }
    }
}
