//! The module layering that src/lib.rs declares: its `pub mod` lines are in layer order, and no module may
//! name (through a `crate::` path) a module declared after it. Test code inside a module is exempt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level modules in the order lib.rs declares them.
fn layers() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").and_then(|m| m.strip_suffix(';')).map(str::to_owned))
        .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The code of a file without comments and without its `#[cfg(test)] mod ...` tail.
fn product_code(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line.split(" // ").next().unwrap());
        code.push('\n');
    }
    code
}

/// The top-level modules a piece of code names through `crate::` paths, `use crate::{a, b::c}` included.
fn named_modules(code: &str) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `ember_crate::`, not `crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && !c.is_whitespace() => {
                        found.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

#[test]
fn lower_layers_never_name_higher_ones() {
    let layers = layers();
    assert!(layers.len() > 10, "lib.rs declares {layers:?}");
    let rank: BTreeMap<&str, usize> = layers.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let mut violations = Vec::new();
    for (i, module) in layers.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&src().join(module), &mut files);
        rust_files(&src().join(format!("{module}.rs")), &mut files);
        assert!(!files.is_empty(), "no source for module {module}");
        for file in files {
            let code = product_code(&std::fs::read_to_string(&file).unwrap());
            for named in named_modules(&code) {
                match rank.get(named.as_str()) {
                    Some(&j) if j > i => violations.push(format!(
                        "{} ({module}) uses crate::{named}, declared after it in lib.rs",
                        file.strip_prefix(src()).unwrap().display()
                    )),
                    Some(_) => {}
                    None => violations.push(format!("{}: crate::{named} is not a module of lib.rs", file.display())),
                }
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn the_parser_sees_grouped_and_nested_imports() {
    let code = product_code(
        "use crate::{data::{a, b}, model::Yolo};\nlet x = crate::nn::f(); // crate::train\n#[cfg(test)]\nmod tests {\n use crate::commands;\n}\n",
    );
    assert_eq!(named_modules(&code), ["data", "model", "nn"]);
}
