//! How steps lead to each other, as phases' `when` conditions, and each phase with its gates and
//! steps.

use super::*;

impl Cx<'_, '_> {
    /// The CEL of how `from` leads on through `via`, or `None` for always.
    pub(super) fn edge_condition(&mut self, from: usize, via: &Via) -> Option<String> {
        let step = &self.graph.steps[from];
        let phase = self.phase_of[from].clone().unwrap_or_default();
        let at = step.pointer.clone();
        let steps_state = |cx: &Self, state: &str, join: &str| -> Option<String> {
            let ids = cx.phase_step_ids(from);
            if ids.is_empty() {
                return None;
            }
            Some(
                ids.iter()
                    .map(|s| format!("steps[\"{phase}/{s}\"].state == \"{state}\""))
                    .collect::<Vec<_>>()
                    .join(join),
            )
        };
        match via {
            Via::Completion | Via::Parallel => None,
            Via::Success => steps_state(self, "done", " && "),
            Via::Failure => Some(steps_state(self, "failed", " || ").unwrap_or_else(|| "false".into())),
            Via::True | Via::False => {
                let json = step.json;
                let Some(text) = json.get("condition").and_then(Json::as_str) else {
                    let mark = json.get("condition").map_or(step.mark, |c| c.mark);
                    self.error(
                        Code::MissingField,
                        &pointer(&at, "condition"),
                        mark,
                        "the if-condition has no `condition` string",
                    );
                    return Some("false".into());
                };
                let mark = json.get("condition").map_or(step.mark, |c| c.mark);
                let cel = condition::to_cel(text, &mut |name| self.resolve(name, from));
                match cel {
                    Ok(cel) if *via == Via::True => Some(format!("({cel})")),
                    Ok(cel) => Some(format!("!({cel})")),
                    Err(message) => {
                        self.error(Code::Condition, &pointer(&at, "condition"), mark, format!("the condition is not translated: {message}"))
                            .help = Some("phasegate translates comparisons of variables (`__name__:value = 'x'`, `IN`, `MATCHES`, with AND, OR, NOT); rewrite it so, or split the decision into a manual step".into());
                        Some("false".into())
                    }
                }
            }
            Via::Case(_) | Via::Default => {
                let json = step.json;
                let switch_mark = json.get("switch").map_or(step.mark, |s| s.mark);
                let variable = json
                    .get("switch")
                    .and_then(Json::as_str)
                    .and_then(|s| super::super::variable_at(s.trim()).filter(|(_, u)| *u == s.trim().len()));
                let Some((name, _)) = variable else {
                    self.error(
                        Code::Condition,
                        &pointer(&at, "switch"),
                        switch_mark,
                        "`switch` must name one variable, `__name__:value`",
                    )
                    .help = Some("phasegate compares one variable with each case's value".into());
                    return Some("false".into());
                };
                let cel = match self.resolve(&name, from) {
                    Ok(cel) => cel,
                    Err(message) => {
                        self.error(Code::Variable, &pointer(&at, "switch"), switch_mark, message);
                        return Some("false".into());
                    }
                };
                let kind = self.variables.get(&name).map_or("string".to_string(), |v| v.kind.clone());
                let literal = |value: &str| match kind.as_str() {
                    "integer" | "number" if value.parse::<f64>().is_ok() => value.to_string(),
                    "boolean" if value == "true" || value == "false" => value.to_string(),
                    _ => serde_json::to_string(value).expect("a string always serializes"),
                };
                match via {
                    Via::Case(value) => Some(format!("{cel} == {}", literal(value))),
                    _ => {
                        let values: Vec<String> = object_members(json.get("cases"))
                            .iter()
                            .filter(|(k, _, _)| k != "default")
                            .map(|(k, _, _)| literal(k))
                            .collect();
                        Some(format!("!({cel} in [{}])", values.join(", ")))
                    }
                }
            }
        }
    }

    pub(super) fn phase_step_ids(&self, i: usize) -> Vec<String> {
        let mut ids = self.command_ids(i);
        if self.setters.values().flatten().any(|(s, holder)| *s == i && holder == "record-outputs")
            && !ids.contains(&"record-outputs".to_string())
        {
            ids.push("record-outputs".into());
        }
        ids
    }

