//! What conditions see: the incident's inputs, phases, steps and controls as CEL values.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};

use super::state::{Incident, StepStatus};
use crate::expr::{Condition, Names, Part};
use crate::runbook::Runbook;
use crate::runbook::model::{Action, InputType, Step};

/// The variables of a runbook condition, as JSON: `inputs`, `phases`, `steps`, `controls`,
/// `incident`.
pub fn variables(runbook: &Runbook, incident: &Incident) -> BTreeMap<&'static str, Value> {
    let mut phases = serde_json::Map::new();
    let mut steps = serde_json::Map::new();
    for phase in runbook.phases() {
        let state = incident.phase(&phase.id);
        phases.insert(phase.id.clone(), json!(state.status.as_str()));
        for step in &phase.steps {
            let step_state = incident.step(&phase.id, &step.id);
            steps.insert(
                format!("{}/{}", phase.id, step.id),
                json!({ "state": step_state.status.as_str(), "outputs": step_state.outputs }),
            );
        }
    }
    let controls: serde_json::Map<String, Value> = runbook
        .controls()
        .iter()
        .map(|control| (control.id.clone(), json!(control_state(incident, &control.id))))
        .collect();
    BTreeMap::from([
        ("inputs", inputs(runbook, incident)),
        ("phases", Value::Object(phases)),
        ("steps", Value::Object(steps)),
        ("controls", Value::Object(controls)),
        (
            "incident",
            json!({
                "id": incident.id,
                "title": runbook.title(),
                "started_by": incident.started_by,
                "started_at": incident.started_at.to_rfc3339(),
            }),
        ),
    ])
}

/// The incident's inputs, each a number where the runbook declares it `number`. The log keeps
/// values in canonical JSON, where `40.0` is written `40` and reads back as a whole number, and
/// CEL does no arithmetic between whole and floating numbers: `inputs.threshold / 4.0` would fail.
pub fn inputs(runbook: &Runbook, incident: &Incident) -> Value {
    let inputs = incident
        .inputs
        .iter()
        .map(|(name, value)| {
            let number = runbook.input(name).is_some_and(|input| input.kind == InputType::Number);
            let value = match value.as_f64().and_then(serde_json::Number::from_f64) {
                Some(float) if number => Value::Number(float),
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect();
    Value::Object(inputs)
}

/// `in_force`, `relaxed`, `overdue` or `reinstated`.
pub fn control_state(incident: &Incident, control: &str) -> &'static str {
    match incident.relaxations.get(control) {
        None => "in_force",
        Some(relaxation) if !relaxation.is_open() => "reinstated",
        Some(relaxation) if relaxation.overdue => "overdue",
        Some(_) => "relaxed",
    }
}

/// The condition of a pending step that is already known to be false: it evaluates to false now
/// (not merely fails to evaluate, as one reading an output not yet recorded does), every phase
/// and step it names is finished, and, when it reads `controls`, no control is relaxed (which
/// turns overdue by itself, and which a reinstate step changes) and no unfinished step of an
/// unfinished phase relaxes one. Such a step will be skipped when reached, so nobody is offered
/// it as work. `None` when it may still run.
pub fn known_false<'a>(runbook: &Runbook, incident: &Incident, phase: &str, step: &'a Step) -> Option<&'a str> {
    let when = step.when.as_ref()?;
    if incident.step(phase, &step.id).status != StepStatus::Pending || incident.phase(phase).status.is_finished() {
        return None;
    }
    let references = when.references();
    if !references.phases.iter().all(|phase| incident.phase(phase).status.is_finished())
        || !references.steps.iter().all(|path| {
            path.split_once('/').is_some_and(|(phase, step)| step_finished(incident.step(phase, step).status))
        })
    {
        return None;
    }
    if when.source().contains("controls") {
        let open = incident.relaxations.values().any(|relaxation| relaxation.is_open());
        let changing = runbook.phases().iter().any(|other| {
            !incident.phase(&other.id).status.is_finished()
                && other.steps.iter().any(|candidate| {
                    matches!(candidate.action, Action::Relax { .. })
                        && !step_finished(incident.step(&other.id, &candidate.id).status)
                })
        });
        if open || changing {
            return None;
        }
    }
    (holds(when, &variables(runbook, incident)) == Ok(false)).then(|| when.source())
}

fn step_finished(status: StepStatus) -> bool {
    matches!(status, StepStatus::Done | StepStatus::Skipped | StepStatus::Failed)
}

/// Evaluates a condition with `variables`. A condition that cannot be evaluated (it reads an
/// output that was never recorded, say) is false, with the reason.
pub fn holds(condition: &Condition, variables: &BTreeMap<&'static str, Value>) -> Result<bool, String> {
    match evaluate(condition, variables)? {
        Value::Bool(value) => Ok(value),
        other => Err(format!("condition `{}` gave {other}, not true or false", condition.source())),
    }
}

