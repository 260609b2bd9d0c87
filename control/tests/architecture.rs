//! The architecture invariants of ARCHITECTURE.md that the source itself can
//! prove: which module may use which, where SQL lives, and what the shared
//! crate and the edge never depend on. They read files, so they run in
//! milliseconds and fail with the offending file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Control's top-level modules by layer: a module may use only modules of
/// lower layers. Siblings in one layer (`http`, `panel`, `link`, `jobs`) do
/// not know each other; `app` composes them; `cli` runs `app`.
const LAYERS: &[&[&str]] = &[
    &["error", "context", "secrets", "traffic", "progress"],
    &["config", "keys", "tasks"],
    &["db"],
    &["backup", "export", "demo"],
    &["http", "panel", "link", "jobs"],
    &["observe", "server"],
    &["app"],
    &["cli"],
];

fn control_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The file's code lines with their numbers: comments and doc comments out,
/// since a sentence naming a module is not a dependency.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(i, line)| (i + 1, line.to_owned()))
        .collect()
}

/// The top-level module a file of `control/src` belongs to.
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(control_src()).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_str().unwrap().trim_end_matches(".rs").to_owned()
}

/// The modules named after `crate::` in a line, including `crate::{a, b}`.
fn crate_uses(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            names.extend(
                group[..end]
                    .split(',')
                    .map(|part| part.trim().split("::").next().unwrap_or("").to_owned()),
            );
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    names
}

#[test]
fn control_modules_use_only_lower_layers() {
    let layer_of: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(layer, modules)| modules.iter().map(move |m| (*m, layer)))
        .collect();
    let mut wrong = Vec::new();
    for file in rust_files(&control_src()) {
        let module = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let own = *layer_of
            .get(module.as_str())
            .unwrap_or_else(|| panic!("module `{module}` has no layer in LAYERS"));
        for (number, line) in code_lines(&file) {
            for used in crate_uses(&line) {
                if used == module {
                    continue;
                }
                match layer_of.get(used.as_str()) {
                    Some(&layer) if layer < own => {}
                    _ => wrong.push(format!(
                        "{}:{number}: `{module}` uses `{used}`",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_db_modules_have_no_cycle() {
    let db = control_src().join("db");
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&db) {
        let relative = file.strip_prefix(&db).unwrap();
        let name = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if name == "mod" {
            continue;
        }
        // In a submodule's own files (`db/ingest/copy.rs`), `super::` is
        // that submodule; in its `mod.rs`, as in `db/x.rs`, it is `db`.
        let nested = relative.components().count() > 1 && !file.ends_with("mod.rs");
        let entry = uses.entry(name.clone()).or_default();
        for (_, line) in code_lines(&file) {
            for prefix in [
                "crate::db::",
                if nested { "super::super::" } else { "super::" },
            ] {
                let mut rest = line.as_str();
                while let Some(at) = rest.find(prefix) {
                    rest = &rest[at + prefix.len()..];
                    let used: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !used.is_empty() && used != name && used != "super" {
                        entry.insert(used);
                    }
                }
            }
        }
    }
    // Depth-first search; a module met again on the current path closes a cycle.
    fn visit(
        module: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if !done.insert(module.to_owned()) {
            return None;
        }
        path.push(module.to_owned());
        for next in uses.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, uses, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in uses.keys() {
        if let Some(cycle) = visit(module, &uses, &mut Vec::new(), &mut done) {
            panic!("db modules in a cycle: {}", cycle.join(" -> "));
        }
    }
    assert!(uses.contains_key("licenses") && uses.contains_key("sessions"));
}

#[test]
fn sql_lives_only_in_the_db_module() {
    const SQL: [&str; 7] = [
        "sqlx::query",
        "query_as(",
        "query_scalar(",
        "sqlx::raw_sql",
        "QueryBuilder",
        "PgListener",
        "copy_in_raw",
    ];
    let db = control_src().join("db");
    let mut found = Vec::new();
    for file in rust_files(&control_src()) {
        if file.starts_with(&db) {
            continue;
        }
        for (number, line) in code_lines(&file) {
            if let Some(pattern) = SQL.iter().find(|p| line.contains(*p)) {
                found.push(format!("{}:{number}: {pattern}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL outside control/src/db:\n{}",
        found.join("\n")
    );
}

/// Every package `root` depends on, directly or not, by name (from
/// Cargo.lock, which also lists dev-dependencies: a strict superset).
fn dependency_closure(root: &str) -> BTreeSet<String> {
    let lock: toml::Table = fs::read_to_string(workspace().join("Cargo.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in lock["package"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let listed = package
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            // "name" or "name version" when several versions are locked.
            .map(|d| d.as_str().unwrap().split(' ').next().unwrap().to_owned());
        deps.entry(name).or_default().extend(listed);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(name) = todo.pop() {
        for dep in deps.get(&name).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    assert!(!seen.is_empty(), "{root} not found in Cargo.lock");
    seen
}

#[test]
fn the_shared_crate_depends_on_no_runtime_framework_driver_or_network_stack() {
    let closure = dependency_closure("latchkey-shared");
    let forbidden = [
        "tokio", "axum", "hyper", "sqlx", "quinn", "rustls", "reqwest",
    ];
    let found: Vec<_> = forbidden.iter().filter(|f| closure.contains(**f)).collect();
    assert!(found.is_empty(), "latchkey-shared pulls in {found:?}");
}

#[test]
fn the_edge_never_talks_to_postgresql() {
    let closure = dependency_closure("latchkey-edge");
    assert!(closure.contains("latchkey-shared"));
    for driver in ["sqlx", "sqlx-postgres", "tokio-postgres", "postgres"] {
        assert!(!closure.contains(driver), "latchkey-edge pulls in {driver}");
    }
}

#[test]
fn the_client_library_pulls_in_no_server_side() {
    let closure = dependency_closure("latchkey-client");
    assert!(closure.contains("latchkey-shared"));
    for server in ["sqlx", "axum", "quinn", "latchkey-edge", "latchkey-control"] {
        assert!(
            !closure.contains(server),
            "latchkey-client pulls in {server}"
        );
    }
}

#[test]
fn no_private_signing_key_reaches_an_edge() {
    let mut found = Vec::new();
    for file in rust_files(&workspace().join("edge").join("src")) {
        for (number, line) in code_lines(&file) {
            if line.contains("SigningKeyPair") {
                found.push(format!("{}:{number}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the edge names SigningKeyPair:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_module_parser_reads_both_use_forms() {
    assert_eq!(crate_uses("use crate::db::licenses;"), ["db"]);
    assert_eq!(
        crate_uses("use crate::{app, demo, keys};"),
        ["app", "demo", "keys"]
    );
    assert_eq!(
        crate_uses("let x = crate::link::start(crate::db::connect());"),
        ["link", "db"]
    );
}
