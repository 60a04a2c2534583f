//! A real S3-protocol server for the tests: `s3s-fs` (a directory served as S3 by the `s3s`
//! project) on 127.0.0.1, port 0, over a temp dir, with SigV4 signature checking on
//!
//! Not a mock: requests are parsed, authenticated and answered by an independent S3
//! implementation, so a signing or protocol mistake of ours fails here as it would against a
//! bucket. In front of it sits a thin recorder that keeps each request's method, path and query
//! (for paging assertions) and can answer the next requests with injected faults (for retries).
//! The archive and S3 sink tests start one with [`S3Server::start`] and build targets from it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::Request;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tempfile::TempDir;
use tokio::net::TcpListener;
use trailhub::objects::ObjectTarget;

/// The access key the server knows.
pub const ACCESS_KEY_ID: &str = "TRAILHUBTESTACCESSKEY";
/// The secret the server checks signatures against; tests grep outputs for it.
pub const SECRET_ACCESS_KEY: &str = "tH1s-is-the-S3-test-secret/do-not-print-0042";

/// A fault the server answers with instead of serving a request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub code: &'static str,
}

impl Fault {
    pub fn slow_down() -> Fault {
        Fault {
            status: 503,
            code: "SlowDown",
        }
    }
}

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<String>>,
    faults: Mutex<VecDeque<Fault>>,
}

/// A running s3s-fs server; stops when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    /// The served directory: each bucket is a directory in it, each object a file.
    pub root: TempDir,
    /// Holds the secret key files the targets name (outside the served root).
    secrets: TempDir,
    recorder: Arc<Recorder>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("temp dir");
        let secrets = tempfile::tempdir().expect("temp dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs over the temp dir");
        let mut builder = S3ServiceBuilder::new(fs);
        // with an auth provider every request must carry a valid SigV4 signature
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let recorder = Arc::new(Recorder::default());
        let seen = Arc::clone(&recorder);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let seen = Arc::clone(&seen);
                let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let service = service.clone();
                    let seen = Arc::clone(&seen);
                    async move {
                        let line = format!(
                            "{} {}",
                            request.method(),
                            request
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str())
                                .unwrap_or("")
                        );
                        if let Ok(mut r) = seen.requests.lock() {
                            r.push(line);
                        }
                        let fault = seen.faults.lock().ok().and_then(|mut f| f.pop_front());
                        match fault {
                            Some(fault) => Ok(fault_response(&fault)),
                            None => Service::call(&service, request).await,
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), handler)
                        .await;
                });
            }
        });
        S3Server {
            endpoint,
            root,
            secrets,
            recorder,
            task,
        }
    }

    /// Creates a bucket (a directory of the served root, as s3s-fs keeps them).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.path().join(bucket)).expect("bucket dir");
    }

    /// Where s3s-fs keeps an object.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// A target for `bucket` on this server with the right credentials, the secret in a file.
    pub fn target(&self, bucket: &str) -> ObjectTarget {
        self.target_with_secret(bucket, SECRET_ACCESS_KEY)
    }

    /// A target whose secret file holds `secret` (a wrong one, for refusals).
    pub fn target_with_secret(&self, bucket: &str, secret: &str) -> ObjectTarget {
        let file = self.secret_file(secret);
        ObjectTarget {
            endpoint: Some(self.endpoint.clone()),
            bucket: Some(bucket.to_string()),
            access_key_id: Some(ACCESS_KEY_ID.to_string()),
            secret_access_key_file: Some(file),
            ..ObjectTarget::default()
        }
    }

    fn secret_file(&self, secret: &str) -> PathBuf {
        let n = std::fs::read_dir(self.secrets.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let path = self.secrets.path().join(format!("secret-{n}"));
        std::fs::write(&path, format!("{secret}\n")).expect("secret file");
        path
    }

    /// Every request so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.recorder
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Answers the next requests with these faults, in order, before serving normally again.
    pub fn inject_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut f) = self.recorder.faults.lock() {
            f.extend(faults);
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An S3 error answer, as S3 sends one.
fn fault_response(fault: &Fault) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>injected by the test</Message></Error>",
        fault.code
    );
    let mut response = s3s::HttpResponse::new(s3s::Body::from(body));
    *response.status_mut() =
        hyper::StatusCode::from_u16(fault.status).expect("a valid status for an injected fault");
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/xml".parse().expect("header value"),
    );
    response
}
