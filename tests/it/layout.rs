//! The layout of `src/` as docs/ARCHITECTURE.md draws it, checked on the source itself:
//!
//! - dependencies point down the floors, never up, and `socketio/` and `redis_bridge/` (one
//!   floor, side by side) never import each other;
//! - no import circle: between top-level modules, and between files. A file's import of a
//!   name resolves (through re-exports) to the file that defines it. A file using what one of
//!   its ancestors' own `mod.rs` defines is not counted: a folder's `mod.rs` is the core its
//!   files build on;
//! - no source file over 700 lines (blank lines and comments included) outside its tests;
//! - nothing in the repository points outside it.
//!
//! The parser is deliberately small: it strips comments and literals, skips `#[cfg(test)]`
//! modules, and reads `use` trees and `crate::` / `super::` / `self::` paths.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The floor of each top-level module of the library, lowest first.
const FLOORS: &[(&str, u8)] = &[
    ("protocol", 1),
    ("config", 1),
    ("listener", 1),
    ("metrics", 1),
    ("bus", 2),
    ("connection", 2),
    ("net", 2),
    ("tls", 2),
    ("engineio", 3),
    ("socketio", 4),
    ("redis_bridge", 4),
    ("shard", 5),
    ("server", 5),
    ("gateway", 5),
    ("auth", 5),
    ("api", 5),
    ("ops", 5),
    ("conformance", 5),
];

/// Top-level modules on one floor that must not know each other.
const STRANGERS: &[(&str, &str)] = &[("socketio", "redis_bridge")];

const MAX_LINES: usize = 700;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One source file of the library: its module path and its code without tests, comments and
/// literals.
struct Source {
    file: String,
    module: Vec<String>,
    code: String,
}

