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

/// The store and the pipeline know nothing of HTTP, connectors or the scheduler; the store
/// builds its Merkle log on the pure `evidence` library.
#[test]
fn the_store_and_the_pipeline_import_nothing_above_them() {
    let allowed = [
        "store", "schema", "time", "metrics", "pipeline", "ingest", "evidence",
    ];
    let bad: Vec<_> = crate_modules_used(&["store", "pipeline.rs"])
        .into_iter()
        .filter(|(m, _)| !allowed.contains(&m.as_str()))
        .collect();
    assert!(bad.is_empty(), "the store imports higher modules: {bad:?}");
}

/// `evidence` is a pure library of hashes, proofs and signed notes: the store builds on it, so
/// it may use nothing of the crate but `time`.
#[test]
fn evidence_imports_nothing_above_it() {
    let bad: Vec<_> = crate_modules_used(&["evidence"])
        .into_iter()
        .filter(|(m, _)| m != "time" && m != "evidence")
        .collect();
    assert!(bad.is_empty(), "evidence imports higher modules: {bad:?}");
}

/// `archive` is the segment format: bundles of `evidence`, compressed and encrypted. It sits
/// below whatever archives and restores (the store, the CLI), so it may use nothing of the crate
/// but `evidence`.
#[test]
fn archive_imports_nothing_but_evidence() {
    let bad: Vec<_> = crate_modules_used(&["archive"])
        .into_iter()
        .filter(|(m, _)| m != "evidence" && m != "archive")
        .collect();
    assert!(bad.is_empty(), "archive imports higher modules: {bad:?}");
}

/// `objects` (directory and S3 stores) is a leaf the archive and the sinks build on: it may use
/// only the HTTP error text of `http` and the secret type of `config`.
#[test]
fn objects_import_only_http_and_config() {
    let allowed = ["objects", "http", "config"];
    let bad: Vec<_> = crate_modules_used(&["objects"])
        .into_iter()
        .filter(|(m, _)| !allowed.contains(&m.as_str()))
        .collect();
    assert!(bad.is_empty(), "objects imports higher modules: {bad:?}");
}

/// The module paths a source text names, as written after `crate::` or `super::` (including
/// each item of a `{...}` group), with which of the two it was; test-only code is left out.
fn paths_used(text: &str) -> Vec<(&'static str, Vec<String>)> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    // `a::b::Item` → [a, b, Item]: identifiers joined by `::`
    let chain = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = s.trim_start();
        loop {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                return out;
            }
            rest = &rest[name.len()..];
            out.push(name);
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => return out,
            }
        }
    };
    let mut out = Vec::new();
    for root in ["crate", "super"] {
        let marker = format!("{root}::");
        let mut rest = text;
        while let Some(at) = rest.find(&marker) {
            let before = &rest[..at];
            rest = &rest[at + marker.len()..];
            let ident_before = before
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            // `super::super::x` and `a::super` are not a path from this file's parent
            if ident_before || rest.starts_with("super::") {
                continue;
            }
            let root: &'static str = if root == "crate" { "crate" } else { "super" };
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let c = chain(part);
                    if !c.is_empty() {
                        out.push((root, c));
                    }
                }
            } else {
                let c = chain(rest);
                if !c.is_empty() {
                    out.push((root, c));
                }
            }
        }
    }
    out
}

type Graph = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// The first circle of a directed graph, if any (depth-first, in name order for stable output).
fn find_circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
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

/// No import circles at any level: the modules inside each module (the crate's top-level
/// modules, the files of `connectors/`, of `connectors/definition/validate/`, ...) must import
/// each other without a circle. A file's use of `crate::a::b::c` or `super::x` is an edge, at
/// the level where the two paths part, between the children they go through; a module's use of
/// its own parent or children is none. A new circle fails here with its path.
#[test]
fn no_import_circles() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // each file's module path: `connectors/definition/mod.rs` is connectors::definition
    let mut modules: Vec<(Vec<String>, PathBuf)> = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src").to_path_buf();
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.len() == 1 && matches!(parts[0].as_str(), "main" | "lib") {
            continue;
        }
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        modules.push((parts, file));
    }
    let known: BTreeSet<Vec<String>> = modules.iter().map(|(m, _)| m.clone()).collect();
    let mut levels: BTreeMap<String, Graph> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (root, path) in paths_used(&text) {
            let mut target: Vec<String> = match root {
                "crate" => path,
                _ => module[..module.len() - 1]
                    .iter()
                    .cloned()
                    .chain(path)
                    .collect(),
            };
            // the longest prefix that is a module (the rest names items)
            while !target.is_empty() && !known.contains(&target) {
                target.pop();
            }
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < module.len() && common < target.len() {
                levels
                    .entry(module[..common].join("::"))
                    .or_default()
                    .entry(module[common].clone())
                    .or_default()
                    .insert(target[common].clone());
            }
        }
    }
    assert!(levels.contains_key(""), "the top level was read");
    for (level, graph) in &levels {
        let level = if level.is_empty() { "crate" } else { level };
        assert_eq!(
            find_circle(graph),
            None,
            "a circle between the modules of {level}"
        );
    }
}
