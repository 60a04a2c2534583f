//! The object stores (`trailhub::objects`): the same round trip on a directory and on a real
//! S3-protocol server (s3s-fs, signatures checked), and the refusals an operator will meet: a
//! wrong secret, a missing bucket, an object past the size bound, a key that could escape, a
//! server that slows down. The secret must never be in what the store prints or logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use trailhub::objects::{ObjectInfo, ObjectKey, ObjectStore, ObjectTarget, ObjectsError};

use crate::support::s3::{Fault, S3Server, SECRET_ACCESS_KEY};

fn key(k: &str) -> ObjectKey {
    ObjectKey::parse(k).expect("a valid test key")
}

/// Ten objects in two "directories", sized so that each size is distinct.
fn sample_objects() -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    for i in 0..7u8 {
        objects.push((
            format!("segments/2026/seg-{i:03}.zst"),
            vec![i; 100 + usize::from(i)],
        ));
    }
    for i in 0..3u8 {
        objects.push((
            format!("manifests/m-{i}.json"),
            format!("{{\"m\":{i}}}").into(),
        ));
    }
    objects
}

/// put, list (all, by prefix), get, overwrite, delete: the contract both stores keep.
async fn round_trip(store: &ObjectStore) {
    let objects = sample_objects();
    for (k, bytes) in &objects {
        store.put(&key(k), bytes.clone()).await.expect("put");
    }
    let mut expected: Vec<ObjectInfo> = objects
        .iter()
        .map(|(k, b)| ObjectInfo {
            key: k.clone(),
            size: b.len() as u64,
        })
        .collect();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(store.list("").await.expect("list all"), expected);
    assert_eq!(store.list("segments/").await.expect("list").len(), 7);
    assert_eq!(
        store
            .list("segments/2026/seg-00")
            .await
            .expect("list")
            .len(),
        7
    );
    let one = store.list("manifests/m-1").await.expect("list");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].key, "manifests/m-1.json");
    assert!(store.list("nothing/").await.expect("list").is_empty());

    for (k, bytes) in &objects {
        assert_eq!(
            &store.get(&key(k), 1 << 20).await.expect("get"),
            bytes,
            "{k}"
        );
    }
    // a put replaces the whole object
    let k = key("segments/2026/seg-003.zst");
    store
        .put(&k, b"replaced".to_vec())
        .await
        .expect("overwrite");
    assert_eq!(store.get(&k, 1 << 20).await.expect("get"), b"replaced");
    // an empty object is an object
    store
        .put(&key("empty"), Vec::new())
        .await
        .expect("put empty");
    assert_eq!(
        store.get(&key("empty"), 0).await.expect("get empty"),
        Vec::<u8>::new()
    );

    store.delete(&k).await.expect("delete");
    store
        .delete(&k)
        .await
        .expect("deleting a missing object is no error");
    match store.get(&k, 1 << 20).await {
        Err(ObjectsError::NotFound { key, .. }) => assert_eq!(key, k.as_str()),
        other => panic!("a deleted object should be NotFound, got {other:?}"),
    }
    let after = store.list("").await.expect("list after delete");
    assert_eq!(after.len(), objects.len()); // one deleted, "empty" added
    assert!(!after.iter().any(|o| o.key == k.as_str()));
}

#[tokio::test]
async fn dir_store_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("archive");
    let store = ObjectTarget::dir(&root).build().expect("dir store");
    assert_eq!(store.describe(), format!("dir:{}", root.display()));
    round_trip(&store).await;
    // the objects are plain files under the root, and no temporary file is left behind
    assert!(root.join("segments/2026/seg-000.zst").is_file());
    let mut names = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        !names.iter().any(|n| n.contains("#tmp")),
        "temp files left: {names:?}"
    );
    // files that are not valid keys (someone else's, a temp file of a crashed put) are skipped
    std::fs::write(root.join("seg.zst.#tmp.1.2"), b"half").expect("write");
    std::fs::write(root.join("has space"), b"x").expect("write");
    let listed = store.list("").await.expect("list");
    assert!(listed.iter().all(|o| ObjectKey::parse(&o.key).is_ok()));
}

#[tokio::test]
async fn s3_store_round_trip_over_several_list_pages() {
    let server = S3Server::start().await;
    server.create_bucket("archive");
    let target = ObjectTarget {
        prefix: Some("hub-1".into()),
        ..server.target("archive")
    };
    let store = target.build().expect("s3 store").with_list_page_size(3);
    assert_eq!(
        store.describe(),
        format!("s3://archive/hub-1 at {}", server.endpoint)
    );
    round_trip(&store).await;

    // the server stored them under the prefix, where another S3 client would find them
    let stored = server.object_path("archive", "hub-1/segments/2026/seg-000.zst");
    assert_eq!(
        std::fs::read(&stored).expect("stored by s3s-fs"),
        vec![0u8; 100]
    );
    // ten objects at three per page: the full listings went over four pages, each next page
    // asked for with the continuation token of the one before
    let lists: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.contains("list-type=2"))
        .collect();
    let continued = lists
        .iter()
        .filter(|r| r.contains("continuation-token="))
        .count();
    assert!(continued >= 3, "expected paged listings, saw {lists:#?}");
    assert!(lists.iter().all(|r| r.contains("max-keys=3")), "{lists:#?}");
}

