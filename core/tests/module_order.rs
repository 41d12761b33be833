//! The module layering of `core`, read from its sources: no import circle anywhere in the crate,
//! and inside the store every `use` goes down the order written in `store/mod.rs`'s opening
//! comment (a subject uses the shared modules and the subjects listed before it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
        let mut push = |path: &[String], line: &str| {
            if let Some(to) = resolve(module, path, &modules)
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
