//! Checks a workflow against what its step components declare (`describe()` in the WIT
//! contract): each step's `with:` against the JSON Schema of its input, references to
//! `steps.<id>.outputs.<name>` against the output schema, and the grants a step needs against
//! the grants the workflow gives it (an error unless the workflow marks the need's kind
//! `optional`; see `grants.rs`).
//!
//! Supported JSON Schema subset: `type` (one or a list), `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `items`, `minItems`,
//! `maxItems`, `properties`, `required`, `additionalProperties` (bool or schema), `allOf`,
//! `anyOf`, `oneOf` (as "any"), and local `$ref`s (`#/…`). Unknown keywords are ignored.
//!
//! A value written as one `${{ expr }}` keeps the expression's type. That type is checked against
//! the input's `type` when it is known before the run: from a producing step's output schema
//! (`steps.<id>.outputs.<name>`, and the matrix forms), a declared input type, a literal, or a
//! function's result; anything else is skipped. A string that mixes text and expressions is
//! known to be a string, so it is type-checked as one.
//!
//! Cost: one lookup per distinct `uses:`, then linear in the size of the `with:` values times the
//! schema's branching (`anyOf` re-checks a value once per branch).

mod exprs;
mod grants;
mod json;
#[cfg(test)]
mod tests;
mod value;

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::check::sites;
use crate::convert::locate;
use crate::diag::{Diagnostic, did_you_mean};
use crate::source::SourceMap;
use crate::span::Span;
use crate::workflow::*;

use exprs::Types;
pub use json::{MAX_PROBLEMS, check_json};

/// What a step component declares about itself (from its `describe()` manifest).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepSchema {
    /// JSON Schema of the step's input (its `with:`).
    pub input: Json,
    /// JSON Schema of the step's output object.
    pub output: Json,
    /// Capabilities the step needs, e.g. http `https://route53.amazonaws.com`, secret
    /// `AWS_SECRET_ACCESS_KEY`, fs `/data`.
    pub grants_needed: Vec<meridian_protocol::GrantRequest>,
}

/// Checks every step against its component's schema; `lookup` gives a component's schema
/// (`None`: unknown, skipped). Returns errors and warnings, sorted by position.
pub fn check_steps(
    wf: &Workflow,
    lookup: &dyn Fn(&ComponentRef) -> Option<StepSchema>,
) -> Vec<Diagnostic> {
    let map = SourceMap::new(&wf.source);
    // `lookup` may be costly (compiling a component to ask it); ask once per component, then
    // lend the answers (a schema is cloned nowhere: a 10,000-step workflow cloned one per step).
    let mut cache: HashMap<&ComponentRef, Option<StepSchema>> = HashMap::new();
    let compensations = wf.steps.iter().filter_map(|s| match &s.compensate {
        Compensate::Step { component, .. } => Some(component),
        _ => None,
    });
    for c in wf
        .steps
        .iter()
        .filter_map(|s| s.component.as_ref())
        .chain(compensations)
    {
        if !cache.contains_key(c) {
            cache.insert(c, lookup(c));
        }
    }
    let get = |c: &ComponentRef| cache.get(c).and_then(Option::as_ref);
    // Every output schema is needed before any `with:` is checked: a value may use the output
    // of any step it needs, wherever that step is in the file.
    let by_step: Vec<Option<&StepSchema>> = wf
        .steps
        .iter()
        .map(|s| s.component.as_ref().and_then(get))
        .collect();
    let types = Types::new(wf, &by_step);
    let mut out = Checker {
        file: &wf.file,
        map: &map,
        types: &types,
        diags: Vec::new(),
    };
    for (s, schema) in wf.steps.iter().zip(&by_step) {
        if let Some(sc) = schema {
            out.with(&sc.input, &s.with, s.uses.span, &s.id.value, &s.uses.value);
            out.grants(wf, s, &sc.input, &sc.grants_needed);
        }
        if let Compensate::Step {
            uses,
            component,
            with,
            ..
        } = &s.compensate
            && let Some(sc) = get(component)
        {
            out.with(&sc.input, with, uses.span, &s.id.value, &uses.value);
        }
    }
    // Output names used by expressions.
    let step_index: HashMap<&str, usize> = wf
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.value.as_str(), i))
        .collect();
    for site in sites(wf) {
        for r in &site.refs {
            if r.path.len() < 4 || r.path[0] != "steps" || r.path[2] != "outputs" {
                continue;
            }
            let Some(&ti) = step_index.get(r.path[1].as_str()) else {
                continue;
            };
            let target = &wf.steps[ti];
            let name_at = if target.matrix.is_some() { 4 } else { 3 };
            let Some(name) = r.path.get(name_at) else {
                continue;
            };
            let Some(sc) = by_step[ti] else { continue };
            let Some(props) = closed_properties(&sc.output) else {
                continue;
            };
            if !props.contains(&name.as_str()) {
                let span = locate(&map, site.span, site.raw, r.offset, r.len);
                let hint = did_you_mean(name, props.iter().copied())
                    .map(|c| format!("did you mean `{c}`?"))
                    .or_else(|| {
                        Some(if props.is_empty() {
                            format!("`{}` declares no outputs", target.uses.value)
                        } else {
                            format!("its outputs: {}", props.join(", "))
                        })
                    });
                out.push(
                    Diagnostic::error(
                        &wf.file,
                        span,
                        format!(
                            "step `{}` (`uses: {}`) has no output `{name}`",
                            target.id.value, target.uses.value
                        ),
                    ),
                    hint,
                );
            }
        }
    }
    let mut d = crate::diag::Diagnostics::from(out.diags);
    d.sort();
    d.into_vec()
}

/// The property names of an output schema that lists them and does not allow others.
fn closed_properties(schema: &Json) -> Option<Vec<&str>> {
    let props = schema.get("properties")?.as_object()?;
    match schema.get("additionalProperties") {
        Some(Json::Bool(true) | Json::Object(_)) => None,
        _ => Some(props.keys().map(String::as_str).collect()),
    }
}

struct Checker<'a> {
    file: &'a str,
    map: &'a SourceMap<'a>,
    /// What expressions in `with:` can be known to give.
    types: &'a Types<'a>,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic, hint: Option<String>) {
        let mut d = d;
        d.hint = hint;
        d.source_line = self.map.line(d.span.line).map(str::to_owned);
        self.diags.push(d);
    }

    fn err(&mut self, span: Span, msg: String, hint: Option<String>) {
        self.push(Diagnostic::error(self.file, span, msg), hint);
    }
}
