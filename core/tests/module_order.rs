//! The module layering of every crate of the workspace, read from its sources.
//!
//! In each crate (its library, and each binary's own modules separately): no import circle, and
//! every `use` and path goes down the crate's own order, written where the crate starts (the
//! opening comment of `src/lib.rs`; of `src/main.rs`, or another binary's root file, for a binary's
//! own modules) as lines `//! N. \`module::path\`: …`, lowest first, paths from the crate root. A
//! module uses only the modules listed before it, and every module is listed. A module folder may
//! write its own order in the same form (core's store, in `store/mod.rs`, paths from the folder);
//! its modules are then listed there, and the crate's order places the folder as one. A module of
//! such a folder never uses the folder's own module (its facade), but the module that defines the
//! item. The crate root's own items are for every module (a circle through the root is still a
//! circle). A crate of a single module file needs no order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, `crate::store::ledger`, as its segments.
type Module = Vec<String>;

/// One dependency: from a module to another, and where it is written.
#[derive(Debug, Clone)]
struct Edge {
    from: Module,
    to: Module,
    at: String,
}

fn module_of(relative: &Path) -> Module {
    let mut segments = vec!["crate".to_owned()];
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let name = part.strip_suffix(".rs").unwrap_or(part);
        if last && (name == "lib" || name == "mod") {
            break;
        }
        segments.push(name.to_owned());
    }
    segments
}

/// Every `.rs` file under `src`, as (module, text).
fn sources(src: &Path) -> Vec<(Module, String)> {
    fn walk(dir: &Path, src: &Path, out: &mut Vec<(Module, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read the source directory")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                let relative = path.strip_prefix(src).expect("under src");
                out.push((module_of(relative), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(src, src, &mut out);
    out
}

/// The code of a file without comments and without its `#[cfg(test)]` modules (whose `super`
/// is the file's own module, and whose uses are not the module's dependencies).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.get(i + 1).is_some_and(|next| {
                let next = next.trim_start();
                next.starts_with("mod ") && next.trim_end().ends_with(';')
            })
        {
            i += 2;
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            let mut depth = 0_i32;
            let mut j = i + 1;
            loop {
                depth += lines[j].matches('{').count() as i32;
                depth -= lines[j].matches('}').count() as i32;
                if depth == 0 && lines[j].contains('}') || j + 1 == lines.len() {
                    break;
                }
                j += 1;
            }
            i = j + 1;
            continue;
        }
        if !trimmed.starts_with("//") {
            out.push((i + 1, lines[i].to_owned()));
        }
        i += 1;
    }
    out
}

/// `a::{b, c::{d, e as f}, self}` as full paths (`a::b`, `a::c::d`, `a::c::e`, `a`).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let renamed = regex::Regex::new(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*").expect("a pattern");
    let tree: String = renamed
        .replace_all(tree, "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    fn go(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').expect("a closing brace")];
            let mut base = prefix.to_vec();
            base.extend(head);
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&base, &inner[start..], out);
        } else if !tree.is_empty() {
            let mut path = prefix.to_vec();
            path.extend(
                tree.split("::")
                    .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                    .map(str::to_owned),
            );
            out.push(path);
        }
    }
    let mut out = Vec::new();
    go(&[], &tree, &mut out);
    out
}

/// The module a path names from inside `from`: its longest prefix that is a module of the
/// crate; `None` for another crate's path.
fn resolve(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let (mut base, rest): (Module, &[String]) = match path.first()?.as_str() {
        "crate" => (vec!["crate".to_owned()], &path[1..]),
        "self" => (from.clone(), &path[1..]),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            (
                from[..from.len().saturating_sub(ups)].to_vec(),
                &path[ups..],
            )
        }
        first => {
            let mut child = from.clone();
            child.push(first.to_owned());
            if !modules.contains(&child) {
                return None;
            }
            (from.clone(), path)
        }
    };
    for segment in rest {
        let mut next = base.clone();
        next.push(segment.clone());
        if !modules.contains(&next) {
            break;
        }
        base = next;
    }
    Some(base)
}

