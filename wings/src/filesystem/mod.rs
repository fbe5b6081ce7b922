//! A server's files as the API and SFTP see them (reference §1.6, §10): the jail
//! ([`jail`]), the egg's denylist, the disk quota on every write, upstream's stat
//! object and MIME sniffing, and the archive formats ([`archive`]).

pub mod archive;
pub mod jail;
pub mod mime;

use crate::server::Server;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
pub use jail::{clean, join, FsError, FsResult, Jail};
use nix::sys::stat::FileStat;
use std::io::Read;
use std::sync::Arc;

pub use openapi::wings::FileObject;

/// A server's filesystem for one operation.
pub struct Filesystem {
    pub jail: Jail,
    pub server: Arc<Server>,
    denylist: Option<Gitignore>,
}

/// Builds a gitignore-style matcher (egg denylist, `.pteroignore`).
pub fn matcher(lines: &[String]) -> Option<Gitignore> {
    let lines: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return None;
    }
    let mut b = GitignoreBuilder::new("/");
    for l in lines {
        let _ = b.add_line(None, l);
    }
    b.build().ok()
}

/// Whether `rel` (clean, relative) or one of its parents matches.
pub fn matches(m: &Gitignore, rel: &str, is_dir: bool) -> bool {
    if rel.is_empty() {
        return false;
    }
    m.matched_path_or_any_parents(format!("/{rel}"), is_dir)
        .is_ignore()
}

impl Filesystem {
    pub async fn new(server: &Arc<Server>) -> FsResult<Filesystem> {
        let cfg = server.shared().config();
        let jail = Jail::open(
            &server.data_path(),
            cfg.system.user.uid,
            cfg.system.user.gid,
        )?;
        // Prime the usage cache so quota checks have a figure.
        server.disk_usage(true).await;
        let denylist = matcher(&server.settings().egg.file_denylist);
        Ok(Filesystem {
            jail,
            server: server.clone(),
            denylist,
        })
    }

    /// Refuses paths the egg's denylist names.
    pub fn check_denylist(&self, rel: &str) -> FsResult<()> {
        if self.is_denylisted(rel) {
            return Err(FsError::Denylisted);
        }
        Ok(())
    }

    pub fn is_denylisted(&self, rel: &str) -> bool {
        match &self.denylist {
            Some(m) => {
                let is_dir = self
                    .jail
                    .lstat(rel)
                    .map(|s| jail::is_dir(&s))
                    .unwrap_or(false);
                matches(m, rel, is_dir)
            }
            None => false,
        }
    }

    /// Whether `delta` more bytes fit under the disk limit.
    pub fn has_space_for(&self, delta: i64) -> bool {
        self.server.has_space_for(delta)
    }

    /// The stat object of `rel` (upstream's `Stat`, following in-root symlinks).
    pub fn stat_object(&self, rel: &str) -> FsResult<FileObject> {
        let st = self.jail.stat(rel)?;
        let name = jail::split(rel).1.to_string();
        let mime = self.sniff(rel, &st);
        Ok(file_object(&name, &st, mime))
    }

    fn sniff(&self, rel: &str, st: &FileStat) -> String {
        if jail::is_dir(st) {
            return "inode/directory".into();
        }
        if !jail::is_file(st) {
            return "application/octet-stream".into();
        }
        let mut buf = Vec::with_capacity(3072);
        if let Ok((f, _)) = self.jail.open_read(rel) {
            let _ = f.take(3072).read_to_end(&mut buf);
        }
        mime::sniff(&buf, rel).to_string()
    }

