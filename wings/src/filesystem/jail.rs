//! The jail: every path a user names (HTTP, SFTP, archives, backups) is resolved
//! by the kernel beneath the server root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`, never by string prefix checks. Operations on the last
//! component (rename, unlink, mkdir, symlink) run against a directory fd obtained
//! that way, so a symlink raced into the path between two steps cannot redirect
//! them outside the root. Files with several hard links are refused for reading and
//! writing in place; whole-file writes go to a temporary file renamed over the
//! target, which replaces (never follows) a link.

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode};
use nix::unistd::UnlinkatFlags;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("not found")]
    NotFound,
    #[error("denylisted")]
    Denylisted,
    #[error("is a directory")]
    IsDirectory,
    #[error("not enough disk space")]
    NotEnoughSpace,
    #[error("name too long")]
    NameTooLong,
    #[error("not a directory")]
    NotDirectory,
    #[error("destination exists")]
    Exists,
    #[error("not a regular file")]
    BadType,
    #[error("file has several hard links")]
    HardLinked,
    #[error("the root cannot be changed")]
    IsRoot,
    #[error("busy")]
    Busy,
    #[error(transparent)]
    Io(std::io::Error),
}

impl From<Errno> for FsError {
    fn from(e: Errno) -> FsError {
        match e {
            // EXDEV/ELOOP: the path tried to leave the root (or looped); ENOENT.
            Errno::ENOENT | Errno::EXDEV | Errno::ELOOP | Errno::EINVAL => FsError::NotFound,
            Errno::EISDIR => FsError::IsDirectory,
            Errno::ENOTDIR => FsError::NotDirectory,
            Errno::ENAMETOOLONG => FsError::NameTooLong,
            Errno::ENOSPC | Errno::EDQUOT => FsError::NotEnoughSpace,
            Errno::EEXIST | Errno::ENOTEMPTY => FsError::Exists,
            Errno::ETXTBSY => FsError::Busy,
            other => FsError::Io(std::io::Error::from(other)),
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> FsError {
        match e.raw_os_error() {
            Some(code) => Errno::from_raw(code).into(),
            None => FsError::Io(e),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// Cleans a user path like Go's `filepath.Clean("/" + p)`: `.` and empty parts go,
/// `..` pops (never above the root), the result is relative ("" = the root). NUL
/// bytes are refused.
pub fn clean(p: &str) -> FsResult<String> {
    if p.contains('\0') {
        return Err(FsError::NotFound);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split(['/', '\\']) {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Joins `name` onto the cleaned `root` (both user input).
pub fn join(root: &str, name: &str) -> FsResult<String> {
    clean(&format!("{root}/{name}"))
}

/// Splits a cleaned relative path into (parent, last component).
pub fn split(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by no
    // one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// A server root, held open.
pub struct Jail {
    root: OwnedFd,
    path: PathBuf,
    uid: u32,
    gid: u32,
    /// Whether wings runs as root (new files are then given to `uid:gid`); asked
    /// once, not per file.
    chown: bool,
}

/// The directory holding a path's last component, opened beneath the root; only
/// [`Jail::parent_dir`] makes one, so it never stands for a directory outside.
pub struct ParentDir<'a> {
    fd: OwnedFd,
    name: &'a str,
}

impl ParentDir<'_> {
    /// lstat of the last component.
    pub fn lstat(&self) -> FsResult<FileStat> {
        Ok(fstatat(
            Some(self.fd.as_raw_fd()),
            self.name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }
}

/// One entry of a directory listing (lstat of the entry).
pub struct DirEntry {
    pub name: String,
    pub stat: FileStat,
}

impl Jail {
    /// Opens (creating if needed) the root directory.
    pub fn open(path: &Path, uid: u32, gid: u32) -> FsResult<Jail> {
        std::fs::create_dir_all(path)?;
        // The root itself must be a real directory, not a link to elsewhere.
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Jail {
            root: owned(fd),
            path: path.to_path_buf(),
            uid,
            gid,
            chown: nix::unistd::geteuid().is_root(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `openat2` beneath the root; `rel` must be clean.
    pub fn open_at(&self, rel: &str, flags: OFlag, mode: u32) -> FsResult<OwnedFd> {
        let p = if rel.is_empty() { "." } else { rel };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(resolve_flags());
        let fd = openat2(self.root.as_raw_fd(), p, how)?;
        Ok(owned(fd))
    }

    /// The parent directory of `rel` (opened beneath the root) and the final name.
    pub fn parent<'a>(&self, rel: &'a str) -> FsResult<(OwnedFd, &'a str)> {
        if rel.is_empty() {
            return Err(FsError::IsRoot);
        }
        let (dir, name) = split(rel);
        let fd = self.open_at(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
        Ok((fd, name))
    }

    /// Like [`Jail::parent`], kept for [`ParentDir::lstat`] and [`Jail::temp_in`]:
    /// one resolution of the parent serves both.
    pub fn parent_dir<'a>(&self, rel: &'a str) -> FsResult<ParentDir<'a>> {
        let (fd, name) = self.parent(rel)?;
        Ok(ParentDir { fd, name })
    }

    /// stat, following symlinks that stay beneath the root.
    pub fn stat(&self, rel: &str) -> FsResult<FileStat> {
        let fd = self.open_at(rel, OFlag::O_PATH, 0)?;
        Ok(fstat(fd.as_raw_fd())?)
    }

    /// lstat of the final component.
    pub fn lstat(&self, rel: &str) -> FsResult<FileStat> {
        if rel.is_empty() {
            return self.stat(rel);
        }
        let (dir, name) = self.parent(rel)?;
        Ok(fstatat(
            Some(dir.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.lstat(rel).is_ok()
    }

    /// Lists a directory (lstat of each entry), `.`/`..` left out.
    pub fn read_dir(&self, rel: &str) -> FsResult<Vec<DirEntry>> {
        let fd = self.open_at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
        read_dir_fd(fd)
    }

    /// Opens a regular file for reading. Pipes, devices and hard-linked files are
    /// refused.
    pub fn open_read(&self, rel: &str) -> FsResult<(File, FileStat)> {
        let fd = self.open_at(
            rel,
            OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
            0,
        )?;
        let st = fstat(fd.as_raw_fd())?;
        check_regular(&st)?;
        Ok((File::from(fd), st))
    }

    /// Opens (creating with 0644 when `create`) a file for writing in place (SFTP).
    pub fn open_write(&self, rel: &str, create: bool, truncate: bool) -> FsResult<(File, bool)> {
        let existed = self.exists(rel);
        let mut flags = OFlag::O_WRONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        if create {
            flags |= OFlag::O_CREAT;
        }
        if create && !existed {
            let (dir, _) = split(rel);
            self.mkdir_all(dir)?;
        }
        let fd = self.open_at(rel, flags, 0o644)?;
        let st = fstat(fd.as_raw_fd())?;
        check_regular(&st)?;
        let f = File::from(fd);
        if truncate {
            f.set_len(0)?;
        }
        if !existed {
            self.chown_fd(f.as_raw_fd());
        }
        Ok((f, !existed))
    }

    /// A new temporary file beside `rel` (its parent is created), for a write that
    /// is renamed into place by [`Jail::commit`].
    pub fn temp_beside(&self, rel: &str) -> FsResult<TempFile> {
        let (dir, name) = split(rel);
        if name.is_empty() {
            return Err(FsError::IsRoot);
        }
        // The parent usually exists: one resolution; `mkdir -p` only when missing.
        let dirfd = match self.open_at(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(FsError::NotFound) => {
                self.mkdir_all(dir)?;
                self.open_at(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?
            }
            Err(e) => return Err(e),
        };
        self.temp_in(ParentDir { fd: dirfd, name })
    }

    /// [`Jail::temp_beside`] in a parent already opened (and existing).
    pub fn temp_in(&self, parent: ParentDir<'_>) -> FsResult<TempFile> {
        let ParentDir { fd: dirfd, name } = parent;
        if name.is_empty() {
            return Err(FsError::IsRoot);
        }
        for _ in 0..16 {
            let tmp = format!(
                ".{}.ferro-{:016x}.tmp",
                truncate_name(name),
                rand::random::<u64>()
            );
            let how = OpenHow::new()
                .flags(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC)
                .mode(Mode::from_bits_truncate(0o644))
                .resolve(resolve_flags());
            match openat2(dirfd.as_raw_fd(), tmp.as_str(), how) {
                Ok(fd) => {
                    let file = File::from(owned(fd));
                    self.chown_fd(file.as_raw_fd());
                    return Ok(TempFile {
                        dir: dirfd,
                        tmp,
                        target: name.to_string(),
                        file: Some(file),
                    });
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FsError::Io(std::io::Error::other(
            "could not create a temporary file",
        )))
    }

    /// `mkdir -p` beneath the root (0755, owned by the configured user).
    pub fn mkdir_all(&self, rel: &str) -> FsResult<()> {
        if rel.is_empty() {
            return Ok(());
        }
        let mut cur = self.open_at("", OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
        let mut prefix = String::new();
        for comp in rel.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            match self.open_at(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY, 0) {
                Ok(fd) => cur = fd,
                Err(FsError::NotFound) if !self.exists(&prefix) => {
                    match mkdirat(Some(cur.as_raw_fd()), comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let fd = self.open_at(&prefix, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
                    self.chown_fd(fd.as_raw_fd());
                    cur = fd;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates one directory (SFTP mkdir); the parent must exist.
    pub fn mkdir(&self, rel: &str) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755))?;
        if let Ok(fd) = self.open_at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0) {
            self.chown_fd(fd.as_raw_fd());
        }
        Ok(())
    }

    /// Renames without replacing; missing parents of the target are created.
    pub fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        if from.is_empty() || to.is_empty() {
            return Err(FsError::IsRoot);
        }
        let (fdir, fname) = self.parent(from)?;
        let (tparent, _) = split(to);
        self.mkdir_all(tparent)?;
        let (tdir, tname) = self.parent(to)?;
        nix::fcntl::renameat2(
            Some(fdir.as_raw_fd()),
            fname,
            Some(tdir.as_raw_fd()),
            tname,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )?;
        Ok(())
    }

    /// Removes a file, a symlink (never its target) or a whole directory tree.
    pub fn remove_all(&self, rel: &str) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        remove_at(dir.as_raw_fd(), name)
    }

    /// Removes a file or an empty directory (SFTP remove/rmdir).
    pub fn remove_one(&self, rel: &str, dir_too: bool) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        let flag = if dir_too {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, flag)?;
        Ok(())
    }

    /// chmod, following symlinks only while they stay beneath the root.
    pub fn chmod(&self, rel: &str, mode: u32) -> FsResult<()> {
        let fd = self.open_at(rel, OFlag::O_PATH, 0)?;
        // An O_PATH descriptor cannot be fchmod'ed; its /proc link names exactly
        // the inode that was resolved beneath the root.
        let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::sys::stat::fchmodat(
            None,
            proc.as_str(),
            Mode::from_bits_truncate(mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
        Ok(())
    }

    /// Creates a symlink `rel` → `target` (stored as given; resolving it later is
    /// still confined to the root).
    pub fn symlink(&self, target: &str, rel: &str) -> FsResult<()> {
        if target.contains('\0') {
            return Err(FsError::NotFound);
        }
        let (dir, name) = self.parent(rel)?;
        nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name)?;
        Ok(())
    }

    pub fn readlink(&self, rel: &str) -> FsResult<String> {
        let (dir, name) = self.parent(rel)?;
        let t = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)?;
        Ok(t.to_string_lossy().into_owned())
    }

    pub fn chown_fd(&self, fd: RawFd) {
        if self.chown {
            let _ = nix::unistd::fchown(
                fd,
                Some(nix::unistd::Uid::from_raw(self.uid)),
                Some(nix::unistd::Gid::from_raw(self.gid)),
            );
        }
    }

    /// Walks `rel` (a file or a directory tree) without following symlinks, calling
    /// `f(relative path, lstat, fd of its directory, name)` for every entry below.
    pub fn walk(
        &self,
        rel: &str,
        f: &mut dyn FnMut(&str, &FileStat, RawFd, &str) -> FsResult<()>,
    ) -> FsResult<()> {
        if rel.is_empty() {
            let fd = self.open_at("", OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
            return walk_fd(fd, "", f);
        }
        let (dir, name) = self.parent(rel)?;
        let st = fstatat(
            Some(dir.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        f(rel, &st, dir.as_raw_fd(), name)?;
        if is_dir(&st) {
            let fd = nix::fcntl::openat(
                Some(dir.as_raw_fd()),
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            walk_fd(owned(fd), rel, f)?;
        }
        Ok(())
    }
}

fn truncate_name(name: &str) -> &str {
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Opens the file `name` in directory `dir` for reading without following links.
pub fn open_in(dir: RawFd, name: &str) -> FsResult<File> {
    let fd = nix::fcntl::openat(
        Some(dir),
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(owned(fd)))
}

fn walk_fd(
    dir: OwnedFd,
    prefix: &str,
    f: &mut dyn FnMut(&str, &FileStat, RawFd, &str) -> FsResult<()>,
) -> FsResult<()> {
    let raw = dir.as_raw_fd();
    let dup = nix::unistd::dup(raw)?;
    for e in read_dir_fd(owned(dup))? {
        let rel = if prefix.is_empty() {
            e.name.clone()
        } else {
            format!("{prefix}/{}", e.name)
        };
        f(&rel, &e.stat, raw, &e.name)?;
        if is_dir(&e.stat) {
            let fd = nix::fcntl::openat(
                Some(raw),
                e.name.as_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            );
            match fd {
                Ok(fd) => walk_fd(owned(fd), &rel, f)?,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn read_dir_fd(fd: OwnedFd) -> FsResult<Vec<DirEntry>> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    let mut d = match nix::dir::Dir::from_fd(raw) {
        Ok(d) => d,
        Err(e) => {
            drop(owned(raw));
            return Err(e.into());
        }
    };
    let dfd = d.as_raw_fd();
    let mut out = Vec::new();
    let names: Vec<Vec<u8>> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for n in names {
        let name = OsStr::from_bytes(&n);
        let Ok(stat) = fstatat(Some(dfd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        out.push(DirEntry {
            name: name.to_string_lossy().into_owned(),
            stat,
        });
    }
    Ok(out)
}

fn remove_at(dir: RawFd, name: &str) -> FsResult<()> {
    let st = fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if is_dir(&st) {
        let fd = nix::fcntl::openat(
            Some(dir),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let fd = owned(fd);
        let dup = owned(nix::unistd::dup(fd.as_raw_fd())?);
        for e in read_dir_fd(dup)? {
            remove_at(fd.as_raw_fd(), &e.name)?;
        }
        nix::unistd::unlinkat(Some(dir), name, UnlinkatFlags::RemoveDir)?;
    } else {
        nix::unistd::unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

fn check_regular(st: &FileStat) -> FsResult<()> {
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFDIR {
        return Err(FsError::IsDirectory);
    }
    if kind != libc::S_IFREG {
        return Err(FsError::BadType);
    }
    if st.st_nlink > 1 {
        return Err(FsError::HardLinked);
    }
    Ok(())
}

pub fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_file(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

pub fn is_symlink(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// A temporary file that becomes `target` on [`TempFile::commit`] and disappears
/// when dropped uncommitted.
pub struct TempFile {
    dir: OwnedFd,
    tmp: String,
    target: String,
    file: Option<File>,
}

impl TempFile {
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file open until commit")
    }

    /// The open file, shared (positioned writes and fstat need no `&mut`).
    pub fn file_ref(&self) -> &File {
        self.file.as_ref().expect("temp file open until commit")
    }

    /// Replaces the target (a file or a symlink; a directory is refused: rename(2)
    /// of a file onto a directory fails with EISDIR, which is `IsDirectory`).
    pub fn commit(mut self) -> FsResult<()> {
        // No fsync: the rename is atomic for readers, as upstream's in-place
        // writes are not durable either; an fsync per file made many small
        // uploads several times slower.
        drop(self.file.take());
        nix::fcntl::renameat(
            Some(self.dir.as_raw_fd()),
            self.tmp.as_str(),
            Some(self.dir.as_raw_fd()),
            self.target.as_str(),
        )?;
        self.tmp.clear();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = nix::unistd::unlinkat(
                Some(self.dir.as_raw_fd()),
                self.tmp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_contains_dot_dot_and_absolute_paths() {
        assert_eq!(clean("../../etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(clean("/a/./b/../c/").unwrap(), "a/c");
        assert_eq!(clean("/").unwrap(), "");
        assert!(clean("a\0b").is_err());
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(t.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../secret", root.join("rel")).unwrap();
        std::os::unix::fs::symlink(t.path(), root.join("dir")).unwrap();
        std::fs::write(root.join("ok"), "y").unwrap();
        std::os::unix::fs::symlink("ok", root.join("inside")).unwrap();
        let j = Jail::open(&root, 0, 0).unwrap();
        assert!(matches!(j.open_read("abs"), Err(FsError::NotFound)));
        assert!(matches!(j.open_read("rel"), Err(FsError::NotFound)));
        assert!(matches!(j.open_read("dir/secret"), Err(FsError::NotFound)));
        assert!(j.open_read("inside").is_ok());
        assert!(matches!(j.temp_beside("dir/x"), Err(FsError::NotFound)));
        assert!(matches!(j.chmod("abs", 0o777), Err(FsError::NotFound)));
        j.remove_all("dir").unwrap();
        assert!(t.path().join("secret").exists());
    }

    #[test]
    fn hard_links_are_refused_and_temp_writes_replace_them() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(t.path().join("secret"), "x").unwrap();
        std::fs::hard_link(t.path().join("secret"), root.join("hl")).unwrap();
        let j = Jail::open(&root, 0, 0).unwrap();
        assert!(matches!(j.open_read("hl"), Err(FsError::HardLinked)));
        assert!(matches!(
            j.open_write("hl", true, true),
            Err(FsError::HardLinked)
        ));
        let mut tmp = j.temp_beside("hl").unwrap();
        use std::io::Write;
        tmp.file().write_all(b"new").unwrap();
        tmp.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("secret")).unwrap(),
            "x"
        );
        assert_eq!(std::fs::read_to_string(root.join("hl")).unwrap(), "new");
    }

    #[test]
    fn a_temp_file_in_a_kept_parent_commits_and_never_replaces_a_directory() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("sub/dir")).unwrap();
        std::fs::write(root.join("sub/old"), "old").unwrap();
        std::os::unix::fs::symlink(t.path(), root.join("out")).unwrap();
        let j = Jail::open(&root, 0, 0).unwrap();
        // The parent is resolved once, beneath the root: a link out of it is refused.
        assert!(matches!(j.parent_dir("out/x"), Err(FsError::NotFound)));
        let parent = j.parent_dir("sub/old").unwrap();
        assert_eq!(parent.lstat().unwrap().st_size, 3);
        let tmp = j.temp_in(parent).unwrap();
        use std::io::Write;
        tmp.file_ref().write_all(b"new!").unwrap();
        tmp.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("sub/old")).unwrap(),
            "new!"
        );
        // Onto a directory: refused, the directory and its parent left as they were.
        let tmp = j.temp_in(j.parent_dir("sub/dir").unwrap()).unwrap();
        assert!(matches!(tmp.commit(), Err(FsError::IsDirectory)));
        assert!(root.join("sub/dir").is_dir());
        let mut names: Vec<_> = std::fs::read_dir(root.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dir", "old"], "no temporary file left behind");
    }
}
