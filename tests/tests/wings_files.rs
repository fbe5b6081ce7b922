//! The file manager through a real wings (reference §1.6–§1.7, §10): every file
//! route with upstream's shapes and errors, archives in every format, the jail
//! against traversal, symlink, hard-link and zip-slip escapes, the disk quota,
//! the egg denylist, signed single-use download/upload URLs and remote pulls.

mod wings_stack;

use reqwest::Method;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use wings_stack::{stack, Options, Srv, Stack};

fn files(s: &Srv, route: &str) -> String {
    format!("/api/servers/{}/files/{route}", s.uuid)
}

async fn write(st: &Stack, s: &Srv, path: &str, body: &[u8]) -> wings_stack::W {
    st.send(
        st.req(Method::POST, &files(s, "write"))
            .query(&[("file", path)])
            .body(body.to_vec()),
    )
    .await
}

fn no_temp_files(dir: &std::path::Path) {
    for e in walk(dir) {
        assert!(
            !e.contains(".ferro-"),
            "a temporary file was left behind: {e}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.to_string_lossy().into_owned());
            if std::fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                stack.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn file_routes_answer_with_upstreams_shapes() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let dir = st.server_dir(s);

    // write (streamed, creates parents), contents with its headers.
    let r = write(&st, s, "config/server.properties", b"motd=hello\n").await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(dir.join("config/server.properties")).unwrap(),
        "motd=hello\n"
    );
    let mode = std::fs::metadata(dir.join("config/server.properties"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let r = st
        .get(&format!(
            "{}?file=/config/server.properties",
            files(s, "contents")
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.raw, b"motd=hello\n");
    assert_eq!(r.headers["content-length"], "11");
    assert_eq!(r.headers["x-mime-type"], "text/plain; charset=utf-8");
    let r = st
        .get(&format!(
            "{}?file=config/server.properties&download=1",
            files(s, "contents")
        ))
        .await;
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"server.properties\""
    );
    assert_eq!(r.headers["content-type"], "application/octet-stream");

    // A body without Content-Length (chunked) is refused.
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter(vec![Ok::<_, std::io::Error>(
        bytes_of("x"),
    )]));
    let r = st
        .send(
            st.req(Method::POST, &files(s, "write"))
                .query(&[("file", "chunked.txt")])
                .body(chunked),
        )
        .await;
    r.assert_error(400, "Missing Content-Length");

    // A body that ends before its Content-Length leaves nothing behind.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        write(&st, s, "kept.txt", b"old").await;
        let addr = st.url.trim_start_matches("http://").to_string();
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/servers/{}/files/write?file=kept.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\nonly-part",
            s.uuid, st.token
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.shutdown().await.unwrap();
        let mut resp = Vec::new();
        let _ = c.read_to_end(&mut resp).await;
        let text = String::from_utf8_lossy(&resp);
        assert!(!text.starts_with("HTTP/1.1 204"), "{text}");
        assert!(!text.starts_with("HTTP/1.1 500"), "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(std::fs::read(dir.join("kept.txt")).unwrap(), b"old");
        no_temp_files(&dir);
    }

    // Writing over a directory is refused with upstream's text.
    let r = write(&st, s, "config", b"x").await;
    r.assert_error(
        400,
        "Cannot write file, name conflicts with an existing directory by the same name.",
    );

    // list-directory: upstream's stat object, directories first.
    let r = st
        .post(
            &files(s, "create-directory"),
            json!({"name": "plugins", "path": "/"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(dir.join("plugins").is_dir());
    let r = st
        .post(
            &files(s, "create-directory"),
            json!({"name": "x", "path": "/config/server.properties"}),
        )
        .await;
    r.assert_error(
        400,
        "Part of the path being created is not a directory (ENOTDIR).",
    );
    write(&st, s, "eula.txt", b"eula=true\n").await;
    let r = st
        .get(&format!("{}?directory=/", files(s, "list-directory")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json.as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["config", "plugins", "eula.txt", "kept.txt"]);
    let keys: Vec<&String> = list[2].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "name",
            "created",
            "modified",
            "mode",
            "mode_bits",
            "size",
            "directory",
            "file",
            "symlink",
            "mime"
        ]
    );
    assert_eq!(list[0]["mime"], "inode/directory");
    assert_eq!(list[0]["mode"], "drwxr-xr-x");
    assert_eq!(list[0]["directory"], true);
    assert_eq!(list[2]["mode"], "-rw-r--r--");
    assert_eq!(list[2]["mode_bits"], "644");
    assert_eq!(list[2]["size"], 10);
    assert_eq!(list[2]["file"], true);
    assert!(chrono::DateTime::parse_from_rfc3339(list[2]["modified"].as_str().unwrap()).is_ok());
    let r = st
        .get(&format!("{}?directory=/nope", files(s, "list-directory")))
        .await;
    r.assert_error(404, "The requested resources was not found on the system.");

    // copy: upstream's naming.
    for _ in 0..3 {
        let r = st
            .post(&files(s, "copy"), json!({"location": "eula.txt"}))
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    for n in ["eula copy.txt", "eula copy 1.txt", "eula copy 2.txt"] {
        assert_eq!(std::fs::read(dir.join(n)).unwrap(), b"eula=true\n", "{n}");
    }
    let r = st
        .post(&files(s, "copy"), json!({"location": "plugins"}))
        .await;
    r.assert_error(404, "");

    // rename several; destination exists; empty list.
    let r = st
        .put(
            &files(s, "rename"),
            json!({"root": "/", "files": [{"from": "eula copy.txt", "to": "a.txt"}, {"from": "eula copy 1.txt", "to": "sub/dir/b.txt"}, {"from": "missing", "to": "c"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(dir.join("a.txt").exists() && dir.join("sub/dir/b.txt").exists());
    let r = st
        .put(
            &files(s, "rename"),
            json!({"root": "/", "files": [{"from": "a.txt", "to": "eula.txt"}]}),
        )
        .await;
    r.assert_error(
        400,
        "Cannot move or rename file, destination already exists.",
    );
    let r = st.put(&files(s, "rename"), json!({"files": []})).await;
    r.assert_error(422, "No files to move or rename were provided.");

    // chmod: the mode is a string of octal digits.
    let r = st
        .post(
            &files(s, "chmod"),
            json!({"root": "/", "files": [{"file": "a.txt", "mode": "755"}, {"file": "gone", "mode": "600"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let m = std::fs::metadata(dir.join("a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o777, 0o755);
    let r = st
        .post(
            &files(s, "chmod"),
            json!({"root": "/", "files": [{"file": "a.txt", "mode": 755}]}),
        )
        .await;
    r.assert_error(
        400,
        "The data passed in the request was not in a parsable format. Please try again.",
    );
    let r = st
        .post(
            &files(s, "chmod"),
            json!({"root": "/", "files": [{"file": "a.txt", "mode": "9z"}]}),
        )
        .await;
    r.assert_error(400, "Invalid file mode.");
    let r = st.post(&files(s, "chmod"), json!({"files": []})).await;
    r.assert_error(422, "No files to chmod were provided.");

    // delete several, recursively; the root is refused; empty list.
    let r = st
        .post(
            &files(s, "delete"),
            json!({"root": "/", "files": ["a.txt", "sub", "never-existed"]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!dir.join("a.txt").exists() && !dir.join("sub").exists());
    let r = st
        .post(&files(s, "delete"), json!({"root": "/", "files": ["/"]}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(dir.exists());
    let r = st.post(&files(s, "delete"), json!({"files": []})).await;
    r.assert_error(422, "No files were specified for deletion.");

    // Unknown server.
    let r = st
        .get(&format!(
            "/api/servers/{}/files/list-directory",
            uuid::Uuid::new_v4()
        ))
        .await;
    r.assert_error(
        404,
        "The requested resource does not exist on this instance.",
    );
    no_temp_files(&dir);
}

fn bytes_of(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn sh(dir: &std::path::Path, script: &str) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn compress_and_decompress_every_format() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    write(&st, s, "world/level.dat", b"level").await;
    write(&st, s, "world/region/r.0.0.mca", &vec![7u8; 50_000]).await;
    write(&st, s, "ops.json", b"[]").await;

    let r = st
        .post(
            &files(s, "compress"),
            json!({"root": "/", "files": ["world", "ops.json"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let name = r.json["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("archive-") && name.ends_with(".tar.gz") && !name.contains(':'),
        "{name}"
    );
    assert_eq!(r.json["mime"], "application/tar+gzip");
    assert!(r.json["size"].as_i64().unwrap() > 0);
    let r = st
        .post(&files(s, "compress"), json!({"root": "/", "files": []}))
        .await;
    r.assert_error(422, "No files were passed through to be compressed.");

    // Extract our own archive into a fresh directory.
    std::fs::create_dir_all(dir.join("restore")).unwrap();
    std::fs::rename(dir.join(&name), dir.join("restore/a.tar.gz")).unwrap();
    let r = st
        .post(
            &files(s, "decompress"),
            json!({"root": "/restore", "file": "a.tar.gz"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        std::fs::read(dir.join("restore/world/region/r.0.0.mca")).unwrap(),
        vec![7u8; 50_000]
    );
    assert_eq!(std::fs::read(dir.join("restore/ops.json")).unwrap(), b"[]");

    // Archives made by the system's tools, one per format.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("pack/sub")).unwrap();
    std::fs::write(work.path().join("pack/sub/hello.txt"), "hello\n").unwrap();
    sh(
        work.path(),
        "tar cf a.tar pack && tar czf a.tgz pack && tar cJf a.tar.xz pack && tar cjf a.tar.bz2 pack && zip -qr a.zip pack",
    );
    for (i, f) in ["a.tar", "a.tgz", "a.tar.xz", "a.tar.bz2", "a.zip"]
        .iter()
        .enumerate()
    {
        let target = format!("fmt{i}");
        std::fs::create_dir_all(dir.join(&target)).unwrap();
        std::fs::copy(work.path().join(f), dir.join(&target).join(f)).unwrap();
        let r = st
            .post(
                &files(s, "decompress"),
                json!({"root": format!("/{target}"), "file": f}),
            )
            .await;
        assert_eq!(r.status, 204, "{f}: {}", r.text());
        assert_eq!(
            std::fs::read_to_string(dir.join(&target).join("pack/sub/hello.txt")).unwrap(),
            "hello\n",
            "{f}"
        );
    }

    // Something that is not an archive (the server has a disk limit, so the size
    // pre-check reads it first).
    write(&st, s, "notes.txt", b"just text").await;
    let r = st
        .post(
            &files(s, "decompress"),
            json!({"root": "/", "file": "notes.txt"}),
        )
        .await;
    r.assert_error(
        400,
        "The archive provided is in a format Wings does not understand.",
    );
    let r = st
        .post(
            &files(s, "decompress"),
            json!({"root": "/", "file": "missing.zip"}),
        )
        .await;
    r.assert_error(404, "");
    no_temp_files(&dir);
}

#[tokio::test]
async fn traversal_and_escape_attempts_are_refused() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    let outside = st.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("evil-dir")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), dir.join("evil-file")).unwrap();
    std::os::unix::fs::symlink("../../../outside/secret.txt", dir.join("evil-rel")).unwrap();
    std::fs::hard_link(outside.join("secret.txt"), dir.join("hard")).unwrap();

    // Reads through every kind of escape: never the outside content, always a 4xx.
    let attempts = [
        "../../outside/secret.txt",
        "..%2F..%2Foutside%2Fsecret.txt",
        "%2e%2e/%2e%2e/outside/secret.txt",
        outside
            .join("secret.txt")
            .to_str()
            .unwrap()
            .to_string()
            .leak(),
        "evil-file",
        "evil-rel",
        "evil-dir/secret.txt",
        "config%00.txt",
        "hard",
    ];
    for a in attempts {
        let r = st.get(&format!("{}?file={a}", files(s, "contents"))).await;
        assert!(
            (400..500).contains(&r.status),
            "{a}: {} {}",
            r.status,
            r.text()
        );
        assert!(r.json["error"].is_string(), "{a}: {}", r.text());
        assert!(!r.text().contains("top secret"), "{a} leaked the file");
    }
    let r = st
        .get(&format!(
            "{}?directory=evil-dir",
            files(s, "list-directory")
        ))
        .await;
    r.assert_error(404, "The requested resources was not found on the system.");

    // Writes, renames, chmod and deletes through links stay inside.
    let r = write(&st, s, "evil-dir/planted.txt", b"x").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!outside.join("planted.txt").exists());
    let r = st
        .put(
            &files(s, "rename"),
            json!({"root": "/", "files": [{"from": "evil-file", "to": "evil-dir/moved"}]}),
        )
        .await;
    assert!((400..500).contains(&r.status), "{}", r.text());
    assert!(!outside.join("moved").exists());
    let r = st
        .post(
            &files(s, "chmod"),
            json!({"root": "/", "files": [{"file": "evil-file", "mode": "777"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let m = std::fs::metadata(outside.join("secret.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(m & 0o777, 0o777, "chmod followed a link out of the root");
    let r = st
        .post(
            &files(s, "delete"),
            json!({"root": "/", "files": ["evil-dir", "evil-file", "../../outside"]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        outside.join("secret.txt").exists(),
        "delete followed a link"
    );
    assert!(!dir.join("evil-dir").exists(), "the link itself is removed");
    let r = st
        .post(
            &files(s, "copy"),
            json!({"location": "../../outside/secret.txt"}),
        )
        .await;
    r.assert_error(404, "");

    // Writing to a hard-linked name replaces the link; the other name is untouched.
    let r = write(&st, s, "hard", b"replaced").await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "top secret"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hard")).unwrap(),
        "replaced"
    );

    // A symlink raced in between requests is caught at resolution time.
    write(&st, s, "racy/file.txt", b"inside").await;
    std::fs::remove_dir_all(dir.join("racy")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("racy")).unwrap();
    let r = write(&st, s, "racy/file.txt", b"overwrite").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!outside.join("file.txt").exists());

    // Zip-slip and symlink-then-write archives.
    let work = tempfile::tempdir().unwrap();
    let py = format!(
        r#"
import zipfile, tarfile, io
z = zipfile.ZipFile('slip.zip', 'w')
z.writestr('../../../outside/zipslip.txt', 'pwned')
z.writestr('/abs-zip.txt', 'abs')
z.writestr('ok.txt', 'fine')
z.close()
t = tarfile.open('slip.tar.gz', 'w:gz')
link = tarfile.TarInfo('link'); link.type = tarfile.SYMTYPE; link.linkname = '{out}'
t.addfile(link)
data = b'pwned'
f = tarfile.TarInfo('link/tarslip.txt'); f.size = len(data)
t.addfile(f, io.BytesIO(data))
up = tarfile.TarInfo('../../up.txt'); up.size = len(data)
t.addfile(up, io.BytesIO(data))
hl = tarfile.TarInfo('hl'); hl.type = tarfile.LNKTYPE; hl.linkname = '{out}/secret.txt'
t.addfile(hl)
t.close()
"#,
        out = outside.display()
    );
    std::fs::write(work.path().join("mk.py"), py).unwrap();
    sh(work.path(), "python3 mk.py");
    for f in ["slip.zip", "slip.tar.gz"] {
        std::fs::copy(work.path().join(f), dir.join(f)).unwrap();
        let r = st
            .post(&files(s, "decompress"), json!({"root": "/", "file": f}))
            .await;
        assert!(
            r.status == 204 || (400..500).contains(&r.status),
            "{f}: {} {}",
            r.status,
            r.text()
        );
    }
    assert!(!outside.join("zipslip.txt").exists());
    assert!(!outside.join("tarslip.txt").exists());
    assert!(!st.dir.path().join("up.txt").exists());
    assert_eq!(std::fs::read_to_string(dir.join("ok.txt")).unwrap(), "fine");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "top secret"
    );
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "nothing was created outside: {names:?}");
    no_temp_files(&dir);
}

#[tokio::test]
async fn the_disk_limit_holds_without_partial_files() {
    let (st, srv) = stack(Options {
        servers: vec![("small", 1)],
        ..Default::default()
    })
    .await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    let msg = "There is not enough disk space available to perform that action.";

    let r = write(&st, s, "ok.bin", &vec![1u8; 400 * 1024]).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = write(&st, s, "big.bin", &vec![1u8; 2 * 1024 * 1024]).await;
    r.assert_error(400, msg);
    assert!(!dir.join("big.bin").exists());

    // Upload through a signed URL.
    let token = st.mint(json!({"server_uuid": s.uuid}));
    let form = reqwest::multipart::Form::new().part(
        "files",
        reqwest::multipart::Part::bytes(vec![2u8; 2 * 1024 * 1024]).file_name("up.bin"),
    );
    let r = st
        .send(
            st.http
                .post(format!("{}/upload/file", st.url))
                .query(&[("token", token.as_str()), ("directory", "/")])
                .multipart(form),
        )
        .await;
    r.assert_error(400, msg);
    assert!(!dir.join("up.bin").exists());

    // A decompression bomb: a few KiB of gzip announcing 8 MiB.
    let work = tempfile::tempdir().unwrap();
    sh(
        work.path(),
        "mkdir b && head -c 8388608 /dev/zero > b/zeros && tar czf bomb.tar.gz b && rm -r b",
    );
    std::fs::copy(work.path().join("bomb.tar.gz"), dir.join("bomb.tar.gz")).unwrap();
    let r = st
        .post(
            &files(s, "decompress"),
            json!({"root": "/", "file": "bomb.tar.gz"}),
        )
        .await;
    r.assert_error(400, msg);
    assert!(!dir.join("b/zeros").exists());

    // Copy of a file that does not fit.
    let r = write(&st, s, "half.bin", &vec![3u8; 500 * 1024]).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = st
        .post(&files(s, "copy"), json!({"location": "half.bin"}))
        .await;
    r.assert_error(400, msg);
    no_temp_files(&dir);
}

#[tokio::test]
async fn signed_urls_work_once() {
    let (st, srv) = stack(Options {
        tweak: Box::new(|c| c.api.upload_limit = 1),
        denylist: Some(json!(["*.jar"])),
        ..Default::default()
    })
    .await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    write(&st, s, "logs/latest.log", b"line one\n").await;

    let token = st.mint(json!({"server_uuid": s.uuid, "file_path": "/logs/latest.log"}));
    let url = format!("{}/download/file", st.url);
    let r = st.send(st.http.get(&url).query(&[("token", &token)])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.raw, b"line one\n");
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"latest.log\""
    );
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    let r = st.send(st.http.get(&url).query(&[("token", &token)])).await;
    r.assert_error(404, "The requested resource was not found on this server.");

    let dir_token = st.mint(json!({"server_uuid": s.uuid, "file_path": "/logs"}));
    let r = st
        .send(st.http.get(&url).query(&[("token", &dir_token)]))
        .await;
    r.assert_error(404, "");
    let escape = st.mint(json!({"server_uuid": s.uuid, "file_path": "../../../etc/passwd"}));
    let r = st
        .send(st.http.get(&url).query(&[("token", &escape)]))
        .await;
    r.assert_error(404, "");
    let forged = wings::jwt::sign(
        &json!({"server_uuid": s.uuid, "file_path": "/logs/latest.log", "exp": chrono::Utc::now().timestamp() + 60, "unique_id": "abc"}),
        "not-the-node-secret",
    )
    .unwrap();
    let r = st
        .send(st.http.get(&url).query(&[("token", &forged)]))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let expired = st.mint(json!({"server_uuid": s.uuid, "file_path": "/logs/latest.log", "exp": chrono::Utc::now().timestamp() - 10}));
    let r = st
        .send(st.http.get(&url).query(&[("token", &expired)]))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());

    // Upload: multipart `files`, the upload limit, the denylist, single use.
    let upload = |token: String, name: &'static str, size: usize| {
        let form = reqwest::multipart::Form::new().part(
            "files",
            reqwest::multipart::Part::bytes(vec![b'a'; size]).file_name(name),
        );
        st.http
            .post(format!("{}/upload/file", st.url))
            .query(&[("token", token.as_str()), ("directory", "/uploads")])
            .multipart(form)
    };
    let t = st.mint(json!({"server_uuid": s.uuid}));
    let r = st.send(upload(t.clone(), "mod.txt", 1000)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.raw.is_empty());
    assert_eq!(
        std::fs::read(dir.join("uploads/mod.txt")).unwrap().len(),
        1000
    );
    let r = st.send(upload(t, "again.txt", 10)).await;
    r.assert_error(404, "The requested resource was not found on this server.");
    let r = st
        .send(upload(
            st.mint(json!({"server_uuid": s.uuid})),
            "huge.bin",
            1024 * 1024 + 1,
        ))
        .await;
    r.assert_error(
        400,
        "File huge.bin is larger than the maximum file upload size of 1 MB.",
    );
    assert!(!dir.join("uploads/huge.bin").exists());
    let r = st
        .send(upload(
            st.mint(json!({"server_uuid": s.uuid})),
            "server.jar",
            10,
        ))
        .await;
    r.assert_error(
        403,
        "This file cannot be modified: present in egg denylist.",
    );
    let r = st
        .send(upload(
            st.mint(json!({"server_uuid": s.uuid})),
            "../../escape.txt",
            10,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        dir.join("uploads/escape.txt").exists(),
        "the name is reduced to its base"
    );

    // The denylist blocks writes and renames, not reads.
    std::fs::write(dir.join("server.jar"), "jar").unwrap();
    let r = write(&st, s, "plugins/x.jar", b"x").await;
    r.assert_error(
        403,
        "This file cannot be modified: present in egg denylist.",
    );
    let r = st
        .put(
            &files(s, "rename"),
            json!({"root": "/", "files": [{"from": "server.jar", "to": "renamed.txt"}]}),
        )
        .await;
    r.assert_error(
        403,
        "This file cannot be modified: present in egg denylist.",
    );
    let r = st
        .get(&format!("{}?file=server.jar", files(s, "contents")))
        .await;
    assert_eq!(r.status, 200);

    // Backup download: token with backup_uuid, missing archive, single use.
    let b = uuid::Uuid::new_v4().to_string();
    std::fs::create_dir_all(&st.backups).unwrap();
    std::fs::write(st.backups.join(format!("{b}.tar.gz")), b"archive").unwrap();
    let burl = format!("{}/download/backup", st.url);
    let t = st.mint(json!({"server_uuid": s.uuid, "backup_uuid": b}));
    let r = st.send(st.http.get(&burl).query(&[("token", &t)])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.raw, b"archive");
    let r = st.send(st.http.get(&burl).query(&[("token", &t)])).await;
    assert_eq!(r.status, 404);
    let t =
        st.mint(json!({"server_uuid": s.uuid, "backup_uuid": uuid::Uuid::new_v4().to_string()}));
    let r = st.send(st.http.get(&burl).query(&[("token", &t)])).await;
    r.assert_error(404, "The requested backup was not found on this server.");
    let t = st.mint(json!({"server_uuid": s.uuid, "backup_uuid": "../../etc/passwd"}));
    let r = st.send(st.http.get(&burl).query(&[("token", &t)])).await;
    r.assert_error(404, "The requested backup was not found on this server.");
}

/// A one-shot HTTP server on loopback answering every request with `body`.
async fn tiny_http(body: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = c.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Disposition: attachment; filename=\"from-header.jar.txt\"\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(head.as_bytes()).await;
                let _ = c.write_all(body).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn pulls_refuse_internal_addresses_unless_allowed() {
    let src = tiny_http(b"remote content").await;
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    for url in [
        format!("{src}/file.txt"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://[::1]/x".to_string(),
        "ftp://example.com/x".to_string(),
        "not a url".to_string(),
    ] {
        let r = st
            .post(
                &files(s, "pull"),
                json!({"url": url, "root": "/", "foreground": true}),
            )
            .await;
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert!(r.json["error"].is_string());
    }
    let r = st.get(&files(s, "pull")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json, json!({"downloads": null}));

    let (st, srv) = stack(Options {
        tweak: Box::new(|c| c.api.remote_download_allowed_ips = vec!["127.0.0.0/8".into()]),
        ..Default::default()
    })
    .await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    let r = st
        .post(
            &files(s, "pull"),
            json!({"url": format!("{src}/dl/file.txt"), "root": "/downloads", "foreground": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["name"], "file.txt");
    assert_eq!(
        std::fs::read_to_string(dir.join("downloads/file.txt")).unwrap(),
        "remote content"
    );
    let r = st
        .post(
            &files(s, "pull"),
            json!({"url": format!("{src}/x"), "directory": "/", "use_header": true}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.json["identifier"].is_string());
    let ok = wings_stack::eventually(std::time::Duration::from_secs(10), || async {
        dir.join("from-header.jar.txt").exists()
    })
    .await;
    assert!(
        ok,
        "the background pull named the file from Content-Disposition"
    );
    let r = st
        .post(
            &files(s, "pull"),
            json!({"url": format!("{src}/x"), "foreground": true}),
        )
        .await;
    assert_eq!(r.status, 422, "root or directory is required: {}", r.text());
}