    /// Lists a directory as upstream does: directories first, then files, by name.
    pub fn list(&self, rel: &str) -> FsResult<Vec<FileObject>> {
        let st = self.jail.stat(rel)?;
        if !jail::is_dir(&st) {
            return Err(FsError::NotFound);
        }
        let entries = self.jail.read_dir(rel)?;
        let mut out: Vec<FileObject> = entries
            .into_iter()
            .map(|e| {
                let child = if rel.is_empty() {
                    e.name.clone()
                } else {
                    format!("{rel}/{}", e.name)
                };
                let mime = if jail::is_symlink(&e.stat) {
                    // In-root symlinks are described by their target.
                    match self.jail.stat(&child) {
                        Ok(t) => self.sniff(&child, &t),
                        Err(_) => "application/octet-stream".into(),
                    }
                } else {
                    self.sniff(&child, &e.stat)
                };
                file_object(&e.name, &e.stat, mime)
            })
            .collect();
        out.sort_by(|a, b| {
            b.directory
                .cmp(&a.directory)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    /// Streams `reader` into `rel` through a temporary file: quota checked as the
    /// bytes arrive, nothing left behind on failure, the old file (or a link at
    /// that name) replaced only when complete.
    pub async fn write_stream<S>(&self, rel: &str, mut body: S, mode: u32) -> FsResult<u64>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin,
    {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        if rel.is_empty() {
            return Err(FsError::IsDirectory);
        }
        if let Ok(st) = self.jail.lstat(rel) {
            if jail::is_dir(&st) {
                return Err(FsError::IsDirectory);
            }
        }
        let old = self
            .jail
            .lstat(rel)
            .ok()
            .filter(jail::is_file)
            .map(|s| s.st_size)
            .unwrap_or(0);
        let mut tmp = self.jail.temp_beside(rel)?;
        let mut out = tokio::fs::File::from_std(tmp.file().try_clone()?);
        let mut written: i64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(FsError::Io)?;
            if !self.has_space_for(written + chunk.len() as i64 - old) {
                return Err(FsError::NotEnoughSpace);
            }
            out.write_all(&chunk).await?;
            written += chunk.len() as i64;
        }
        out.flush().await?;
        drop(out);
        set_mode(tmp.file(), mode);
        tmp.commit()?;
        self.server.add_disk_usage(written - old);
        Ok(written as u64)
    }

    /// Copies a regular file beside itself with upstream's naming.
    pub fn copy(&self, rel: &str) -> FsResult<String> {
        let (mut src, st) = self.jail.open_read(rel)?;
        self.check_denylist(rel)?;
        if !self.has_space_for(st.st_size) {
            return Err(FsError::NotEnoughSpace);
        }
        let (dir, name) = jail::split(rel);
        let target = (0..=51)
            .map(|i| copy_name(name, i))
            .map(|n| {
                if dir.is_empty() {
                    n
                } else {
                    format!("{dir}/{n}")
                }
            })
            .find(|p| !self.jail.exists(p))
            .ok_or(FsError::Exists)?;
        let mut tmp = self.jail.temp_beside(&target)?;
        std::io::copy(&mut src, tmp.file())?;
        set_mode(tmp.file(), st.st_mode & 0o7777);
        tmp.commit()?;
        self.server.add_disk_usage(st.st_size);
        Ok(target)
    }
}

fn set_mode(f: &std::fs::File, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777));
}

/// `file copy.txt`, `file copy 1.txt` … `file copy 50.txt`, then a timestamped
/// name; a `.tar.<ext>` double extension stays together.
pub fn copy_name(name: &str, i: usize) -> String {
    let lower = name.to_lowercase();
    let ext_len = if let Some(pos) = lower.rfind(".tar.") {
        name.len() - pos
    } else if let Some(pos) = name.rfind('.').filter(|p| *p > 0) {
        name.len() - pos
    } else {
        0
    };
    let (base, ext) = name.split_at(name.len() - ext_len);
    match i {
        0 => format!("{base} copy{ext}"),
        1..=50 => format!("{base} copy {i}{ext}"),
        _ => format!(
            "{base}copy.{}{ext}",
            chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    }
}

fn rfc3339(secs: i64, nsecs: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_opt(secs, nsecs.clamp(0, 999_999_999) as u32)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Go's `FileMode.String()` for a stat mode.
pub fn mode_string(mode: u32) -> String {
    let mut s = String::new();
    match mode & libc::S_IFMT {
        libc::S_IFDIR => s.push('d'),
        libc::S_IFLNK => s.push('L'),
        libc::S_IFBLK => s.push('D'),
        libc::S_IFCHR => s.push_str("Dc"),
        libc::S_IFIFO => s.push('p'),
        libc::S_IFSOCK => s.push('S'),
        _ => {}
    }
    if mode & libc::S_ISUID != 0 {
        s.push('u');
    }
    if mode & libc::S_ISGID != 0 {
        s.push('g');
    }
    if mode & libc::S_ISVTX != 0 {
        s.push('t');
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

pub fn file_object(name: &str, st: &FileStat, mime: String) -> FileObject {
    FileObject {
        name: name.to_string(),
        created: rfc3339(st.st_ctime, st.st_ctime_nsec),
        modified: rfc3339(st.st_mtime, st.st_mtime_nsec),
        mode: mode_string(st.st_mode),
        mode_bits: format!("{:o}", st.st_mode & 0o777),
        size: st.st_size,
        directory: jail::is_dir(st),
        file: jail::is_file(st),
        symlink: jail::is_symlink(st),
        mime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_names_follow_upstream() {
        assert_eq!(copy_name("file.txt", 0), "file copy.txt");
        assert_eq!(copy_name("file.txt", 1), "file copy 1.txt");
        assert_eq!(copy_name("world.tar.gz", 2), "world copy 2.tar.gz");
        assert_eq!(copy_name("README", 0), "README copy");
        assert_eq!(copy_name(".env", 0), ".env copy");
    }

    #[test]
    fn go_mode_strings() {
        assert_eq!(mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "Lrwxrwxrwx");
    }

    #[test]
    fn denylist_matches_gitignore_patterns() {
        let m = matcher(&["*.jar".into(), "config/secret".into()]).unwrap();
        assert!(matches(&m, "server.jar", false));
        assert!(matches(&m, "plugins/x.jar", false));
        assert!(matches(&m, "config/secret/a", false));
        assert!(!matches(&m, "server.properties", false));
    }
}