    /// The `when` of the phase of graph step `i`: some way into it was taken.
    pub(super) fn guard(&mut self, i: usize) -> Option<String> {
        let mut terms = Vec::new();
        for (from, via) in self.incoming(i) {
            let reached = self.phase_of[from]
                .as_ref()
                .filter(|_| !self.always[from])
                .map(|p| format!("phases[\"{p}\"] != \"skipped\""));
            let condition = self.edge_condition(from, &via);
            let term = match (reached, condition) {
                (None, None) => return None,
                (Some(r), None) => r,
                (None, Some(c)) => c,
                (Some(r), Some(c)) => format!("{r} && {c}"),
            };
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        match terms.len() {
            0 => None,
            1 => terms.pop(),
            _ => Some(terms.iter().map(|t| format!("({t})")).collect::<Vec<_>>().join(" || ")),
        }
    }

    /// Every phase's `when`, each step after all the steps that lead to it (the graph has no
    /// cycles), so that a phase reached only from phases that always run needs no condition of
    /// theirs.
    pub(super) fn guards(&mut self) {
        let count = self.graph.steps.len();
        self.guards = vec![None; count];
        self.always = vec![false; count];
        let reached: HashSet<usize> = self.graph.reached.iter().copied().collect();
        let mut waiting: Vec<usize> = vec![0; count];
        for edge in self.graph.edges.iter().filter(|e| reached.contains(&e.from)) {
            waiting[edge.to] += 1;
        }
        let mut ready: Vec<usize> = self.graph.reached.iter().copied().filter(|&i| waiting[i] == 0).collect();
        while let Some(i) = ready.pop() {
            if self.graph.steps[i].kind == "start" {
                self.always[i] = true;
            } else if self.phase_of[i].is_some() {
                self.guards[i] = self.guard(i);
                self.always[i] = self.guards[i].is_none();
            }
            let next: Vec<usize> = self.graph.edges.iter().filter(|e| e.from == i).map(|e| e.to).collect();
            for to in next {
                waiting[to] -= 1;
                if waiting[to] == 0 {
                    ready.push(to);
                }
            }
        }
    }

    pub(super) fn phase(&mut self, i: usize, needs: &[usize]) -> Yaml {
        let step = &self.graph.steps[i];
        let (json, at, kind, cacao_id) = (step.json, step.pointer.clone(), step.kind.clone(), step.id.clone());
        let id = self.phase_of[i].clone().unwrap_or_default();
        let mut phase = vec![("id".to_string(), Yaml::str(id.clone()))];
        if let Some(name) = json.get("name").and_then(Json::as_str).filter(|n| !n.trim().is_empty()) {
            phase.push(("title".into(), Yaml::str(name)));
        }
        let mut description = json.get("description").and_then(Json::as_str).unwrap_or("").trim().to_string();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!("CACAO step `{cacao_id}` ({kind})."));
        if let Some(owner) = json.get("owner").and_then(Json::as_str) {
            description.push_str(&format!(" Owner: `{owner}`."));
        }
        match kind.as_str() {
            "if-condition" => {
                if let Some(c) = json.get("condition").and_then(Json::as_str) {
                    description.push_str(&format!(" Condition: `{c}`; its branches' phases say `when` it held."));
                }
            }
            "switch-condition" => description.push_str(" The cases' phases say `when` each was taken."),
            "parallel" => description
                .push_str(" The branches' phases need this one and not each other, so they may run in parallel."),
            _ => {}
        }
        super::provenance::references(json, &mut description);
        self.step_extensions(json, &at, &mut description);
        phase.push(("description".into(), Yaml::str(description)));
        if !needs.is_empty() {
            let names = needs.iter().filter_map(|n| self.phase_of[*n].clone()).map(Yaml::Str).collect();
            phase.push(("needs".into(), Yaml::List(names)));
        }
        if let Some(when) = self.guards[i].clone() {
            phase.push(("when".into(), Yaml::str(when)));
        }
        self.variables(&pointer(&at, "step_variables"), json.get("step_variables"));
        let mut entry = Vec::new();
        if let Some(delay) = json.get("delay")
            && let Some(duration) = self.millis(delay, &pointer(&at, "delay"))
        {
            entry.push(Yaml::map([
                ("id", Yaml::str("delay")),
                ("timer", Yaml::map([("not_before", Yaml::str(duration))])),
            ]));
        }
        let failure_edges = self.graph.edges.iter().any(|e| e.from == i && e.via == Via::Failure);
        if json.get("on_completion").is_some() && (json.get("on_success").is_some() || json.get("on_failure").is_some())
        {
            let mark = json.get("on_completion").map_or(step_mark(json), |c| c.mark);
            self.error(
                Code::Unsupported,
                &pointer(&at, "on_completion"),
                mark,
                "`on_completion` together with `on_success` or `on_failure`: which is taken is not defined",
            )
            .help = Some("CACAO 2.0 says to give either `on_completion` or `on_success`/`on_failure`".into());
        }
        let mut steps = match kind.as_str() {
            "action" => self.commands(i),
            "playbook-action" => self.sub_playbook(i),
            _ => Vec::new(),
        };
        let timeout = json.get("timeout").and_then(|t| self.millis(t, &pointer(&at, "timeout")));
        let mut exit = Vec::new();
        if let Some(timeout) = &timeout {
            for step in &mut steps {
                if let Yaml::Map(pairs) = step
                    && !pairs.iter().any(|(k, _)| k == "manual")
                {
                    pairs.insert(2.min(pairs.len()), ("timeout".into(), Yaml::str(timeout.clone())));
                }
            }
            if steps.iter().any(|s| matches!(s, Yaml::Map(p) if p.iter().any(|(k, _)| k == "manual"))) {
                exit.push(Yaml::map([
                    ("id", Yaml::str("timeout")),
                    ("timer", Yaml::map([("not_later_than", Yaml::str(timeout.clone()))])),
                ]));
            }
        }
        let outputs: Vec<String> = self
            .setters
            .iter()
            .filter(|(_, list)| list.iter().any(|(s, _)| *s == i))
            .map(|(name, _)| output_name(name))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !outputs.is_empty() {
            let holder = self.output_holder(i);
            let list = Yaml::List(outputs.iter().cloned().map(Yaml::Str).collect());
            let mut placed = false;
            for step in &mut steps {
                if let Yaml::Map(pairs) = step
                    && pairs.first().is_some_and(|(_, v)| *v == Yaml::Str(holder.clone()))
                    && let Some((_, Yaml::Map(manual))) = pairs.iter_mut().find(|(k, _)| k == "manual")
                {
                    manual.push(("outputs".into(), list.clone()));
                    placed = true;
                }
            }
            if !placed {
                let names: Vec<String> = outputs.iter().map(|o| format!("`{o}`")).collect();
                let instructions = format!(
                    "Record what the step before set for the playbook's variables ({}): CACAO's `out_args`, which phasegate's automated steps do not return.",
                    names.join(", ")
                );
                steps.push(Yaml::map([
                    ("id", Yaml::str("record-outputs")),
                    ("manual", Yaml::map([("instructions", Yaml::str(instructions)), ("outputs", list)])),
                ]));
            }
        }
        if failure_edges && !steps.is_empty() {
            // Failure leads on, so a failed step must not fail the phase: each is optional, and the
            // phase waits for all of them to finish, done or failed.
            let mut ids = Vec::new();
            for step in &mut steps {
                if let Yaml::Map(pairs) = step {
                    if let Some((_, Yaml::Str(id))) = pairs.first() {
                        ids.push(Yaml::Str(id.clone()));
                    }
                    pairs.insert(1, ("optional".into(), Yaml::Bool(true)));
                }
            }
            exit.push(Yaml::map([("steps_done", Yaml::List(ids))]));
        }
        if !entry.is_empty() {
            phase.push(("entry".into(), Yaml::List(entry)));
        }
        if !steps.is_empty() {
            phase.push(("steps".into(), Yaml::List(steps)));
        }
        if !exit.is_empty() {
            phase.push(("exit".into(), Yaml::List(exit)));
        }
        Yaml::Map(phase)
    }