/// CEL's standard library, built once: `Context::default()` builds it for every context, which
/// cost more than most evaluations themselves.
static STANDARD_LIBRARY: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

/// Evaluates an expression to JSON.
pub fn evaluate(condition: &Condition, variables: &BTreeMap<&'static str, Value>) -> Result<Value, String> {
    let mut context = cel::Context::with_env(Arc::clone(&STANDARD_LIBRARY));
    for (name, value) in variables {
        let value = cel::to_value(value).map_err(|error| format!("`{name}` cannot be given to CEL: {error}"))?;
        context.add_variable_from_value(*name, value);
    }
    let value =
        condition.program().execute(&context).map_err(|error| format!("`{}` failed: {error}", condition.source()))?;
    value.json().map_err(|error| format!("`{}` gave a value that is not JSON: {error:?}", condition.source()))
}

/// The names a runbook's conditions may use, as validation knew them.
pub fn names(runbook: &Runbook) -> Names {
    Names {
        variables: variables_names(),
        inputs: runbook.inputs().iter().map(|input| input.name.clone()).collect(),
        phases: runbook.phases().iter().map(|phase| phase.id.clone()).collect(),
        steps: runbook
            .phases()
            .iter()
            .flat_map(|phase| {
                phase.steps.iter().map(move |step| (format!("{}/{}", phase.id, step.id), step_outputs(step)))
            })
            .collect(),
        controls: runbook.controls().iter().map(|control| control.id.clone()).collect(),
    }
}

fn variables_names() -> Vec<&'static str> {
    vec!["incident", "inputs", "phases", "steps", "controls"]
}

fn step_outputs(step: &crate::runbook::model::Step) -> Vec<String> {
    match &step.action {
        Action::Manual { outputs, .. } => outputs.clone(),
        Action::Http { outputs, .. } => outputs.iter().map(|(name, _)| name.clone()).collect(),
        _ => Vec::new(),
    }
}

/// Evaluates the `${ }` parts of a string that validation already checked.
pub fn interpolate(text: &str, names: &Names, variables: &BTreeMap<&'static str, Value>) -> Result<String, String> {
    let parts = crate::expr::interpolate(text, names)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    let mut result = String::new();
    for part in parts {
        match part {
            Part::Text(literal) => result.push_str(&literal),
            Part::Expression(condition) => match evaluate(&condition, variables)? {
                Value::String(text) => result.push_str(&text),
                other => result.push_str(&other.to_string()),
            },
        }
    }
    Ok(result)
}

/// Every string in a JSON body, interpolated.
pub fn interpolate_json(
    value: &Value,
    names: &Names,
    variables: &BTreeMap<&'static str, Value>,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => Value::String(interpolate(text, names, variables)?),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| interpolate_json(item, names, variables)).collect::<Result<_, _>>()?)
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, field)| Ok((key.clone(), interpolate_json(field, names, variables)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a `number` input given as `40.0` was logged as `40`, read back as a whole
    /// number, and `inputs.threshold / 4.0` failed in CEL, so a check comparing against it never
    /// passed (the account-takeover runbook's reinstate check).
    #[test]
    fn number_inputs_stay_numbers_after_the_logs_canonical_round_trip() {
        struct Any;
        impl crate::runbook::Templates for Any {
            fn lookup(&self, _name: &str) -> crate::runbook::TemplateInfo {
                crate::runbook::TemplateInfo::Found { variables: Vec::new() }
            }
        }
        let runbook = crate::runbook::parse(
            "apiVersion: phasegate/v1\nkind: Runbook\nid: rates\ntitle: Rates\ninputs:\n  threshold: { type: number, default: 40.0 }\n  hosts: { type: integer, default: 3 }\nphases:\n  - id: watch\n    when: inputs.threshold / 4.0 == 10.0 && inputs.hosts == 3\n    steps:\n      - id: look\n        manual: { instructions: Look }\n",
            &Any,
        )
        .expect("the runbook is valid");
        // As canonical JSON gives them back: `40.0` is `40`.
        let started = crate::engine::Event::new(
            chrono::DateTime::UNIX_EPOCH,
            "dana",
            crate::engine::EventKind::IncidentStarted {
                incident: "inc-1".into(),
                runbook_id: "rates".into(),
                runbook_version: None,
                runbook_sha256: String::new(),
                runbook_text: String::new(),
                inputs: serde_json::from_str(r#"{"threshold": 40, "hosts": 3}"#).unwrap(),
                key: None,
            },
        );
        let incident = Incident::start(&started).unwrap();
        let condition = runbook.phases()[0].when.as_ref().expect("the phase has a condition");
        assert_eq!(holds(condition, &variables(&runbook, &incident)), Ok(true));
    }
}
