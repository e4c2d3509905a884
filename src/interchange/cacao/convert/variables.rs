//! Playbook and step variables as inputs, and agents that are people as roles.

use super::*;

impl Cx<'_, '_> {
    /// `playbook_variables` (and steps' `step_variables`) as inputs.
    pub(super) fn variables(&mut self, at: &str, json: Option<&Json>) {
        let Some(json) = json else { return };
        if !matches!(json.value, Value::Object(_)) {
            self.error(
                Code::WrongType,
                at,
                json.mark,
                format!("variables are an object keyed by `__name__`, this is {}", json.describe()),
            );
            return;
        }
        for (key, mark, variable) in object_members(Some(json)) {
            let here = pointer(at, key);
            let Some((name, used)) = super::super::variable_at(key).filter(|(_, used)| *used == key.len()) else {
                self.error(
                    Code::Variable,
                    &here,
                    *mark,
                    format!("`{key}` is not a variable name of the form `__name__`"),
                );
                continue;
            };
            let _ = used;
            let input = name.to_ascii_lowercase().replace('-', "_");
            let good = input.starts_with(|c: char| c.is_ascii_lowercase()) && !RESERVED.contains(&input.as_str());
            if !good {
                self.error(Code::Variable, &here, *mark, format!("`{key}` cannot be an input name (`{input}`): input names start with a letter and are not words CEL reserves"))
                    .help = Some("rename the variable, for example `__the_name__`".into());
                continue;
            }
            let Some(kind) = variable.get("type").and_then(Json::as_str) else {
                self.error(Code::MissingField, &here, variable.mark, "the variable has no `type`");
                continue;
            };
            let input_type = match kind {
                "string" | "uuid" | "hexstring" | "hash" | "md5-hash" | "sha256-hash" | "ipv4-addr" | "ipv6-addr"
                | "mac-addr" | "uri" => "string",
                "integer" | "long" => "integer",
                "float" => "number",
                "bool" => "boolean",
                "dictionary" => {
                    self.error(Code::Variable, &pointer(&here, "type"), variable.get("type").map_or(*mark, |t| t.mark), "a `dictionary` variable has no phasegate input type (inputs are strings, numbers and booleans)")
                        .help = Some("split it into one variable per key".into());
                    continue;
                }
                other => {
                    self.error(
                        Code::Variable,
                        &pointer(&here, "type"),
                        variable.get("type").map_or(*mark, |t| t.mark),
                        format!("`{other}` is not a CACAO 2.0 variable type"),
                    );
                    continue;
                }
            };
            if let Some(existing) = self.variables.get(&name) {
                if existing.kind != input_type {
                    self.error(Code::Variable, &here, *mark, format!("`{key}` is declared twice with different types"));
                }
                continue;
            }
            let mut definition = vec![("type".to_string(), Yaml::str(input_type))];
            let mut description = variable.get("description").and_then(Json::as_str).unwrap_or("").to_string();
            if variable.get("external").is_some_and(|e| e.value == Value::Bool(true)) {
                description =
                    format!("{description} (external in CACAO: given from outside the playbook)").trim().to_string();
            }
            description = format!("{description} [CACAO `{key}`, {kind}]").trim().to_string();
            definition.push(("description".into(), Yaml::str(description)));
            if let Some(value) = variable.get("value") {
                match typed(value, input_type) {
                    Some(Some(default)) => {
                        if variable.get("constant").is_some_and(|c| c.value == Value::Bool(true)) {
                            definition.push(("default".into(), default.clone()));
                            definition.push(("allowed".into(), Yaml::List(vec![default])));
                        } else {
                            definition.push(("default".into(), default));
                        }
                    }
                    Some(None) => {}
                    None => {
                        self.error(
                            Code::Variable,
                            &pointer(&here, "value"),
                            value.mark,
                            format!("the value {} is not of the type `{kind}`", shown(value)),
                        );
                    }
                }
            }
            self.variables.insert(name, Variable { input: input.clone(), kind: input_type.to_string() });
            if self.inputs.iter().any(|(existing, _)| *existing == input) {
                self.error(
                    Code::Variable,
                    &here,
                    *mark,
                    format!("`{key}` becomes the input `{input}`, which another variable already is"),
                );
                continue;
            }
            self.inputs.push((input, Yaml::Map(definition)));
        }
    }

    /// Agents that are people become roles.
    pub(super) fn agents(&mut self) {
        for (id, _, agent) in object_members(self.playbook.get("agent_definitions")) {
            let kind = agent.get("type").and_then(Json::as_str).unwrap_or("");
            if !PEOPLE.contains(&kind) {
                continue;
            }
            let role = self.role_of(id, agent);
            let title = agent.get("name").and_then(Json::as_str).unwrap_or(id);
            let mut definition = vec![("title".to_string(), Yaml::str(title))];
            definition.push(("description".into(), Yaml::str(format!("CACAO agent `{id}` ({kind})"))));
            if !self.roles.iter().any(|(r, _)| *r == role) {
                self.roles.push((role, Yaml::Map(definition)));
            }
        }
    }

    pub(super) fn role_of(&self, id: &str, agent: &Json) -> String {
        let name = agent.get("name").and_then(Json::as_str).unwrap_or("");
        slug(name, &slug(id.split("--").next().unwrap_or(id), "agent"))
    }
}

/// A variable's value as an input default of `input_type`: `Some(None)` for an empty value
/// (no default), `None` for a value that does not fit.
pub(super) fn typed(value: &Json, input_type: &str) -> Option<Option<Yaml>> {
    let text = match &value.value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => return Some(None),
        _ => return None,
    };
    if text.is_empty() && input_type != "string" {
        return Some(None);
    }
    Some(Some(match input_type {
        "integer" => Yaml::Int(text.parse().ok()?),
        "number" => {
            text.parse::<f64>().ok()?;
            Yaml::Num(text)
        }
        "boolean" => Yaml::Bool(match text.as_str() {
            "true" => true,
            "false" => false,
            _ => return None,
        }),
        _ => Yaml::Str(text),
    }))
}
