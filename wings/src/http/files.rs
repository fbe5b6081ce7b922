//! File routes (reference §1.6): list, contents, write, rename, copy, delete,
//! create-directory, compress, decompress, chmod and remote pulls. Every path goes
//! through the server's [`crate::filesystem::Jail`].

use super::{ApiError, JsonBody};
use crate::filesystem::{archive, jail, FileObject, Filesystem, FsError};
use crate::server::Server;
use crate::App;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use openapi::wings::{
    ChmodRequest, CopyRequest, CreateDirectoryRequest, DecompressRequest, DirQuery, FileQuery,
    FilesRequest, RenameRequest,
};
use std::sync::Arc;

pub const MSG_NOT_FOUND: &str = "The requested resources was not found on the system.";
pub const MSG_DENYLIST: &str = "This file cannot be modified: present in egg denylist.";
pub const MSG_IS_DIR: &str = "Cannot perform that action: file is a directory.";
pub const MSG_NO_SPACE: &str = "There is not enough disk space available to perform that action.";
pub const MSG_NAME_TOO_LONG: &str = "Cannot perform that action: file name is too long.";
pub const MSG_BAD_TYPE: &str = "Cannot open files of this type.";
pub const MSG_BAD_ARCHIVE: &str = "The archive provided is in a format Wings does not understand.";
pub const MSG_INCOMPLETE: &str = "The request body ended before its Content-Length.";
pub const MSG_BUSY: &str = "One or more files this archive is attempting to overwrite are currently in use by another process. Please try again.";

/// Maps a filesystem error onto upstream's statuses and texts.
pub fn fs_error(e: FsError) -> ApiError {
    let (status, msg) = match e {
        FsError::NotFound | FsError::NotDirectory => (StatusCode::NOT_FOUND, MSG_NOT_FOUND),
        FsError::Denylisted => (StatusCode::FORBIDDEN, MSG_DENYLIST),
        FsError::IsDirectory => (StatusCode::BAD_REQUEST, MSG_IS_DIR),
        FsError::NotEnoughSpace => (StatusCode::BAD_REQUEST, MSG_NO_SPACE),
        FsError::NameTooLong => (StatusCode::BAD_REQUEST, MSG_NAME_TOO_LONG),
        FsError::BadType => (StatusCode::BAD_REQUEST, MSG_BAD_TYPE),
        FsError::Exists => (
            StatusCode::BAD_REQUEST,
            "Cannot move or rename file, destination already exists.",
        ),
        FsError::HardLinked => (
            StatusCode::BAD_REQUEST,
            "Cannot perform that action: file has more than one hard link.",
        ),
        FsError::IsRoot => (
            StatusCode::BAD_REQUEST,
            "Cannot perform that action on the server root directory.",
        ),
        FsError::Busy => (StatusCode::BAD_REQUEST, MSG_BUSY),
        FsError::Io(e) => return ApiError::internal(e),
    };
    ApiError::new(status, msg)
}

fn path(p: &str) -> Result<String, ApiError> {
    jail::clean(p).map_err(fs_error)
}

fn join(root: &str, p: &str) -> Result<String, ApiError> {
    jail::join(root, p).map_err(fs_error)
}

pub(crate) async fn open(app: &App, id: &str) -> Result<Filesystem, ApiError> {
    let s = super::servers::find(app, id)?;
    Filesystem::new(&s).await.map_err(fs_error)
}

/// Runs blocking filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

fn unprocessable(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg)
}

