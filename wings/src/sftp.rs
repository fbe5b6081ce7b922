//! The SFTP server (reference §7): russh with the `sftp` subsystem only, logins
//! checked by the Panel's `POST /api/remote/sftp/auth` (password and public key,
//! username `<user>.<8-char server id>`), upstream's permission mapping, read-only
//! mode, suspended servers refused, failed logins rate-limited per client address,
//! and an ed25519 host key generated on first start and kept at
//! `<system.data>/.sftp/id_ed25519`. Every path goes through the server's jail.

use crate::filesystem::{jail, Filesystem, FsError};
use crate::server::Server;
use crate::App;
use bytes::{Buf, Bytes, BytesMut};
use openapi::remote::SftpAuthRequest;
use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use russh_sftp::protocol::{
    Attrs, Data, File as SftpFile, FileAttributes, Handle, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use russh_sftp::server::{Handler as _, StatusReply};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failed logins allowed per client address per window before further attempts
/// are refused without asking the Panel.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Loads the host key, generating and saving a new ed25519 key on first start.
pub fn host_key(data_dir: &Path) -> anyhow::Result<PrivateKey> {
    let dir = data_dir.join(".sftp");
    let path = dir.join("id_ed25519");
    if path.exists() {
        return russh::keys::load_secret_key(&path, None)
            .map_err(|e| anyhow::anyhow!("could not read SFTP host key {}: {e}", path.display()));
    }
    std::fs::create_dir_all(&dir)?;
    let seed: [u8; 32] = rand::random();
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let key = PrivateKey::from(pair);
    let mut pem = Vec::new();
    russh::keys::encode_pkcs8_pem(&key, &mut pem)
        .map_err(|e| anyhow::anyhow!("could not encode SFTP host key: {e}"))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&pem)?;
    }
    Ok(key)
}

/// Failed login bookkeeping shared by every connection.
#[derive(Default)]
struct Limiter {
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Limiter {
    fn blocked(&self, ip: IpAddr) -> bool {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let list = m.entry(ip).or_default();
        list.retain(|t| t.elapsed() < FAILURE_WINDOW);
        list.len() >= MAX_FAILURES
    }

    fn failed(&self, ip: IpAddr) {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(ip).or_default().push(Instant::now());
        if m.len() > 10_000 {
            m.retain(|_, v| v.iter().any(|t| t.elapsed() < FAILURE_WINDOW));
        }
    }
}

#[derive(Clone)]
struct SshServer {
    app: Arc<App>,
    limiter: Arc<Limiter>,
}

impl russh::server::Server for SshServer {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            app: self.app.clone(),
            limiter: self.limiter.clone(),
            peer: peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            login: None,
            channels: HashMap::new(),
            sftp: HashMap::new(),
        }
    }
}

/// Serves SFTP on `listener` until it fails.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    use russh::server::Server as _;
    let key = host_key(Path::new(&app.config().system.data))?;
    let config = russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Ferrodactyl_Wings".into()),
        methods: russh::MethodSet::from(
            &[russh::MethodKind::Password, russh::MethodKind::PublicKey][..],
        ),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keys: vec![key],
        max_auth_attempts: 6,
        nodelay: true,
        ..Default::default()
    };
    let mut server = SshServer {
        app,
        limiter: Arc::new(Limiter::default()),
    };
    server.run_on_socket(Arc::new(config), &listener).await?;
    Ok(())
}

struct Login {
    server: Arc<Server>,
    user: String,
    permissions: Vec<String>,
}

struct Connection {
    app: Arc<App>,
    limiter: Arc<Limiter>,
    peer: SocketAddr,
    login: Option<Login>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// SFTP subsystems, served inline by the connection's task (no task hop per
    /// request): bytes received on the channel, framed into SFTP packets.
    sftp: HashMap<ChannelId, SftpChannel>,
}

/// Largest SFTP packet accepted from a client (russh-sftp's default).
const MAX_PACKET: usize = 256 * 1024 + 1024;

struct SftpChannel {
    session: SftpSession,
    input: BytesMut,
}

fn username_ok(user: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^(?i)(.+)\.([a-z0-9]{8})$").expect("static regex"))
        .is_match(user)
}

