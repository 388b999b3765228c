//! What a step's expressions see: the run's base data, the matrix leg and the finished steps it
//! refers to.

use std::collections::BTreeSet;

use indexmap::IndexMap;
use meridian_model::expr::{EvalContext, RunStatus as ExprStatus};
use meridian_model::{Compensate, MatrixAxis, Step, ValueNode};
use serde_json::{Map, Value as Json};

use super::runner::Runner;

impl Runner {
    /// What step `i`'s expressions see, with the matrix leg's values when given.
    pub(super) fn ctx(&self, i: usize, matrix: Option<&Json>) -> EvalContext {
        let mut data = self.base.clone();
        if let Some(m) = matrix {
            data.insert("matrix".into(), m.clone());
        }
        let steps: Map<String, Json> = match &self.refs[i] {
            Some(ids) => ids
                .iter()
                .filter_map(|id| self.published.get(id).map(|v| (id.clone(), v.clone())))
                .collect(),
            None => self
                .published
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        data.insert("steps".into(), Json::Object(steps));
        EvalContext {
            data: Json::Object(data),
            status: ExprStatus {
                failed: self.failed,
                cancelled: self.cancelled,
            },
        }
    }
}

impl Runner {
    /// `f` on `ctx` with `secrets` holding only what step `i` grants: what its `with:` (and
    /// the matrix feeding it) is evaluated against, so no expression — `toJSON(secrets)`,
    /// `secrets.*`, a computed index — hands its component a secret its grants do not name.
    /// (Validation refuses such a workflow first; this holds whatever validation missed.)
    /// `ctx` is as it was afterwards.
    pub(super) fn granted_only<T>(
        &self,
        i: usize,
        ctx: &mut EvalContext,
        f: impl FnOnce(&EvalContext) -> T,
    ) -> T {
        let grants = &self.wf.steps[i].grants.secrets;
        let Json::Object(data) = &mut ctx.data else {
            return f(ctx);
        };
        let all = data.remove("secrets");
        let kept: Map<String, Json> = match &all {
            Some(Json::Object(all)) => all
                .iter()
                .filter(|(name, _)| grants.iter().any(|g| g.value == **name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => Map::new(),
        };
        data.insert("secrets".into(), Json::Object(kept));
        let out = f(ctx);
        if let (Json::Object(data), Some(all)) = (&mut ctx.data, all) {
            data.insert("secrets".into(), all);
        }
        out
    }
}

/// The ids of the steps whose `steps.<id>` a step's expressions read; `None` when one reads the
/// whole `steps` object.
pub(super) fn step_refs(step: &Step) -> Option<BTreeSet<String>> {
    use meridian_model::HttpGrant;
    use meridian_model::expr::Reference;
    let mut refs: Vec<Reference> = Vec::new();
    let add_values = |with: &IndexMap<String, ValueNode>, refs: &mut Vec<Reference>| {
        for v in with.values() {
            v.for_each_template(&mut |_, t| refs.extend(t.references()));
        }
    };
    add_values(&step.with, &mut refs);
    if let Compensate::Step { with, .. } = &step.compensate {
        add_values(with, &mut refs);
    }
    if let Some(c) = &step.condition {
        refs.extend(c.value.references());
    }
    if let Some(m) = step.approval.as_ref().and_then(|a| a.message.as_ref()) {
        refs.extend(m.references());
    }
    if let Some(m) = &step.matrix {
        for axis in m.axes.values() {
            if let MatrixAxis::Expr(t) = axis {
                refs.extend(t.value.references());
            }
        }
    }
    if let Some(d) = &step.grants.dns {
        refs.extend(d.value.references());
    }
    for h in &step.grants.http {
        if let HttpGrant::Template(t) = &h.value {
            refs.extend(t.references());
        }
    }
    let mut ids = BTreeSet::new();
    for r in refs {
        match r.path.as_slice() {
            [first, id, ..] if first == "steps" => {
                ids.insert(id.clone());
            }
            [first] if first == "steps" => return None,
            _ => {}
        }
    }
    Some(ids)
}

pub(super) fn eval_with(
    with: &IndexMap<String, ValueNode>,
    ctx: &EvalContext,
) -> Result<Json, String> {
    let mut out = Map::new();
    for (k, v) in with {
        let value = v.eval(ctx).map_err(|e| format!("with.{k}: {e}"))?;
        out.insert(k.clone(), value);
    }
    Ok(Json::Object(out))
}

/// The component a step runs. Only a workflow that failed validation has none.
pub(super) fn component(step: &Step) -> Result<meridian_model::ComponentRef, String> {
    step.component.clone().ok_or_else(|| {
        format!(
            "`uses: {}` names no step component (validate the workflow)",
            step.uses.value
        )
    })
}
