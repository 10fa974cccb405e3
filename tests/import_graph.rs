//! The library's module graph has no cycles and no upward imports.
//!
//! Run `cargo test --test import_graph -- --nocapture` to print the graph.
//!
//! The rule, exactly as checked here:
//! - Every file under `src/` is a module, except `src/main.rs`, `src/bin/` and files named
//!   `tests.rs`; `src/lib.rs` is `crate`, `src/a.rs` and `src/a/mod.rs` are `crate::a`,
//!   `src/a/b.rs` is `crate::a::b`. Comments, string and char literals, and `#[cfg(test)] mod …
//!   { … }` blocks are blanked out first: test code may reach anywhere.
//! - A reference is a path that starts with `crate::`, `super::` or `self::` (in a `use`,
//!   grouped `use crate::{a, b::{c, d}}` included, or inline in code), or a relative path whose
//!   first segment is a submodule the file declares. It names the deepest module that exists
//!   along it: `crate::hooks::def::HookDef` names `crate::hooks::def`, `use super::Foo` in
//!   `src/a/b.rs` names `crate::a`. A name the target only re-exports (`pub use x::Y`) is
//!   followed to where it is defined.
//! - Module A has an edge to module B when A references B and B is not A or one of A's own
//!   submodules: declaring a submodule and using it is what submodules are for. A submodule that
//!   uses its parent's own items does have an edge to the parent.
//! - **No cycles**: the graph has no strongly connected component of two or more modules.
//! - **No upward imports**: `crate::config` is the aggregator that assembles every subsystem's
//!   settings. No module of a subsystem that `crate::config` references (`crate::auth`,
//!   `crate::hooks`, …) may reference `crate::config` itself; the shared JSON toolkit lives in
//!   the leaf `crate::config::json`, which anyone may use.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The aggregator module that subsystems must not import from.
const AGGREGATOR: &str = "crate::config";

/// One source file, read and blanked.
struct Module {
    file: PathBuf,
    code: Vec<char>,
    /// Submodules this file declares with `mod name;` or `mod name {`.
    children: BTreeSet<String>,
}

#[test]
fn no_cycles_and_no_upward_imports() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    collect(&src, &src, &mut modules);
    assert!(modules.contains_key("crate::config"), "expected src/config.rs");

    let reexports: BTreeMap<String, BTreeMap<String, String>> =
        modules.iter().map(|(name, m)| (name.clone(), reexports(name, m))).collect();

    // Edges, each with one reference that made it (for the printout).
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, m) in &modules {
        let out = graph.entry(name.clone()).or_default();
        for path in references(name, &m.code, &m.children) {
            let target = resolve(&path, &modules, &reexports);
            if target == *name || target == "crate" || is_within(&target, name) {
                continue;
            }
            out.entry(target).or_insert_with(|| path.join("::"));
        }
    }

    println!("module graph ({} modules):", graph.len());
    for (from, to) in &graph {
        let list: Vec<&str> = to.keys().map(String::as_str).collect();
        println!("  {from} ({}) -> {}", modules[from].file.display(), list.join(", "));
    }

    let mut failures = Vec::new();
    for scc in components(&graph) {
        let cycle = one_cycle(&scc, &graph);
        let shown: Vec<String> =
            cycle.windows(2).map(|w| format!("{} -> {}   (via {})", w[0], w[1], graph[&w[0]][&w[1]])).collect();
        failures.push(format!("cycle among {} modules {:?}:\n    {}", scc.len(), scc, shown.join("\n    ")));
    }

    let aggregated: BTreeSet<String> = graph[AGGREGATOR].keys().map(|t| subsystem(t)).collect();
    for (from, to) in &graph {
        if to.contains_key(AGGREGATOR) && !is_within(from, AGGREGATOR) && aggregated.contains(&subsystem(from)) {
            failures.push(format!(
                "upward import: {from} uses {AGGREGATOR} (via {}), which itself uses {}",
                to[AGGREGATOR],
                subsystem(from)
            ));
        }
    }

    if failures.is_empty() {
        println!("no cycles, no upward imports");
    } else {
        for f in &failures {
            println!("{f}");
        }
        panic!("{} problem(s) in the module graph:\n{}", failures.len(), failures.join("\n"));
    }
}

/// `crate::a::b::c` → `crate::a`: the top-level module a module belongs to.
fn subsystem(module: &str) -> String {
    module.split("::").take(2).collect::<Vec<_>>().join("::")
}