impl Connection {
    async fn check(&mut self, kind: &str, user: &str, secret: String) -> Auth {
        let ip = self.peer.ip();
        if !username_ok(user) || self.limiter.blocked(ip) {
            if username_ok(user) {
                tracing::debug!(%ip, "SFTP login refused: too many failed attempts");
            }
            return Auth::reject();
        }
        let req = SftpAuthRequest {
            kind: kind.into(),
            username: user.into(),
            password: secret,
            ip: self.peer.to_string(),
            session_id: None,
            client_version: None,
        };
        let resp = match self.app.shared.remote().sftp_auth(&req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%ip, error = %e, "SFTP login refused by the panel");
                self.limiter.failed(ip);
                return Auth::reject();
            }
        };
        let Some(server) = self.app.manager.get(&resp.server) else {
            return Auth::reject();
        };
        if server.is_suspended() {
            return Auth::reject();
        }
        self.login = Some(Login {
            server,
            user: resp.user,
            permissions: resp.permissions,
        });
        Auth::Accept
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.check("password", user, password.to_string()).await)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let line = match key.public_key.to_openssh() {
            Ok(l) => format!("{l}\n"),
            Err(_) => return Ok(Auth::reject()),
        };
        Ok(self.check("public_key", user, line).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(login) = self.login.as_ref() else {
            session.channel_failure(id)?;
            return Ok(());
        };
        if name != "sftp" {
            session.channel_failure(id)?;
            return Ok(());
        }
        // The channel's own queue is not read: requests are handled in `data`.
        if self.channels.remove(&id).is_none() {
            session.channel_failure(id)?;
            return Ok(());
        }
        let fs = match Filesystem::new(&login.server).await {
            Ok(fs) => fs,
            Err(_) => {
                session.channel_failure(id)?;
                return Ok(());
            }
        };
        session.channel_success(id)?;
        let handler = SftpSession {
            app: self.app.clone(),
            fs,
            user: login.user.clone(),
            ip: self.peer.ip(),
            permissions: login.permissions.clone(),
            handles: HashMap::new(),
            next: 0,
        };
        self.sftp.insert(
            id,
            SftpChannel {
                session: handler,
                input: BytesMut::new(),
            },
        );
        Ok(())
    }

    /// SFTP requests, answered in order on the connection's own task: one
    /// packet is parsed, handled and its reply queued before the next.
    async fn data(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.sftp.get_mut(&id) else {
            return Ok(());
        };
        ch.input.extend_from_slice(data);
        while let Some(head) = ch.input.get(..4) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > MAX_PACKET || len == 0 {
                tracing::debug!(len, "SFTP packet refused: bad length");
                self.sftp.remove(&id);
                session.close(id)?;
                return Ok(());
            }
            if ch.input.len() < 4 + len {
                ch.input.reserve(4 + len - ch.input.len());
                break;
            }
            ch.input.advance(4);
            let mut body = ch.input.split_to(len).freeze();
            let reply = match Packet::try_from(&mut body) {
                Ok(request) => ch.session.dispatch(request).await,
                Err(_) => Packet::error(0, StatusCode::BadMessage),
            };
            match Bytes::try_from(reply) {
                Ok(bytes) => session.data(id, bytes)?,
                Err(e) => tracing::warn!(error = %e, "could not encode an SFTP reply"),
            }
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        id: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.sftp.remove(&id);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.sftp.remove(&id);
        session.close(id)?;
        Ok(())
    }
}

// ------------------------------------------------------------------ the subsystem

/// What a file handle reads or writes.
enum Target {
    File(std::fs::File),
    /// Whole-file uploads go to a temporary file renamed into place on close;
    /// a client that disconnects or fails mid-upload leaves nothing behind.
    Temp(jail::TempFile),
}

impl Target {
    fn file(&self) -> &std::fs::File {
        match self {
            Target::File(f) => f,
            Target::Temp(t) => t.file_ref(),
        }
    }
}

enum OpenHandle {
    File {
        file: Target,
        rel: String,
        writable: bool,
        created: bool,
        size: u64,
        failed: bool,
        /// Bytes of the file this upload replaces (released on commit).
        replaced: i64,
    },
    Dir {
        rel: String,
        /// Entries not yet sent; read on the first READDIR, sent in batches so a
        /// large directory never exceeds the client's packet limit.
        pending: Option<Vec<SftpFile>>,
    },
}

