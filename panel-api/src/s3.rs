//! The S3 backup disk (upstream's `APP_BACKUP_DRIVER=s3`): multipart uploads whose
//! parts the node PUTs to presigned URLs, their completion or abort when the node
//! reports, presigned downloads, and deletion. Requests are signed with AWS
//! Signature Version 4 (header or query-string form) for any S3-compatible server.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub struct S3Config {
    /// `AWS_ENDPOINT` (e.g. `https://s3.eu-central-1.amazonaws.com`).
    pub endpoint: String,
    /// `AWS_DEFAULT_REGION`.
    pub region: String,
    /// `AWS_BACKUPS_BUCKET`.
    pub bucket: String,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub access_key: String,
    pub secret_key: String,
    /// `AWS_BACKUPS_USE_PATH_STYLE`.
    pub path_style: bool,
    /// `BACKUP_MAX_PART_SIZE` bytes (default 5 GiB).
    pub max_part_size: u64,
}

impl S3Config {
    pub fn from_env() -> Option<S3Config> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Some(S3Config {
            bucket: var("AWS_BACKUPS_BUCKET")?,
            endpoint: var("AWS_ENDPOINT").unwrap_or_else(|| {
                format!(
                    "https://s3.{}.amazonaws.com",
                    var("AWS_DEFAULT_REGION").unwrap_or_else(|| "us-east-1".into())
                )
            }),
            region: var("AWS_DEFAULT_REGION").unwrap_or_else(|| "us-east-1".into()),
            access_key: var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            secret_key: var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            path_style: var("AWS_BACKUPS_USE_PATH_STYLE")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes")),
            max_part_size: var("BACKUP_MAX_PART_SIZE")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5 * 1024 * 1024 * 1024),
        })
    }
}