    pub(super) fn step_extensions(&mut self, json: &Json, at: &str, description: &mut String) {
        for key in ["step_extensions"] {
            let members = object_members(json.get(key));
            if members.is_empty() {
                continue;
            }
            let names: Vec<&str> = members.iter().map(|(k, _, _)| k.as_str()).collect();
            description.push_str(&format!(" Extensions not acted on: {}.", names.join(", ")));
            let mark = json.get(key).map_or(step_mark(json), |e| e.mark);
            self.warn(
                Code::Extension,
                &pointer(at, key),
                mark,
                format!(
                    "the step's extensions ({}) are not acted on; they are named in the phase's description",
                    names.join(", ")
                ),
            );
        }
    }

    /// A duration in milliseconds as a phasegate duration (at least a second, at most a year).
    pub(super) fn millis(&mut self, json: &Json, at: &str) -> Option<String> {
        let ms = match &json.value {
            Value::Number(n) => n.parse::<u64>().ok(),
            _ => None,
        };
        let Some(ms) = ms else {
            self.error(
                Code::WrongType,
                at,
                json.mark,
                format!("a CACAO duration is a whole number of milliseconds, this is {}", json.describe()),
            );
            return None;
        };
        if ms == 0 {
            return None;
        }
        if ms < 1000 {
            self.warn(
                Code::Timing,
                at,
                json.mark,
                format!("{ms} ms is shorter than phasegate's shortest duration; it is taken as 1s"),
            );
            return Some("1s".into());
        }
        if ms > 366 * 24 * 3600 * 1000 {
            self.warn(
                Code::Timing,
                at,
                json.mark,
                format!("{ms} ms is longer than a year, phasegate's longest duration; it is left out"),
            );
            return None;
        }
        Some(if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") })
    }
}