struct SftpSession {
    app: Arc<App>,
    fs: Filesystem,
    user: String,
    ip: IpAddr,
    permissions: Vec<String>,
    handles: HashMap<String, OpenHandle>,
    next: u64,
}

fn status(code: StatusCode, msg: &str) -> StatusReply {
    code.with_message(msg)
}

fn denied() -> StatusReply {
    status(StatusCode::PermissionDenied, "Permission denied")
}

fn unsupported() -> StatusReply {
    status(StatusCode::OpUnsupported, "operation unsupported")
}

fn quota() -> StatusReply {
    status(StatusCode::Failure, "Quota Exceeded")
}

fn fs_status(e: FsError) -> StatusReply {
    match e {
        FsError::NotFound | FsError::NotDirectory | FsError::IsRoot => {
            status(StatusCode::NoSuchFile, "No such file")
        }
        FsError::Denylisted | FsError::HardLinked => denied(),
        FsError::NotEnoughSpace => quota(),
        FsError::Exists => status(StatusCode::Failure, "file already exists"),
        FsError::IsDirectory => status(StatusCode::Failure, "is a directory"),
        FsError::BadType => status(StatusCode::OpUnsupported, "unsupported file type"),
        _ => status(StatusCode::Failure, "Failure"),
    }
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn attrs(st: &nix::sys::stat::FileStat) -> FileAttributes {
    FileAttributes {
        size: Some(st.st_size as u64),
        uid: Some(st.st_uid),
        user: None,
        gid: Some(st.st_gid),
        group: None,
        permissions: Some(st.st_mode),
        atime: Some(st.st_atime.max(0) as u32),
        mtime: Some(st.st_mtime.max(0) as u32),
    }
}

fn rel(p: &str) -> Result<String, StatusReply> {
    jail::clean(p).map_err(fs_status)
}

impl SftpSession {
    fn can(&self, perm: &str) -> Result<(), StatusReply> {
        if self.fs.server.is_suspended() {
            return Err(denied());
        }
        if self.permissions.iter().any(|p| p == "*" || p == perm) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    fn writable(&self) -> Result<(), StatusReply> {
        if self.app.config().system.sftp.read_only {
            return Err(unsupported());
        }
        Ok(())
    }

    fn record(&self, event: &str, metadata: serde_json::Value) {
        self.app.activity.record(
            &self.fs.server.uuid,
            event,
            Some(self.user.clone()),
            Some(self.ip),
            metadata,
        );
    }

    fn handle(&mut self, h: OpenHandle) -> String {
        self.next += 1;
        let id = format!("h{}", self.next);
        self.handles.insert(id.clone(), h);
        id
    }
}

/// The STATUS packet for a failed request.
fn status_packet(id: u32, e: StatusReply) -> Packet {
    Packet::Status(Status {
        id,
        status_code: e.status_code,
        error_message: e.error_message.unwrap_or_else(|| e.status_code.to_string()),
        language_tag: e.language_tag.unwrap_or_else(|| "en-US".into()),
    })
}

impl SftpSession {
    /// Answers one request packet.
    async fn dispatch(&mut self, request: Packet) -> Packet {
        fn reply<T: Into<Packet>>(id: u32, r: Result<T, StatusReply>) -> Packet {
            match r {
                Ok(p) => p.into(),
                Err(e) => status_packet(id, e),
            }
        }
        let id = request.get_request_id();
        match request {
            Packet::Init(p) => reply(id, self.init(p.version, p.extensions).await),
            Packet::Open(p) => reply(id, self.open(p.id, p.filename, p.pflags, p.attrs).await),
            Packet::Close(p) => reply(id, self.close(p.id, p.handle).await),
            Packet::Read(p) => reply(id, self.read(p.id, p.handle, p.offset, p.len).await),
            Packet::Write(p) => reply(id, self.write(p.id, p.handle, p.offset, p.data).await),
            Packet::Lstat(p) => reply(id, self.lstat(p.id, p.path).await),
            Packet::Fstat(p) => reply(id, self.fstat(p.id, p.handle).await),
            Packet::SetStat(p) => reply(id, self.setstat(p.id, p.path, p.attrs).await),
            Packet::FSetStat(p) => reply(id, self.fsetstat(p.id, p.handle, p.attrs).await),
            Packet::OpenDir(p) => reply(id, self.opendir(p.id, p.path).await),
            Packet::ReadDir(p) => reply(id, self.readdir(p.id, p.handle).await),
            Packet::Remove(p) => reply(id, self.remove(p.id, p.filename).await),
            Packet::MkDir(p) => reply(id, self.mkdir(p.id, p.path, p.attrs).await),
            Packet::RmDir(p) => reply(id, self.rmdir(p.id, p.path).await),
            Packet::RealPath(p) => reply(id, self.realpath(p.id, p.path).await),
            Packet::Stat(p) => reply(id, self.stat(p.id, p.path).await),
            Packet::Rename(p) => reply(id, self.rename(p.id, p.oldpath, p.newpath).await),
            Packet::ReadLink(p) => reply(id, self.readlink(p.id, p.path).await),
            Packet::Symlink(p) => reply(id, self.symlink(p.id, p.linkpath, p.targetpath).await),
            Packet::Extended(p) => match self.extended(p.id, p.request, p.data).await {
                Ok(p) => p,
                Err(e) => status_packet(id, e),
            },
            _ => Packet::error(id, StatusCode::BadMessage),
        }
    }
}

impl Drop for SftpSession {
    /// Uploads still open when the client goes are removed (their temporary files
    /// are dropped); the bytes they had added to the usage figure go with them.
    fn drop(&mut self) {
        for h in self.handles.values() {
            if let OpenHandle::File {
                file: Target::Temp(_),
                size,
                ..
            } = h
            {
                self.fs.server.add_disk_usage(-(*size as i64));
            }
        }
    }
}

impl russh_sftp::server::Handler for SftpSession {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        unsupported()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let r = rel(&path)?;
        Ok(Name {
            id,
            files: vec![SftpFile::dummy(format!("/{r}"))],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.can("file.read")?;
        let st = self.fs.jail.stat(&rel(&path)?).map_err(fs_status)?;
        Ok(Attrs {
            id,
            attrs: attrs(&st),
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.can("file.read")?;
        let st = self.fs.jail.lstat(&rel(&path)?).map_err(fs_status)?;
        Ok(Attrs {
            id,
            attrs: attrs(&st),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        match self.handles.get(&handle) {
            Some(OpenHandle::File { file, .. }) => {
                let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(file.file()))
                    .map_err(|e| fs_status(e.into()))?;
                Ok(Attrs {
                    id,
                    attrs: attrs(&st),
                })
            }
            Some(OpenHandle::Dir { rel, .. }) => {
                let st = self.fs.jail.stat(rel).map_err(fs_status)?;
                Ok(Attrs {
                    id,
                    attrs: attrs(&st),
                })
            }
            None => Err(status(StatusCode::Failure, "invalid handle")),
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        self.can("file.read")?;
        let r = rel(&path)?;
        let st = self.fs.jail.stat(&r).map_err(fs_status)?;
        if !jail::is_dir(&st) {
            return Err(status(StatusCode::NoSuchFile, "not a directory"));
        }
        let handle = self.handle(OpenHandle::Dir {
            rel: r,
            pending: None,
        });
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        const BATCH: usize = 100;
        let jail = &self.fs.jail;
        let Some(OpenHandle::Dir { rel, pending }) = self.handles.get_mut(&handle) else {
            return Err(status(StatusCode::Failure, "invalid handle"));
        };
        if pending.is_none() {
            let entries = jail.read_dir(rel).map_err(fs_status)?;
            let mut files: Vec<SftpFile> = entries
                .iter()
                .map(|e| SftpFile::new(e.name.clone(), attrs(&e.stat)))
                .collect();
            files.sort_by(|a, b| b.filename.cmp(&a.filename));
            *pending = Some(files);
        }
        let left = pending.as_mut().expect("filled above");
        if left.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        let take = left.len().min(BATCH);
        let files = left
            .split_off(left.len() - take)
            .into_iter()
            .rev()
            .collect();
        Ok(Name { id, files })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let r = rel(&filename)?;
        let write = pflags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        );
        if !write {
            self.can("file.read-content")?;
            let (file, st) = self.fs.jail.open_read(&r).map_err(fs_status)?;
            let handle = self.handle(OpenHandle::File {
                file: Target::File(file),
                rel: r,
                writable: false,
                created: false,
                size: st.st_size as u64,
                failed: false,
                replaced: 0,
            });
            return Ok(Handle { id, handle });
        }
        self.writable()?;
        // One lstat answers both "exists" and the size a replacement frees; the
        // parent it resolved is kept for the temporary file.
        let parent = match r.is_empty() {
            true => None,
            false => self.fs.jail.parent_dir(&r).ok(),
        };
        let current = match &parent {
            Some(p) => p.lstat().ok(),
            None => self.fs.jail.lstat(&r).ok(),
        };
        let exists = current.is_some();
        if exists {
            self.can("file.update")?;
        } else {
            self.can("file.create")?;
        }
        if !self.fs.has_space_for(1) {
            return Err(quota());
        }
        if exists && pflags.contains(OpenFlags::EXCLUDE) {
            return Err(status(StatusCode::Failure, "file already exists"));
        }
        let old = current
            .as_ref()
            .filter(|s| jail::is_file(s))
            .map(|s| s.st_size)
            .unwrap_or(0);
        let truncate = pflags.contains(OpenFlags::TRUNCATE);
        if truncate || !exists {
            if !pflags.contains(OpenFlags::CREATE) && !exists {
                return Err(status(StatusCode::NoSuchFile, "No such file"));
            }
            let tmp = match parent {
                Some(p) => self.fs.jail.temp_in(p),
                None => self.fs.jail.temp_beside(&r),
            }
            .map_err(fs_status)?;
            let handle = self.handle(OpenHandle::File {
                file: Target::Temp(tmp),
                rel: r,
                writable: true,
                created: !exists,
                size: 0,
                failed: false,
                replaced: old,
            });
            return Ok(Handle { id, handle });
        }
        let (file, created) = self
            .fs
            .jail
            .open_write(&r, false, false)
            .map_err(fs_status)?;
        let handle = self.handle(OpenHandle::File {
            file: Target::File(file),
            rel: r,
            writable: true,
            created,
            size: old as u64,
            failed: false,
            replaced: 0,
        });
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(OpenHandle::File { file, .. }) = self.handles.get(&handle) else {
            return Err(status(StatusCode::Failure, "invalid handle"));
        };
        let mut buf = vec![0u8; len.min(256 * 1024) as usize];
        let n = file
            .file()
            .read_at(&mut buf, offset)
            .map_err(|e| fs_status(e.into()))?;
        if n == 0 {
            return Err(StatusCode::Eof.into());
        }
        buf.truncate(n);
        Ok(Data { id, data: buf })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let server = self.fs.server.clone();
        let Some(OpenHandle::File {
            file,
            writable: true,
            size,
            failed,
            replaced,
            ..
        }) = self.handles.get_mut(&handle)
        else {
            return Err(denied());
        };
        let end = offset + data.len() as u64;
        let grow = end.saturating_sub(*size) as i64;
        // A replacing upload only has to fit once the old file is gone.
        let credit = if matches!(file, Target::Temp(_)) {
            *replaced
        } else {
            0
        };
        if grow > 0 && !server.has_space_for(grow - credit.min(*size as i64 + grow)) {
            *failed = true;
            return Err(quota());
        }
        if let Err(e) = file.file().write_all_at(&data, offset) {
            *failed = true;
            return Err(fs_status(e.into()));
        }
        if grow > 0 {
            server.add_disk_usage(grow);
            *size = end;
        }
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        if let Some(OpenHandle::File {
            file,
            rel,
            writable: true,
            created,
            failed,
            replaced,
            size,
        }) = self.handles.remove(&handle)
        {
            if let Target::Temp(tmp) = file {
                if failed {
                    // Dropped: the partial upload is removed, the old file kept.
                    self.fs.server.add_disk_usage(-(size as i64));
                    drop(tmp);
                    return Err(status(StatusCode::Failure, "upload failed"));
                }
                if let Err(e) = tmp.commit() {
                    self.fs.server.add_disk_usage(-(size as i64));
                    return Err(fs_status(e));
                }
                self.fs.server.add_disk_usage(-replaced);
            }
            let event = if created {
                "server:sftp.create"
            } else {
                "server:sftp.write"
            };
            self.record(event, serde_json::json!({"files": [format!("/{rel}")]}));
        }
        Ok(ok(id))
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.writable()?;
        self.can("file.update")?;
        let r = rel(&path)?;
        self.apply_attrs(&r, attrs)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.writable()?;
        self.can("file.update")?;
        let r = match self.handles.get(&handle) {
            Some(OpenHandle::File {
                file,
                writable: true,
                ..
            }) => {
                // The handle may be an upload still in its temporary file.
                if let Some(mode) = attrs.permissions {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if mode & 0o7777 == 0 {
                        0o644
                    } else {
                        mode & 0o7777
                    };
                    file.file()
                        .set_permissions(std::fs::Permissions::from_mode(mode))
                        .map_err(|e| fs_status(e.into()))?;
                }
                return Ok(ok(id));
            }
            Some(OpenHandle::File { rel, .. }) | Some(OpenHandle::Dir { rel, .. }) => rel.clone(),
            None => return Err(status(StatusCode::Failure, "invalid handle")),
        };
        self.apply_attrs(&r, attrs)?;
        Ok(ok(id))
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.writable()?;
        self.can("file.delete")?;
        let r = rel(&filename)?;
        let size = self
            .fs
            .jail
            .lstat(&r)
            .ok()
            .filter(jail::is_file)
            .map(|s| s.st_size)
            .unwrap_or(0);
        self.fs.jail.remove_one(&r, false).map_err(fs_status)?;
        self.fs.server.add_disk_usage(-size);
        self.record(
            "server:sftp.delete",
            serde_json::json!({"files": [format!("/{r}")]}),
        );
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        self.writable()?;
        self.can("file.delete")?;
        let r = rel(&path)?;
        self.fs.jail.remove_all(&r).map_err(fs_status)?;
        self.fs.server.invalidate_disk_usage();
        self.record(
            "server:sftp.delete",
            serde_json::json!({"files": [format!("/{r}")]}),
        );
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.writable()?;
        self.can("file.create")?;
        let r = rel(&path)?;
        self.fs.jail.mkdir(&r).map_err(fs_status)?;
        self.record(
            "server:sftp.create-directory",
            serde_json::json!({"files": [format!("/{r}")]}),
        );
        Ok(ok(id))
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.writable()?;
        self.can("file.update")?;
        let (from, to) = (rel(&oldpath)?, rel(&newpath)?);
        self.fs.jail.rename(&from, &to).map_err(fs_status)?;
        self.record(
            "server:sftp.rename",
            serde_json::json!({"files": [{"from": format!("/{from}"), "to": format!("/{to}")}]}),
        );
        Ok(ok(id))
    }

    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        self.writable()?;
        self.can("file.create")?;
        // OpenSSH's client sends the two paths in the reverse order of the draft.
        let link = rel(&targetpath)?;
        let target = rel(&linkpath)?;
        self.fs
            .jail
            .symlink(&format!("/{target}"), &link)
            .map_err(fs_status)?;
        Ok(ok(id))
    }
}

impl SftpSession {
    fn apply_attrs(&self, r: &str, a: FileAttributes) -> Result<(), StatusReply> {
        if let Some(mode) = a.permissions {
            let st = self.fs.jail.stat(r).map_err(fs_status)?;
            let mode = if jail::is_dir(&st) {
                0o755
            } else if mode & 0o7777 == 0 {
                0o644
            } else {
                mode & 0o7777
            };
            self.fs.jail.chmod(r, mode).map_err(fs_status)?;
        }
        if let Some(size) = a.size {
            let (f, _) = self
                .fs
                .jail
                .open_write(r, false, false)
                .map_err(fs_status)?;
            let old = f.metadata().map(|m| m.len()).unwrap_or(0);
            let grow = size as i64 - old as i64;
            if grow > 0 && !self.fs.has_space_for(grow) {
                return Err(quota());
            }
            f.set_len(size).map_err(|e| fs_status(e.into()))?;
            self.fs.server.add_disk_usage(grow);
        }
        Ok(())
    }
}

/// Where the host key lives for a configuration.
pub fn host_key_path(data: &str) -> PathBuf {
    PathBuf::from(data).join(".sftp").join("id_ed25519")
}