/// Whether `inner` is `outer` or one of its descendants.
fn is_within(inner: &str, outer: &str) -> bool {
    inner == outer || inner.starts_with(&format!("{outer}::"))
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, Module>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).unwrap();
        if path.is_dir() {
            if rel != Path::new("bin") {
                collect(root, &path, out);
            }
            continue;
        }
        let Some(stem) = rel.to_str().and_then(|s| s.strip_suffix(".rs")) else { continue };
        if stem == "main" || path.file_name().unwrap() == "tests.rs" {
            continue;
        }
        let mut segments: Vec<&str> = stem.split('/').collect();
        if matches!(segments.last(), Some(&"mod") | Some(&"lib")) {
            segments.pop();
        }
        let name = std::iter::once("crate").chain(segments).collect::<Vec<_>>().join("::");
        let text = fs::read_to_string(&path).unwrap();
        let code = without_test_modules(&blank(&text));
        let children = declared_children(&code);
        out.insert(name, Module { file: rel.to_path_buf(), code, children });
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The text with comments, string literals and char literals replaced by spaces (newlines kept),
/// so braces and paths inside them are not read as code.
fn blank(text: &str) -> Vec<char> {
    let s: Vec<char> = text.chars().collect();
    let mut out = s.clone();
    let mut i = 0;
    let wipe = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(s.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = (i..s.len()).find(|&j| s[j] == '\n').unwrap_or(s.len());
            wipe(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < s.len() && depth > 0 {
                if s[j] == '/' && s.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if s[j] == '*' && s.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            wipe(&mut out, i, j);
            i = j;
        } else if c == '"' {
            // A raw string if `r` and some `#`s come right before, `r` not ending an identifier.
            let mut k = i;
            while k > 0 && s[k - 1] == '#' {
                k -= 1;
            }
            let hashes = i - k;
            let raw = k > 0
                && s[k - 1] == 'r'
                && (k < 2 || !is_ident(s[k - 2]) || (s[k - 2] == 'b' && (k < 3 || !is_ident(s[k - 3]))));
            let mut j = i + 1;
            if raw {
                loop {
                    if j >= s.len() {
                        break;
                    }
                    if s[j] == '"' && (0..hashes).all(|h| s.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
            } else {
                while j < s.len() && s[j] != '"' {
                    j += if s[j] == '\\' { 2 } else { 1 };
                }
                j += 1;
            }
            wipe(&mut out, i, j);
            i = j;
        } else if c == '\'' {
            // A char literal, or a lifetime / label (left alone).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < s.len() && s[j] != '\'' {
                    j += 1;
                }
                wipe(&mut out, i, j + 1);
                i = j + 1;
            } else if s.get(i + 2) == Some(&'\'') {
                wipe(&mut out, i, i + 3);
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Index just past the `}` that closes the `{` at `open`.
fn matching_brace(code: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

fn skip_ws(code: &[char], mut i: usize) -> usize {
    while i < code.len() && code[i].is_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(code: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < code.len() && is_ident(code[j]) {
        j += 1;
    }
    (code[i..j].iter().collect(), j)
}

fn word_at(code: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    code.get(i..i + w.len()) == Some(&w[..])
        && (i == 0 || !is_ident(code[i - 1]))
        && code.get(i + w.len()).is_none_or(|c| !is_ident(*c))
}

/// Blanks every `#[cfg(test)]` (plus further attributes) `mod name { … }` block.
fn without_test_modules(code: &[char]) -> Vec<char> {
    let mut out = code.to_vec();
    let attr: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + attr.len() <= code.len() {
        if code[i..i + attr.len()] != attr[..] {
            i += 1;
            continue;
        }
        let mut j = skip_ws(code, i + attr.len());
        while code.get(j) == Some(&'#') {
            let open = (j..code.len()).find(|&k| code[k] == '[').unwrap();
            let mut depth = 0;
            let mut k = open;
            while k < code.len() {
                match code[k] {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            j = skip_ws(code, k + 1);
        }
        if word_at(code, j, "pub") {
            j = skip_ws(code, j + 3);
            if code.get(j) == Some(&'(') {
                j = skip_ws(code, (j..code.len()).find(|&k| code[k] == ')').unwrap() + 1);
            }
        }
        if word_at(code, j, "mod") {
            let (_, after) = ident_at(code, skip_ws(code, j + 3));
            let k = skip_ws(code, after);
            if code.get(k) == Some(&'{') {
                let end = matching_brace(code, k);
                for c in &mut out[i..end] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end;
                continue;
            }
        }
        i += attr.len();
    }
    out
}

/// Names declared with `mod name;` or `mod name {` (test modules are already blanked).
fn declared_children(code: &[char]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for i in 0..code.len() {
        if word_at(code, i, "mod") {
            let (name, after) = ident_at(code, skip_ws(code, i + 3));
            let k = skip_ws(code, after);
            if !name.is_empty() && matches!(code.get(k), Some(';') | Some('{')) {
                out.insert(name);
            }
        }
    }
    out
}

/// Parses a path or a `use` tree at `i`, pushing each full path (segments) it names.
fn parse_tree(code: &[char], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        i = skip_ws(code, i);
        match code.get(i) {
            Some('{') => {
                i += 1;
                loop {
                    i = skip_ws(code, i);
                    match code.get(i) {
                        Some('}') => return i + 1,
                        Some(',') => i += 1,
                        None => return i,
                        _ => {
                            let before = i;
                            i = parse_tree(code, i, &path, out);
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            Some('*') => {
                out.push(path);
                return i + 1;
            }
            Some(c) if is_ident(*c) => {
                let (seg, after) = ident_at(code, i);
                if seg != "self" || path.is_empty() {
                    path.push(seg);
                }
                i = skip_ws(code, after);
                if code.get(i) == Some(&':') && code.get(i + 1) == Some(&':') {
                    i += 2;
                    continue;
                }
                out.push(path);
                return i;
            }
            _ => {
                if path.len() > prefix.len() {
                    out.push(path);
                }
                return i;
            }
        }
    }
}

/// Every path the module's code names, made absolute (`crate::…`).
fn references(module: &str, code: &[char], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let here: Vec<String> = module.split("::").map(String::from).collect();
    let mut raw = Vec::new();
    for i in 0..code.len() {
        if i > 0 && (is_ident(code[i - 1]) || code[i - 1] == ':') {
            continue;
        }
        let (first, after) = ident_at(code, i);
        let starts_path = matches!(first.as_str(), "crate" | "super" | "self") || children.contains(&first);
        if !starts_path || code.get(after) != Some(&':') || code.get(after + 1) != Some(&':') {
            continue;
        }
        parse_tree(code, i, &[], &mut raw);
    }
    raw.into_iter()
        .filter_map(|p| {
            let mut abs = match p[0].as_str() {
                "crate" => vec!["crate".to_string()],
                "self" => here.clone(),
                "super" => here.clone(),
                _ => {
                    let mut h = here.clone();
                    h.push(p[0].clone());
                    h
                }
            };
            let mut rest = &p[1..];
            if p[0] == "super" {
                abs.pop();
                while rest.first().map(String::as_str) == Some("super") {
                    abs.pop();
                    rest = &rest[1..];
                }
            }
            if abs.is_empty() {
                return None;
            }
            abs.extend(rest.iter().cloned());
            Some(abs)
        })
        .collect()
}

/// Names a module re-exports with `pub use` (or `pub(crate) use`), mapped to the module that
/// defines them.
fn reexports(module: &str, m: &Module) -> BTreeMap<String, String> {
    let code = &m.code;
    let mut out = BTreeMap::new();
    for i in 0..code.len() {
        if !word_at(code, i, "pub") {
            continue;
        }
        let mut j = skip_ws(code, i + 3);
        if code.get(j) == Some(&'(') {
            j = skip_ws(code, (j..code.len()).find(|&k| code[k] == ')').unwrap() + 1);
        }
        if !word_at(code, j, "use") {
            continue;
        }
        let mut paths = Vec::new();
        parse_tree(code, j + 3, &[], &mut paths);
        for p in paths {
            let mut line: Vec<char> = p.join("::").chars().collect();
            line.push(';');
            for abs in references(module, &line, &m.children) {
                if abs.len() >= 2 {
                    let name = abs.last().unwrap().clone();
                    out.insert(name, abs[..abs.len() - 1].join("::"));
                }
            }
        }
    }
    out
}

/// The deepest existing module along `path`, following re-exports.
fn resolve(
    path: &[String],
    modules: &BTreeMap<String, Module>,
    reexports: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let mut depth = path.len();
        while depth > 1 && !modules.contains_key(&path[..depth].join("::")) {
            depth -= 1;
        }
        let module = path[..depth].join("::");
        let Some(item) = path.get(depth) else { return module };
        match reexports.get(&module).and_then(|r| r.get(item)) {
            Some(source) if *source != module => {
                let mut next: Vec<String> = source.split("::").map(String::from).collect();
                next.extend(path[depth..].iter().cloned());
                path = next;
            }
            _ => return module,
        }
    }
    path.join("::")
}

/// Strongly connected components with two or more modules (Tarjan).
fn components(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph[v].keys() {
                let w = w.as_str();
                if !self.graph.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    scc.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// A shortest cycle through the component's first module, start repeated at the end.
fn one_cycle(scc: &[String], graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let start = &scc[0];
    let inside: BTreeSet<&String> = scc.iter().collect();
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(v) = queue.pop_front() {
        for w in graph[&v].keys() {
            if w == start {
                let mut chain = vec![v.clone()];
                while chain.last().unwrap() != start {
                    chain.push(prev[chain.last().unwrap()].clone());
                }
                chain.reverse();
                chain.push(start.clone());
                return chain;
            }
            if inside.contains(w) && !prev.contains_key(w) && w != start {
                prev.insert(w.clone(), v.clone());
                queue.push_back(w.clone());
            }
        }
    }
    scc.to_vec()
}
