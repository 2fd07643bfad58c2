//! The layers of `src/`, enforced: every `crate::…` path in a module (in `use` lines, groups
//! such as `use crate::{a, b::c}`, paths in code and doc links) must name a top-level module
//! that the table "Allowed dependencies" in `ARCHITECTURE.md` lets it use. The table is the
//! single source of truth: this test parses it, checks that it places every module of
//! `src/lib.rs` and that it allows no cycle, then checks every file of `src/` against it.
//!
//! Not checked: `super::super::…` paths (they stay inside a module in practice), and items of
//! the crate root itself (`crate::VERSION`, `crate::joined`…), which every module may use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const TABLE_HEADING: &str = "## Allowed dependencies";

/// A row of the table: the module, whether it is planned (not in `lib.rs` yet), and what it
/// may use.
struct Row {
    planned: bool,
    may_use: BTreeSet<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The words between backticks in `cell`.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Parses the table under [`TABLE_HEADING`]: `| \`module\` | \`a\`, \`b\` |` rows.
fn allowed_table(text: &str) -> Result<BTreeMap<String, Row>, String> {
    let start = text
        .find(TABLE_HEADING)
        .ok_or_else(|| format!("ARCHITECTURE.md has no `{TABLE_HEADING}` section"))?;
    let section = &text[start + TABLE_HEADING.len()..];
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    for (n, line) in section.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 2 {
            return Err(format!(
                "ARCHITECTURE.md, `{TABLE_HEADING}` line {}: a row has two cells, module and \
                 may use: {line}",
                n + 1
            ));
        }
        let names = ticked(cells[0]);
        // the header and the separator have no module between backticks
        let [module] = names.as_slice() else {
            if names.is_empty() {
                continue;
            }
            return Err(format!("one module per row: {line}"));
        };
        let row = Row {
            planned: cells[0].contains("(planned)"),
            may_use: ticked(cells[1]).into_iter().collect(),
        };
        if rows.insert(module.clone(), row).is_some() {
            return Err(format!("`{module}` has two rows"));
        }
    }
    if rows.is_empty() {
        return Err(format!("the `{TABLE_HEADING}` section has no table rows"));
    }
    Ok(rows)
}

