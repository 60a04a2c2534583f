//! The S3 store: the S3 REST protocol (PutObject, GetObject, ListObjectsV2, DeleteObject) over
//! the hub's reqwest client, signed with AWS Signature Version 4
//!
//! Why not an S3 SDK: the AWS SDK brings its own HTTP stack and a long build for four calls;
//! these four are plain HTTP, and the one subtle part, SigV4, comes from the `aws-sigv4` crate
//! (the signer the AWS SDK itself uses, generic over services, so other AWS APIs can share it).
//! Talking the protocol directly also keeps every S3-compatible server in reach (MinIO, Ceph,
//! R2, s3s) with path-style addressing by default.
//!
//! Every call is idempotent (a put of the same bytes, a get, a list page, a delete), so a call
//! that meets a transport error, a 5xx or `SlowDown` is signed afresh and retried a few times
//! with backoff. An S3 error answer becomes [`ObjectsError::S3`] with the code from its XML body
//! (`NoSuchBucket`, `SignatureDoesNotMatch`, ...); responses are read with a size bound.
//! Neither the secret key nor a signature is ever logged or put in an error.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::{check_path, ObjectInfo, ObjectKey, ObjectsError};
use crate::config::{url_for_logs, Secret};
use crate::http::reqwest_error_text;

/// Attempts per call (the first and the retries) on transport errors, 5xx and `SlowDown`.
const MAX_ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Largest ListObjectsV2 page read (1,000 keys of 512 bytes with their XML is well under 2 MiB).
const MAX_LIST_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Largest error body read; the code and message are at its start.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// Error message characters quoted from the server.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;
/// Keys asked for per list page (S3's own maximum).
const DEFAULT_LIST_PAGE_SIZE: u32 = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole call, body included: archive segments are tens of MiB at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The checked parts of an S3 [`super::ObjectTarget`].
pub(super) struct S3Options {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// A bucket (and key prefix) on an S3-compatible server. Cheap to clone.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
    list_page_size: u32,
}

struct Inner {
    client: reqwest::Client,
    /// scheme, host and port of every request (`https://s3.eu-west-1.amazonaws.com`)
    endpoint: Url,
    bucket: String,
    region: String,
    /// `""` or a path ending with `/`, put in front of every key
    prefix: String,
    path_style: bool,
    access_key_id: String,
    secret_access_key: Secret,
    described: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("target", &self.inner.described)
            .field("region", &self.inner.region)
            .field("path_style", &self.inner.path_style)
            .field("access_key_id", &self.inner.access_key_id)
            .field("secret_access_key", &self.inner.secret_access_key)
            .finish()
    }
}

