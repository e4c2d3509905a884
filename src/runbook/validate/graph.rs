//! The phase graph: ids, `needs`, cycles, the order phases run in, and each phase's ancestors.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Code, List, Spanned, Validator};
use crate::runbook::raw;

impl Validator<'_> {
    /// Checks ids and `needs`, and returns the phases' indices in dependency order (the order
    /// written, wherever the dependencies allow it). Phases in a cycle are left out and reported.
    pub(super) fn phase_order(&mut self, phases: &Spanned<List<raw::Phase>>) -> Vec<usize> {
        if phases.value.is_empty() {
            self.report(Code::EmptyList, phases.mark, "a runbook needs at least one phase");
            return Vec::new();
        }
        self.unique_ids(phases.value.iter().map(|phase| &phase.id), "phase");
        let ids: Vec<&str> = phases.value.iter().map(|phase| phase.id.value.as_str()).collect();
        let mut needs: Vec<BTreeSet<usize>> = Vec::new();
        for phase in phases.value.iter() {
            self.id(&phase.id, "phase");
            let mut edges = BTreeSet::new();
            for need in phase.needs.iter() {
                if need.value == phase.id.value {
                    self.report(Code::DependencyCycle, need.mark, format!("phase `{}` needs itself", need.value));
                } else if self.reference(Code::UnknownPhase, need, "phase", &ids) {
                    edges.insert(ids.iter().position(|id| *id == need.value).expect("checked above"));
                }
            }
            needs.push(edges);
        }
        let mut order = Vec::new();
        let mut placed = vec![false; ids.len()];
        while let Some(next) = (0..ids.len()).find(|&i| !placed[i] && needs[i].iter().all(|&n| placed[n])) {
            placed[next] = true;
            order.push(next);
        }
        if order.len() < ids.len() {
            self.report_cycle(phases, &needs, &placed);
            // Still check the phases in the cycle; the model is not built when there are problems.
            order.extend((0..ids.len()).filter(|&i| !placed[i]));
        }
        order
    }

    /// Finds one cycle among the unplaced phases and names its phases in order.
    fn report_cycle(&mut self, phases: &Spanned<List<raw::Phase>>, needs: &[BTreeSet<usize>], placed: &[bool]) {
        let start = (0..placed.len()).find(|&i| !placed[i]).expect("some phase is unplaced");
        // Walk unplaced dependencies until a phase repeats: that repetition closes a cycle.
        let mut path = vec![start];
        loop {
            let current = *path.last().expect("path is never empty");
            let Some(next) = needs[current].iter().copied().find(|&n| !placed[n]) else { return };
            if let Some(position) = path.iter().position(|&p| p == next) {
                let cycle: Vec<&str> = path[position..].iter().map(|&i| phases.value[i].id.value.as_str()).collect();
                let first = &phases.value[path[position]];
                let mut names = cycle.join("`, which needs `");
                names.push_str(&format!("`, which needs `{}", cycle[0]));
                self.report(
                    Code::DependencyCycle,
                    first.id.mark,
                    format!("phases depend on each other in a cycle: `{names}`"),
                )
                .help = Some("remove one of these `needs` so that the phases form a sequence".to_string());
                return;
            }
            path.push(next);
        }
    }
}

/// For each phase, the phases it needs directly or through others. `order` lists dependencies
/// first, so each phase's ancestors are known by the time it is reached.
pub(super) fn ancestors(phases: &List<raw::Phase>, order: &[usize]) -> HashMap<String, HashSet<String>> {
    let mut result: HashMap<String, HashSet<String>> = HashMap::new();
    for &index in order {
        let phase = &phases[index];
        let mut all = HashSet::new();
        for need in phase.needs.iter() {
            all.insert(need.value.clone());
            all.extend(result.get(&need.value).cloned().unwrap_or_default());
        }
        result.insert(phase.id.value.clone(), all);
    }
    result
}