/// The top-level modules `src/lib.rs` declares.
fn lib_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// `text` with the contents of string and character literals blanked (line breaks kept), so
/// that a `crate::` inside a message is not taken for a path. Comments are kept: a doc link
/// (``[`crate::x::Y`]``) is a dependency too.
fn blank_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        // comments: copied as they are (quotes inside do not start a string)
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(c[i]);
                i += 1;
            }
            continue;
        }
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("/*");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("*/");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(c[i]);
                    i += 1;
                }
            }
            continue;
        }
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        // raw strings: r"…", r#"…"#, br#"…"#
        if !ident_before && (c[i] == 'r' || (c[i] == 'b' && c.get(i + 1) == Some(&'r'))) {
            let mut j = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                out.extend(&c[i..=j]);
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
                        out.extend(&c[j..=j + hashes]);
                        j += hashes + 1;
                        break;
                    }
                    out.push(blank(c[j]));
                    j += 1;
                }
                i = j;
                continue;
            }
        }
        if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    out.push(' ');
                    out.push(blank(c[i + 1]));
                    i += 2;
                    continue;
                }
                out.push(blank(c[i]));
                i += 1;
            }
            out.push('"');
            i += 1;
            continue;
        }
        // character literals ('"', '\'', '\u{1}'); a lifetime ('a) has no closing quote
        if c[i] == '\'' {
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len().min(i + 12)).find(|&j| c[j] == '\'')
            } else {
                (c.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            if let Some(end) = end {
                out.push('\'');
                out.extend(std::iter::repeat_n(' ', end - i - 1));
                out.push('\'');
                i = end + 1;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// The first identifier of every item of a `{…}` group starting at `c[open]`, with the
/// position after the group.
fn group_heads(c: &[char], open: usize) -> (Vec<String>, usize) {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut i = open;
    while i < c.len() {
        match c[i] {
            '{' => {
                depth += 1;
                expect_head = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return (heads, i + 1);
                }
            }
            ',' if depth == 1 => expect_head = true,
            ch if expect_head && (ch.is_alphabetic() || ch == '_') => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                heads.push(c[start..i].iter().collect());
                expect_head = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (heads, i)
}

/// Every `crate::…` path in `text`: (line, first segment after `crate::`).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let c: Vec<char> = blank_literals(text).chars().collect();
    let needle: Vec<char> = "crate::".chars().collect();
    let mut found = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\n' {
            line += 1;
        }
        let before_ok = i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if before_ok && c[i..].starts_with(&needle) {
            let mut j = i + needle.len();
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            if c.get(j) == Some(&'{') {
                let (heads, end) = group_heads(&c, j);
                found.extend(heads.into_iter().map(|h| (line, h)));
                line += c[i..end].iter().filter(|&&ch| ch == '\n').count();
                i = end;
                continue;
            }
            let start = j;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            found.push((line, c[start..j].iter().collect()));
            i = j;
            continue;
        }
        i += 1;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None`: the crate roots).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.strip_suffix(".rs").unwrap_or(f).to_string()),
    }
}

/// A cycle in the allowed graph, if there is one (depth-first search).
fn find_cycle(rows: &BTreeMap<String, Row>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        rows: &BTreeMap<String, Row>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|s| s == m).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for next in rows.get(m).map(|r| &r.may_use).into_iter().flatten() {
            if let Some(c) = visit(next, rows, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    rows.keys()
        .find_map(|m| visit(m, rows, &mut state, &mut Vec::new()))
}

#[test]
fn the_table_places_every_module_and_allows_no_cycle() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let rows = allowed_table(&text).unwrap_or_else(|e| panic!("{e}"));
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    let modules = lib_modules(&lib);
    let mut problems = Vec::new();
    for m in &modules {
        if !rows.contains_key(m) {
            problems.push(format!(
                "`{m}` (src/lib.rs) has no row in ARCHITECTURE.md's `{TABLE_HEADING}`: say \
                 what it may use"
            ));
        }
    }
    for (m, row) in &rows {
        if !modules.contains(m) && !row.planned {
            problems.push(format!(
                "ARCHITECTURE.md has a row for `{m}`, which src/lib.rs does not declare (mark \
                 a module still to come `(planned)`)"
            ));
        }
        for used in &row.may_use {
            if !rows.contains_key(used) {
                problems.push(format!("`{m}` may use `{used}`, which has no row"));
            }
            if used == m {
                problems.push(format!("`{m}` lists itself"));
            }
        }
    }
    if let Some(cycle) = find_cycle(&rows) {
        problems.push(format!("the table allows a cycle: {}", cycle.join(" -> ")));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_crate_path_follows_the_table() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let rows = allowed_table(&text).unwrap_or_else(|e| panic!("{e}"));
    let src = root().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let modules = lib_modules(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} files in src/", files.len());
    let mut forbidden = Vec::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let code = std::fs::read_to_string(file).expect("a source file");
        for (line, to) in crate_paths(&code) {
            // crate-root items (crate::VERSION) and paths within the module itself
            if to == from || !modules.contains(&to) {
                continue;
            }
            let allowed = rows.get(&from).is_some_and(|r| r.may_use.contains(&to));
            if !allowed {
                let may: Vec<&str> = rows
                    .get(&from)
                    .map(|r| r.may_use.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                forbidden.push(format!(
                    "{}:{line}: `{from}` uses `crate::{to}`, which ARCHITECTURE.md does not \
                     allow (`{from}` may use: {})",
                    file.strip_prefix(root()).unwrap_or(file).display(),
                    if may.is_empty() {
                        "nothing".to_string()
                    } else {
                        may.join(", ")
                    }
                ));
            }
        }
    }
    assert!(
        forbidden.is_empty(),
        "\n{} import(s) across the layers that ARCHITECTURE.md forbids:\n{}\n\nMove the code \
         to the right layer, or, if the edge is right, add it to the table (it must stay \
         acyclic).\n",
        forbidden.len(),
        forbidden.join("\n")
    );
}

#[test]
fn paths_are_found_in_groups_and_not_in_strings() {
    let code = "use crate::{a, b::{c, d}, e::f};\nlet s = \"crate::g\";\n/// [`crate::h`]\n\
                let c = '\"'; x(crate::i::j); y(my_crate::k); let r = r#\"crate::l\"#;\n\
                use crate::{\n    m,\n    n::o,\n};";
    let got: Vec<(usize, String)> = crate_paths(code);
    let want: Vec<(usize, String)> = [
        (1, "a"),
        (1, "b"),
        (1, "e"),
        (3, "h"),
        (4, "i"),
        (5, "m"),
        (5, "n"),
    ]
    .into_iter()
    .map(|(l, s)| (l, s.to_string()))
    .collect();
    assert_eq!(got, want);
}
