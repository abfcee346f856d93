//! The crate's modules depend on each other in one direction only: no two modules import each
//! other, directly or through others, and no module reaches the public API through the crate root
//! (`crate::Name`), which re-exports every module and so would hide a cycle. A cycle is how types
//! end up in the wrong place (a decoder's error defined next to the prober that calls it, a box
//! type in the planner that the decoder then needs); docs/ARCHITECTURE.md draws the layers.
//!
//! This reads `augment/src` and follows every `crate::` path outside comments, test code included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of the crate but the root, by path (`codec::turbo`), with its source text.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        modules.insert(parts.join("::"), text);
    }
    modules
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The source without `//` comments (doc links may name any module).
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths following each `crate::` in `code`, braces expanded one level:
/// `crate::codec::{zune, turbo::Downscale}` gives `codec::zune` and `codec::turbo::Downscale`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let prefix = &rest[..end];
        if (prefix.is_empty() || prefix.ends_with("::")) && rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |i| end + i);
            for item in rest[end + 1..close].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    paths.push(format!("{prefix}{item}"));
                }
            }
        } else {
            paths.push(prefix.to_owned());
        }
    }
    paths
}

/// The module a path names or lies in: its longest prefix that is a module; `None` for the root.
fn module_of(path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
}

#[test]
fn modules_form_a_dag_and_never_import_through_the_root() {
    let modules = modules();
    assert!(
        modules.len() >= 10,
        "found the modules: {:?}",
        modules.keys()
    );
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut through_root = Vec::new();
    for (name, text) in &modules {
        let deps = edges.entry(name).or_default();
        for path in crate_paths(&code_only(text)) {
            match module_of(&path, &modules) {
                // A module's own items, or its parent's (`codec::mod` declares its children).
                Some(target) if target == *name || name.starts_with(&format!("{target}::")) => {}
                Some(target) => {
                    deps.insert(target);
                }
                None => through_root.push(format!("{name} uses crate::{path}")),
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<&'a str, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    let cycle = edges
        .keys()
        .find_map(|name| visit(name, &edges, &mut Vec::new(), &mut done));
    assert!(
        cycle.is_none() && through_root.is_empty(),
        "import cycle: {:?}\nmodules reaching the API through the crate root:\n{}",
        cycle.map(|c| c.join(" → ")),
        through_root.join("\n")
    );
}

#[test]
fn the_path_reader_sees_braces_and_the_root() {
    let code = "use crate::codec::{zune, turbo::Downscale};\nlet x = crate::decode_rgb(b);\n\
                use crate::{probe, ImageInfo};";
    assert_eq!(
        crate_paths(code),
        [
            "codec::zune",
            "codec::turbo::Downscale",
            "decode_rgb",
            "probe",
            "ImageInfo"
        ]
    );
    assert_eq!(code_only("a // crate::x\nb"), "a \nb");
}
