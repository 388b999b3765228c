//! What `meridian validate` checks beyond the file itself: every `uses:` loads, every `with:`
//! fits its component's input schema, and the workflow's own `trust-policy:` loads. One
//! function for the CLI's `validate` and a server's reload, so a server never puts in service
//! a workflow `validate` refuses.

use meridian_host::WasmExecutor;
use meridian_model::diag::Diagnostic;
use meridian_model::{ComponentRef, Workflow};

use crate::{Runner, StepRunner};

/// The diagnostics of `wf`'s components (loaded, or compiled once, by `exec`): `with:` against
/// each input schema, and a `uses:` that cannot be loaded, at its position. `source` is the
/// workflow's text (for the excerpt under each diagnostic).
pub async fn component_diagnostics(
    exec: &WasmExecutor,
    wf: &Workflow,
    source: &str,
) -> Vec<Diagnostic> {
    let schemas = exec.schemas_for(wf).await;
    let lookup = |c: &ComponentRef| schemas.get(c).and_then(|r| r.as_ref().ok()).cloned();
    let mut out = meridian_model::schema::check_steps(wf, &lookup);
    // The workflow's own trust policy must load, as a run will load it first: `validate` passed
    // a missing or broken one that every run then refused.
    if let Some(p) = &wf.trust_policy
        && let Err(e) = meridian_oci::policy::TrustPolicy::load(&p.value)
    {
        out.push(
            Diagnostic::error(&wf.file, p.span, format!("`trust-policy`: {e}"))
                .with_hint("a TOML trust policy file, its path relative to the workflow file (the README: Shipping steps through an OCI registry)")
                .with_source(source),
        );
    }
    for step in &wf.steps {
        if let Some((c, Err(msg))) = step
            .component
            .as_ref()
            .and_then(|c| Some((c, schemas.get(c)?)))
        {
            let d = Diagnostic::error(
                &wf.file,
                step.uses.span,
                format!("cannot load step `{}`: {msg}", step.uses.value),
            );
            // An OCI artifact's message says what went wrong with the registry or the
            // artifact; the hint is for a name that is neither a built-in nor a file.
            let d = match c {
                ComponentRef::Oci { .. } => d,
                _ => d.with_hint("use a built-in name (`meridian steps list`), a path to a .wasm component, or NAME@sha256:DIGEST"),
            };
            out.push(d.with_source(source));
        }
    }
    out
}

impl Runner {
    /// [`component_diagnostics`] with this runner's sandbox. A distributed runner's components
    /// live with its workers: nothing is checked here.
    pub async fn component_diagnostics(&self, wf: &Workflow, source: &str) -> Vec<Diagnostic> {
        match &self.steps {
            StepRunner::Local(exec) => component_diagnostics(exec, wf, source).await,
            StepRunner::Remote(_) => Vec::new(),
        }
    }
}
