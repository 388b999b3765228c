//! `strategy:` of a step: the matrix axes, `include`/`exclude`, `max-parallel` and `fail-fast`.

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::{Cx, is_ident, of};
use crate::diag::suggest;
use crate::span::Spanned;
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};

pub(super) fn strategy(cx: &mut Cx<'_>, n: &Node, label: &str) -> Option<Matrix> {
    let what = format!("in `strategy` {}", of(label));
    let f = cx.fields(n, &["matrix", "max-parallel", "fail-fast"], &what)?;
    let m = cx.require(&f, "matrix", &what)?;
    let mut matrix = Matrix {
        span: m.span,
        axes: IndexMap::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        max_parallel: None,
        fail_fast: true,
    };
    if let Some(v) = f.get("max-parallel") {
        matrix.max_parallel = cx.uint(v, "`strategy.max-parallel`", 1).map(|v| v as usize);
    }
    if let Some(v) = f.get("fail-fast") {
        matrix.fail_fast = cx.bool(v, "`strategy.fail-fast`").unwrap_or(true);
    }
    let Some(entries) = m.as_map() else {
        cx.wrong_type(m, "a mapping of axes", "`strategy.matrix`");
        return None;
    };
    let mut exclude_nodes = Vec::new();
    let mut axis_keys = 0;
    for (k, v) in entries {
        let Some(name) = cx.key(k) else { continue };
        match name.as_str() {
            "include" => matrix.include = combos(cx, v, "include"),
            "exclude" => {
                exclude_nodes.push(v);
                matrix.exclude = combos(cx, v, "exclude");
            }
            _ => {
                axis_keys += 1;
                if !is_ident(&name) {
                    cx.error(
                        k.span,
                        format!("invalid matrix axis name `{name}`"),
                        Some(
                            "use letters, digits, `_` and `-`, starting with a letter or `_`"
                                .into(),
                        ),
                    );
                    continue;
                }
                if let Some(axis) = axis(cx, v, &name) {
                    matrix.axes.entry(name).or_insert(axis);
                }
            }
        }
    }
    // Exclusions name axes; a typo would silently exclude nothing.
    for v in exclude_nodes {
        if let NodeKind::Seq(items) = &v.kind {
            for item in items {
                for (k, _) in item.as_map().unwrap_or(&[]) {
                    if let Some(key) = k.as_str()
                        && !matrix.axes.contains_key(key)
                    {
                        cx.error(
                            k.span,
                            format!("`exclude` names `{key}`, which is not a matrix axis"),
                            suggest(key, matrix.axes.keys().map(String::as_str)),
                        );
                    }
                }
            }
        }
    }
    if matrix.axes.is_empty() && matrix.include.is_empty() {
        if axis_keys > 0 {
            return None; // every axis was reported already
        }
        cx.error(
            m.span,
            "the matrix has no axes",
            Some("add an axis like `region: [eu, us]`".into()),
        );
        return None;
    }
    if matrix.static_legs().is_some_and(|legs| legs.is_empty()) {
        cx.error(
            m.span,
            "the matrix has no legs: `exclude` removes every combination",
            None,
        );
    }
    Some(matrix)
}

fn axis(cx: &mut Cx<'_>, v: &Node, name: &str) -> Option<MatrixAxis> {
    match &v.kind {
        NodeKind::Seq(items) if items.is_empty() => {
            cx.error(v.span, format!("matrix axis `{name}` has no values"), None);
            None
        }
        NodeKind::Seq(items) => {
            let mut values = Vec::with_capacity(items.len());
            for i in items {
                if i.as_str().is_some_and(|s| s.contains("${{")) {
                    cx.error(
                        i.span,
                        format!(
                            "expressions inside the list of matrix axis `{name}` are not evaluated"
                        ),
                        Some(format!(
                            "compute the whole axis instead: `{name}: ${{{{ … }}}}`"
                        )),
                    );
                    return None;
                }
                values.push(cx.value(i).to_json());
            }
            Some(MatrixAxis::Values(values))
        }
        NodeKind::Scalar(Scalar::Str(s, _)) => {
            let t = cx.template_text(v.span, s);
            if t.is_single_expr() {
                Some(MatrixAxis::Expr(Spanned::new(v.span, t)))
            } else if t.is_literal() {
                cx.error(
                    v.span,
                    format!(
                        "matrix axis `{name}` must be a list of values or a `${{{{ }}}}` expression"
                    ),
                    Some(format!("write `{name}: [{s}]` for a single value")),
                );
                None
            } else {
                cx.error(
                    v.span,
                    format!("matrix axis `{name}` must be exactly one `${{{{ }}}}` expression giving a list"),
                    None,
                );
                None
            }
        }
        _ => {
            cx.wrong_type(v, "a list of values", &format!("matrix axis `{name}`"));
            None
        }
    }
}

fn combos(cx: &mut Cx<'_>, v: &Node, what: &str) -> Vec<IndexMap<String, Json>> {
    let NodeKind::Seq(items) = &v.kind else {
        cx.wrong_type(v, "a list of mappings", &format!("`{what}`"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in items {
        match i.as_map() {
            Some([]) => cx.error(i.span, format!("empty entry in `{what}`"), None),
            Some(entries) => {
                let mut m = IndexMap::new();
                for (k, val) in entries {
                    if let Some(key) = cx.key(k) {
                        m.insert(key, cx.value(val).to_json());
                    }
                }
                out.push(m);
            }
            None => cx.wrong_type(i, "a mapping", &format!("an entry of `{what}`")),
        }
    }
    out
}
