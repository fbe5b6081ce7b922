//! Archives: tar.gz creation from a jail (file-manager compress, backups,
//! transfers) and extraction of tar, tar.gz, tar.xz, tar.bz2 and zip into a jail
//! (decompress, restores). Every entry is written through the jail: names with
//! `..` are skipped, links inside archives can never carry a later entry outside
//! the root, hard links are skipped, and the quota counts the bytes actually
//! written, so headers that lie about sizes cannot fill the disk.

use super::jail::{self, FsError, FsResult, Jail};
use super::Filesystem;
use ignore::gitignore::Gitignore;
use std::io::{BufReader, Read, Seek, Write};

/// Compression formats Wings understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarXz,
    TarBz2,
    Zip,
}

/// Detects the format from the first bytes.
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"\x1f\x8b") {
        Some(Format::TarGz)
    } else if head.starts_with(b"\xfd7zXZ\x00") {
        Some(Format::TarXz)
    } else if head.starts_with(b"BZh") {
        Some(Format::TarBz2)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(Format::Zip)
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        Some(Format::Tar)
    } else {
        None
    }
}

/// gzip level from `backups.compression_level`.
pub fn level(name: &str) -> flate2::Compression {
    match name {
        "none" => flate2::Compression::none(),
        "best_compression" => flate2::Compression::best(),
        _ => flate2::Compression::fast(),
    }
}

/// Writes a tar.gz of `paths` (clean, relative to the jail root) into `out`.
/// Entry names are relative to `base`. Paths matching `ignore` are left out.
pub fn write_tar_gz<W: Write>(
    jail: &Jail,
    base: &str,
    paths: &[String],
    ignore: Option<&Gitignore>,
    compression: flate2::Compression,
    out: W,
) -> FsResult<W> {
    let gz = flate2::write::GzEncoder::new(out, compression);
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let strip = |rel: &str| -> String {
        if base.is_empty() {
            rel.to_string()
        } else {
            rel.strip_prefix(base)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| rel.to_string())
        }
    };
    for p in paths {
        jail.walk(p, &mut |rel, st, dirfd, name| {
            if let Some(m) = ignore {
                if super::matches(m, rel, jail::is_dir(st)) {
                    return Ok(());
                }
            }
            let entry = strip(rel);
            if entry.is_empty() {
                return Ok(());
            }
            let mut h = tar::Header::new_gnu();
            h.set_mode(st.st_mode & 0o7777);
            h.set_mtime(st.st_mtime.max(0) as u64);
            h.set_uid(st.st_uid as u64);
            h.set_gid(st.st_gid as u64);
            if jail::is_dir(st) {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{entry}/"), std::io::empty())?;
            } else if jail::is_file(st) {
                let f = match jail::open_in(dirfd, name) {
                    Ok(f) => f,
                    Err(FsError::NotFound) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let size = f.metadata()?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                // Bounded to the size announced in the header even if the file grows.
                tar.append_data(&mut h, &entry, f.take(size))?;
            } else if jail::is_symlink(st) {
                let target = nix::fcntl::readlinkat(Some(dirfd), name)?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, &entry, std::path::Path::new(&target))?;
            }
            Ok(())
        })?;
    }
    let gz = tar.into_inner()?;
    Ok(gz.finish()?)
}

/// What extraction reports per entry (restores print each file).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Sums the uncompressed sizes announced by the archive at `rel`.
pub fn announced_size(fs: &Filesystem, rel: &str) -> FsResult<u64> {
    let (f, _) = fs.jail.open_read(rel)?;
    let mut f = BufReader::new(f);
    let format = sniff_format(&mut f)?;
    if format == Format::Zip {
        let mut z = zip::ZipArchive::new(f).map_err(|_| FsError::BadType)?;
        let mut total = 0u64;
        for i in 0..z.len() {
            if let Ok(e) = z.by_index_raw(i) {
                total = total.saturating_add(e.size());
            }
        }
        return Ok(total);
    }
    let mut total = 0u64;
    let mut a = tar::Archive::new(decoder(format, f));
    for e in a.entries().map_err(|_| FsError::BadType)? {
        let e = e.map_err(|_| FsError::BadType)?;
        total = total.saturating_add(e.header().size().unwrap_or(0));
    }
    Ok(total)
}

fn sniff_format<R: std::io::BufRead>(r: &mut R) -> FsResult<Format> {
    let head = r.fill_buf()?;
    detect(head).ok_or(FsError::BadType)
}

fn decoder<'a, R: std::io::BufRead + 'a>(format: Format, r: R) -> Box<dyn Read + 'a> {
    match format {
        Format::TarGz => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Format::TarXz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Format::TarBz2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        _ => Box::new(r),
    }
}

