//! The step graph of a workflow: which steps each step needs, and a layered topological order for
//! display (`meridian validate`, plans). Cost: linear in steps plus `needs` edges.

use crate::check::Graph;
use crate::workflow::Workflow;

/// For each step (by index into `wf.steps`), the indices of the steps it needs (unknown names
/// left out, duplicates removed).
pub fn needs(wf: &Workflow) -> Vec<Vec<usize>> {
    Graph::new(wf).needs
}

/// Steps grouped in layers: layer 0 needs nothing, every step sits one layer after the latest of
/// the steps it needs, and steps within a layer keep file order. Steps of a workflow that failed
/// validation with a dependency cycle are put in one last layer, so every step appears once.
pub fn layers(wf: &Workflow) -> Vec<Vec<usize>> {
    let needs = needs(wf);
    let n = needs.len();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ns) in needs.iter().enumerate() {
        for &j in ns {
            dependents[j].push(i);
        }
    }
    let mut pending: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut level = vec![0usize; n];
    let mut placed = vec![false; n];
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| pending[i] == 0).collect();
    while let Some(i) = queue.pop_front() {
        placed[i] = true;
        for &d in &dependents[i] {
            level[d] = level[d].max(level[i] + 1);
            pending[d] -= 1;
            if pending[d] == 0 {
                queue.push_back(d);
            }
        }
    }
    let depth = (0..n)
        .filter(|&i| placed[i])
        .map(|i| level[i] + 1)
        .max()
        .unwrap_or(0);
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for i in 0..n {
        if placed[i] {
            out[level[i]].push(i);
        }
    }
    let rest: Vec<usize> = (0..n).filter(|&i| !placed[i]).collect();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// A topological order of the steps (layer by layer).
pub fn order(wf: &Workflow) -> Vec<usize> {
    layers(wf).into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(yaml: &str) -> Workflow {
        crate::parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn layers_follow_needs() {
        let w = wf(
            "name: t\nsteps:\n  - {id: c, uses: x, needs: [a, b]}\n  - {id: a, uses: x}\n  - {id: b, uses: x, needs: a}\n  - {id: d, uses: x}\n",
        );
        assert_eq!(layers(&w), vec![vec![1, 3], vec![2], vec![0]]);
        assert_eq!(order(&w), vec![1, 3, 2, 0]);
        assert_eq!(needs(&w), vec![vec![1, 2], vec![], vec![1], vec![]]);
    }

    #[test]
    fn diamond() {
        let w = wf(
            "name: t\nsteps:\n  - {id: a, uses: x}\n  - {id: b, uses: x, needs: a}\n  - {id: c, uses: x, needs: a}\n  - {id: d, uses: x, needs: [b, c]}\n",
        );
        assert_eq!(layers(&w), vec![vec![0], vec![1, 2], vec![3]]);
    }

    #[test]
    fn cycles_end_up_in_a_last_layer() {
        let (w, d) = crate::analyze(
            "t.yaml",
            "name: t\nsteps:\n  - {id: a, uses: x}\n  - {id: b, uses: x, needs: [a, c]}\n  - {id: c, uses: x, needs: b}\n",
        );
        assert!(d.has_errors());
        let w = w.unwrap();
        assert_eq!(layers(&w), vec![vec![0], vec![1, 2]]);
    }

    #[test]
    fn long_chain_is_fine() {
        let mut y = String::from("name: t\nsteps:\n  - {id: s0, uses: x}\n");
        for i in 1..2000 {
            y.push_str(&format!("  - {{id: s{i}, uses: x, needs: s{}}}\n", i - 1));
        }
        let w = wf(&y);
        assert_eq!(layers(&w).len(), 2000);
    }
}
