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

/// The modules a source text names: `crate::a` (as `("crate", "a")`) and `super::b` (as
/// `("super", "b")`), including each item of a `{...}` group; test-only code is left out.
fn names_used(text: &str) -> Vec<(&'static str, String)> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for root in ["crate", "super"] {
        let marker = format!("{root}::");
        let mut rest = text;
        while let Some(at) = rest.find(&marker) {
            // `super::super::x` is a grandparent: not a sibling of this file
            let before = &rest[..at];
            rest = &rest[at + marker.len()..];
            if before.ends_with("super::") || rest.starts_with("super::") {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name = ident(part);
                    if !name.is_empty() {
                        out.push((if root == "crate" { "crate" } else { "super" }, name));
                    }
                }
            } else {
                let name = ident(rest);
                if !name.is_empty() {
                    out.push((if root == "crate" { "crate" } else { "super" }, name));
                }
            }
        }
    }
    out
}

/// The first circle of a directed graph, if any (depth-first, by name order for stable output).
fn find_circle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// No import circles, at two levels: between the crate's top-level modules (`crate::x`), and
/// between the files of each directory module (`super::x`, `crate::dir::x`; the directory's
/// `mod.rs`, which declares them, is left out). A new circle fails here with its path.
#[test]
fn no_import_circles() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut inner: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.len() == 1 && matches!(parts[0].as_str(), "main" | "lib") {
            continue;
        }
        let module = parts[0].clone();
        let text = std::fs::read_to_string(file).expect("readable source");
        let siblings: BTreeSet<String> = match file.parent() {
            Some(dir) if parts.len() > 1 => std::fs::read_dir(dir)
                .expect("dir")
                .flatten()
                .map(|e| stem(&e.path()))
                .filter(|s| s != "mod")
                .collect(),
            _ => BTreeSet::new(),
        };
        let me = stem(file);
        for (root, name) in names_used(&text) {
            match root {
                "crate" if name != module => {
                    top.entry(module.clone()).or_default().insert(name);
                }
                "crate" if parts.len() == 2 && me != "mod" => {
                    // crate::<module>::<sibling>: the file after the module's name
                    let needle = format!("crate::{module}::");
                    for (at, _) in text.match_indices(&needle) {
                        let sib: String = text[at + needle.len()..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if sib != me && siblings.contains(&sib) {
                            inner
                                .entry(module.clone())
                                .or_default()
                                .entry(me.clone())
                                .or_default()
                                .insert(sib);
                        }
                    }
                }
                "super"
                    if parts.len() == 2
                        && me != "mod"
                        && name != me
                        && siblings.contains(&name) =>
                {
                    inner
                        .entry(module.clone())
                        .or_default()
                        .entry(me.clone())
                        .or_default()
                        .insert(name);
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        find_circle(&top),
        None,
        "a circle between top-level modules"
    );
    for (module, graph) in &inner {
        assert_eq!(
            find_circle(graph),
            None,
            "a circle between the files of {module}/"
        );
    }
}