/// Streams a regular file (optionally as an attachment).
pub(crate) fn stream_file(
    f: std::fs::File,
    size: u64,
    name: &str,
    mime: Option<&str>,
    download: bool,
) -> Response {
    use tokio::io::AsyncReadExt;
    let reader = tokio::fs::File::from_std(f).take(size);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Some(m) = mime {
        if let Ok(v) = HeaderValue::from_str(m) {
            h.insert("x-mime-type", v.clone());
            if !download {
                h.insert(header::CONTENT_TYPE, v);
            }
        }
    }
    if download {
        let safe: String = name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    resp
}

pub async fn contents(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
) -> Result<Response, ApiError> {
    let fs = open(&app, &id).await?;
    let rel = path(&q.file)?;
    let (f, st, mime) = blocking(move || {
        let (f, st) = fs.jail.open_read(&rel).map_err(fs_error)?;
        let mime = fs.stat_object(&rel).map(|o| o.mime).unwrap_or_default();
        Ok((f, st, mime))
    })
    .await?;
    let name = jail::split(&jail::clean(&q.file).unwrap_or_default())
        .1
        .to_string();
    Ok(stream_file(
        f,
        st.st_size as u64,
        &name,
        Some(&mime),
        !q.download.is_empty(),
    ))
}

pub async fn list_directory(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<DirQuery>,
) -> Result<Json<Vec<FileObject>>, ApiError> {
    let fs = open(&app, &id).await?;
    let rel = path(&q.directory)?;
    let list = blocking(move || fs.list(&rel).map_err(fs_error)).await?;
    Ok(Json(list))
}

pub async fn rename(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RenameRequest>,
) -> Result<StatusCode, ApiError> {
    if req.files.is_empty() {
        return Err(unprocessable("No files to move or rename were provided."));
    }
    let fs = open(&app, &id).await?;
    let pairs = req
        .files
        .iter()
        .map(|p| Ok((join(&req.root, &p.from)?, join(&req.root, &p.to)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    blocking(move || {
        for (from, to) in pairs {
            fs.check_denylist(&from).map_err(fs_error)?;
            fs.check_denylist(&to).map_err(fs_error)?;
            if from.is_empty() || to.is_empty() {
                return Err(fs_error(FsError::IsRoot));
            }
            if !fs.jail.exists(&from) {
                continue;
            }
            match fs.jail.rename(&from, &to) {
                Ok(()) => {}
                Err(FsError::NotFound) if !fs.jail.exists(&from) => {}
                Err(e) => return Err(fs_error(e)),
            }
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn copy(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CopyRequest>,
) -> Result<StatusCode, ApiError> {
    let fs = open(&app, &id).await?;
    let rel = path(&req.location)?;
    blocking(move || match fs.copy(&rel) {
        Ok(_) => Ok(()),
        // Only regular files are copied; anything else is "not found".
        Err(FsError::IsDirectory | FsError::BadType) => Err(fs_error(FsError::NotFound)),
        Err(e) => Err(fs_error(e)),
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn write(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Missing Content-Length"))?;
    let fs = open(&app, &id).await?;
    let rel = path(&q.file)?;
    fs.check_denylist(&rel).map_err(fs_error)?;
    if let Ok(st) = fs.jail.lstat(&rel) {
        if jail::is_dir(&st) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Cannot write file, name conflicts with an existing directory by the same name.",
            ));
        }
    }
    if !fs.has_space_for(len as i64 - fs.jail.lstat(&rel).map(|s| s.st_size).unwrap_or(0)) {
        return Err(fs_error(FsError::NotEnoughSpace));
    }
    let body = limited(req.into_body(), len);
    match fs.write_stream(&rel, body, 0o644).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(FsError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, MSG_INCOMPLETE))
        }
        Err(e) => Err(fs_error(e)),
    }
}

/// A request body as a byte stream, cut at `limit` bytes; a body that ends
/// before `limit` fails (so the temporary file is discarded, never committed).
pub(crate) fn limited(
    body: Body,
    limit: u64,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = std::sync::Arc::new(AtomicU64::new(0));
    let (s1, s2) = (seen.clone(), seen);
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, MSG_INCOMPLETE);
    body.into_data_stream()
        .map(move |r| r.map_err(|_| eof()))
        .take_while(move |r| {
            let go = s1.load(Ordering::Relaxed) < limit || r.is_err();
            futures::future::ready(go)
        })
        .map({
            let s = s2.clone();
            move |r| {
                r.map(|mut b| {
                    let left = limit - s.load(Ordering::Relaxed);
                    if b.len() as u64 > left {
                        b.truncate(left as usize);
                    }
                    s.fetch_add(b.len() as u64, Ordering::Relaxed);
                    b
                })
            }
        })
        .chain(futures::stream::once(async move {
            if s2.load(Ordering::Relaxed) < limit {
                Err(eof())
            } else {
                Ok(bytes::Bytes::new())
            }
        }))
        .boxed()
}

pub async fn create_directory(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateDirectoryRequest>,
) -> Result<StatusCode, ApiError> {
    let fs = open(&app, &id).await?;
    let rel = join(&req.path, &req.name)?;
    blocking(move || match fs.jail.mkdir_all(&rel) {
        Ok(()) => Ok(()),
        Err(FsError::NotDirectory) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Part of the path being created is not a directory (ENOTDIR).",
        )),
        Err(e) => Err(fs_error(e)),
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FilesRequest>,
) -> Result<StatusCode, ApiError> {
    if req.files.is_empty() {
        return Err(unprocessable("No files were specified for deletion."));
    }
    let fs = open(&app, &id).await?;
    let paths = req
        .files
        .iter()
        .map(|f| join(&req.root, f))
        .collect::<Result<Vec<_>, _>>()?;
    let server = fs.server.clone();
    let res = blocking(move || {
        for p in paths {
            match fs.jail.remove_all(&p) {
                Ok(()) | Err(FsError::NotFound) => {}
                Err(e) => return Err(fs_error(e)),
            }
        }
        Ok(())
    })
    .await;
    server.invalidate_disk_usage();
    res?;
    Ok(StatusCode::NO_CONTENT)
}

/// `archive-<RFC3339 local time without ":">.tar.gz`.
pub fn archive_name() -> String {
    let ts = chrono::Local::now()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        .replace(':', "");
    format!("archive-{ts}.tar.gz")
}

pub async fn compress(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FilesRequest>,
) -> Result<Json<FileObject>, ApiError> {
    if req.files.is_empty() {
        return Err(unprocessable(
            "No files were passed through to be compressed.",
        ));
    }
    let fs = open(&app, &id).await?;
    if !fs.has_space_for(1) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "This server does not have enough available disk space to generate a compressed archive.",
        ));
    }
    let root = path(&req.root)?;
    let paths = req
        .files
        .iter()
        .map(|f| join(&root, f))
        .collect::<Result<Vec<_>, _>>()?;
    let obj = blocking(move || {
        let target = jail::join(&root, &archive_name()).map_err(fs_error)?;
        let mut tmp = fs.jail.temp_beside(&target).map_err(fs_error)?;
        let file = tmp.file().try_clone().map_err(|e| fs_error(e.into()))?;
        let out = std::io::BufWriter::new(file);
        let out = archive::write_tar_gz(
            &fs.jail,
            &root,
            &paths,
            None,
            flate2::Compression::fast(),
            out,
        )
        .map_err(fs_error)?;
        out.into_inner()
            .map_err(|e| ApiError::internal(e.error()))?;
        let size = tmp.file().metadata().map(|m| m.len() as i64).unwrap_or(0);
        if !fs.has_space_for(size) {
            return Err(fs_error(FsError::NotEnoughSpace));
        }
        tmp.commit().map_err(fs_error)?;
        fs.server.add_disk_usage(size);
        let mut obj = fs.stat_object(&target).map_err(fs_error)?;
        obj.mime = "application/tar+gzip".into();
        Ok(obj)
    })
    .await?;
    Ok(Json(obj))
}

pub async fn decompress(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<DecompressRequest>,
) -> Result<StatusCode, ApiError> {
    let fs = open(&app, &id).await?;
    let root = path(&req.root)?;
    let file = join(&root, &req.file)?;
    let map = |e: FsError| match e {
        FsError::BadType => ApiError::new(StatusCode::BAD_REQUEST, MSG_BAD_ARCHIVE),
        e => fs_error(e),
    };
    blocking(move || {
        if fs.server.disk_limit() > 0 {
            let size = archive::announced_size(&fs, &file).map_err(map)?;
            if !fs.has_space_for(size as i64) {
                return Err(fs_error(FsError::NotEnoughSpace));
            }
        }
        archive::extract_file(&fs, &file, &root, &mut |_| {}).map_err(map)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn chmod(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ChmodRequest>,
) -> Result<StatusCode, ApiError> {
    if req.files.is_empty() {
        return Err(unprocessable("No files to chmod were provided."));
    }
    let mut items = Vec::new();
    for f in &req.files {
        let mode = u32::from_str_radix(&f.mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Invalid file mode."))?;
        items.push((join(&req.root, &f.file)?, mode));
    }
    let fs = open(&app, &id).await?;
    blocking(move || {
        for (p, mode) in items {
            match fs.jail.chmod(&p, mode) {
                Ok(()) | Err(FsError::NotFound) => {}
                Err(e) => return Err(fs_error(e)),
            }
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The server for routes that need it directly.
pub(crate) fn server(app: &App, id: &str) -> Result<Arc<Server>, ApiError> {
    super::servers::find(app, id)
}