/// Extracts the archive file `rel` into the directory `into`.
pub fn extract_file(fs: &Filesystem, rel: &str, into: &str, progress: Progress) -> FsResult<()> {
    let (f, _) = fs.jail.open_read(rel)?;
    let mut r = BufReader::new(f);
    let format = sniff_format(&mut r)?;
    if format == Format::Zip {
        return extract_zip(fs, r, into, progress);
    }
    extract_tar(fs, decoder(format, r), into, true, progress)
}

/// Extracts a (decompressed) tar stream into `into`.
pub fn extract_tar(
    fs: &Filesystem,
    r: impl Read,
    into: &str,
    denylist: bool,
    progress: Progress,
) -> FsResult<()> {
    let mut a = tar::Archive::new(r);
    let entries = a.entries().map_err(|_| FsError::BadType)?;
    for e in entries {
        let mut e = e.map_err(|_| FsError::BadType)?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let Some(target) = entry_target(into, &raw) else {
            continue;
        };
        if denylist && fs.is_denylisted(&target) {
            continue;
        }
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644);
        let mtime = h.mtime().unwrap_or(0) as i64;
        match h.entry_type() {
            tar::EntryType::Directory => fs.jail.mkdir_all(&target)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                progress(&target);
                write_entry(fs, &target, &mut e, mode, mtime)?;
            }
            tar::EntryType::Symlink => {
                let Ok(Some(link)) = e.link_name() else {
                    continue;
                };
                let link = link.to_string_lossy().into_owned();
                let (parent, _) = jail::split(&target);
                fs.jail.mkdir_all(parent)?;
                if !fs.jail.exists(&target) {
                    fs.jail.symlink(&link, &target)?;
                }
            }
            // Hard links, devices, fifos: never created from an archive.
            _ => {}
        }
    }
    Ok(())
}

fn extract_zip<R: Read + Seek>(
    fs: &Filesystem,
    r: R,
    into: &str,
    progress: Progress,
) -> FsResult<()> {
    let mut z = zip::ZipArchive::new(r).map_err(|_| FsError::BadType)?;
    for i in 0..z.len() {
        let mut e = z.by_index(i).map_err(|_| FsError::BadType)?;
        let Ok(raw) = e.name().map(|n| n.to_string()) else {
            continue;
        };
        let Some(target) = entry_target(into, &raw) else {
            continue;
        };
        if fs.is_denylisted(&target) {
            continue;
        }
        if e.is_dir() {
            fs.jail.mkdir_all(&target)?;
            continue;
        }
        if e.is_symlink() || !e.is_file() {
            continue;
        }
        let mode = e.unix_mode().unwrap_or(0o644) & 0o7777;
        let mode = if mode == 0 { 0o644 } else { mode };
        let mtime = e
            .last_modified()
            .and_then(|d| {
                chrono::NaiveDate::from_ymd_opt(d.year() as i32, d.month() as u32, d.day() as u32)
                    .and_then(|day| {
                        day.and_hms_opt(d.hour() as u32, d.minute() as u32, d.second() as u32)
                    })
            })
            .map(|t| t.and_utc().timestamp())
            .unwrap_or(0);
        progress(&target);
        write_entry(fs, &target, &mut e, mode, mtime)?;
    }
    Ok(())
}

/// The clean target of an archive entry, or `None` for names that try to climb
/// out (`..`) or are empty.
fn entry_target(into: &str, raw: &str) -> Option<String> {
    if raw.contains('\0') || raw.split(['/', '\\']).any(|c| c == "..") {
        return None;
    }
    let t = jail::join(into, raw).ok()?;
    (!t.is_empty()).then_some(t)
}

fn write_entry(
    fs: &Filesystem,
    target: &str,
    r: &mut dyn Read,
    mode: u32,
    mtime: i64,
) -> FsResult<()> {
    if let Ok(st) = fs.jail.lstat(target) {
        if jail::is_dir(&st) {
            return Err(FsError::IsDirectory);
        }
    }
    let old = fs
        .jail
        .lstat(target)
        .ok()
        .filter(jail::is_file)
        .map(|s| s.st_size)
        .unwrap_or(0);
    let mut tmp = fs.jail.temp_beside(target)?;
    let mut buf = vec![0u8; 128 * 1024];
    let mut written: i64 = 0;
    loop {
        let n = r.read(&mut buf).map_err(|_| FsError::BadType)?;
        if n == 0 {
            break;
        }
        if !fs.has_space_for(written + n as i64 - old) {
            return Err(FsError::NotEnoughSpace);
        }
        tmp.file().write_all(&buf[..n])?;
        written += n as i64;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let f = tmp.file();
        let _ = f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777));
        if mtime > 0 {
            let t = nix::sys::time::TimeSpec::new(mtime, 0);
            use std::os::fd::AsRawFd;
            let _ = nix::sys::stat::futimens(f.as_raw_fd(), &t, &t);
        }
    }
    tmp.commit()?;
    fs.server.add_disk_usage(written - old);
    Ok(())
}