/// RFC 3986 encoding as SigV4 wants it (`/` kept in paths when `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '~')
            || (keep_slash && c == '/')
        {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

pub struct S3 {
    cfg: S3Config,
    http: reqwest::Client,
}

struct Target {
    url_base: String,
    host: String,
    path: String,
}

impl S3 {
    pub fn new(cfg: S3Config) -> Result<S3> {
        Ok(S3 {
            cfg,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()?,
        })
    }

    pub fn max_part_size(&self) -> u64 {
        self.cfg.max_part_size.max(5 * 1024 * 1024)
    }

    fn target(&self, key: &str) -> Result<Target> {
        let ep = url::Url::parse(&self.cfg.endpoint).context("AWS_ENDPOINT is not a URL")?;
        let scheme = ep.scheme();
        let host = ep.host_str().context("AWS_ENDPOINT has no host")?;
        let host_port = match ep.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let key = key.trim_start_matches('/');
        Ok(if self.cfg.path_style {
            Target {
                url_base: format!("{scheme}://{host_port}"),
                host: host_port,
                path: format!("/{}/{}", self.cfg.bucket, key)
                    .trim_end_matches('/')
                    .to_string(),
            }
        } else {
            let vhost = format!("{}.{host_port}", self.cfg.bucket);
            Target {
                url_base: format!("{scheme}://{vhost}"),
                host: vhost,
                path: format!("/{key}"),
            }
        })
    }

    fn scope(&self, date: &str) -> String {
        format!("{date}/{}/s3/aws4_request", self.cfg.region)
    }

    fn sign(&self, date: &str, string_to_sign: &str) -> String {
        let k = hmac(format!("AWS4{}", self.cfg.secret_key).as_bytes(), date);
        let k = hmac(&k, &self.cfg.region);
        let k = hmac(&k, "s3");
        let k = hmac(&k, "aws4_request");
        hex::encode(hmac(&k, string_to_sign))
    }

    fn canonical_query(pairs: &[(String, String)]) -> String {
        let mut enc: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (encode(k, false), encode(v, false)))
            .collect();
        enc.sort();
        enc.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// A presigned URL (query-string SigV4), valid for `expires` seconds.
    pub fn presign(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        expires: u64,
    ) -> Result<String> {
        let t = self.target(key)?;
        let now = Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let date = now.format("%Y%m%d").to_string();
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.push(("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()));
        pairs.push((
            "X-Amz-Credential".into(),
            format!("{}/{}", self.cfg.access_key, self.scope(&date)),
        ));
        pairs.push(("X-Amz-Date".into(), amz_date.clone()));
        pairs.push(("X-Amz-Expires".into(), expires.to_string()));
        pairs.push(("X-Amz-SignedHeaders".into(), "host".into()));
        let cq = Self::canonical_query(&pairs);
        let canonical = format!(
            "{method}\n{}\n{cq}\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD",
            encode(&t.path, true),
            t.host
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
            self.scope(&date),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let sig = self.sign(&date, &sts);
        Ok(format!(
            "{}{}?{cq}&X-Amz-Signature={sig}",
            t.url_base,
            encode(&t.path, true)
        ))
    }

    /// A request signed in the Authorization header.
    async fn call(
        &self,
        method: reqwest::Method,
        key: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(u16, String)> {
        let t = self.target(key)?;
        let now = Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let date = now.format("%Y%m%d").to_string();
        let payload = hex::encode(Sha256::digest(&body));
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cq = Self::canonical_query(&pairs);
        let canonical = format!(
            "{}\n{}\n{cq}\nhost:{}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}",
            method.as_str(),
            encode(&t.path, true),
            t.host
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
            self.scope(&date),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
            self.cfg.access_key,
            self.scope(&date),
            self.sign(&date, &sts)
        );
        let url = if cq.is_empty() {
            format!("{}{}", t.url_base, encode(&t.path, true))
        } else {
            format!("{}{}?{cq}", t.url_base, encode(&t.path, true))
        };
        let mut rb = self
            .http
            .request(method, url)
            .header("x-amz-date", amz_date)
            .header("x-amz-content-sha256", payload)
            .header("authorization", auth);
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        let resp = rb.body(body).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.unwrap_or_default()))
    }

    fn xml_value(body: &str, tag: &str) -> Option<String> {
        let open = format!("<{tag}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{tag}>"))? + start;
        Some(body[start..end].to_string())
    }

    pub async fn create_bucket(&self) -> Result<()> {
        let (status, body) = self
            .call(reqwest::Method::PUT, "", &[], Vec::new(), None)
            .await?;
        if !(200..300).contains(&status) && !body.contains("BucketAlreadyOwnedByYou") {
            bail!("create bucket: {status} {body}");
        }
        Ok(())
    }

    pub async fn create_multipart(&self, key: &str) -> Result<String> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                key,
                &[("uploads", "")],
                Vec::new(),
                // Restores check the object's type, as upstream's Wings does.
                Some("application/x-gzip"),
            )
            .await?;
        if !(200..300).contains(&status) {
            bail!("CreateMultipartUpload: {status} {body}");
        }
        Self::xml_value(&body, "UploadId").context("CreateMultipartUpload: no UploadId")
    }

    pub fn presign_part(&self, key: &str, upload_id: &str, part: u64) -> Result<String> {
        self.presign(
            "PUT",
            key,
            &[("partNumber", &part.to_string()), ("uploadId", upload_id)],
            3600,
        )
    }

    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i64, String)],
    ) -> Result<()> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            let etag = etag
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                key,
                &[("uploadId", upload_id)],
                xml.into_bytes(),
                Some("application/xml"),
            )
            .await?;
        if !(200..300).contains(&status) || body.contains("<Error>") {
            bail!("CompleteMultipartUpload: {status} {body}");
        }
        Ok(())
    }

    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let (status, body) = self
            .call(
                reqwest::Method::DELETE,
                key,
                &[("uploadId", upload_id)],
                Vec::new(),
                None,
            )
            .await?;
        if !(200..300).contains(&status) && status != 404 {
            bail!("AbortMultipartUpload: {status} {body}");
        }
        Ok(())
    }

    pub async fn delete_object(&self, key: &str) -> Result<()> {
        let (status, body) = self
            .call(reqwest::Method::DELETE, key, &[], Vec::new(), None)
            .await?;
        if !(200..300).contains(&status) && status != 404 {
            bail!("DeleteObject: {status} {body}");
        }
        Ok(())
    }
}

/// The object key of a backup, as upstream names it.
pub fn backup_key(server_uuid: &uuid::Uuid, backup_uuid: &uuid::Uuid) -> String {
    format!("{server_uuid}/{backup_uuid}.tar.gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(
            S3::canonical_query(&[
                ("uploadId".into(), "x y".into()),
                ("partNumber".into(), "1".into())
            ]),
            "partNumber=1&uploadId=x%20y"
        );
    }
}
