//! The Meridian workflow model: parse and validate workflow files, evaluate `${{ }}` expressions,
//! order steps as a DAG. It knows nothing of WebAssembly.
//!
//! - [`load`] / [`parse`] turn a YAML file into a typed [`Workflow`], or into [`Diagnostics`]
//!   listing every problem found, each with `file:line:col` and a hint.
//! - [`expr`] is the `${{ … }}` language: [`expr::Expr`] and [`expr::Template`] parse once and
//!   evaluate against an [`expr::EvalContext`] at run time.
//! - [`dag`] orders steps; [`schema`] checks `with:` against the JSON Schema a step declares.
//! - [`duration`] parses `30s`/`1h30m` durations and `4MiB` sizes.
//!
//! The file format is documented in the repository README, "Workflow reference".

mod check;
mod convert;
pub mod dag;
pub mod diag;
pub mod drill;
pub mod duration;
pub mod expr;
pub mod schema;
mod source;
pub mod span;
pub mod workflow;
mod yaml;

use std::path::Path;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use span::{Span, Spanned};
pub use workflow::*;

/// Largest workflow file accepted, in bytes.
pub const MAX_FILE_SIZE: usize = 4 << 20;

/// Reads, parses and validates a workflow file. `Err` holds every problem found (warnings too).
pub fn load(path: &Path) -> Result<Workflow, Diagnostics> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostics::from(Diagnostic::error(
            file.clone(),
            Span::default(),
            format!("cannot read the workflow file: {e}"),
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Diagnostics::from(Diagnostic::error(
            file.clone(),
            Span::default(),
            format!(
                "the workflow file is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })?;
    parse(&file, &text)
}

/// Parses and validates workflow text; `file` is used in diagnostics only. `Err` when any error
/// was found; warnings of a valid workflow are dropped (use [`analyze`] to keep them).
pub fn parse(file: &str, text: &str) -> Result<Workflow, Diagnostics> {
    match analyze(file, text) {
        (Some(wf), d) if !d.has_errors() => Ok(wf),
        (_, d) => Err(d),
    }
}

/// Parses and validates, returning everything: the workflow as far as it could be understood
/// (`None` when the YAML itself is broken) and all diagnostics, sorted by position.
///
/// Cost: linear in the file size for well-formed files; never panics, and refuses files larger
/// than [`MAX_FILE_SIZE`], nesting deeper than 64 levels, or more than 10,000 steps.
pub fn analyze(file: &str, text: &str) -> (Option<Workflow>, Diagnostics) {
    if text.len() > MAX_FILE_SIZE {
        let d = Diagnostic::error(
            file,
            Span::default(),
            format!(
                "the workflow file is larger than {} MiB",
                MAX_FILE_SIZE >> 20
            ),
        );
        return (None, d.into());
    }
    let map = source::SourceMap::new(text);
    let (wf, raw) = match yaml::parse(file, &map) {
        Err(d) => (None, d),
        Ok(root) => {
            let mut cx = convert::Cx::new(file, &map);
            let wf = convert::workflow(&mut cx, root.as_ref());
            check::check(&mut cx, &wf);
            (Some(wf), cx.diags)
        }
    };
    let mut diags: Diagnostics = raw
        .into_iter()
        .map(|mut d| {
            d.source_line = map.line(d.span.line).map(str::to_owned);
            d
        })
        .collect::<Vec<_>>()
        .into();
    diags.sort();
    (wf, diags)
}

#[cfg(test)]
mod fuzz {
    //! No input may panic the parser or the checks, and every diagnostic must point inside the
    //! text it describes.

    use super::*;
    use proptest::prelude::*;

    const VALID: &str = include_str!("../../../tests/workflows/valid/active-passive-failover.yaml");

    fn check_all(text: &str) {
        let (wf, diags) = analyze("f.yaml", text);
        let lines = text.split('\n').count() as u32;
        for d in &diags {
            assert!(d.span.line <= lines.max(1), "{d} beyond {lines} lines");
            assert!(d.span.offset + d.span.len <= text.len(), "{d}");
            let _ = d.to_string();
        }
        if let Some(wf) = wf {
            let _ = dag::layers(&wf);
            let _ = schema::check_steps(&wf, &|_| {
                Some(schema::StepSchema {
                    input: serde_json::json!({"type": "object", "additionalProperties": false,
                        "properties": {"url": {"type": "string"}}, "required": ["url"]}),
                    output: serde_json::json!({"properties": {"x": {}}}),
                    grants_needed: vec![meridian_protocol::GrantRequest {
                        kind: meridian_protocol::GrantKind::Http,
                        detail: "https://a.example.com".into(),
                    }],
                })
            });
        }
    }

    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "name",
            "steps",
            "id",
            "uses",
            "needs",
            "with",
            "if",
            "strategy",
            "matrix",
            "retry",
            "grants",
            "http",
            "sql",
            "fs",
            "secrets",
            "inputs",
            "vars",
            "connections",
            "on",
            "schedule",
            "cron",
            "drill",
            "timeout",
            "limits",
            "compensate",
            "approval",
            "include",
            "exclude",
            "a",
            "b",
            ": ",
            ":",
            "\n",
            "  ",
            "    ",
            "- ",
            "[",
            "]",
            "{",
            "}",
            ", ",
            "${{",
            "}}",
            " inputs.x ",
            "steps.a.outputs.y",
            "matrix.r",
            "'",
            "\"",
            "&a ",
            "*a",
            "---",
            "# c",
            "|\n",
            ">\n",
            "30s",
            "0",
            "-1",
            "true",
            "null",
            "~",
            "!!str ",
            "é",
            "\t",
            "\r\n",
            "? ",
            "*/5 * * * *",
            "https://x.com",
            "@sha256:",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            check_all(&s);
        }

        #[test]
        fn yaml_shaped_text_never_panics(parts in prop::collection::vec(fragment(), 0..120)) {
            check_all(&parts.concat());
        }

        #[test]
        fn mutated_workflows_never_panic(
            edits in prop::collection::vec((0usize..VALID.len(), 0usize..8, fragment()), 1..6)
        ) {
            let mut text = VALID.to_owned();
            for (at, del, ins) in edits {
                let mut at = at.min(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + del).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.replace_range(at..end, ins);
            }
            check_all(&text);
        }
    }

    #[test]
    fn pathological_inputs_are_refused_cleanly() {
        check_all(&"[".repeat(10_000));
        check_all(&"- ".repeat(10_000));
        check_all(&"a:\n ".repeat(5_000));
        let big = "x".repeat(MAX_FILE_SIZE + 1);
        let (_, d) = analyze("f", &big);
        assert!(d.to_string().contains("larger than"));
        check_all(&format!(
            "name: x\nsteps:\n  - id: a\n    uses: b\n    if: {}1{}\n",
            "(".repeat(500),
            ")".repeat(500)
        ));
    }
}
