//! The module layers that must not fold back into each other, read from the sources: a lower
//! module that starts importing a higher one fails here, before it grows into a circle.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>` a file of `dir` (or `file`) names, with where.
fn crate_modules_used(paths: &[&str]) -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for p in paths {
        let path = src.join(p);
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
    }
    let mut used = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.push((module, format!("{}:{}", file.display(), n + 1)));
            }
        }
    }
    used
}

/// `webhooks` is a pure library of signature schemes: below `connectors` and `api`, it may use
/// only the secret type of `config`.
#[test]
fn webhook_signatures_import_nothing_above_them() {
    let bad: Vec<_> = crate_modules_used(&["webhooks"])
        .into_iter()
        .filter(|(m, _)| m != "config" && m != "webhooks")
        .collect();
    assert!(bad.is_empty(), "webhooks imports higher modules: {bad:?}");
}

/// The store and the pipeline know nothing of HTTP, connectors or the scheduler.
#[test]
fn the_store_and_the_pipeline_import_nothing_above_them() {
    let allowed = ["store", "schema", "time", "metrics", "pipeline", "ingest"];
    let bad: Vec<_> = crate_modules_used(&["store", "pipeline.rs"])
        .into_iter()
        .filter(|(m, _)| !allowed.contains(&m.as_str()))
        .collect();
    assert!(bad.is_empty(), "the store imports higher modules: {bad:?}");
}
