//! The workflow corpus under `tests/workflows/` at the repository root.
//!
//! - `invalid/*.yaml` each start with one or more `# expect: LINE:COL: substring` lines; every
//!   expectation must be met by a diagnostic at exactly that line and column whose message
//!   contains the substring (`# expect-warning:` for a warning), and the file must be invalid
//!   unless it only expects warnings.
//! - `valid/*.yaml` must parse with no diagnostic at all.
//!
//! `cargo test -p meridian-model --test corpus -- --ignored --nocapture` prints every file's
//! diagnostics, which helps when writing a new case.

use std::path::{Path, PathBuf};

use meridian_model::{Diagnostics, Severity, analyze};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/workflows")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

fn run(path: &Path) -> (String, Diagnostics) {
    let text = std::fs::read_to_string(path).unwrap();
    let name = format!(
        "{}/{}",
        path.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        path.file_name().unwrap().to_string_lossy()
    );
    let (_, d) = analyze(&name, &text);
    (text, d)
}

struct Expect {
    line: u32,
    col: u32,
    severity: Severity,
    text: String,
}

fn expectations(text: &str, path: &Path) -> Vec<Expect> {
    let mut out = Vec::new();
    for l in text.lines().take_while(|l| l.starts_with('#')) {
        let (severity, rest) = if let Some(r) = l.strip_prefix("# expect-warning:") {
            (Severity::Warning, r)
        } else if let Some(r) = l.strip_prefix("# expect:") {
            (Severity::Error, r)
        } else {
            continue;
        };
        let mut parts = rest.trim().splitn(3, ':');
        let bad = || -> String { panic!("{}: malformed expectation `{l}`", path.display()) };
        let num = |s: Option<&str>| -> u32 {
            s.and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("{}: malformed expectation `{l}`", path.display()))
        };
        let line = num(parts.next());
        let col = num(parts.next());
        let text = parts
            .next()
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(bad);
        out.push(Expect {
            line,
            col,
            severity,
            text,
        });
    }
    out
}

#[test]
fn invalid_workflows_report_each_expected_problem() {
    let files = corpus("invalid");
    assert!(
        files.len() >= 30,
        "the invalid corpus has only {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let (text, diags) = run(path);
        let expects = expectations(&text, path);
        if expects.is_empty() {
            failures.push(format!("{}: no `# expect:` line", path.display()));
            continue;
        }
        if expects.iter().any(|e| e.severity == Severity::Error) && !diags.has_errors() {
            failures.push(format!(
                "{}: expected the file to be invalid",
                path.display()
            ));
        }
        for e in &expects {
            let hit = diags.iter().any(|d| {
                d.span.line == e.line
                    && d.span.col == e.col
                    && d.severity == e.severity
                    && d.message.contains(&e.text)
            });
            if !hit {
                failures.push(format!(
                    "{}: no {:?} at {}:{} containing {:?}; got:\n{diags}",
                    path.display(),
                    e.severity,
                    e.line,
                    e.col,
                    e.text
                ));
            }
        }
        // Every diagnostic renders with its location and, when it has one, the source line.
        for d in &diags {
            let shown = d.to_string();
            if d.span.line > 0 {
                let loc = format!("{}:{}:{}", d.file, d.span.line, d.span.col);
                assert!(shown.contains(&loc), "{shown}");
                assert!(d.source_line.is_some(), "{shown}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn valid_workflows_have_no_diagnostics() {
    let files = corpus("valid");
    assert!(!files.is_empty());
    for path in files {
        let (_, diags) = run(&path);
        assert!(diags.is_empty(), "{}:\n{diags}", path.display());
        meridian_model::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn packaged_workflows_parse_when_present() {
    // The packaged workflows are written by others; when they exist they must validate.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            meridian_model::load(&p).unwrap_or_else(|e| panic!("{}:\n{e}", p.display()));
        }
    }
}

#[test]
fn missing_file_is_a_diagnostic() {
    let e = meridian_model::load(Path::new("/nonexistent/meridian/wf.yaml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e.to_string().contains("cannot read the workflow file"),
        "{e}"
    );
}

#[test]
#[ignore = "prints the diagnostics of every corpus file"]
fn dump() {
    for kind in ["invalid", "valid"] {
        for path in corpus(kind) {
            let (_, d) = run(&path);
            println!("===== {}\n{d}\n", path.display());
        }
    }
}

/// The hint for a key that is not a leg names the output read after it, not the key.
#[test]
fn an_unknown_leg_keys_hint_names_the_output_after_it() {
    let (_, d) = analyze(
        "t.yaml",
        "name: t\nsteps:\n  - id: a\n    uses: hello\n    strategy: {matrix: {r: [eu, us]}}\n  - id: b\n    uses: hello\n    needs: a\n    with: {name: \"${{ steps.a.outputs.xx.greeting }}\"}\n",
    );
    let hint = d
        .iter()
        .find(|d| d.message.contains("`xx` is not one"))
        .and_then(|d| d.hint.clone())
        .unwrap_or_else(|| panic!("{d}"));
    assert!(hint.contains("steps.a.outputs['eu'].greeting"), "{hint}");
}
