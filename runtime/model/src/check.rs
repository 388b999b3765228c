//! Checks across parts of a converted workflow: duplicate step ids, `needs` naming unknown steps,
//! dependency cycles, and every `${{ }}` reference (to inputs, vars, secrets, matrix keys and
//! other steps, which must be among the step's transitive `needs`).
//!
//! Cost: linear in the size of the workflow, plus, when steps reference other steps, the
//! transitive closure of `needs` as bitsets (steps² / 64 words).

use std::collections::HashMap;

use crate::convert::Cx;
use crate::diag::suggest;
use crate::expr::Reference;
use crate::span::Span;
use crate::workflow::*;

/// Where a piece of expression code sits, which decides what it may reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The value of the i-th var.
    Var(usize),
    Connection,
    /// The drill's canary block (set up like a connection, before any step).
    Canary,
    With,
    If,
    MatrixAxis,
    CompensateWith,
    ApprovalMessage,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Var(_) => "`vars`",
            Place::Connection => "`connections`",
            Place::Canary => "`drill.canary`",
            Place::With => "`with`",
            Place::If => "`if`",
            Place::MatrixAxis => "`strategy.matrix`",
            Place::CompensateWith => "`compensate.with`",
            Place::ApprovalMessage => "`approval.message`",
        }
    }
}

/// One template or expression with its references.
pub(crate) struct Site<'w> {
    pub(crate) place: Place,
    pub(crate) step: Option<usize>,
    /// The scalar that holds the code.
    pub(crate) span: Span,
    /// The scalar's value (reference offsets are into this).
    pub(crate) raw: &'w str,
    pub(crate) refs: Vec<Reference>,
    /// Offset of a status-function call, if any.
    pub(crate) status_fn: Option<usize>,
}

/// Every place in the workflow that holds expression code.
pub(crate) fn sites(wf: &Workflow) -> Vec<Site<'_>> {
    let mut out = Vec::new();
    fn push_t<'w>(
        out: &mut Vec<Site<'w>>,
        place: Place,
        step: Option<usize>,
        span: Span,
        t: &'w crate::expr::Template,
    ) {
        if t.is_literal() {
            return;
        }
        out.push(Site {
            place,
            step,
            span,
            raw: t.raw(),
            refs: t.references(),
            status_fn: t.status_function_offset(),
        });
    }
    for (i, v) in wf.vars.values().enumerate() {
        v.for_each_template(&mut |span, t| push_t(&mut out, Place::Var(i), None, span, t));
    }
    for c in wf.connections.values() {
        let t = match &c.kind {
            ConnectionKind::Postgres(t) | ConnectionKind::Http(t) => t,
        };
        push_t(&mut out, Place::Connection, None, c.span, t);
    }
    // The drill's prober is set up like a connection: before any step, from inputs and vars.
    if let Some(p) = wf.drill.as_ref().and_then(|d| d.canary.as_ref()) {
        let templates = p
            .prober
            .iter()
            .flat_map(|p| [Some(&p.url), p.dns.as_ref(), p.expect.as_ref()])
            .flatten();
        for t in templates {
            push_t(&mut out, Place::Canary, None, p.span, t);
        }
    }
    for (si, s) in wf.steps.iter().enumerate() {
        for v in s.with.values() {
            v.for_each_template(&mut |span, t| push_t(&mut out, Place::With, Some(si), span, t));
        }
        if let Some(c) = &s.condition {
            out.push(Site {
                place: Place::If,
                step: Some(si),
                span: c.span,
                raw: c.value.source(),
                refs: c.value.references(),
                status_fn: c.value.status_function_offset(),
            });
        }
        if let Some(m) = &s.matrix {
            for axis in m.axes.values() {
                if let MatrixAxis::Expr(t) = axis {
                    push_t(&mut out, Place::MatrixAxis, Some(si), t.span, &t.value);
                }
            }
        }
        if let Compensate::Step { with, .. } = &s.compensate {
            for v in with.values() {
                v.for_each_template(&mut |span, t| {
                    push_t(&mut out, Place::CompensateWith, Some(si), span, t);
                });
            }
        }
        if let Some(a) = &s.approval
            && let Some(m) = &a.message
        {
            push_t(&mut out, Place::ApprovalMessage, Some(si), a.span, m);
        }
    }
    out
}

