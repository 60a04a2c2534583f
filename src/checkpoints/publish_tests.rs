//! Tests of `publish`.
use super::*;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;

/// How the test endpoint answers the n-th POST (0-based); past the list, `200`.
#[derive(Clone)]
struct Script(Vec<(u16, Option<&'static str>)>);

/// One request the test endpoint received, and its answer.
#[derive(Clone)]
struct Post {
    at: Instant,
    /// Method, path and query.
    request: String,
    content_type: String,
    body: String,
    status: u16,
}

#[derive(Default)]
struct Seen {
    posts: Vec<Post>,
}

#[derive(Clone)]
struct Endpoint {
    script: Script,
    seen: Arc<Mutex<Seen>>,
}

async fn receive(
    State(endpoint): State<Endpoint>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap, &'static str) {
    let mut seen = endpoint.seen.lock().expect("not poisoned");
    let n = seen.posts.len();
    let (status, retry_after) = endpoint.script.0.get(n).copied().unwrap_or((200, None));
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.posts.push(Post {
        at: Instant::now(),
        request: format!("{method} {uri}"),
        content_type,
        body,
        status,
    });
    let mut answer = HeaderMap::new();
    if let Some(secs) = retry_after {
        answer.insert("retry-after", secs.parse().expect("header value"));
    }
    (
        StatusCode::from_u16(status).expect("status"),
        answer,
        "answer with the secret-query-value-123 echoed",
    )
}

/// A loopback endpoint answering as `script` says; its URL and what it received.
async fn endpoint(script: Vec<(u16, Option<&'static str>)>) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    // a fallback, not a route: routes join a router only through the api module's Routes
    let app = Router::new().fallback(receive).with_state(Endpoint {
        script: Script(script),
        seen: seen.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (
        format!("http://user:pw-secret-1234@{addr}/checkpoints?token=secret-query-value-123"),
        seen,
    )
}

fn marks() -> sled::Tree {
    sled::Config::new()
        .temporary(true)
        .open()
        .expect("temporary sled")
        .open_tree("marks")
        .expect("tree")
}

fn http_publisher(url: &str) -> Publisher {
    let settings = CheckpointSettings {
        publish_url: Some(url.to_string()),
        publish_log: false,
        ..Default::default()
    };
    Publisher::new(&settings, marks())
        .expect("valid URL")
        .with_backoff(Duration::from_millis(10), Duration::from_millis(40))
}

fn note(size: u64) -> String {
    format!("example.com/log\n{size}\nroot\n\n\u{2014} example.com/log sig{size}\n")
}

/// Waits until the HTTP mark reaches `size`.
async fn delivered(publisher: &Publisher, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.published(Sink::Http).expect("mark") != Some(size) {
        assert!(Instant::now() < deadline, "size {size} was not delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn posts(seen: &Mutex<Seen>) -> Vec<Post> {
    seen.lock().expect("not poisoned").posts.clone()
}

#[tokio::test]
async fn a_checkpoint_is_retried_through_503s_and_arrives_once() {
    let (url, seen) = endpoint(vec![(503, None), (503, None), (500, None)]).await;
    let publisher = http_publisher(&url);
    publisher.publish(7, &note(7)).await.expect("handed over");
    delivered(&publisher, 7).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let posts = posts(&seen);
    let statuses: Vec<u16> = posts.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [503, 503, 500, 200]);
    assert!(posts.iter().all(|p| p.body == note(7)), "the note, exactly");
    assert!(posts
        .iter()
        .all(|p| p.request == "POST /checkpoints?token=secret-query-value-123"));
    assert!(posts
        .iter()
        .all(|p| p.content_type == "text/plain; charset=utf-8"));
    // an older checkpoint handed over later is not sent
    publisher.publish(5, &note(5)).await.expect("handed over");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.lock().expect("not poisoned").posts.len(), 4);
}

#[tokio::test]
async fn a_400_is_not_retried_and_the_next_checkpoint_is_sent() {
    let (url, seen) = endpoint(vec![(400, None)]).await;
    let publisher = http_publisher(&url);
    publisher.publish(1, &note(1)).await.expect("handed over");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&seen).len(), 1, "no retry after a 400");
    assert_eq!(publisher.published(Sink::Http).expect("mark"), None);
    publisher.publish(2, &note(2)).await.expect("handed over");
    delivered(&publisher, 2).await;
    let posts = posts(&seen);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].body, note(2));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (url, seen) = endpoint(vec![(429, Some("1"))]).await;
    let publisher = http_publisher(&url);
    publisher.publish(3, &note(3)).await.expect("handed over");
    delivered(&publisher, 3).await;
    let posts = posts(&seen);
    assert_eq!(posts.len(), 2);
    let gap = posts[1].at - posts[0].at;
    assert!(gap >= Duration::from_millis(950), "waited {gap:?}");
}

#[tokio::test]
async fn a_newer_checkpoint_replaces_one_not_yet_delivered() {
    let failing = vec![(503, None); 3];
    let (url, seen) = endpoint(failing).await;
    let publisher =
        http_publisher(&url).with_backoff(Duration::from_millis(200), Duration::from_millis(200));
    publisher.publish(10, &note(10)).await.expect("handed over");
    let deadline = Instant::now() + Duration::from_secs(10);
    while posts(&seen).is_empty() {
        assert!(Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publisher.publish(20, &note(20)).await.expect("handed over");
    delivered(&publisher, 20).await;
    let posts = posts(&seen);
    let delivered: Vec<&str> = posts
        .iter()
        .filter(|p| p.status == 200)
        .map(|p| p.body.as_str())
        .collect();
    assert_eq!(delivered, [note(20).as_str()]);
    assert_eq!(posts[0].body, note(10));
}

#[tokio::test]
async fn catch_up_sends_only_the_newest_to_http() {
    let (url, seen) = endpoint(vec![]).await;
    let publisher = http_publisher(&url);
    raise_mark(&publisher.marks, Sink::Http, 2).expect("mark");
    assert_eq!(publisher.pending_after().expect("marks"), Some(2));
    publisher
        .catch_up((3..=5).map(|s| (s, note(s))))
        .await
        .expect("handed over");
    delivered(&publisher, 5).await;
    let bodies: Vec<String> = posts(&seen).into_iter().map(|p| p.body).collect();
    assert_eq!(bodies, [note(5)]);
    // nothing newer than the mark: nothing sent
    publisher
        .catch_up((1..=5).map(|s| (s, note(s))))
        .await
        .expect("nothing to do");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(posts(&seen).len(), 1);
}

#[tokio::test]
async fn the_directory_gets_every_checkpoint_and_never_a_different_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let publish_dir = dir.path().join("published");
    let settings = CheckpointSettings {
        publish_dir: Some(publish_dir.clone()),
        publish_log: true,
        ..Default::default()
    };
    let publisher = Publisher::new(&settings, marks()).expect("no URL");
    assert_eq!(publisher.sinks(), [Sink::Dir, Sink::Log]);
    assert_eq!(publisher.pending_after().expect("marks"), None);
    let file = |size| publish_dir.join(checkpoint_file_name(size));
    let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
    publisher.publish(1, &note(1)).await.expect("written");
    publisher.publish(2, &note(2)).await.expect("written");
    assert_eq!(
        file(2).file_name().and_then(|n| n.to_str()),
        Some("checkpoint-00000000000000000002.txt")
    );
    assert_eq!(read(file(1)), note(1));
    assert_eq!(read(file(2)), note(2));
    assert_eq!(read(publish_dir.join(LATEST_FILE)), note(2));
    assert_eq!(publisher.published(Sink::Dir).expect("mark"), Some(2));
    assert_eq!(publisher.published(Sink::Log).expect("mark"), Some(2));
    // the same again is fine; different bytes for a published size are refused
    publisher.publish(2, &note(2)).await.expect("same bytes");
    let forged = note(2).replace("root", "toor");
    let err = publisher.publish(2, &forged).await.expect_err("rewrite");
    assert!(
        matches!(err, PublishError::Conflict { size: 2, .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains("checkpoint-00000000000000000002.txt"));
    assert_eq!(read(file(2)), note(2), "left as it was");
    assert_eq!(read(publish_dir.join(LATEST_FILE)), note(2));

    // after a restart: a file deleted below the mark and those above it are written
    std::fs::remove_file(file(1)).expect("delete");
    let restarted = Publisher::new(&settings, publisher.marks.clone()).expect("no URL");
    assert_eq!(restarted.pending_after().expect("marks"), Some(2));
    restarted
        .catch_up([4, 3, 1, 2].into_iter().map(|s| (s, note(s))))
        .await
        .expect("caught up");
    for size in 1..=4 {
        assert_eq!(read(file(size)), note(size));
    }
    assert_eq!(read(publish_dir.join(LATEST_FILE)), note(4));
    assert_eq!(restarted.published(Sink::Dir).expect("mark"), Some(4));
    assert_eq!(restarted.published(Sink::Log).expect("mark"), Some(4));
    // an older checkpoint published late does not move latest.txt back
    restarted.publish(0, &note(0)).await.expect("written");
    assert_eq!(read(publish_dir.join(LATEST_FILE)), note(4));
    assert_eq!(restarted.published(Sink::Dir).expect("mark"), Some(4));
    let mut names: Vec<String> = std::fs::read_dir(&publish_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "five checkpoints and latest.txt: {names:?}");
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // a conflict met while catching up is reported too, and latest.txt stays
    std::fs::write(file(6), "something else\n").expect("plant");
    let err = restarted
        .catch_up((5..=6).map(|s| (s, note(s))))
        .await
        .expect_err("conflict");
    assert!(
        matches!(err, PublishError::Conflict { size: 6, .. }),
        "{err:?}"
    );
    assert_eq!(read(file(5)), note(5), "the others are still written");
    assert_eq!(read(file(6)), "something else\n");
    assert_eq!(read(publish_dir.join(LATEST_FILE)), note(4));
    assert_eq!(restarted.published(Sink::Dir).expect("mark"), Some(4));
}

#[test]
fn urls_are_shown_without_credentials_or_query() {
    let url = "https://user:pw-secret-1234@witness.example/add?token=secret-query-value-123#f";
    let shown = url_for_logs(url);
    assert_eq!(shown, "https://witness.example/add");
    let settings = CheckpointSettings {
        publish_url: Some(url.into()),
        ..Default::default()
    };
    let publisher = Publisher::new(&settings, marks()).expect("valid");
    for debug in [format!("{settings:?}"), format!("{publisher:?}")] {
        assert!(!debug.contains("pw-secret-1234"), "{debug}");
        assert!(!debug.contains("secret-query-value-123"), "{debug}");
    }
    let target = &publisher.http.as_ref().expect("http").target;
    assert_eq!(
        target
            .scrubber
            .quote("echo secret-query-value-123 back", 100),
        "echo [redacted] back"
    );
    for bad in ["ftp://witness.example/", "not a url", "http://"] {
        let settings = CheckpointSettings {
            publish_url: Some(bad.into()),
            ..Default::default()
        };
        assert!(Publisher::new(&settings, marks()).is_err(), "{bad}");
    }
}