#[tokio::test]
async fn s3_wrong_secret_is_refused_with_the_s3_error_code() {
    let server = S3Server::start().await;
    server.create_bucket("archive");
    let wrong = "not-the-secret-the-server-knows-0000000000";
    let store = server
        .target_with_secret("archive", wrong)
        .build()
        .expect("builds: nothing is sent before the first call");
    let err = store
        .put(&key("a"), b"x".to_vec())
        .await
        .expect_err("a wrong secret is refused");
    assert_eq!(err.s3_code(), Some("SignatureDoesNotMatch"), "{err}");
    let text = err.to_string();
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(
        text.contains("archive"),
        "the message names the target: {text}"
    );
    assert!(!text.contains(wrong), "{text}");
    // a refusal is not retried: one request, not four
    let puts = server
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT"))
        .count();
    assert_eq!(puts, 1);
    assert!(!server.object_path("archive", "a").exists());
}

#[tokio::test]
async fn s3_missing_bucket_is_a_clear_error() {
    let server = S3Server::start().await;
    let store = server.target("no-such-bucket").build().expect("builds");
    let err = store.list("").await.expect_err("no bucket");
    assert_eq!(err.s3_code(), Some("NoSuchBucket"), "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    // a missing bucket is not a missing object: S3 answers a GetObject in a missing bucket with
    // 404 NoSuchBucket, which must stay that error, not become NotFound (s3s-fs 0.14 answers
    // NoSuchKey there, and creates the bucket's directory on PutObject, so S3's answer is
    // injected in front of it)
    server.inject_faults([Fault {
        status: 404,
        code: "NoSuchBucket",
    }]);
    let err = store.get(&key("k"), 10).await.expect_err("no bucket");
    assert_eq!(err.s3_code(), Some("NoSuchBucket"), "{err}");
    assert!(!matches!(err, ObjectsError::NotFound { .. }));
    // while a missing key in an existing bucket is NotFound
    server.create_bucket("no-such-bucket");
    assert!(matches!(
        store.get(&key("k"), 10).await,
        Err(ObjectsError::NotFound { .. })
    ));
}

#[tokio::test]
async fn oversized_get_is_refused_on_both_stores() {
    let server = S3Server::start().await;
    server.create_bucket("archive");
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = [
        ObjectTarget::dir(dir.path()).build().expect("dir"),
        server.target("archive").build().expect("s3"),
    ];
    for store in &stores {
        let k = key("big/segment.zst");
        store.put(&k, vec![7u8; 4096]).await.expect("put");
        assert_eq!(store.get(&k, 4096).await.expect("at the bound").len(), 4096);
        match store.get(&k, 4095).await {
            Err(ObjectsError::TooLarge { key, max, .. }) => {
                assert_eq!(key, "big/segment.zst");
                assert_eq!(max, 4095);
            }
            other => panic!("{}: expected TooLarge, got {other:?}", store.describe()),
        }
        let err = store.get(&k, 10).await.expect_err("too large");
        assert!(
            err.to_string().contains("larger than the 10 bytes allowed"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn invalid_keys_are_refused() {
    for bad in [
        "",
        "/abs",
        "../up",
        "a/../../up",
        "a//b",
        "a/",
        "sp ace",
        "back\\slash",
        "q?x",
    ] {
        let err = ObjectKey::parse(bad).expect_err(bad);
        assert!(
            err.to_string().starts_with("invalid object key"),
            "{bad:?}: {err}"
        );
    }
    let long = "k".repeat(513);
    assert!(ObjectKey::parse(&long).is_err());
    assert!(ObjectKey::parse(&"k".repeat(512)).is_ok());
    // a listing prefix follows the same rules
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ObjectTarget::dir(dir.path()).build().expect("dir");
    for bad in ["../", "/", "a/../b"] {
        assert!(
            matches!(store.list(bad).await, Err(ObjectsError::InvalidKey { .. })),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn s3_slow_down_is_retried_then_reported_with_its_code() {
    let server = S3Server::start().await;
    server.create_bucket("archive");
    let store = server.target("archive").build().expect("s3");
    // two SlowDowns, then the real server: the put lands
    server.inject_faults([Fault::slow_down(), Fault::slow_down()]);
    store
        .put(&key("retried"), b"landed".to_vec())
        .await
        .expect("put after retries");
    assert_eq!(
        std::fs::read(server.object_path("archive", "retried")).expect("stored"),
        b"landed"
    );
    let puts = server
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT"))
        .count();
    assert_eq!(puts, 3);
    // a server that keeps failing: the error names the last code and status
    server.inject_faults(std::iter::repeat_n(Fault::slow_down(), 4));
    let err = store.get(&key("retried"), 100).await.expect_err("gives up");
    assert_eq!(err.s3_code(), Some("SlowDown"), "{err}");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    // a 500 without an S3 body is retried as well
    server.inject_faults([Fault {
        status: 500,
        code: "InternalError",
    }]);
    assert_eq!(
        store.get(&key("retried"), 100).await.expect("after a 500"),
        b"landed"
    );
}

/// A tracing writer into a shared buffer, to read what the store logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(data);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_secret_never_shows_in_describe_debug_errors_or_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    // the hub's lines only: the test server (s3s) logs the requests it receives, headers and all
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trailhub=debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // this test's runtime is one thread, so the default covers every poll of its tasks
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = S3Server::start().await;
    server.create_bucket("archive");
    let target = server.target("archive");
    let store = target.build().expect("s3");
    let mut outputs = vec![
        store.describe(),
        format!("{store:?}"),
        format!("{target:?}"),
        format!("{:?}", store.clone().with_list_page_size(1)),
    ];
    store.put(&key("a/b"), b"x".to_vec()).await.expect("put");
    store.list("a/").await.expect("list");
    let errors = [
        store.get(&key("missing"), 10).await.expect_err("missing"),
        store.get(&key("a/b"), 0).await.expect_err("too large"),
        server
            .target("no-such-bucket")
            .build()
            .expect("builds")
            .list("")
            .await
            .expect_err("no bucket"),
    ];
    for e in &errors {
        outputs.push(e.to_string());
        outputs.push(format!("{e:?}"));
    }
    // the same secret through the environment, and a server that is gone (a transport error)
    let var = "TRAILHUB_TEST_OBJECTS_S3_SECRET";
    std::env::set_var(var, SECRET_ACCESS_KEY);
    let gone = ObjectTarget {
        endpoint: Some("http://127.0.0.1:9".into()),
        secret_access_key_file: None,
        secret_access_key_env: Some(var.into()),
        ..server.target("archive")
    };
    let gone_store = gone.build().expect("builds");
    let err = gone_store
        .put(&key("k"), b"x".to_vec())
        .await
        .expect_err("nothing listens on port 9");
    assert!(
        matches!(err, ObjectsError::Transport { .. }),
        "expected a transport error, got {err:?}"
    );
    outputs.push(err.to_string());
    outputs.push(format!("{err:?} {gone:?} {gone_store:?}"));

    let logged = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).into_owned();
    assert!(
        logged.contains("s3 request"),
        "the store logged nothing:\n{logged}"
    );
    outputs.push(logged);
    for text in &outputs {
        assert!(
            !text.contains(SECRET_ACCESS_KEY),
            "secret leaked in: {text}"
        );
        // nor a signature, which would let a reader replay the request
        assert!(!text.contains("Signature="), "signature leaked in: {text}");
        assert!(
            !text.contains("AWS4-HMAC-SHA256"),
            "signature leaked in: {text}"
        );
    }
    assert!(outputs[1].contains("<redacted>"), "{}", outputs[1]);
}

#[tokio::test]
async fn s3_target_reads_from_toml_and_checks_its_fields() {
    let target: ObjectTarget = toml::from_str(
        r#"
        endpoint = "http://127.0.0.1:9000"
        bucket = "trailhub-archive"
        region = "eu-west-3"
        access_key_id = "AKID"
        secret_access_key_env = "TRAILHUB_TEST_OBJECTS_UNSET_VAR"
        "#,
    )
    .expect("parses");
    let err = target.build().expect_err("the env var is unset");
    assert!(
        err.to_string().contains("TRAILHUB_TEST_OBJECTS_UNSET_VAR"),
        "{err}"
    );
    let secret_dir = tempfile::tempdir().expect("temp dir");
    let secret = secret_dir.path().join("s3.secret");
    std::fs::write(&secret, "abc\n").expect("write");
    let with = |f: &dyn Fn(&mut ObjectTarget)| {
        let mut t = ObjectTarget {
            secret_access_key_env: None,
            secret_access_key_file: Some(secret.clone()),
            ..target.clone()
        };
        f(&mut t);
        t.build()
    };
    let store = with(&|_| {}).expect("valid");
    assert_eq!(
        store.describe(),
        "s3://trailhub-archive at http://127.0.0.1:9000"
    );
    for (what, change) in [
        (
            "endpoint",
            &(|t: &mut ObjectTarget| t.endpoint = Some("ftp://x".into()))
                as &dyn Fn(&mut ObjectTarget),
        ),
        ("endpoint", &|t| {
            t.endpoint = Some("http://user:pw@127.0.0.1:9000".into())
        }),
        ("bucket", &|t| t.bucket = Some("Bad_Bucket".into())),
        ("prefix", &|t| t.prefix = Some("../up".into())),
        ("not both", &|t| t.secret_access_key_env = Some("X".into())),
    ] {
        let err = with(change).expect_err(what).to_string();
        assert!(err.contains(what), "{what}: {err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}
