//! The shape of the code, checked: no import cycles between the modules of `src/`, and no
//! function longer than [`MAX_FUNCTION_LINES`] outside tests.
//!
//! Modules are compared level by level: the top-level modules of the crate with each
//! other, then the children of each module with each other. A reference from a module
//! to anything inside a sibling counts as an edge between the two siblings; a child using
//! its parent's items (or a parent its children) is inside one module and does not
//! count. Test code (`#[cfg(test)]` modules, `tests.rs` files) is left out: tests may
//! reach across layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// The longest function allowed outside tests, in lines (signature to closing brace).
const MAX_FUNCTION_LINES: usize = 100;

/// A module path, e.g. `["store", "apply"]`; the crate root is empty.
type ModPath = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of `src/` with its module path and its code outside tests.
fn modules() -> BTreeMap<ModPath, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let relative = path.strip_prefix(src_dir()).expect("under src/").with_extension("");
            let mut parts: ModPath = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            let text = std::fs::read_to_string(&path).expect("source file is readable");
            out.insert(parts, without_tests(&text));
        }
    }
    out
}

/// The code of a file without its `#[cfg(test)]` module (always the file's last item
/// here) and without comments.
fn without_tests(text: &str) -> String {
    let code = match text.find("\n#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The module a path names: its longest prefix that is a module.
fn resolve(modules: &BTreeSet<ModPath>, segments: &[String]) -> Option<ModPath> {
    (1..=segments.len()).rev().map(|n| segments[..n].to_vec()).find(|p| modules.contains(p))
}

/// Which modules each module refers to (`crate::…`, `super::…`, and `use child::…`).
fn references(modules: &BTreeMap<ModPath, String>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let names: BTreeSet<ModPath> = modules.keys().cloned().collect();
    let absolute = Regex::new(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)").unwrap();
    let relative = Regex::new(r"\b((?:super::)+)([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)").unwrap();
    let child = Regex::new(r"(?m)^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([a-z_][a-z0-9_]*)::").unwrap();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, code) in modules {
        let targets = edges.entry(module.clone()).or_default();
        for c in absolute.captures_iter(code) {
            let segments: Vec<String> = c[1].trim_start_matches("::").split("::").map(str::to_string).collect();
            targets.extend(resolve(&names, &segments));
        }
        for c in relative.captures_iter(code) {
            let up = c[1].matches("super::").count();
            let mut segments: ModPath = module[..module.len().saturating_sub(up)].to_vec();
            segments.extend(c[2].split("::").map(str::to_string));
            targets.extend(resolve(&names, &segments));
        }
        for c in child.captures_iter(code) {
            let mut segments = module.clone();
            segments.push(c[1].to_string());
            targets.extend(resolve(&names, &segments).filter(|t| t != module));
        }
    }
    edges
}

/// The cycles among the children of `parent`, each as a path of module names.
fn cycles_under(parent: &[String], edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    let child_of = |m: &ModPath| (m.len() > parent.len() && m.starts_with(parent)).then(|| m[parent.len()].clone());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in edges {
        let Some(a) = child_of(from) else { continue };
        for to in targets {
            if let Some(b) = child_of(to).filter(|b| *b != a) {
                graph.entry(a.clone()).or_default().insert(b);
            }
        }
    }
    let mut found = Vec::new();
    let mut state: BTreeMap<String, u8> = BTreeMap::new();
    let nodes: Vec<String> = graph.keys().cloned().collect();
    for node in nodes {
        let mut path = Vec::new();
        visit(&node, &graph, &mut state, &mut path, &mut found);
    }
    found
}

fn visit(
    node: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    state: &mut BTreeMap<String, u8>,
    path: &mut Vec<String>,
    found: &mut Vec<String>,
) {
    match state.get(node) {
        Some(2) => return,
        Some(1) => {
            let start = path.iter().position(|p| p == node).unwrap_or(0);
            found.push(format!("{} -> {node}", path[start..].join(" -> ")));
            return;
        }
        _ => {}
    }
    state.insert(node.to_string(), 1);
    path.push(node.to_string());
    for next in graph.get(node).into_iter().flatten() {
        visit(next, graph, state, path, found);
    }
    path.pop();
    state.insert(node.to_string(), 2);
}

#[test]
fn no_module_of_src_imports_a_module_that_imports_it_back() {
    let modules = modules();
    assert!(modules.len() > 30, "expected the whole crate, found {} files", modules.len());
    let edges = references(&modules);
    // Every module is a parent of its children; the crate root of the top level.
    let mut parents: BTreeSet<ModPath> =
        modules.keys().filter(|m| !m.is_empty()).map(|m| m[..m.len() - 1].to_vec()).collect();
    parents.insert(Vec::new());
    let mut cycles = Vec::new();
    for parent in &parents {
        for cycle in cycles_under(parent, &edges) {
            let at = if parent.is_empty() { "crate".to_string() } else { parent.join("::") };
            cycles.push(format!("{at}: {cycle}"));
        }
    }
    assert!(cycles.is_empty(), "import cycles between modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle_when_there_is_one() {
    // The check itself, on made-up modules: a -> b -> a under the root, and a child
    // using its parent (not a cycle).
    let module = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<ModPath>();
    let mut edges = BTreeMap::new();
    edges.insert(module(&["a"]), BTreeSet::from([module(&["b", "x"])]));
    edges.insert(module(&["b", "x"]), BTreeSet::from([module(&["a"]), module(&["b"])]));
    edges.insert(module(&["b"]), BTreeSet::from([module(&["b", "x"])]));
    let found = cycles_under(&[], &edges);
    assert_eq!(found, ["a -> b -> a"]);
    assert!(cycles_under(&module(&["b"]), &edges).is_empty());
}

#[test]
fn no_function_outside_tests_is_longer_than_a_screenful() {
    let start =
        Regex::new(r"^(\s*)(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?(?:const\s+)?(?:unsafe\s+)?fn\s+(\w+)").unwrap();
    let mut long = Vec::new();
    for (module, code) in modules() {
        let lines: Vec<&str> = code.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let Some(c) = start.captures(lines[i]) else {
                i += 1;
                continue;
            };
            let indent = c[1].len();
            let first = lines[i].trim_end();
            let one_line = first.ends_with('}') && first.matches('{').count() == first.matches('}').count();
            // A declaration (`fn f();`) or a one-line function; else the body ends at the
            // first line that closes at the signature's indentation.
            let close = format!("{}}}", " ".repeat(indent));
            let end = if first.ends_with(';') || one_line {
                Some(i)
            } else {
                (i + 1..lines.len()).find(|&k| lines[k].trim_end() == close)
            };
            let Some(end) = end else { break };
            let length = end - i + 1;
            if length > MAX_FUNCTION_LINES {
                long.push(format!("{}::{} is {length} lines", module.join("::"), &c[2]));
            }
            i = end + 1;
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines:\n{}", long.join("\n"));
}
