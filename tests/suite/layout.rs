//! The source tree's promise that modules depend one way: the graph of `crate::<module>`
//! references between the top-level modules of `src/` has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The library's source files under `dir`, without the unit tests' (`tests.rs` beside the
/// module it tests): those are compiled only under `cfg(test)`, so neither the layering nor
/// the training step's device reads concern them. (The helpers they share with this suite
/// live in tests/support/reference.rs.)
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_none_or(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The top-level modules a piece of source names as `crate::<module>`, in paths
/// (`crate::train::run::Run`) and grouped imports (`use crate::{config, data::{idx, cifar}}`).
fn crate_references(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let Some(group) = rest.trim_start().strip_prefix('{') else {
            out.insert(ident(rest));
            continue;
        };
        // The group's entries are split at its own commas, not at those of nested groups.
        let mut depth = 0;
        let mut entry_start = 0;
        for (j, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.insert(ident(&group[entry_start..j]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.insert(ident(&group[entry_start..j]));
                    entry_start = j + 1;
                }
                _ => {}
            }
        }
    }
    out.remove("");
    out
}

/// Top-level module -> the other top-level modules its files name.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // The crate roots (lib.rs, main.rs) are no layer.
    files.retain(|f| {
        !["lib.rs", "main.rs"].contains(&f.strip_prefix(src).unwrap().to_str().unwrap())
    });
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top_module(f.strip_prefix(src).unwrap()))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = top_module(file.strip_prefix(src).unwrap());
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        // Items of the crate root (`crate::slug`) are not a module's.
        deps.extend(
            crate_references(&text)
                .into_iter()
                .filter(|n| *n != module && modules.contains(n)),
        );
    }
    graph
}

fn top_module(rel: &Path) -> String {
    let first = rel.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// A cycle of the graph as a path, if it has one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    fn edge(g: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str) {
        g.entry(a.into()).or_default().insert(b.into());
    }
    let mut g = BTreeMap::new();
    edge(&mut g, "cli", "train");
    edge(&mut g, "train", "config");
    edge(&mut g, "config", "distill");
    assert_eq!(find_cycle(&g), None);
    edge(&mut g, "distill", "train");
    assert_eq!(
        find_cycle(&g),
        Some(
            vec!["train", "config", "distill", "train"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
}

#[test]
fn grouped_and_nested_imports_are_read() {
    let text = "use crate::{config::RunConfig, data::{idx, cifar::Cifar}, train};\n\
                use crate::models::Network;\n\
                let x = crate::stats::mean(&v);\n\
                use crate::{\n    optim,\n};";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(
        found,
        ["config", "data", "models", "optim", "stats", "train"]
    );
}

/// Each top-level module, the modules it may use, and why the layering is so. A module not
/// listed here fails the test, so a new one is placed on purpose.
const LAYERS: &[(&str, &[&str], &str)] = &[
    (
        "models",
        &[],
        "the networks are the base everything else builds on",
    ),
    ("device", &[], "choosing a backend needs nothing of lstmkd"),
    ("optim", &[], "optimisers and schedules act on any module"),
    ("stats", &[], "statistics over numbers"),
    (
        "seeds",
        &[],
        "the seeds of steps and samples, from numbers alone",
    ),
    (
        "data",
        &["seeds"],
        "datasets are read before any model exists",
    ),
    ("profile", &["models"], "times the parts of a step"),
    (
        "precision",
        &["device"],
        "the arithmetic a backbone trains in, and its loss scaling",
    ),
    (
        "distill",
        &["models", "precision", "profile", "seeds"],
        "the method's parts and its step know nothing of runs, files or configs",
    ),
    (
        "config",
        &["data", "device", "distill", "models", "optim", "precision"],
        "a config describes the parts; it runs nothing",
    ),
    (
        "train",
        &[
            "config",
            "data",
            "device",
            "distill",
            "models",
            "optim",
            "precision",
            "profile",
            "seeds",
        ],
        "a run puts data, models, losses and optimiser together; nothing it uses knows of it",
    ),
    (
        "deploy",
        &["distill", "models", "train"],
        "a deployed model is read from a run's checkpoint",
    ),
    (
        "eval",
        &["data", "deploy", "device", "train"],
        "evaluates checkpoints",
    ),
    (
        "predict",
        &["data", "deploy", "device", "train"],
        "classifies files with a checkpoint",
    ),
    (
        "interop",
        &["data", "deploy", "distill", "models", "train"],
        "imports and exports checkpoints",
    ),
    (
        "bench",
        &[
            "config",
            "data",
            "deploy",
            "device",
            "distill",
            "models",
            "precision",
            "profile",
            "stats",
            "train",
        ],
        "times steps of every kind",
    ),
    (
        "experiment",
        &[
            "config", "data", "distill", "eval", "models", "optim", "stats", "train",
        ],
        "a suite runs and evaluates runs and sums them up",
    ),
    (
        "cli",
        &[
            "bench",
            "config",
            "data",
            "deploy",
            "device",
            "distill",
            "eval",
            "experiment",
            "interop",
            "models",
            "predict",
            "stats",
            "train",
        ],
        "the commands sit on top of everything",
    ),
];

#[test]
fn top_level_modules_depend_one_way() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.contains_key("distill") && graph.contains_key("train"));
    assert_eq!(find_cycle(&graph), None, "module graph: {graph:#?}");
    for (module, deps) in &graph {
        let Some((_, allowed, why)) = LAYERS.iter().find(|(m, _, _)| m == module) else {
            panic!("src/{module}: not placed in LAYERS; say what it may use and why");
        };
        for dep in deps {
            assert!(
                allowed.contains(&dep.as_str()),
                "src/{module} uses crate::{dep}, which its layer does not allow ({module}: {why}); allowed: {allowed:?}"
            );
        }
    }
}

/// On a GPU every read of a tensor waits for the queued work: the training step's code
/// (models, distillation, trainer) reads only through `profile::read`, which counts the reads
/// that `a_training_step_reads_the_device_once_for_its_progress_bar` holds to one per step.
#[test]
fn the_training_step_reads_the_device_only_through_the_counted_read() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in ["models", "distill", "train"] {
        rust_files(&src.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the step's files were found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for call in [
            ".into_data(",
            ".into_scalar",
            ".to_data(",
            ".into_data_async(",
        ] {
            assert!(
                !text.contains(call),
                "{} calls `{call}`: read through crate::profile::read, so that the reads a \
                 step makes on a GPU are counted",
                file.display()
            );
        }
    }
}
