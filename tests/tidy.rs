//! ARCHITECTURE.md invariants as checks over the source tree: they read
//! `src/` as text (comments and `#[cfg(test)]` items left out), so they
//! hold whatever files the modules are split into. Each check is also run
//! on a small planted violation, so none of them can pass vacuously.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A source file: its path relative to the crate root, its product code
/// with comments blanked (`code`), and the same with string and char
/// literal contents blanked too (`bare`). Line structure is kept, so a
/// byte offset maps to the file's line number.
struct Source {
    path: String,
    code: String,
    bare: String,
}

impl Source {
    fn new(path: &str, text: &str) -> Source {
        let (code, bare) = strip(text);
        let (code, bare) = drop_test_items(&code, &bare);
        Source { path: path.to_string(), code, bare }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.code[..offset].matches('\n').count() + 1
    }

    fn in_dir(&self, dir: &str) -> bool {
        self.path.starts_with(&format!("src/{dir}/"))
    }

    fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Every `.rs` file under `src/`, read fresh (directory walk: no file list).
fn tree() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 10, "src/ looks empty: {files:?}");
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(root).expect("under the crate root").to_string_lossy().replace('\\', "/");
            Source::new(&rel, &std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = entry.expect("dir entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Blank comments (line, doc, nested block) in `code`; blank comments and
/// the contents of string/char literals in `bare`. Newlines survive.
fn strip(text: &str) -> (String, String) {
    let b = text.as_bytes();
    let mut code = b.to_vec();
    let mut bare = b.to_vec();
    let blank = |v: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut v[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            blank(&mut code, i, end);
            blank(&mut bare, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut code, i, j);
            blank(&mut bare, i, j);
            i = j;
        } else if let Some(hashes) = raw_string_start(b, i) {
            // r"…", r#"…"#, br"…": no escapes inside.
            let open = i + rest.iter().position(|&c| c == b'"').expect("quote") + 1;
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let end = b[open..].windows(close.len()).position(|w| w == close.as_slice()).map_or(b.len(), |p| open + p);
            blank(&mut bare, open, end);
            i = (end + close.len()).min(b.len());
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut bare, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p)
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 1 + ch_len)
            };
            match end {
                Some(e) => {
                    blank(&mut bare, i + 1, e);
                    i = e + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    (String::from_utf8(code).expect("utf8"), String::from_utf8(bare).expect("utf8"))
}

/// `Some(number of #)` if a raw (byte) string literal starts at `i`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// Blank every item marked `#[cfg(test)]` (unit-test modules and helpers):
/// the invariants are about the product, not its tests.
fn drop_test_items(code: &str, bare: &str) -> (String, String) {
    let mut code = code.as_bytes().to_vec();
    let mut bare = bare.as_bytes().to_vec();
    let mut from = 0;
    while let Some(p) = find_from(&bare, b"#[cfg(test)]", from) {
        // The item ends at its first `;` outside braces, or with its block.
        let (mut depth, mut j) = (0usize, p + b"#[cfg(test)]".len());
        while j < bare.len() {
            match bare[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        for v in [&mut code, &mut bare] {
            for c in &mut v[p..j] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
        }
        from = j;
    }
    (String::from_utf8(code).expect("utf8"), String::from_utf8(bare).expect("utf8"))
}

fn find_from(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

/// Every path the code names: inline paths (`std::fs::read`) and the
/// expansions of `use` trees (`use std::{fs, time::Instant}` gives
/// `std::fs` and `std::time::Instant`), each with its byte offset.
fn paths(bare: &str) -> Vec<(usize, String)> {
    let b = bare.as_bytes();
    let mut out = Vec::new();
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        if !is_id(b[i]) || (i > 0 && (is_id(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        // A maximal `a::b::c` run starting at i.
        let start = i;
        let mut j = i;
        let mut group = false;
        loop {
            while j < b.len() && is_id(b[j]) {
                j += 1;
            }
            let k = skip_ws(b, j);
            if b[k..].starts_with(b"::") {
                let n = skip_ws(b, k + 2);
                if n < b.len() && is_id(b[n]) {
                    j = n;
                    continue;
                }
                if n < b.len() && b[n] == b'{' && word_before(b, start) == "use" {
                    let prefix = squash(&bare[start..k]);
                    expand_use_group(bare, n, &prefix, start, &mut out);
                    group = true;
                }
            }
            break;
        }
        if !group {
            out.push((start, squash(&bare[start..j])));
        }
        i = j.max(i + 1);
    }
    out
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn word_before(b: &[u8], i: usize) -> String {
    let s = String::from_utf8_lossy(&b[..i]);
    s.trim_end().rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("").to_string()
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// `prefix::{a, b::{c, d}, e as f}` starting at the `{` at `open`.
fn expand_use_group(bare: &str, open: usize, prefix: &str, at: usize, out: &mut Vec<(usize, String)>) {
    let b = bare.as_bytes();
    let (mut depth, mut j) = (0usize, open);
    while j < b.len() {
        match b[j] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        j += 1;
    }
    let inner = &bare[open + 1..j.min(bare.len())];
    let mut parts = Vec::new();
    let (mut d, mut last) = (0usize, 0usize);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => d += 1,
            '}' => d -= 1,
            ',' if d == 0 => {
                parts.push(&inner[last..k]);
                last = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[last..]);
    for part in parts {
        let part = squash(part);
        let part = part.split("as").next().unwrap_or("").to_string();
        if part.is_empty() {
            continue;
        }
        if let Some(brace) = part.find('{') {
            let sub_prefix = format!("{prefix}::{}", part[..brace].trim_end_matches("::"));
            let sub = format!("use {sub_prefix}::{}", &part[brace..]);
            for (_, p) in paths(&sub) {
                out.push((at, p));
            }
        } else if part == "self" {
            out.push((at, prefix.to_string()));
        } else {
            out.push((at, format!("{prefix}::{part}")));
        }
    }
}

/// Is `path` (e.g. `std::fs::read`) `module` or inside it?
fn under(path: &str, module: &str) -> bool {
    path == module || path.starts_with(&format!("{module}::"))
}

/// Whole-word occurrences of `word` in `text` (ASCII identifier bounds).
fn words<'a>(text: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    text.match_indices(word).map(|(p, _)| p).filter(move |&p| {
        let b = text.as_bytes();
        (p == 0 || !is_id(b[p - 1])) && b.get(p + word.len()).is_none_or(|&c| !is_id(c))
    })
}

// ---------------------------------------------------------------------------
// the checks: each returns "path:line: what" for every violation

/// `plan/` is pure: no file system, environment, clock, process, thread or
/// I/O. `std::net` only for its address *values* (`Ipv4Addr`, …), which
/// parse and print but never touch the network.
fn plan_is_pure(src: &[Source]) -> Vec<String> {
    const BANNED: &[&str] =
        &["std::fs", "std::env", "std::time", "std::io", "std::process", "std::thread", "std::os", "std::net"];
    const NET_VALUES: &[&str] = &[
        "std::net::Ipv4Addr",
        "std::net::Ipv6Addr",
        "std::net::IpAddr",
        "std::net::SocketAddr",
        "std::net::SocketAddrV4",
        "std::net::SocketAddrV6",
        "std::net::AddrParseError",
    ];
    const CLOCK: &[&str] = &["Instant", "SystemTime", "UNIX_EPOCH"];
    let mut v = Vec::new();
    for s in src.iter().filter(|s| s.in_dir("plan")) {
        for (at, p) in paths(&s.bare) {
            let p = p.strip_prefix("::").unwrap_or(&p).replacen("core::", "std::", 1);
            if BANNED.iter().any(|m| under(&p, m)) && !NET_VALUES.iter().any(|ok| under(&p, ok)) {
                v.push(format!("{}:{}: {p}", s.path, s.line_of(at)));
            }
        }
        for w in CLOCK {
            v.extend(words(&s.bare, w).map(|at| format!("{}:{}: {w}", s.path, s.line_of(at))));
        }
    }
    v
}

/// `ovsdb/` knows nothing about OVN or CloudStack: no NB table name (from
/// the pinned schema), no `ovn`/`OVN_Northbound`/`cloudstack` in its code,
/// string literals included.
fn ovsdb_knows_no_ovn(src: &[Source], tables: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    for s in src.iter().filter(|s| s.in_dir("ovsdb")) {
        let lower = s.code.to_ascii_lowercase();
        for t in tables {
            v.extend(words(&s.code, t).map(|at| format!("{}:{}: {t}", s.path, s.line_of(at))));
        }
        for needle in ["ovn", "northbound", "southbound", "cloudstack"] {
            // Substrings on purpose: `ovn-nbctl`, `OVN_Northbound`, `ovnnb_db.sock`.
            v.extend(lower.match_indices(needle).map(|(at, _)| format!("{}:{}: {needle}", s.path, s.line_of(at))));
        }
    }
    v
}

/// Only the output module writes stdout, nobody writes stderr.
fn only_output_prints(src: &[Source]) -> Vec<String> {
    const MACROS: &[&str] = &["println", "print", "eprintln", "eprint", "dbg"];
    const HANDLES: &[&str] = &["stdout", "stderr", "Stdout", "Stderr", "StdoutLock", "StderrLock"];
    let mut v = Vec::new();
    for s in src.iter().filter(|s| !is_output(s)) {
        for m in MACROS {
            for at in words(&s.bare, m) {
                if s.bare[at + m.len()..].trim_start().starts_with('!') {
                    v.push(format!("{}:{}: {m}!", s.path, s.line_of(at)));
                }
            }
        }
        for (at, p) in paths(&s.bare) {
            if HANDLES.iter().any(|h| p.split("::").any(|seg| seg == *h))
                && !identity_query(&s.bare[at..], &p)
                && !discarded(&s.bare[at..], &p)
            {
                v.push(format!("{}:{}: {p}", s.path, s.line_of(at)));
            }
        }
        // Handing our own stdout/stderr to a child process writes them too.
        for at in words(&s.bare, "inherit") {
            v.push(format!("{}:{}: Stdio::inherit", s.path, s.line_of(at)));
        }
    }
    v
}

/// The output module: `src/output.rs`, or `src/output/` if it grows.
fn is_output(s: &Source) -> bool {
    s.path == "src/output.rs" || s.in_dir("output")
}

/// `std::io::stdout().as_fd()` and the like only ask *which* file the
/// handle is (e.g. so the log never goes to stdout); they write nothing.
fn identity_query(code: &str, path: &str) -> bool {
    let squashed = squash(code.get(..path.len() + 64).unwrap_or(code));
    ["().as_fd()", "().as_raw_fd()", "().is_terminal()"]
        .iter()
        .any(|q| squashed.strip_prefix(path).is_some_and(|rest| rest.starts_with(q)))
}

/// `Command::stdout(Stdio::null())` and the same for `stderr`: a child
/// process's output thrown away writes nothing of ours.
fn discarded(code: &str, path: &str) -> bool {
    let squashed = squash(code.get(..path.len() + 64).unwrap_or(code));
    ["stdout", "stderr"].contains(&path)
        && ["(Stdio::null())", "(std::process::Stdio::null())"]
            .iter()
            .any(|q| squashed.strip_prefix(path).is_some_and(|rest| rest.starts_with(q)))
}

/// Is this file the process start-up module? `main.rs`, or a module whose
/// file name says so (`startup.rs`, `start.rs`, `process.rs`): the one
/// place that turns the outcome into the exit status.
fn is_startup(s: &Source) -> bool {
    let name = s.file_name();
    name == "main.rs" || name.trim_end_matches(".rs").contains("start") || name == "process.rs"
}

/// `std::process::exit` (which skips destructors: buffered stdout, the
/// log) only in the start-up module.
fn exit_only_at_startup(src: &[Source]) -> Vec<String> {
    let mut v = Vec::new();
    for s in src.iter().filter(|s| !is_startup(s)) {
        for (at, p) in paths(&s.bare) {
            let segs: Vec<&str> = p.split("::").collect();
            if segs.windows(2).any(|w| w == ["process", "exit"] || w == ["process", "abort"]) {
                v.push(format!("{}:{}: {p}", s.path, s.line_of(at)));
            }
        }
    }
    v
}

fn nb_tables() -> Vec<String> {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/ovn-nb.ovsschema");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&schema).expect("pinned NB schema")).expect("JSON");
    let t: Vec<String> = v["tables"].as_object().expect("tables").keys().cloned().collect();
    assert!(t.contains(&"Logical_Switch".to_string()), "{t:?}");
    t
}

#[track_caller]
fn assert_clean(what: &str, violations: Vec<String>) {
    assert!(violations.is_empty(), "{what}:\n  {}", violations.join("\n  "));
}

#[test]
fn plan_has_no_io_clock_or_environment() {
    let src = tree();
    assert!(src.iter().any(|s| s.in_dir("plan")), "no src/plan/");
    assert_clean("src/plan/ must stay pure (ARCHITECTURE.md)", plan_is_pure(&src));
}

#[test]
fn ovsdb_knows_nothing_about_ovn() {
    let src = tree();
    assert!(src.iter().any(|s| s.in_dir("ovsdb")), "no src/ovsdb/");
    assert_clean(
        "src/ovsdb/ must not know OVN or CloudStack (ARCHITECTURE.md)",
        ovsdb_knows_no_ovn(&src, &nb_tables()),
    );
}

#[test]
fn only_the_output_module_writes_stdout_and_nothing_writes_stderr() {
    let src = tree();
    assert!(src.iter().any(is_output), "no output module (src/output.rs or src/output/)");
    assert_clean("stdout is the protocol: only src/output.rs writes it (ARCHITECTURE.md)", only_output_prints(&src));
}

#[test]
fn process_exit_only_in_the_start_up_module() {
    let src = tree();
    assert!(src.iter().any(is_startup), "no start-up module");
    assert_clean("process::exit outside the start-up module", exit_only_at_startup(&src));
}

/// Every check finds a planted violation (and ignores the same text in a
/// comment, a test module or the place where it is allowed).
#[test]
fn each_check_finds_a_planted_violation() {
    let tables = nb_tables();
    let plan = |text: &str| plan_is_pure(&[Source::new("src/plan/x/deep.rs", text)]);
    for bad in [
        "use std::fs;",
        "fn f() { let _ = std::fs::read(\"x\"); }",
        "use std::{collections::BTreeMap, env};",
        "use std::{time::{Duration, Instant}};",
        "fn f() -> u64 { now(Instant::now()) }",
        "use std :: net :: TcpStream;",
        "fn f() { let _ = core::time::Duration::ZERO; }",
        "fn f() { let _ = SystemTime::now(); }",
        "use std::io::Write;",
    ] {
        assert!(!plan(bad).is_empty(), "plan check misses {bad}");
    }
    for fine in [
        "use std::net::{Ipv4Addr, Ipv6Addr};",
        "// std::fs is not used here\nfn f() {}",
        "/// Never `Instant::now()`.\nfn f() {}",
        "fn f() -> &'static str { \"std::env\" }",
        "#[cfg(test)]\nmod tests {\n    use std::time::Instant;\n}\n",
        "use std::collections::BTreeMap;",
    ] {
        assert_eq!(plan(fine), Vec::<String>::new(), "plan check flags {fine}");
    }
    assert_eq!(plan("fn f() {}\n\nuse std::env;\n"), vec!["src/plan/x/deep.rs:3: std::env"]);
    // The same text outside plan/ is fine.
    assert!(plan_is_pure(&[Source::new("src/commands/x.rs", "use std::fs;")]).is_empty());

    let ovsdb = |text: &str| ovsdb_knows_no_ovn(&[Source::new("src/ovsdb/new/client.rs", text)], &tables);
    for bad in [
        "const DB: &str = \"OVN_Northbound\";",
        "fn f() { select(\"Logical_Switch\") }",
        "struct LogicalRouter; fn f() { t(\"Logical_Router_Port\") }",
        "fn ovn_quirk() {}",
        "const P: &str = \"/run/ovn/ovnnb_db.sock\";",
        "fn f() { t(\"NB_Global\") }",
    ] {
        assert!(!ovsdb(bad).is_empty(), "ovsdb check misses {bad}");
    }
    for fine in [
        "// ovsdb-server behaves like OVN's ovn-nbctl here\nfn f() {}",
        "#[cfg(test)]\nmod tests { const T: &str = \"Logical_Switch\"; }",
        "fn select(table: &str) {}",
    ] {
        assert_eq!(ovsdb(fine), Vec::<String>::new(), "ovsdb check flags {fine}");
    }
    assert!(
        ovsdb_knows_no_ovn(&[Source::new("src/nb/rows.rs", "const T: &str = \"Logical_Switch\";")], &tables).is_empty()
    );

    let print = |path: &str, text: &str| only_output_prints(&[Source::new(path, text)]);
    for bad in [
        "fn f() { println!(\"x\"); }",
        "fn f() { print !(\"x\"); }",
        "fn f() { eprintln!(\"x\"); }",
        "fn f() { eprint!(\"x\"); }",
        "fn f() { dbg!(1); }",
        "use std::io::{self, Write}; fn f() { let _ = io::stderr().write_all(b\"x\"); }",
        "fn f() { std::io::stdout().lock(); }",
        "fn f() { let fd = std::io::stdout(); fd.as_fd(); }",
        "use std::io::stderr;",
        "fn f() { Command::new(\"x\").stderr(Stdio::inherit()); }",
        "fn f() { Command::new(\"x\").stderr(Stdio::piped()); }",
        "fn f(c: &mut Child) { c.stdout.take(); }",
    ] {
        assert!(!print("src/commands/deep/mod.rs", bad).is_empty(), "print check misses {bad}");
    }
    for fine in [
        "fn f() { if e.use_stderr() { } }",
        "// println!(\"debug\")\nfn f() {}",
        "fn f() -> &'static str { \"eprintln!\" }",
        "#[cfg(test)]\nfn helper() { println!(\"x\"); }\nfn g() {}",
        "fn f(w: &mut String) { writeln!(w, \"x\").ok(); }",
        "fn f() -> bool { same(std::io::stdout().as_fd().try_clone_to_owned()) }",
        "fn f() -> bool { std::io::stderr().is_terminal() }",
        "fn f() { Command::new(\"x\").stdout(Stdio::null()).stderr(std::process::Stdio::null()); }",
    ] {
        assert_eq!(print("src/commands/deep/mod.rs", fine), Vec::<String>::new(), "print check flags {fine}");
    }
    assert!(print("src/output.rs", "fn f() { std::io::stdout().lock(); }").is_empty());
    assert!(print("src/output/json.rs", "fn f() { std::io::stdout().lock(); }").is_empty());
    assert!(!print("src/outputs.rs", "fn f() { std::io::stdout().lock(); }").is_empty());

    let exit = |path: &str, text: &str| exit_only_at_startup(&[Source::new(path, text)]);
    for bad in [
        "fn f() { std::process::exit(3) }",
        "use std::process; fn f() { process::exit(1) }",
        "use std::process::{exit};",
    ] {
        assert!(!exit("src/commands/engine.rs", bad).is_empty(), "exit check misses {bad}");
    }
    assert!(exit("src/commands/engine.rs", "fn f() -> std::process::ExitCode { todo() }").is_empty());
    assert!(exit("src/main.rs", "fn f() { std::process::exit(3) }").is_empty());
    assert!(exit("src/commands/startup.rs", "fn f() { std::process::exit(3) }").is_empty());
}

/// Every CloudStack command is one exec of the binary, so each shared
/// library it needs is mapped on every command. Only libc (and the unwinder)
/// are allowed: tokio's multi-thread scheduler, for one, would pull in libm
/// (+0.065 ms per exec measured; src/agent/http.rs uses current-thread
/// runtimes for that reason).
#[test]
fn the_binary_needs_no_shared_library_beyond_libc() {
    let bin = env!("CARGO_BIN_EXE_cloudstack-ovn");
    let o = std::process::Command::new("readelf").args(["-d", bin]).output().expect("run readelf (binutils)");
    let text = String::from_utf8_lossy(&o.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(needed.contains(&"libc.so.6"), "readelf -d {bin} lists no libc:\n{text}");
    let extra: Vec<&&str> = needed
        .iter()
        .filter(|l| !(**l == "libc.so.6" || **l == "libgcc_s.so.1" || l.starts_with("ld-linux")))
        .collect();
    assert!(extra.is_empty(), "{bin} needs {extra:?} on every exec:\n{text}");
}