impl S3Store {
    pub(super) fn new(options: S3Options) -> Result<S3Store, ObjectsError> {
        let bad = |why: String| ObjectsError::Config(why);
        let endpoint = Url::parse(&options.endpoint).map_err(|e| {
            bad(format!(
                "endpoint {} is not a URL: {e}",
                url_for_logs(&options.endpoint)
            ))
        })?;
        let shown = url_for_logs(&options.endpoint);
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(bad(format!(
                "endpoint {shown} must be an http or https URL with a host"
            )));
        }
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err(bad(
                "the endpoint must not carry credentials: use access_key_id and secret_access_key_file".into(),
            ));
        }
        if endpoint.path() != "/" || endpoint.query().is_some() || endpoint.fragment().is_some() {
            return Err(bad(format!(
                "endpoint {shown} must be scheme, host and port only (no path or query)"
            )));
        }
        check_bucket(&options.bucket)?;
        if options.region.is_empty()
            || !options
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad(format!(
                "region {:?} must be letters, digits and '-'",
                options.region
            )));
        }
        let prefix = options.prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            check_path(prefix, false).map_err(|e| bad(format!("prefix: {e}")))?;
        }
        if options.access_key_id.is_empty()
            || !options
                .access_key_id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/')
        {
            return Err(ObjectsError::Credentials(
                "the access key id must be printable ASCII without '/'".into(),
            ));
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let described = format!(
            "s3://{}{}{} at {}",
            options.bucket,
            if prefix.is_empty() { "" } else { "/" },
            prefix.trim_end_matches('/'),
            shown.trim_end_matches('/')
        );
        let client = reqwest::Client::builder()
            .user_agent(concat!("trailhub/", env!("CARGO_PKG_VERSION")))
            // a redirect would send the signed request somewhere it was not signed for
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("the TLS backend initialises");
        Ok(S3Store {
            inner: Arc::new(Inner {
                client,
                endpoint,
                bucket: options.bucket,
                region: options.region,
                prefix,
                path_style: options.path_style,
                access_key_id: options.access_key_id,
                secret_access_key: options.secret_access_key,
                described,
            }),
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
        })
    }

    /// Asks for at most `keys` keys per list page (1 to 1,000): for servers with a lower limit,
    /// and for tests that need several pages.
    pub fn with_list_page_size(mut self, keys: u32) -> S3Store {
        self.list_page_size = keys.clamp(1, DEFAULT_LIST_PAGE_SIZE);
        self
    }

    pub fn describe(&self) -> String {
        self.inner.described.clone()
    }

    pub async fn put(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), ObjectsError> {
        let url = self.object_url(key.as_str());
        let response = self
            .call("put", key.as_str(), Method::PUT, url, Bytes::from(bytes))
            .await?;
        drain(response).await;
        Ok(())
    }

    pub async fn get(&self, key: &ObjectKey, max_bytes: u64) -> Result<Vec<u8>, ObjectsError> {
        let url = self.object_url(key.as_str());
        let too_large = || ObjectsError::TooLarge {
            target: self.describe(),
            key: key.to_string(),
            max: max_bytes,
        };
        let mut response = self
            .call("get", key.as_str(), Method::GET, url, Bytes::new())
            .await?;
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error("get", key.as_str(), &e))?
        {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectsError> {
        let full_prefix = format!("{}{prefix}", self.inner.prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_string()),
                ("max-keys", self.list_page_size.to_string()),
            ];
            if !full_prefix.is_empty() {
                query.push(("prefix", full_prefix.clone()));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let url = self.bucket_url(&query);
            let response = self
                .call("list", prefix, Method::GET, url, Bytes::new())
                .await?;
            let body = read_bounded(response, MAX_LIST_RESPONSE_BYTES)
                .await
                .map_err(|why| self.protocol_error("list", prefix, why))?;
            let page: ListBucketResult =
                quick_xml::de::from_reader(body.as_slice()).map_err(|e| {
                    self.protocol_error("list", prefix, format!("ListObjectsV2 XML: {e}"))
                })?;
            for object in page.contents {
                let Some(key) = object.key.strip_prefix(&self.inner.prefix) else {
                    continue;
                };
                // another writer's object that our keys cannot name: not ours to list
                if check_path(key, false).is_err() {
                    tracing::debug!(target_store = %self.inner.described, key = %object.key, "skipping an object whose key is outside the key alphabet");
                    continue;
                }
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: object.size,
                });
            }
            if !page.is_truncated {
                break;
            }
            match page.next_continuation_token {
                Some(next) if !next.is_empty() && token.as_deref() != Some(next.as_str()) => {
                    token = Some(next)
                }
                _ => {
                    return Err(self.protocol_error(
                        "list",
                        prefix,
                        "a truncated page without a new continuation token".into(),
                    ))
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectsError> {
        let url = self.object_url(key.as_str());
        let response = self
            .call("delete", key.as_str(), Method::DELETE, url, Bytes::new())
            .await?;
        drain(response).await;
        Ok(())
    }

    /// `endpoint/bucket/prefix+key` (path style) or `bucket.endpoint/prefix+key`. Keys and
    /// prefixes are of the unreserved URL alphabet, so the path needs no escaping.
    fn object_url(&self, key: &str) -> Url {
        let path = if self.inner.path_style {
            format!("/{}/{}{key}", self.inner.bucket, self.inner.prefix)
        } else {
            format!("/{}{key}", self.inner.prefix)
        };
        let mut url = self.host_url();
        url.set_path(&path);
        url
    }

    /// The bucket's URL with a query, each name and value escaped as SigV4 expects.
    fn bucket_url(&self, query: &[(&str, String)]) -> Url {
        let mut url = self.host_url();
        if self.inner.path_style {
            url.set_path(&format!("/{}", self.inner.bucket));
        }
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
            .collect();
        url.set_query(Some(&query.join("&")));
        url
    }

    fn host_url(&self) -> Url {
        let mut url = self.inner.endpoint.clone();
        if !self.inner.path_style {
            let host = format!(
                "{}.{}",
                self.inner.bucket,
                self.inner.endpoint.host_str().unwrap_or_default()
            );
            // the bucket is checked to be a DNS label sequence, so the host stays valid
            let _ = url.set_host(Some(&host));
        }
        url
    }

    /// Sends one signed request, retrying transport errors, 5xx and `SlowDown`; a success
    /// status returns the response, any other status the server's error.
    async fn call(
        &self,
        op: &'static str,
        key: &str,
        method: Method,
        url: Url,
        body: Bytes,
    ) -> Result<reqwest::Response, ObjectsError> {
        let mut attempt = 1;
        loop {
            let headers = self.sign(method.as_str(), &url, &body)?;
            let mut request = self.inner.client.request(method.clone(), url.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let started = std::time::Instant::now();
            let outcome = request.body(body.clone()).send().await;
            let retry_in = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            match outcome {
                Ok(response) => {
                    let status = response.status();
                    tracing::debug!(
                        target_store = %self.inner.described,
                        op,
                        key,
                        status = status.as_u16(),
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "s3 request"
                    );
                    if status.is_success() {
                        return Ok(response);
                    }
                    let error = self.error_from(op, key, status, response).await;
                    let retryable = status.is_server_error()
                        || status == StatusCode::TOO_MANY_REQUESTS
                        || error.s3_code() == Some("SlowDown");
                    if !retryable || attempt >= MAX_ATTEMPTS {
                        return Err(error);
                    }
                    tracing::debug!(target_store = %self.inner.described, op, key, error = %error, retry_in_ms = retry_in.as_millis() as u64, "s3 request will be retried");
                }
                Err(e) => {
                    let error = self.transport_error(op, key, &e);
                    tracing::debug!(target_store = %self.inner.described, op, key, attempt, error = %error, "s3 request failed");
                    if attempt >= MAX_ATTEMPTS {
                        return Err(error);
                    }
                }
            }
            tokio::time::sleep(retry_in).await;
            attempt += 1;
        }
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`) for a request.
    fn sign(
        &self,
        method: &str,
        url: &Url,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, ObjectsError> {
        let cannot =
            |what: String| ObjectsError::Config(format!("cannot sign the request: {what}"));
        let identity = Credentials::new(
            self.inner.access_key_id.clone(),
            self.inner.secret_access_key.expose().to_string(),
            None,
            None,
            "trailhub-object-target",
        )
        .into();
        // S3's flavour of SigV4: paths escaped once and not normalised, the payload hash sent
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.inner.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| cannot(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| cannot(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| cannot(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }

    /// The error an S3 error answer stands for: its XML `Code` and `Message`, or the status.
    async fn error_from(
        &self,
        op: &'static str,
        key: &str,
        status: StatusCode,
        response: reqwest::Response,
    ) -> ObjectsError {
        let body = read_bounded(response, MAX_ERROR_BODY_BYTES)
            .await
            .unwrap_or_default();
        let parsed: Option<S3ErrorBody> = quick_xml::de::from_reader(body.as_slice()).ok();
        let (code, message) = match parsed {
            Some(e) if !e.code.is_empty() => (e.code, e.message.unwrap_or_default()),
            _ => (
                status
                    .canonical_reason()
                    .unwrap_or("no error code")
                    .replace(' ', ""),
                String::new(),
            ),
        };
        if op == "get" && (code == "NoSuchKey" || (code == "NotFound" && status == 404)) {
            return ObjectsError::NotFound {
                target: self.describe(),
                key: key.to_string(),
            };
        }
        ObjectsError::S3 {
            target: self.describe(),
            op,
            key: key.to_string(),
            status: status.as_u16(),
            code: code.chars().take(64).collect(),
            message: message
                .trim()
                .chars()
                .take(MAX_ERROR_MESSAGE_CHARS)
                .collect(),
        }
    }

    fn transport_error(&self, op: &'static str, key: &str, e: &reqwest::Error) -> ObjectsError {
        ObjectsError::Transport {
            target: self.describe(),
            op,
            key: key.to_string(),
            text: reqwest_error_text(e),
        }
    }

    fn protocol_error(&self, op: &'static str, key: &str, text: String) -> ObjectsError {
        ObjectsError::Protocol {
            target: self.describe(),
            op,
            key: key.to_string(),
            text,
        }
    }
}

/// A bucket name as S3 allows it: 3 to 63 of `a-z 0-9 . -`, starting and ending with a letter
/// or digit (so it is also a valid host name part for virtual-hosted style).
fn check_bucket(bucket: &str) -> Result<(), ObjectsError> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ObjectsError::Config(format!(
            "bucket {bucket:?} is not a valid S3 bucket name (3 to 63 of a-z, 0-9, '.', '-')"
        )))
    }
}

/// SigV4's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a body of at most `max` bytes; a longer one is refused.
async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("a response larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| reqwest_error_text(&e))? {
        if body.len() + chunk.len() > max {
            return Err(format!("a response larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a (small) success body to its end so the connection can be reused.
async fn drain(response: reqwest::Response) {
    let _ = read_bounded(response, MAX_ERROR_BODY_BYTES).await;
}

/// The parts of a ListObjectsV2 answer we use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    contents: Vec<ListedObject>,
    next_continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedObject {
    key: String,
    #[serde(default)]
    size: u64,
}

/// `<Error><Code>NoSuchBucket</Code><Message>...</Message>...</Error>`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3ErrorBody {
    #[serde(default)]
    code: String,
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_and_errors_parse_from_s3_xml() {
        let page = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>p/a&amp;b</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>
    <ETag>"x"</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/c</Key><Size>0</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let parsed: ListBucketResult = quick_xml::de::from_str(page).expect("parses");
        assert!(parsed.is_truncated);
        assert_eq!(parsed.contents.len(), 2);
        assert_eq!(parsed.contents[0].key, "p/a&b");
        assert_eq!(parsed.contents[0].size, 12);
        assert!(parsed.next_continuation_token.is_some());
        let empty: ListBucketResult = quick_xml::de::from_str(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .expect("parses");
        assert!(empty.contents.is_empty() && !empty.is_truncated);
        let error: S3ErrorBody = quick_xml::de::from_str(
            "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>x</BucketName></Error>",
        )
        .expect("parses");
        assert_eq!(error.code, "NoSuchBucket");
    }

    #[test]
    fn query_values_are_escaped_as_sigv4_wants() {
        assert_eq!(uri_encode("a/b+c=d e~_.-"), "a%2Fb%2Bc%3Dd%20e~_.-");
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!(check_bucket("trailhub-archive.1").is_ok());
        for bad in ["ab", "Upper", "-x-", "a..b", "a_b", &"b".repeat(64)] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }
}