/// The step graph: ids to indices and resolved `needs` (unknown names left out).
pub(crate) struct Graph {
    pub(crate) index: HashMap<String, usize>,
    pub(crate) needs: Vec<Vec<usize>>,
}

impl Graph {
    pub(crate) fn new(wf: &Workflow) -> Self {
        let mut index = HashMap::with_capacity(wf.steps.len());
        for (i, s) in wf.steps.iter().enumerate() {
            index.entry(s.id.value.clone()).or_insert(i);
        }
        let needs = wf
            .steps
            .iter()
            .map(|s| {
                // Self-needs are reported on their own, not as a cycle.
                let me = index.get(&s.id.value).copied();
                let mut v: Vec<usize> = Vec::with_capacity(s.needs.len());
                for n in &s.needs {
                    if let Some(&j) = index.get(&n.value)
                        && Some(j) != me
                        && !v.contains(&j)
                    {
                        v.push(j);
                    }
                }
                v
            })
            .collect();
        Graph { index, needs }
    }

    /// Bitsets of every step each step transitively needs, for an acyclic graph: one pass in
    /// topological order, each set the union of its needs' sets. Cost: steps² / 64 words.
    fn closure(&self) -> Vec<Vec<u64>> {
        let n = self.needs.len();
        let words = n.div_ceil(64);
        let mut sets: Vec<Vec<u64>> = vec![Vec::new(); n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut pending: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        for (i, ns) in self.needs.iter().enumerate() {
            for &j in ns {
                dependents[j].push(i);
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
        while let Some(i) = ready.pop() {
            let mut set = vec![0u64; words];
            for &j in &self.needs[i] {
                set[j / 64] |= 1u64 << (j % 64);
                for (w, x) in set.iter_mut().zip(&sets[j]) {
                    *w |= x;
                }
            }
            sets[i] = set;
            for &d in &dependents[i] {
                pending[d] -= 1;
                if pending[d] == 0 {
                    ready.push(d);
                }
            }
        }
        sets
    }

    /// Bitset of every step `i` transitively needs (a graph walk; works with cycles).
    fn ancestors(&self, i: usize) -> Vec<u64> {
        let n = self.needs.len();
        let mut bits = vec![0u64; n.div_ceil(64)];
        let mut stack: Vec<usize> = self.needs[i].clone();
        while let Some(j) = stack.pop() {
            let (w, b) = (j / 64, 1u64 << (j % 64));
            if bits[w] & b == 0 {
                bits[w] |= b;
                stack.extend(self.needs[j].iter().copied());
            }
        }
        bits
    }

    /// One dependency cycle per strongly tangled group, each as a list of step indices in run
    /// order (`a -> b` meaning b needs a), first step repeated at the end.
    pub(crate) fn cycles(&self) -> Vec<Vec<usize>> {
        let n = self.needs.len();
        // Kahn's algorithm: what remains afterwards is in a cycle or depends on one; each of
        // those steps has at least one need that also remains.
        let mut pending: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, ns) in self.needs.iter().enumerate() {
            for &j in ns {
                dependents[j].push(i);
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
        let mut done = vec![false; n];
        while let Some(i) = ready.pop() {
            done[i] = true;
            for &d in &dependents[i] {
                pending[d] -= 1;
                if pending[d] == 0 {
                    ready.push(d);
                }
            }
        }
        let mut visited = vec![false; n];
        let mut out = Vec::new();
        for start in 0..n {
            if done[start] || visited[start] {
                continue;
            }
            // Walk needs among the remaining steps until a step repeats.
            let mut path: Vec<usize> = Vec::new();
            let mut pos: HashMap<usize, usize> = HashMap::new();
            let mut cur = start;
            loop {
                if visited[cur] {
                    if let Some(&p) = pos.get(&cur) {
                        // A new cycle: path[p..] (in needs order), closed.
                        let mut cyc: Vec<usize> = path[p..].to_vec();
                        cyc.reverse();
                        // Start at the step that comes first in the file, for stable messages.
                        let first = (0..cyc.len()).min_by_key(|&k| cyc[k]).unwrap_or(0);
                        cyc.rotate_left(first);
                        cyc.push(cyc[0]);
                        out.push(cyc);
                    }
                    break;
                }
                visited[cur] = true;
                pos.insert(cur, path.len());
                path.push(cur);
                match self.needs[cur].iter().find(|&&j| !done[j]) {
                    Some(&next) => cur = next,
                    None => break,
                }
            }
        }
        out
    }
}

const STEP_FIELDS: [&str; 4] = ["outputs", "outcome", "conclusion", "legs"];
const RUN_FIELDS: [&str; 4] = ["id", "workflow", "mode", "started_at_ms"];
/// The `drill:` block's targets as expressions see them (`null` when not set).
pub(crate) const DRILL_FIELDS: [&str; 7] = [
    "rto_ms",
    "capacity_ms",
    "rpo_ms",
    "rpo_bytes",
    "rpo_rows",
    "downtime_ms",
    "write_outage_ms",
];

/// "Does step i (transitively) need step j?", answered from a closure computed on first use
/// (acyclic graphs) or from a walk per asking step (graphs with a cycle, already an error).
struct Ancestors<'g> {
    graph: &'g Graph,
    acyclic: bool,
    closure: Option<Vec<Vec<u64>>>,
    walked: HashMap<usize, Vec<u64>>,
}

impl Ancestors<'_> {
    fn needs(&mut self, i: usize, j: usize) -> bool {
        let set = if self.acyclic {
            let g = self.graph;
            &self.closure.get_or_insert_with(|| g.closure())[i]
        } else {
            let g = self.graph;
            self.walked.entry(i).or_insert_with(|| g.ancestors(i))
        };
        set.get(j / 64).is_some_and(|w| w & (1u64 << (j % 64)) != 0)
    }
}

/// Runs every cross-part check.
pub(crate) fn check(cx: &mut Cx<'_>, wf: &Workflow) {
    let graph = Graph::new(wf);
    check_steps(cx, wf, &graph);
    check_git(cx, wf);
    let cycles = graph.cycles();
    let cycles_found = cycles.len();
    for c in cycles {
        let names: Vec<&str> = c.iter().map(|&i| wf.steps[i].id.value.as_str()).collect();
        let first = &wf.steps[c[0]];
        // Point at the `needs` entry of the cycle's first step that closes the loop.
        let closing = wf.steps[c[c.len() - 2]].id.value.as_str();
        let span = first
            .needs
            .iter()
            .find(|n| n.value == closing)
            .map_or(first.id.span, |n| n.span);
        cx.error(
            span,
            format!("dependency cycle: {}", names.join(" -> ")),
            Some("each step runs after the steps it `needs`; remove one of these `needs`".into()),
        );
    }
    let mut anc = Ancestors {
        graph: &graph,
        acyclic: cycles_found == 0,
        closure: None,
        walked: HashMap::new(),
    };
    let sites = sites(wf);
    for site in &sites {
        check_site(cx, wf, &mut anc, site);
    }
    check_secret_flows(cx, wf, &sites);
    // A scheduled run's inputs come from its schedule entry, else from the server's inputs
    // file for the workflow (`meridian serve`), which this file cannot see: a warning, and the
    // server refuses to arm a schedule that still lacks one.
    for s in wf.on.iter().flat_map(|o| &o.schedule) {
        for (name, def) in &wf.inputs {
            if def.required && !s.inputs.contains_key(name) {
                cx.warn(
                    s.span,
                    format!("this schedule does not give the required input `{name}`"),
                    Some(format!(
                        "add `inputs: {{{name}: …}}` to the schedule, or name an inputs file for the workflow in the server's config"
                    )),
                );
            }
        }
        for name in s.inputs.keys() {
            if !wf.inputs.contains_key(name) {
                let hint = crate::diag::suggest(name, wf.inputs.keys().map(String::as_str));
                cx.error(
                    s.span,
                    format!(
                        "this schedule gives input `{name}`, which the workflow does not declare"
                    ),
                    hint,
                );
            }
        }
    }
}

/// `on.git`: the run is tied to its commit through the `git_commit` input, so the workflow must
/// declare it; the other git inputs are optional but must have their types.
fn check_git(cx: &mut Cx<'_>, wf: &Workflow) {
    let Some(g) = wf.on.as_ref().and_then(|o| o.git.as_ref()) else {
        return;
    };
    if !wf.inputs.contains_key("git_commit") {
        cx.error(
            g.span,
            "a workflow with `on.git` must declare the input `git_commit` (the commit a run is for)",
            Some(
                "add to `inputs:`\n  git_commit: {type: string, required: true}\n  git_files: {type: map, default: {}}"
                    .into(),
            ),
        );
    }
    for (name, ty) in GitTrigger::INPUTS {
        if let Some(def) = wf.inputs.get(name)
            && def.ty.name() != ty
        {
            cx.error(
                def.span,
                format!("input `{name}` is set by `on.git` and must have `type: {ty}`"),
                None,
            );
        }
    }
}

fn check_steps(cx: &mut Cx<'_>, wf: &Workflow, graph: &Graph) {
    let ids = || wf.steps.iter().map(|s| s.id.value.as_str());
    for (i, s) in wf.steps.iter().enumerate() {
        let first = graph.index[&s.id.value];
        if first != i {
            let hint = format!(
                "the first step `{}` is at line {}; step ids must be unique",
                s.id.value, wf.steps[first].id.span.line
            );
            cx.error(
                s.id.span,
                format!("duplicate step id `{}`", s.id.value),
                Some(hint),
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for n in &s.needs {
            if n.value == s.id.value {
                cx.error(n.span, format!("step `{}` needs itself", s.id.value), None);
            } else if !graph.index.contains_key(&n.value) {
                let hint = suggest(&n.value, ids())
                    .or_else(|| Some(format!("steps: {}", ids().collect::<Vec<_>>().join(", "))));
                cx.error(
                    n.span,
                    format!("step `{}` needs unknown step `{}`", s.id.value, n.value),
                    hint,
                );
            } else if seen.contains(&n.value.as_str()) {
                cx.warn(
                    n.span,
                    format!("`{}` is listed twice in `needs`", n.value),
                    None,
                );
            }
            seen.push(&n.value);
        }
        if let Some(m) = &s.matrix
            && let Some(legs) = m.static_legs()
        {
            let mut keys: Vec<&str> = legs.iter().map(|l| l.key.as_str()).collect();
            keys.sort_unstable();
            if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
                cx.warn(
                    m.span,
                    format!("matrix leg `{}` appears more than once; it runs once", w[0]),
                    None,
                );
            }
        }
    }
}

fn check_site(cx: &mut Cx<'_>, wf: &Workflow, anc: &mut Ancestors<'_>, site: &Site<'_>) {
    let at = |cx: &Cx<'_>, r: &Reference| cx.locate(site.span, site.raw, r.offset, r.len);
    if let Some(off) = site.status_fn
        && site.place != Place::If
    {
        let span = cx.locate(site.span, site.raw, off, 1);
        cx.error(
            span,
            format!(
                "status functions like `success()` are only allowed in `if`, not in {}",
                site.place.name()
            ),
            None,
        );
    }
    let step = site.step.map(|i| &wf.steps[i]);
    for r in &site.refs {
        let ctx = r.path[0].as_str();
        let name = r.path.get(1).map(String::as_str);
        let allowed = match site.place {
            Place::Var(_) | Place::Connection | Place::Canary => {
                matches!(ctx, "inputs" | "vars" | "secrets" | "run")
            }
            Place::MatrixAxis => ctx != "matrix",
            _ => true,
        };
        if !allowed {
            let why = match site.place {
                Place::MatrixAxis => "the matrix is computed before its legs exist".to_owned(),
                p => format!(
                    "{} are evaluated before any step runs; use inputs, vars, secrets or run",
                    p.name()
                ),
            };
            cx.error(
                at(cx, r),
                format!("`{ctx}` cannot be used in {}", site.place.name()),
                Some(why),
            );
            continue;
        }
        let Some(name) = name else { continue };
        match ctx {
            "inputs" if !wf.inputs.contains_key(name) => {
                let hint = suggest(name, wf.inputs.keys().map(String::as_str)).or_else(|| {
                    Some(format!(
                        "declare it under `inputs:` as `{name}: {{type: string}}`"
                    ))
                });
                cx.error(at(cx, r), format!("undefined input `{name}`"), hint);
            }
            "vars" => {
                match wf.vars.get_index_of(name) {
                    None => {
                        let hint = suggest(name, wf.vars.keys().map(String::as_str))
                            .or_else(|| Some("declare it under `vars:`".into()));
                        cx.error(at(cx, r), format!("undefined var `{name}`"), hint);
                    }
                    Some(j) => {
                        if let Place::Var(i) = site.place
                            && j >= i
                        {
                            cx.error(
                            at(cx, r),
                            format!("var `{name}` is not defined before this var"),
                            Some("vars are evaluated in order and may use only the vars above them".into()),
                        );
                        }
                    }
                }
            }
            "secrets" if !wf.secrets.iter().any(|s| s.value == name) => {
                let hint = suggest(name, wf.secrets.iter().map(|s| s.value.as_str()))
                    .or_else(|| Some(format!("add `{name}` to the top-level `secrets:` list")));
                cx.error(at(cx, r), format!("undefined secret `{name}`"), hint);
            }
            "drill" if wf.drill.is_none() => {
                cx.error(
                    at(cx, r),
                    format!("`drill.{name}`: the workflow has no `drill:` block"),
                    Some("declare the targets under `drill:` (e.g. `drill: {rto: 60s}`)".into()),
                );
            }
            "drill" if !DRILL_FIELDS.contains(&name) => {
                let hint = suggest(name, DRILL_FIELDS)
                    .or_else(|| Some(format!("`drill` has {}", DRILL_FIELDS.join(", "))));
                cx.error(at(cx, r), format!("unknown field `drill.{name}`"), hint);
            }
            "run" if !RUN_FIELDS.contains(&name) => {
                let hint = suggest(name, RUN_FIELDS)
                    .or_else(|| Some(format!("`run` has {}", RUN_FIELDS.join(", "))));
                cx.error(at(cx, r), format!("unknown field `run.{name}`"), hint);
            }
            "matrix" => {
                let Some(s) = step else { continue };
                match &s.matrix {
                    None => cx.error(
                        at(cx, r),
                        format!(
                            "step `{}` has no matrix, so `matrix.{name}` is undefined",
                            s.id.value
                        ),
                        Some("add `strategy: {matrix: {…}}` to the step".into()),
                    ),
                    Some(m) if !m.keys().contains(&name) => {
                        let hint = suggest(name, m.keys())
                            .or_else(|| Some(format!("matrix keys: {}", m.keys().join(", "))));
                        cx.error(at(cx, r), format!("undefined matrix key `{name}`"), hint);
                    }
                    Some(_) => {}
                }
            }
            "steps" => check_step_ref(cx, wf, anc, site, r, at(cx, r)),
            _ => {}
        }
    }
}

fn check_step_ref(
    cx: &mut Cx<'_>,
    wf: &Workflow,
    anc: &mut Ancestors<'_>,
    site: &Site<'_>,
    r: &Reference,
    span: Span,
) {
    let target = r.path[1].as_str();
    let Some(&ti) = anc.graph.index.get(target) else {
        let ids = || wf.steps.iter().map(|s| s.id.value.as_str());
        let hint = suggest(target, ids())
            .or_else(|| Some(format!("steps: {}", ids().collect::<Vec<_>>().join(", "))));
        cx.error(span, format!("undefined step `{target}`"), hint);
        return;
    };
    if let Some(si) = site.step {
        let me = &wf.steps[si].id.value;
        if ti == si {
            if site.place != Place::CompensateWith {
                cx.error(
                    span,
                    format!(
                        "step `{me}` cannot use its own results in {}",
                        site.place.name()
                    ),
                    Some("only `compensate.with` may, since it runs after the step".into()),
                );
                return;
            }
        } else {
            if !anc.needs(si, ti) {
                cx.error(
                    span,
                    format!("step `{me}` uses `steps.{target}` but does not depend on it"),
                    Some(format!("add `needs: [{target}]` to step `{me}`")),
                );
                return;
            }
        }
    } else {
        cx.error(
            span,
            format!("`steps` cannot be used in {}", site.place.name()),
            None,
        );
        return;
    }
    let Some(field) = r.path.get(2).map(String::as_str) else {
        return;
    };
    if !STEP_FIELDS.contains(&field) {
        let hint = suggest(field, STEP_FIELDS)
            .or_else(|| Some(format!("a step has {}", STEP_FIELDS.join(", "))));
        cx.error(
            span,
            format!("unknown field `{field}` of `steps.{target}`"),
            hint,
        );
        return;
    }
    // Outputs of a matrix step are keyed by leg; check the key when the legs are known statically.
    if field == "outputs"
        && let Some(key) = r.path.get(3)
        && let Some(m) = &wf.steps[ti].matrix
        && let Some(legs) = m.static_legs()
        && !legs.iter().any(|l| &l.key == key)
    {
        let keys: Vec<&str> = legs.iter().map(|l| l.key.as_str()).collect();
        let example = keys.first().copied().unwrap_or("eu");
        // What follows the leg is the output's name (`outputs.xx.greeting`: `greeting`); with
        // nothing after it, the key itself may be the output's name.
        let name = r.path.get(4).unwrap_or(key);
        cx.error(
            span,
            format!(
                "step `{target}` has a matrix: its outputs are keyed by leg, and `{key}` is not one"
            ),
            Some(format!(
                "legs: {}; write e.g. `steps.{target}.outputs['{example}'].{name}`",
                keys.join(", ")
            )),
        );
    } else if field == "outputs"
        && let Some(key) = r.path.get(3)
        && wf.steps[ti].if_per_leg()
    {
        cx.warn(
            span,
            format!(
                "step `{target}` reads `matrix` in its `if:`, so its leg `{key}` may be skipped; a skipped leg's outputs are null"
            ),
            Some(format!(
                "check `steps.{target}.outputs.{key}` before use, e.g. `steps.{target}.outputs.{key} && …`, or read the legs that ran from `steps.{target}.legs`"
            )),
        );
    }
}

/// A secret's value reaches a step's component only through the step's `grants.secrets`, so its
/// grants say all it can see: a `with:` (or `compensate.with:`, or a matrix axis the `with:`
/// reads) that holds `secrets.X`, directly or through vars, needs `X` granted. Without this a
/// var was a way around the grant that nothing pointed out.
fn check_secret_flows(cx: &mut Cx<'_>, wf: &Workflow, sites: &[Site<'_>]) {
    use std::collections::BTreeSet;
    // The secrets each var holds, its own and those of the vars it uses (vars use only the vars
    // above them, and sites come in file order, so one pass in var order is enough).
    // `secrets` read as a whole — `toJSON(secrets)`, `secrets.*`, `secrets[<computed>]` — may
    // hold any of them (and `vars` as a whole, any var's).
    let every_secret: BTreeSet<&str> = wf.secrets.iter().map(|d| d.value.as_str()).collect();
    let mut var_secrets: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); wf.vars.len()];
    for site in sites {
        let Place::Var(i) = site.place else { continue };
        for r in &site.refs {
            match (r.path[0].as_str(), r.path.get(1)) {
                ("secrets", Some(name)) => {
                    var_secrets[i].insert(name.as_str());
                }
                ("secrets", None) => var_secrets[i].extend(every_secret.iter().copied()),
                ("vars", Some(name)) => {
                    if let Some(j) = wf.vars.get_index_of(name.as_str()).filter(|&j| j < i) {
                        let held: Vec<&str> = var_secrets[j].iter().copied().collect();
                        var_secrets[i].extend(held);
                    }
                }
                ("vars", None) => {
                    let held: Vec<&str> = var_secrets[..i].iter().flatten().copied().collect();
                    var_secrets[i].extend(held);
                }
                _ => {}
            }
        }
    }
    for site in sites {
        let Some(si) = site.step else { continue };
        let step = &wf.steps[si];
        let reads_matrix = || {
            sites.iter().any(|o| {
                o.step == Some(si)
                    && matches!(o.place, Place::With | Place::CompensateWith)
                    && o.refs.iter().any(|r| r.path[0] == "matrix")
            })
        };
        let into = match site.place {
            Place::With | Place::CompensateWith => site.place.name(),
            Place::MatrixAxis if reads_matrix() => "`strategy.matrix` (read by its `with`)",
            _ => continue,
        };
        for r in &site.refs {
            let held: Vec<(&str, Option<&str>)> = match (r.path[0].as_str(), r.path.get(1)) {
                ("secrets", Some(name)) => vec![(name.as_str(), None)],
                ("secrets", None) => every_secret.iter().map(|s| (*s, None)).collect(),
                ("vars", Some(v)) => match wf.vars.get_index_of(v.as_str()) {
                    Some(j) => var_secrets[j]
                        .iter()
                        .map(|s| (*s, Some(v.as_str())))
                        .collect(),
                    None => continue,
                },
                ("vars", None) => var_secrets
                    .iter()
                    .enumerate()
                    .flat_map(|(j, held)| {
                        let name = wf.vars.get_index(j).map(|(n, _)| n.as_str());
                        held.iter().map(move |s| (*s, name))
                    })
                    .collect(),
                _ => continue,
            };
            // One error per secret a reference lets through (a var may hold it twice over).
            let mut said = BTreeSet::new();
            for (secret, via) in held {
                if step.grants.secrets.iter().any(|g| g.value == secret)
                    || !wf.secrets.iter().any(|d| d.value == secret)
                    || !said.insert(secret)
                {
                    continue;
                }
                let via = match via {
                    Some(v) => format!(" (through var `{v}`)"),
                    None if r.path.len() == 1 => " (`secrets` read as a whole)".to_string(),
                    None => String::new(),
                };
                cx.error(
                    cx.locate(site.span, site.raw, r.offset, r.len),
                    format!(
                        "secret `{secret}` reaches step `{}` through {into}{via}, but the step does not grant it",
                        step.id.value
                    ),
                    Some(format!(
                        "add it to the step's grants: `grants: {{secrets: [{secret}]}}` (a secret's value reaches a step only through its grants)"
                    )),
                );
            }
        }
    }
}