/// For each code line, how many inline modules (`mod x { … }`, not a test module) enclose it.
fn inline_depths(lines: &[(usize, String)]) -> BTreeMap<usize, usize> {
    let opens =
        regex::Regex::new(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+[A-Za-z_][A-Za-z0-9_]*\s*\{")
            .expect("a pattern");
    let mut depths = BTreeMap::new();
    let (mut braces, mut open) = (0_i32, Vec::new());
    for (n, line) in lines {
        if opens.is_match(line) {
            open.push(braces);
        }
        depths.insert(*n, open.len());
        braces += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        while open.last().is_some_and(|&at| braces <= at) {
            open.pop();
        }
    }
    depths
}

/// A path written inside `depth` inline modules, as seen from the file's module; `None` when it
/// stays inside the file.
fn outside_inline(path: &[String], depth: usize) -> Option<Vec<String>> {
    if depth == 0 || path.first().is_some_and(|s| s == "crate") {
        return Some(path.to_vec());
    }
    let ups = path.iter().take_while(|s| *s == "super").count();
    (ups > depth).then(|| path[depth..].to_vec())
}

fn edges(files: &[(Module, String)]) -> Vec<Edge> {
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let inline = regex::Regex::new(r"\b(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+")
        .expect("a pattern");
    let mut found = Vec::new();
    for (module, text) in files {
        let name = module.join("::");
        let lines = code_lines(text);
        let joined: String = lines
            .iter()
            .map(|(n, l)| format!("{n}\u{1}{l}\n"))
            .collect();
        let depths = inline_depths(&lines);
        let mut push = |path: &[String], line: &str| {
            let depth = line
                .parse::<usize>()
                .ok()
                .and_then(|n| depths.get(&n).copied())
                .unwrap_or(0);
            let Some(path) = outside_inline(path, depth) else {
                return;
            };
            if let Some(to) = resolve(module, &path, &modules)
                && &to != module
            {
                found.push(Edge {
                    from: module.clone(),
                    to,
                    at: format!("{name} line {line}"),
                });
            }
        };
        // `use` statements, possibly over several lines.
        let mut rest = joined.as_str();
        while let Some(start) = rest.find("use ") {
            let before = &rest[..start];
            let is_statement = before
                .rsplit('\n')
                .next()
                .map(|l| l.split('\u{1}').nth(1).unwrap_or(""))
                .is_some_and(|l| {
                    let l = l.trim();
                    l.is_empty() || l == "pub" || l.starts_with("pub(")
                });
            let Some(end) = rest[start..].find(';') else {
                break;
            };
            if is_statement {
                let line = before
                    .rsplit('\n')
                    .next()
                    .and_then(|l| l.split('\u{1}').next())
                    .unwrap_or("?")
                    .to_owned();
                let statement: String = rest[start + 4..start + end]
                    .lines()
                    .map(|l| l.split('\u{1}').next_back().unwrap_or(l))
                    .collect();
                for path in expand(&statement) {
                    push(&path, &line);
                }
            }
            rest = &rest[start + end..];
        }
        // Paths written in the code.
        for (n, line) in &lines {
            if line.trim_start().starts_with("use ") || line.trim_start().starts_with("pub use ") {
                continue;
            }
            for m in inline.find_iter(line) {
                let path: Vec<String> = m.as_str().split("::").map(str::to_owned).collect();
                push(&path, &n.to_string());
            }
        }
    }
    found
}

/// Every circle of modules (a strongly connected component of more than one), with its edges.
fn circles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let graph: BTreeMap<&Module, BTreeSet<&Module>> =
        edges.iter().fold(BTreeMap::new(), |mut g, e| {
            g.entry(&e.from).or_default().insert(&e.to);
            g
        });
    let reaches = |from: &Module| -> BTreeSet<Module> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert((*next).clone()) {
                    stack.push((*next).clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<Module, BTreeSet<Module>> =
        graph.keys().map(|m| ((*m).clone(), reaches(m))).collect();
    let mut components: Vec<BTreeSet<Module>> = Vec::new();
    for (module, reached) in &reach {
        if !reached.contains(module) || components.iter().any(|c| c.contains(module)) {
            continue;
        }
        let component: BTreeSet<Module> = reached
            .iter()
            .filter(|other| reach.get(*other).is_some_and(|r| r.contains(module)))
            .cloned()
            .collect();
        components.push(component);
    }
    components
        .into_iter()
        .map(|c| {
            edges
                .iter()
                .filter(|e| c.contains(&e.from) && c.contains(&e.to))
                .cloned()
                .collect()
        })
        .collect()
}

/// The store's order: `N. \`path\`` lines of `store/mod.rs`'s opening comment, lowest first.
fn store_order(mod_rs: &str) -> Vec<Module> {
    mod_rs
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .filter_map(|l| {
            let l = l.trim_start_matches("//!").trim_start();
            let (number, rest) = l.split_once(". `")?;
            number.parse::<u32>().ok()?;
            let path = rest.split('`').next()?;
            let mut module = vec!["crate".to_owned(), "store".to_owned()];
            module.extend(path.split("::").map(str::to_owned));
            Some(module)
        })
        .collect()
}

/// Each use inside the store that does not go down the order, or that reaches the store's
/// facade (`store/mod.rs`, which is above everything); and each store module the order leaves out.
fn order_violations(files: &[(Module, String)], edges: &[Edge], order: &[Module]) -> Vec<String> {
    let store: Module = vec!["crate".to_owned(), "store".to_owned()];
    let rank = |m: &Module| order.iter().position(|o| o == m);
    let mut violations = Vec::new();
    for (module, _) in files {
        if module.starts_with(&store) && module != &store && rank(module).is_none() {
            violations.push(format!(
                "{} is not in the order of store/mod.rs",
                module.join("::")
            ));
        }
    }
    for edge in edges {
        if !edge.from.starts_with(&store) || edge.from == store {
            continue;
        }
        if edge.to == store {
            violations.push(format!(
                "{}: uses the store's facade; use the module that defines the item",
                edge.at
            ));
            continue;
        }
        if let (Some(from), Some(to)) = (rank(&edge.from), rank(&edge.to))
            && to >= from
        {
            violations.push(format!(
                "{}: {} uses {}, which comes after it in store/mod.rs's order",
                edge.at,
                edge.from.join("::"),
                edge.to.join("::")
            ));
        }
    }
    violations
}

fn core_sources() -> Vec<(Module, String)> {
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn describe(circle: &[Edge]) -> String {
    circle
        .iter()
        .map(|e| format!("{} -> {} ({})", e.from.join("::"), e.to.join("::"), e.at))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn core_has_no_import_circle() {
    let files = core_sources();
    let edges = edges(&files);
    assert!(
        edges
            .iter()
            .any(|e| e.from.join("::") == "crate::store::ledger::totals"
                && e.to.join("::") == "crate::store::payouts"),
        "the reader sees the store's uses (totals use the payout states)"
    );
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "import circles in core: {}",
        found
            .iter()
            .map(|c| describe(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

#[test]
fn every_store_use_goes_down_the_written_order() {
    let files = core_sources();
    let mod_rs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/mod.rs"))
            .expect("read store/mod.rs");
    let order = store_order(&mod_rs);
    assert!(
        order.len() >= 10,
        "the order is written in store/mod.rs: {order:?}"
    );
    let violations = order_violations(&files, &edges(&files), &order);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The checks see a circle, an upward use and a use of the facade when there is one.
#[test]
fn the_checks_catch_a_circle_an_upward_use_and_the_facade() {
    let module = |p: &str| p.split("::").map(str::to_owned).collect::<Module>();
    let files = vec![
        (module("crate"), "pub mod store;\npub mod rewards;\n".to_owned()),
        (
            module("crate::rewards"),
            "use crate::store::ledger::LedgerLine;\n".to_owned(),
        ),
        (module("crate::store"), "pub mod ledger;\npub mod db;\n".to_owned()),
        (
            module("crate::store::db"),
            "use super::{Store, ledger::Balance};\n".to_owned(),
        ),
        (
            module("crate::store::ledger"),
            "use crate::rewards::{\n    credits_by_address,\n};\nfn f() { crate::store::db::helper(); }\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::store::db::X;\n}\n"
                .to_owned(),
        ),
    ];
    let edges = edges(&files);
    let found = circles(&edges);
    assert_eq!(found.len(), 1, "{edges:?}");
    assert!(describe(&found.concat()).contains("crate::rewards -> crate::store::ledger"));
    assert!(describe(&found.concat()).contains("crate::store::db -> crate::store::ledger"));
    let order = vec![module("crate::store::db"), module("crate::store::ledger")];
    let violations = order_violations(&files, &edges, &order);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("crate::store::db uses crate::store::ledger")),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("facade")),
        "{violations:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Every crate of the workspace

/// One module tree: a crate's library or one of its binaries, with the file of each module.
#[derive(Debug)]
struct Tree {
    /// `jobs (lib)`, `tests (bin ws-send)`.
    name: String,
    /// The root file, relative to the workspace: `jobs/src/lib.rs`.
    root: String,
    files: Vec<(Module, String)>,
    paths: BTreeMap<Module, String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core is in the workspace")
        .to_path_buf()
}

/// The members of the workspace, as written in its Cargo.toml.
fn members(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let start = manifest.find("members").expect("a members list");
    let list = &manifest[start..];
    let list = &list[list.find('[').expect("[")..list.find(']').expect("]")];
    regex::Regex::new(r#""([^"]+)""#)
        .expect("a pattern")
        .captures_iter(list)
        .map(|c| c[1].to_owned())
        .collect()
}

/// The crate roots of the crate in `dir`: its library (`None`) and each binary (`Some(name)`),
/// from `[lib]` and `[[bin]]` paths of its Cargo.toml and the places cargo finds them itself.
fn crate_roots(dir: &Path) -> Vec<(Option<String>, PathBuf)> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    let mut lib = None;
    let mut bins: Vec<(String, PathBuf)> = Vec::new();
    let mut section = String::new();
    let mut name = None;
    let mut flush = |section: &str, name: &mut Option<String>, path: Option<String>| {
        if let Some(path) = path {
            match section {
                "[lib]" => lib = Some(dir.join(path)),
                "[[bin]]" => {
                    let fallback = Path::new(&path)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    bins.push((name.take().unwrap_or(fallback), dir.join(path)));
                }
                _ => {}
            }
        }
    };
    let mut path = None;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&section, &mut name, path.take());
            section = line.to_owned();
            name = None;
        } else if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_owned();
            match key.trim() {
                "name" => name = Some(value),
                "path" => path = Some(value),
                _ => {}
            }
        }
    }
    flush(&section, &mut name, path.take());
    let lib = lib.or_else(|| Some(dir.join("src/lib.rs")).filter(|p| p.is_file()));
    let main = dir.join("src/main.rs");
    if main.is_file() && !bins.iter().any(|(_, p)| p == &main) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        bins.push((name, main));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("src/bin"))
        .into_iter()
        .flatten()
        .map(|e| e.expect("a directory entry").path())
        .filter_map(|p| {
            if p.extension().is_some_and(|e| e == "rs") {
                Some(p)
            } else if p.join("main.rs").is_file() {
                Some(p.join("main.rs"))
            } else {
                None
            }
        })
        .collect();
    found.sort();
    for path in found {
        if bins.iter().any(|(_, p)| p == &path) {
            continue;
        }
        let stem = if path.ends_with("main.rs") {
            path.parent().and_then(Path::file_name)
        } else {
            path.file_stem()
        };
        let name = stem
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        bins.push((name, path));
    }
    lib.map(|p| (None, p))
        .into_iter()
        .chain(bins.into_iter().map(|(n, p)| (Some(n), p)))
        .collect()
}

/// The modules of one crate root: the root file and every file its `mod x;` declarations reach.
fn tree(name: String, root: &Path, workspace: &Path) -> Tree {
    let declared =
        regex::Regex::new(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;")
            .expect("a pattern");
    let relative = |p: &Path| {
        p.strip_prefix(workspace)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut tree = Tree {
        name,
        root: relative(root),
        files: Vec::new(),
        paths: BTreeMap::new(),
    };
    // (file, its module, the folder of its `mod x;` files)
    let mut pending = vec![(
        root.to_path_buf(),
        vec!["crate".to_owned()],
        root.parent().expect("a folder").to_path_buf(),
    )];
    while let Some((file, module, folder)) = pending.pop() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        for (_, line) in code_lines(&text) {
            let Some(child) = declared.captures(&line) else {
                continue;
            };
            let child = &child[1];
            let mut child_module = module.clone();
            child_module.push(child.to_owned());
            let flat = folder.join(format!("{child}.rs"));
            let (child_file, child_folder) = if flat.is_file() {
                (flat, folder.join(child))
            } else {
                (folder.join(child).join("mod.rs"), folder.join(child))
            };
            pending.push((child_file, child_module, child_folder));
        }
        tree.paths.insert(module.clone(), relative(&file));
        tree.files.push((module, text));
    }
    tree.files.sort_by(|a, b| a.0.cmp(&b.0));
    tree
}

/// The module trees of the crate in `dir` (a member of the workspace at `workspace`).
fn crate_trees(dir: &Path, workspace: &Path) -> Vec<Tree> {
    let member = relative_name(dir, workspace);
    crate_roots(dir)
        .into_iter()
        .map(|(bin, root)| {
            let name = match bin {
                None => format!("{member} (lib)"),
                Some(bin) => format!("{member} (bin {bin})"),
            };
            tree(name, &root, workspace)
        })
        .collect()
}

fn relative_name(dir: &Path, workspace: &Path) -> String {
    dir.strip_prefix(workspace)
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned()
}

/// An order written in a module's opening comment: its `N. \`path\`` lines, as modules under
/// `owner`.
fn written_order(text: &str, owner: &Module) -> Vec<Module> {
    text.lines()
        .take_while(|l| l.starts_with("//!"))
        .filter_map(|l| {
            let l = l.trim_start_matches("//!").trim_start();
            let (number, rest) = l.split_once(". `")?;
            number.parse::<u32>().ok()?;
            let path = rest.split('`').next()?;
            let mut module = owner.clone();
            module.extend(path.split("::").map(str::to_owned));
            Some(module)
        })
        .collect()
}

/// The import circles of a tree, one message each.
fn tree_circles(tree: &Tree) -> Vec<String> {
    circles(&edges(&tree.files))
        .iter()
        .map(|c| format!("{}: import circle: {}", tree.name, describe(c)))
        .collect()
}

/// What breaks a tree's written orders: a missing order at the root of a tree of more than one
/// module, a module no order lists, an entry that names no module, a use that goes up an order
/// or reaches the module whose order lists the user.
fn tree_order_violations(tree: &Tree) -> Vec<String> {
    let modules: BTreeSet<&Module> = tree.files.iter().map(|(m, _)| m).collect();
    let orders: BTreeMap<&Module, Vec<Module>> = tree
        .files
        .iter()
        .map(|(m, text)| (m, written_order(text, m)))
        .filter(|(_, order)| !order.is_empty())
        .collect();
    let root: Module = vec!["crate".to_owned()];
    let file = |m: &Module| tree.paths.get(m).cloned().unwrap_or_else(|| m.join("::"));
    let path = |m: &Module, owner: &Module| m[owner.len()..].join("::");
    let mut violations = Vec::new();
    if modules.len() > 1 && !orders.contains_key(&root) {
        violations.push(format!(
            "{}: no module order; write it in the opening comment of {}, a line per module \
             from the crate root, lowest first: `//! 1. \\`module::path\\`: what it holds`",
            tree.name, tree.root
        ));
        return violations;
    }
    // The order that lists a module: the nearest enclosing module that writes one.
    let owner_of = |m: &Module| -> Option<&Module> {
        (1..m.len())
            .rev()
            .map(|n| &m[..n])
            .find_map(|prefix| orders.keys().find(|o| o.as_slice() == prefix).copied())
    };
    for module in &modules {
        if let Some(owner) = owner_of(module)
            && !orders[owner].contains(module)
        {
            violations.push(format!(
                "{}: {} is not in the order of {}; list `{}` there",
                tree.name,
                module.join("::"),
                file(owner),
                path(module, owner)
            ));
        }
    }
    for (owner, order) in &orders {
        for entry in order {
            if !modules.contains(entry) {
                violations.push(format!(
                    "{}: the order of {} lists `{}`, which is not a module of it (a binary \
                     is a crate of its own: its modules, if any, are ordered in its root file)",
                    tree.name,
                    file(owner),
                    path(entry, owner)
                ));
            }
        }
    }
    for edge in edges(&tree.files) {
        for (owner, order) in &orders {
            if !edge.from.starts_with(owner) || &edge.from == *owner {
                continue;
            }
            if &edge.to == *owner && owner.len() > 1 {
                violations.push(format!(
                    "{}: {}: uses {}, whose order lists it; use the module that defines the item",
                    tree.name,
                    edge.at,
                    owner.join("::")
                ));
                continue;
            }
            // Where a module stands in the order: its own entry, or its nearest listed parent's.
            let rank = |m: &Module| {
                (owner.len() + 1..=m.len())
                    .rev()
                    .find_map(|n| order.iter().position(|o| o.as_slice() == &m[..n]))
            };
            if let (Some(from), Some(to)) = (rank(&edge.from), rank(&edge.to))
                && to >= from
                && from != to
            {
                violations.push(format!(
                    "{}: {}: {} uses {}, which comes after it in the order of {}",
                    tree.name,
                    edge.at,
                    edge.from.join("::"),
                    edge.to.join("::"),
                    file(owner)
                ));
            }
        }
    }
    violations
}

fn workspace_trees() -> Vec<Tree> {
    let root = workspace_root();
    let members = members(&root);
    for expected in ["core", "node", "jobs", "operator", "tests", "validator"] {
        assert!(
            members.iter().any(|m| m == expected),
            "the workspace's members are read from its Cargo.toml: {members:?}"
        );
    }
    members
        .iter()
        .flat_map(|m| crate_trees(&root.join(m), &root))
        .collect()
}

#[test]
fn no_crate_has_an_import_circle() {
    let trees = workspace_trees();
    assert!(
        trees
            .iter()
            .any(|t| t.name == "core (lib)" && t.files.len() > 20),
        "the crates' modules are found: {:?}",
        trees.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    assert!(
        trees.iter().any(|t| t.name == "tests (bin ws-send)"),
        "the binaries are found: {:?}",
        trees.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let found: Vec<String> = trees.iter().flat_map(tree_circles).collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn every_crate_goes_down_its_written_order() {
    let trees = workspace_trees();
    let core = trees
        .iter()
        .find(|t| t.name == "core (lib)")
        .expect("core's library");
    assert!(
        written_order(&core.files[0].1, &vec!["crate".to_owned()]).len() >= 10,
        "core's order is written in {}",
        core.root
    );
    let violations: Vec<String> = trees.iter().flat_map(tree_order_violations).collect();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// A made-up crate in a fresh folder: `files` as (path under the crate, text).
fn made_up_crate(name: &str, files: &[(&str, &str)]) -> Vec<Tree> {
    let workspace = std::env::temp_dir().join(format!(
        "minerpool-module-order-{}-{name}",
        std::process::id()
    ));
    let dir = workspace.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("create a folder");
        std::fs::write(path, text).expect("write a file");
    }
    let trees = crate_trees(&dir, &workspace);
    std::fs::remove_dir_all(&workspace).expect("remove the made-up crate");
    trees
}

fn all<F: Fn(&Tree) -> Vec<String>>(trees: &[Tree], check: F) -> String {
    trees.iter().flat_map(check).collect::<Vec<_>>().join("\n")
}

/// In a library, a binary of its own and a nested module folder, the checks see a circle; and
/// an upward use, a use of the facade, an unlisted module, a stale entry and a missing order.
#[test]
fn the_checks_catch_circles_and_upward_uses_in_every_kind_of_crate() {
    // A library: `a` and `b` use each other; `b` is listed after `a` but `a` uses it.
    let trees = made_up_crate(
        "library",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"library\"\n\n[lib]\npath = \"src/lib.rs\"\n",
            ),
            (
                "src/lib.rs",
                "//! A crate.\n//!\n//! 1. `a`: one.\n//! 2. `b`: two.\n//! 3. `gone`: none.\n\n\
                 pub mod a;\npub mod b;\npub mod c;\n#[cfg(test)]\nmod tests;\npub struct Root;\n",
            ),
            ("src/a.rs", "use crate::b::B;\npub struct A;\n"),
            (
                "src/b.rs",
                "use super::a::A;\npub struct B;\npub mod inner {\n    use super::B;\n}\n",
            ),
            ("src/c.rs", "use crate::Root;\n"),
            ("src/tests.rs", "use crate::c::*;\n"),
        ],
    );
    assert_eq!(trees.len(), 1, "{trees:?}");
    assert_eq!(
        trees[0].files.len(),
        4,
        "the test module is no module: {trees:?}"
    );
    assert!(
        edges(&trees[0].files)
            .iter()
            .all(|e| e.from.join("::") != "crate::b" || e.to.join("::") == "crate::a"),
        "`super` in an inline module is the file's own module"
    );
    let circles = all(&trees, tree_circles);
    assert!(
        circles.contains("library (lib): import circle")
            && circles.contains("crate::a -> crate::b")
            && circles.contains("crate::b -> crate::a"),
        "{circles}"
    );
    let violations = all(&trees, tree_order_violations);
    for expected in [
        "crate::a uses crate::b, which comes after it in the order of library/src/lib.rs",
        "crate::c is not in the order of library/src/lib.rs; list `c` there",
        "lists `gone`, which is not a module",
    ] {
        assert!(violations.contains(expected), "{expected}: {violations}");
    }
    assert!(!violations.contains("crate::b uses"), "{violations}");
    assert!(
        !violations.contains("uses crate,"),
        "the crate root's items are for every module: {violations}"
    );

    // A binary-only crate without an order, whose two modules use each other.
    let trees = made_up_crate(
        "binary",
        &[
            ("Cargo.toml", "[package]\nname = \"binary\"\n"),
            (
                "src/main.rs",
                "//! A tool.\n\nmod x;\nmod y;\nfn main() {}\n",
            ),
            ("src/x.rs", "pub fn f() { super::y::g() }\n"),
            ("src/y.rs", "use crate::x::f;\npub fn g() {}\n"),
        ],
    );
    let circles = all(&trees, tree_circles);
    assert!(
        circles.contains("binary (bin binary): import circle") && circles.contains("crate::x"),
        "{circles}"
    );
    let violations = all(&trees, tree_order_violations);
    assert!(
        violations.contains("binary (bin binary): no module order; write it in the opening comment of binary/src/main.rs"),
        "{violations}"
    );

    // A library with a nested folder that writes its own order, and a binary with a module of
    // its own beside it; single-file binaries need no order.
    let trees = made_up_crate(
        "nested",
        &[
            ("Cargo.toml", "[package]\nname = \"nested\"\n"),
            (
                "src/lib.rs",
                "//! 1. `outer`: the folder.\n//! 2. `top`: above it.\n\npub mod outer;\npub mod top;\n",
            ),
            (
                "src/outer/mod.rs",
                "//! 1. `p`: low.\n//! 2. `q`: high.\n\npub mod p;\npub mod q;\npub use p::P;\n",
            ),
            ("src/outer/p.rs", "use super::q::Q;\npub struct P;\n"),
            (
                "src/outer/q.rs",
                "use crate::outer::p::P;\nuse super::P as Again;\npub struct Q;\n",
            ),
            ("src/top.rs", "use crate::outer::P;\n"),
            (
                "src/bin/tool/main.rs",
                "mod helper;\nuse helper::h;\nfn main() { h() }\n",
            ),
            ("src/bin/tool/helper.rs", "pub fn h() { crate::main() }\n"),
            ("src/bin/single.rs", "fn main() {}\n"),
        ],
    );
    let names: Vec<&str> = trees.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["nested (lib)", "nested (bin single)", "nested (bin tool)"],
        "{trees:?}"
    );
    let circles = all(&trees, tree_circles);
    assert!(
        circles.contains("nested (lib): import circle")
            && circles.contains("crate::outer::p -> crate::outer::q")
            && circles.contains("crate::outer::q -> crate::outer::p"),
        "{circles}"
    );
    assert!(
        circles.contains("nested (bin tool): import circle")
            && circles.contains("crate::helper -> crate"),
        "{circles}"
    );
    let violations = all(&trees, tree_order_violations);
    for expected in [
        "crate::outer::p uses crate::outer::q, which comes after it in the order of nested/src/outer/mod.rs",
        "crate::outer::q line 2: uses crate::outer, whose order lists it",
        "nested (bin tool): no module order; write it in the opening comment of nested/src/bin/tool/main.rs",
    ] {
        assert!(violations.contains(expected), "{expected}: {violations}");
    }
    assert!(!violations.contains("crate::top uses"), "{violations}");
    assert!(!violations.contains("nested (bin single)"), "{violations}");
}