fn library_sources() -> Vec<Source> {
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter(|f| {
            let rel = f.strip_prefix(&src).unwrap();
            !rel.starts_with("bin") && rel != Path::new("main.rs")
        })
        .map(|path| {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let (code, _) = without_tests(&strip(&text));
            Source {
                module: module_path(&rel),
                file: format!("src/{rel}"),
                code,
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `socketio/mod.rs` -> `[socketio]`, `socketio/socket.rs` -> `[socketio, socket]`.
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code with comments, string and char literals blanked (newlines kept).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let open = i + 1 + hashes;
            if b.get(open) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let end = text[open + 1..]
                .find(&close)
                .map_or(b.len(), |p| open + 1 + p + close.len());
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime, which is kept.
            let lit = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p + 1)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 3)
            } else {
                None
            };
            match lit {
                Some(end) => {
                    blank(&mut out, &b[i..end]);
                    i = end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Removes `#[cfg(test)]` items (test modules, test-only helpers); returns the rest and how
/// many lines it has.
fn without_tests(code: &str) -> (String, usize) {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its closing brace, or at `;` for a one-line item.
        let open = item.find('{');
        let semi = item.find(';');
        let end = match (open, semi) {
            (Some(o), Some(s)) if s < o => s + 1,
            (Some(o), _) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (k, c) in item[o..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = o + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    let lines = out.lines().count();
    (out, lines)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `use` statements of `code`: (is a re-export, each path of its tree, split on `::`).
fn use_statements(code: &str) -> Vec<(bool, Vec<Vec<String>>)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("use ") {
        let at = from + p;
        from = at + 4;
        let before = code[..at].chars().last();
        if before.is_some_and(is_ident) {
            continue;
        }
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let prefix = code[line_start..at].trim();
        if !(prefix.is_empty() || prefix.starts_with("pub")) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        let tree: String = code[at + 4..at + end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        found.push((prefix.starts_with("pub"), expand(&tree)));
        from = at + end;
    }
    found
}

/// Expands a use tree (`a::{b, c::{d as e, self}}`) into its paths; `x as y` keeps `x`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let mut plain = String::new();
    let mut words = tree.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if word == "as" {
            // Drop the alias, keep what follows it (`,` or `}`).
            if let Some(alias) = words.next() {
                plain.extend(alias.chars().skip_while(|&c| is_ident(c)));
            }
            continue;
        }
        plain.push_str(word);
    }
    fn go(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let (head, group) = match tree.find('{') {
            Some(open) => (&tree[..open], Some(&tree[open + 1..tree.len() - 1])),
            None => (tree, None),
        };
        let mut path: Vec<String> = prefix.to_vec();
        path.extend(
            head.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        let Some(group) = group else {
            if path.last().is_some_and(|s| s == "self") {
                path.pop();
            }
            out.push(path);
            return;
        };
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    go(&path, &group[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < group.len() {
            go(&path, &group[start..], out);
        }
    }
    let mut out = Vec::new();
    go(&[], &plain, &mut out);
    out
}

/// Paths written inline in code: `crate::a::b`, `super::a`, `self::a`.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(p) = code[from..].find(root) {
            let at = from + p;
            from = at + root.len();
            if code[..at]
                .chars()
                .last()
                .is_some_and(|c| is_ident(c) || c == ':')
            {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            found.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    found
}

/// Everything the layout checks need, built from the sources.
struct Crate {
    sources: Vec<Source>,
    by_module: HashMap<Vec<String>, usize>,
    /// Names each module defines.
    defines: Vec<BTreeSet<String>>,
    /// Names each module re-exports, and from where (absolute paths).
    reexports: Vec<HashMap<String, Vec<String>>>,
}

impl Crate {
    fn load() -> Crate {
        let sources = library_sources();
        let by_module = sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.module.clone(), i))
            .collect();
        let mut krate = Crate {
            sources,
            by_module,
            defines: Vec::new(),
            reexports: Vec::new(),
        };
        for i in 0..krate.sources.len() {
            let code = &krate.sources[i].code;
            let mut defined = BTreeSet::new();
            let words: Vec<&str> = code
                .split(|c: char| !is_ident(c))
                .filter(|w| !w.is_empty())
                .collect();
            for pair in words.windows(2) {
                if matches!(
                    pair[0],
                    "struct"
                        | "enum"
                        | "trait"
                        | "fn"
                        | "type"
                        | "const"
                        | "static"
                        | "mod"
                        | "union"
                ) {
                    defined.insert(pair[1].to_owned());
                }
            }
            let mut reexported = HashMap::new();
            for (public, paths) in use_statements(code) {
                if public {
                    for path in paths {
                        if let Some(abs) = krate.absolute(i, &path) {
                            reexported.insert(path.last().cloned().unwrap_or_default(), abs);
                        }
                    }
                }
            }
            krate.defines.push(defined);
            krate.reexports.push(reexported);
        }
        krate
    }

    /// `path` as written in file `i`, made absolute (without `crate`); `None` for paths into
    /// other crates.
    fn absolute(&self, i: usize, path: &[String]) -> Option<Vec<String>> {
        let here = &self.sources[i].module;
        let first = path.first()?;
        let mut abs: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => here.clone(),
            "super" => {
                let mut m = here.clone();
                m.pop();
                m
            }
            // A child module of this file, named without `self::`.
            child
                if self
                    .by_module
                    .contains_key(&[here.as_slice(), &[child.to_owned()]].concat()) =>
            {
                let mut m = here.clone();
                m.push(child.to_owned());
                return Some([m, path[1..].to_vec()].concat());
            }
            _ => return None,
        };
        let mut rest = &path[1..];
        while rest.first().is_some_and(|s| s == "super") {
            abs.pop();
            rest = &rest[1..];
        }
        abs.extend(rest.iter().cloned());
        Some(abs)
    }

    /// The file that defines what `abs` names: the longest module prefix, followed through
    /// re-exports.
    fn resolve(&self, abs: &[String], depth: usize) -> Option<usize> {
        let (module, rest) = (0..=abs.len())
            .rev()
            .find_map(|n| self.by_module.get(&abs[..n]).map(|&m| (m, &abs[n..])))?;
        let Some(name) = rest.first() else {
            return Some(module);
        };
        if self.defines[module].contains(name) || depth > 8 {
            return Some(module);
        }
        match self.reexports[module].get(name) {
            Some(target) => self.resolve(target, depth + 1).or(Some(module)),
            None => Some(module),
        }
    }

    /// The files each file imports from, with an example path for each edge.
    fn edges(&self) -> BTreeMap<usize, BTreeMap<usize, String>> {
        let mut edges: BTreeMap<usize, BTreeMap<usize, String>> = BTreeMap::new();
        for (i, source) in self.sources.iter().enumerate() {
            let uses = use_statements(&source.code);
            let paths = uses
                .iter()
                .filter(|(public, _)| !public)
                .flat_map(|(_, paths)| paths.iter().cloned())
                .chain(inline_paths(&source.code));
            for path in paths {
                let Some(abs) = self.absolute(i, &path) else {
                    continue;
                };
                let Some(target) = self.resolve(&abs, 0) else {
                    continue;
                };
                let target_module = &self.sources[target].module;
                // A file builds on what its ancestors' own files define.
                if target == i || source.module.starts_with(target_module) {
                    continue;
                }
                edges
                    .entry(i)
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| path.join("::"));
            }
        }
        edges
    }

    fn top(&self, i: usize) -> &str {
        self.sources[i].module.first().map_or("lib", String::as_str)
    }
}

fn floor(top: &str) -> u8 {
    FLOORS
        .iter()
        .find(|(m, _)| *m == top)
        .map_or(6, |(_, f)| *f)
}

/// The strongly connected components with more than one node (Tarjan).
fn circles<N: Ord + Copy>(nodes: &[N], edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        out: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Copy>(n: N, edges: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        let i = s.index.len();
        s.index.insert(n, i);
        s.low.insert(n, i);
        s.stack.push(n);
        s.on_stack.insert(n);
        for &m in edges.get(&n).into_iter().flatten() {
            if !s.index.contains_key(&m) {
                visit(m, edges, s);
                let low = s.low[&n].min(s.low[&m]);
                s.low.insert(n, low);
            } else if s.on_stack.contains(&m) {
                let low = s.low[&n].min(s.index[&m]);
                s.low.insert(n, low);
            }
        }
        if s.low[&n] == s.index[&n] {
            let mut group = Vec::new();
            while let Some(m) = s.stack.pop() {
                s.on_stack.remove(&m);
                group.push(m);
                if m == n {
                    break;
                }
            }
            if group.len() > 1 {
                s.out.push(group);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &n in nodes {
        if !s.index.contains_key(&n) {
            visit(n, edges, &mut s);
        }
    }
    s.out
}

#[test]
fn dependencies_point_down_the_floors() {
    let krate = Crate::load();
    let mut wrong = Vec::new();
    for (from, targets) in krate.edges() {
        for (to, path) in targets {
            let (a, b) = (krate.top(from), krate.top(to));
            let stranger = STRANGERS
                .iter()
                .any(|&(x, y)| (a, b) == (x, y) || (a, b) == (y, x));
            if a != b && (floor(b) > floor(a) || stranger) {
                wrong.push(format!(
                    "{} (floor {}) uses {path} from {} (floor {})",
                    krate.sources[from].file,
                    floor(a),
                    krate.sources[to].file,
                    floor(b)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_circles_between_modules_or_files() {
    let krate = Crate::load();
    let edges = krate.edges();
    assert!(
        edges.values().map(BTreeMap::len).sum::<usize>() > 50,
        "the parser must see the crate's imports"
    );
    let files: Vec<usize> = (0..krate.sources.len()).collect();
    let file_edges: BTreeMap<usize, BTreeSet<usize>> = edges
        .iter()
        .map(|(&f, t)| (f, t.keys().copied().collect()))
        .collect();
    let mut found: Vec<String> = circles(&files, &file_edges)
        .into_iter()
        .map(|group| {
            let names: Vec<String> = group
                .iter()
                .map(|&f| {
                    let uses: Vec<String> = edges[&f]
                        .iter()
                        .filter(|(t, _)| group.contains(t))
                        .map(|(t, p)| format!("{} via {p}", krate.sources[*t].file))
                        .collect();
                    format!("{} -> {}", krate.sources[f].file, uses.join(", "))
                })
                .collect();
            format!("files: {}", names.join("; "))
        })
        .collect();
    let tops: Vec<&str> = FLOORS.iter().map(|(m, _)| *m).chain(["lib"]).collect();
    let mut top_edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (&from, targets) in &edges {
        for &to in targets.keys() {
            let (a, b) = (krate.top(from), krate.top(to));
            if a != b {
                top_edges.entry(a).or_default().insert(b);
            }
        }
    }
    found.extend(
        circles(&tops, &top_edges)
            .into_iter()
            .map(|g| format!("modules: {g:?}")),
    );
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_is_over_700_lines_of_code() {
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    let mut long = Vec::new();
    for path in files {
        let (_, lines) = without_tests(&std::fs::read_to_string(&path).unwrap());
        if lines > MAX_LINES {
            long.push(format!("{}: {lines}", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} non-test lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_repository_points_nowhere_outside_itself() {
    let mut files = Vec::new();
    for dir in [
        "src",
        "tests",
        "benches",
        "examples",
        "docs",
        "deploy",
        "flamegraphs",
        "scripts",
        ".ci",
    ] {
        let dir = root().join(dir);
        if dir.exists() {
            walk_all(&dir, &mut files);
        }
    }
    files.push(root().join("README.md"));
    files.push(root().join("Cargo.toml"));
    let needles = [
        "../shared",
        "shared/protocol",
        "SOCKETIO.md",
        "shared/ARCHITECTURE",
    ];
    let mut found = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            // This file names what it looks for.
            if path.ends_with(file!().rsplit('/').next().unwrap()) {
                continue;
            }
            if needles.iter().any(|needle| line.contains(needle)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references outside the repository:\n{}",
        found.join("\n")
    );
}

/// Every file under `dir`, except installed packages and build output.
fn walk_all(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !matches!(
                name.as_ref(),
                "node_modules" | "target" | ".venv" | "results" | "__pycache__"
            ) {
                walk_all(&path, out);
            }
        } else if !name.ends_with(".svg") {
            out.push(path);
        }
    }
}

#[test]
fn the_parser_reads_use_trees_and_paths() {
    let paths = expand("super::{a::B, c::{self, D as E}, f}");
    assert_eq!(
        paths,
        vec![
            vec!["super", "a", "B"],
            vec!["super", "c"],
            vec!["super", "c", "D"],
            vec!["super", "f"]
        ]
    );
    let code =
        strip("let x = \"crate::fake\"; // super::fake\nuse crate::real::Thing;\nlet c = '{';");
    assert_eq!(
        use_statements(&code),
        vec![(
            false,
            vec![vec!["crate".to_owned(), "real".into(), "Thing".into()]]
        )]
    );
    assert_eq!(
        inline_paths("a(crate::x::y(), super::z)"),
        vec![vec!["crate", "x", "y"], vec!["super", "z"]]
    );
    let (kept, lines) =
        without_tests("fn a() {}\n#[cfg(test)]\nmod tests {\n fn b() { {} }\n}\nfn c() {}\n");
    assert!(kept.contains("fn a") && kept.contains("fn c") && !kept.contains("fn b"));
    assert_eq!(lines, 3);
}
