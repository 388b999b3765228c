//! `with:` values written as one `${{ }}`: the expression's type, when it is known before the
//! run, against the input schema's `type`. Without this a mismatch (an integer output fed to a
//! string input) passes validation and fails only when the consuming step runs.
//!
//! Only a single `type` name on the input side is checked: a list of types, `anyOf` or no `type`
//! accepts any expression, as does an expression whose type is not known (see
//! [`crate::expr::ExprType`] for how little inference claims).

use std::collections::HashMap;

use serde_json::Value as Json;

use super::value::resolve;
use super::{Checker, StepSchema};
use crate::expr::ExprType;
use crate::workflow::*;

/// What references in expressions are known to hold before the run.
pub(super) struct Types<'w> {
    wf: &'w Workflow,
    /// Each step's component schema, by index in `wf.steps`.
    schemas: &'w [Option<&'w StepSchema>],
    step_index: HashMap<&'w str, usize>,
}

impl<'w> Types<'w> {
    pub(super) fn new(wf: &'w Workflow, schemas: &'w [Option<&'w StepSchema>]) -> Self {
        let step_index = wf
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.value.as_str(), i))
            .collect();
        Types {
            wf,
            schemas,
            step_index,
        }
    }

    /// The type of the value at a reference path (`["steps", "a", "outputs", "port"]`).
    fn path_type(&self, path: &[String]) -> Option<ExprType> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["inputs", name] => Some(match self.wf.inputs.get(*name)?.ty {
                // Durations stay text at run time, as written.
                InputType::String | InputType::Duration => ExprType::String,
                InputType::Number => ExprType::Number,
                InputType::Integer => ExprType::Integer,
                InputType::Bool => ExprType::Bool,
                InputType::List => ExprType::Array,
                InputType::Map => ExprType::Object,
            }),
            ["secrets", name] if self.wf.secrets.iter().any(|s| s.value == *name) => {
                Some(ExprType::String)
            }
            ["run", "id" | "workflow" | "mode"] => Some(ExprType::String),
            ["run", "started_at_ms"] => Some(ExprType::Integer),
            ["steps", id, "outcome" | "conclusion"] if self.step_index.contains_key(id) => {
                Some(ExprType::String)
            }
            ["steps", id, "legs"] if self.step_index.contains_key(id) => Some(ExprType::Array),
            _ => {
                let (step, name) = self.output_ref(&names)?;
                let (root, schema) = self.output_schema(step, name)?;
                single_type(root, schema)
            }
        }
    }

    /// The step index and output name a reference path reads: `steps.<id>.outputs.<name>`,
    /// `steps.<id>.outputs.<leg>.<name>` for a matrix step, `steps.<id>.legs[N].outputs.<name>`.
    fn output_ref<'p>(&self, path: &[&'p str]) -> Option<(usize, &'p str)> {
        let ["steps", id, rest @ ..] = path else {
            return None;
        };
        let step = *self.step_index.get(id)?;
        let matrix = self.wf.steps[step].matrix.is_some();
        match rest {
            ["outputs", name] if !matrix => Some((step, name)),
            ["outputs", _leg, name] if matrix => Some((step, name)),
            ["legs", index, "outputs", name] if index.parse::<u64>().is_ok() => Some((step, name)),
            _ => None,
        }
    }

    /// The output schema's root and the schema of one of its properties.
    fn output_schema(&self, step: usize, name: &str) -> Option<(&'w Json, &'w Json)> {
        let root = &self.schemas[step]?.output;
        let prop = root.get("properties")?.get(name)?;
        Some((root, prop))
    }

    /// The outputs of a step declared with the type `want` (an integer for a number), other than
    /// `except`. Stricter than [`ExprType::fits`]: a suggestion must be right, not just possible.
    fn outputs_of_type(&self, step: usize, want: ExprType, except: &str) -> Vec<&'w str> {
        let Some(sc) = self.schemas[step] else {
            return Vec::new();
        };
        let root = &sc.output;
        let Some(props) = root.get("properties").and_then(Json::as_object) else {
            return Vec::new();
        };
        props
            .iter()
            .filter(|(k, s)| {
                k.as_str() != except
                    && single_type(root, s).is_some_and(|t| {
                        t == want || (t == ExprType::Integer && want == ExprType::Number)
                    })
            })
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// The type a schema allows when it names exactly one; a list of types, `anyOf` or no `type`
/// leaves it unknown.
fn single_type(root: &Json, schema: &Json) -> Option<ExprType> {
    let name = resolve(root, schema).get("type")?.as_str()?;
    ExprType::from_schema_name(name)
}

impl Checker<'_> {
    /// Checks a value that is one `${{ }}` against the input schema's `type`.
    pub(super) fn expression(&mut self, schema: &Json, v: &ValueNode, path: &str) {
        let Some(want) = schema.get("type").and_then(Json::as_str) else {
            return;
        };
        let Some(wanted) = ExprType::from_schema_name(want) else {
            return;
        };
        let ValueKind::String(t) = &v.kind else {
            return;
        };
        let Some((_, e)) = t.exprs().next() else {
            return;
        };
        let types = self.types;
        let Some(found) = e.static_type(&|p| types.path_type(p)) else {
            return;
        };
        if found.fits(want) {
            return;
        }
        let src = e.source();
        let mut fixes = Vec::new();
        if wanted == ExprType::String {
            fixes.push(format!("wrap it: `${{{{ format('{{0}}', {src}) }}}}`"));
        } else if found == ExprType::String {
            fixes.push(format!("convert it: `${{{{ fromJSON({src}) }}}}`"));
        }
        // When the expression is just an output reference, another output may be the one meant.
        let refs = e.references();
        if let [r] = refs.as_slice()
            && r.offset == 0
            && r.len == src.len()
        {
            let names: Vec<&str> = r.path.iter().map(String::as_str).collect();
            if let Some((step, name)) = types.output_ref(&names) {
                let others = types.outputs_of_type(step, wanted, name);
                if !others.is_empty() {
                    let list: Vec<String> = others.iter().map(|o| format!("`{o}`")).collect();
                    fixes.push(format!(
                        "use an output of step `{}` that is {}: {}",
                        types.wf.steps[step].id.value,
                        wanted.describe(),
                        list.join(", ")
                    ));
                }
            }
        }
        self.err(
            v.span,
            format!(
                "`{path}` must be {}, but `{src}` is {}",
                wanted.describe(),
                found.describe()
            ),
            (!fixes.is_empty()).then(|| fixes.join(", or ")),
        );
    }
}
