//! An action's commands as steps: manual, http, command, or manual carrying what phasegate cannot
//! run; agents as assignees, targets as hosts, authentication as named secrets.

use super::*;

/// Headers whose values are credentials: never copied into the runbook.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];

impl Cx<'_, '_> {
    pub(super) fn commands(&mut self, i: usize) -> Vec<Yaml> {
        let step = &self.graph.steps[i];
        let (json, at) = (step.json, step.pointer.clone());
        let Some(commands) = json.get("commands") else {
            self.error(Code::MissingField, &at, step_mark(json), "the action step has no `commands`").help =
                Some("an action step lists at least one command".into());
            return Vec::new();
        };
        let Value::Array(items) = &commands.value else {
            self.error(
                Code::WrongType,
                &pointer(&at, "commands"),
                commands.mark,
                format!("`commands` is a list, this is {}", commands.describe()),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.error(
                Code::MissingField,
                &pointer(&at, "commands"),
                commands.mark,
                "`commands` is empty: an action step lists at least one command",
            );
        }
        let ids = self.command_ids(i);
        let agent = self.agent(json, &at);
        let targets = self.targets(json, &at);
        items
            .iter()
            .enumerate()
            .map(|(n, command)| {
                self.command(
                    i,
                    command,
                    &pointer(&pointer(&at, "commands"), &n.to_string()),
                    &ids[n],
                    agent.as_deref(),
                    &targets,
                )
            })
            .collect()
    }

    /// The role of the step's agent, when the agent is people.
    pub(super) fn agent(&mut self, json: &Json, at: &str) -> Option<String> {
        let reference = json.get("agent")?;
        let Some(id) = reference.as_str() else {
            self.error(Code::WrongType, &pointer(at, "agent"), reference.mark, "`agent` is an agent's id");
            return None;
        };
        let found = object_members(self.playbook.get("agent_definitions")).iter().find(|(k, _, _)| k == id);
        match found {
            None => {
                self.error(
                    Code::UnknownReference,
                    &pointer(at, "agent"),
                    reference.mark,
                    format!("no agent in `agent_definitions` has the id `{id}`"),
                );
                None
            }
            Some((_, _, agent)) => {
                let kind = agent.get("type").and_then(Json::as_str).unwrap_or("");
                PEOPLE.contains(&kind).then(|| self.role_of(id, agent))
            }
        }
    }

    /// The step's targets (and its agent, which for http-api commands is often the API).
    pub(super) fn targets(&mut self, json: &Json, at: &str) -> Vec<(String, &'static str, Json)> {
        let mut found = Vec::new();
        if let Some(list) = json.get("targets") {
            let Value::Array(items) = &list.value else {
                self.error(Code::WrongType, &pointer(at, "targets"), list.mark, "`targets` is a list of target ids");
                return found;
            };
            for (n, item) in items.iter().enumerate() {
                let Some(id) = item.as_str() else { continue };
                match self.definition(id) {
                    Some(target) => found.push((id.to_string(), "target", target.clone())),
                    None => {
                        self.error(
                            Code::UnknownReference,
                            &pointer(&pointer(at, "targets"), &n.to_string()),
                            item.mark,
                            format!("no target in `target_definitions` (or agent) has the id `{id}`"),
                        );
                    }
                }
            }
        }
        if let Some(id) = json.get("agent").and_then(Json::as_str)
            && let Some(agent) = self.definition(id)
        {
            found.push((id.to_string(), "agent", agent.clone()));
        }
        found
    }

    pub(super) fn definition(&self, id: &str) -> Option<&Json> {
        ["target_definitions", "agent_definitions"]
            .iter()
            .find_map(|key| object_members(self.playbook.get(key)).iter().find(|(k, _, _)| k == id).map(|(_, _, v)| v))
    }

    pub(super) fn command(
        &mut self,
        i: usize,
        command: &Json,
        at: &str,
        id: &str,
        agent: Option<&str>,
        targets: &[(String, &'static str, Json)],
    ) -> Yaml {
        let kind = command.get("type").and_then(Json::as_str).unwrap_or("");
        if kind.is_empty() {
            self.error(Code::MissingField, at, command.mark, "the command has no `type`");
        }
        let description = command.get("description").and_then(Json::as_str).unwrap_or("").trim().to_string();
        let text = self.command_text(command, at);
        let mut step = vec![("id".to_string(), Yaml::str(id))];
        if !description.is_empty() {
            step.push(("title".into(), Yaml::str(description.lines().next().unwrap_or("").to_string())));
        }
        let target_names: Vec<String> = targets
            .iter()
            .filter(|(_, role, _)| *role == "target")
            .map(|(id, _, t)| {
                let name = t.get("name").and_then(Json::as_str).unwrap_or(id);
                match address(t) {
                    Some(address) => format!("{name} ({address})"),
                    None => name.to_string(),
                }
            })
            .collect();
        // What an OpenC2 or HTTP command sends: kept in a manual step's instructions, never dropped.
        let content = command.get("content").and_then(Json::as_str).map(str::to_string).or_else(|| {
            let encoded = command.get("content_b64").and_then(Json::as_str)?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            Some(decoded.unwrap_or_else(|| format!("(base64) {encoded}")))
        });
        let header_lines: Vec<String> = object_members(command.get("headers"))
            .iter()
            .map(|(name, _, values)| {
                let values: Vec<&str> = match &values.value {
                    Value::Array(items) => items.iter().filter_map(Json::as_str).collect(),
                    _ => Vec::new(),
                };
                if CREDENTIAL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                    // A credential's value is never copied, not even into instructions.
                    format!("{name}: (left out: a credential; see the runbook's secrets)")
                } else {
                    format!("{name}: {}", values.join(", "))
                }
            })
            .collect();
        let manual = |cx: &mut Self, why: Option<String>| -> Yaml {
            let mut instructions = String::new();
            if !description.is_empty() {
                instructions.push_str(&description);
                instructions.push_str("\n\n");
            }
            if let Some(why) = &why {
                instructions.push_str(why);
                instructions.push_str("\n\n");
            }
            if !target_names.is_empty() {
                instructions.push_str(&format!("Targets: {}.\n\n", target_names.join(", ")));
            }
            if let Some(text) = &text {
                instructions.push_str(text);
            }
            if !header_lines.is_empty() {
                instructions.push_str(&format!("\n\nHeaders:\n{}", header_lines.join("\n")));
            }
            if let Some(content) = &content {
                instructions.push_str(&format!("\n\nContent:\n{content}"));
            }
            let instructions = instructions.trim().to_string();
            let instructions = if instructions.is_empty() {
                "Carry out this step (the CACAO command gave no text).".to_string()
            } else {
                instructions
            };
            let mut body = vec![("instructions".to_string(), Yaml::str(instructions))];
            if let Some(role) = agent {
                body.push(("assignee".into(), Yaml::str(role)));
            }
            let _ = cx;
            Yaml::Map(vec![("manual".to_string(), Yaml::Map(body))])
        };
        let action = match kind {
            "manual" => manual(self, None),
            "http-api" => match self.http(i, command, at, text.as_deref(), targets) {
                Some(http) => http,
                None => manual(self, None),
            },
            "bash" | "powershell" if !targets.iter().any(|(_, role, _)| *role == "target") => {
                let Some(text) = text.clone() else {
                    self.error(Code::Command, at, command.mark, format!("the {kind} command has no `command` text"));
                    return Yaml::Map(step);
                };
                let line = self.interpolate(
                    &text,
                    i,
                    &pointer(at, "command"),
                    command.get("command").map_or(command.mark, |c| c.mark),
                );
                let argv = if kind == "bash" {
                    vec![Yaml::str("bash"), Yaml::str("-c"), Yaml::str(line)]
                } else {
                    vec![Yaml::str("pwsh"), Yaml::str("-NoProfile"), Yaml::str("-Command"), Yaml::str(line)]
                };
                Yaml::map([("command", Yaml::map([("argv", Yaml::List(argv))]))])
            }
            "bash" | "powershell" | "ssh" | "caldera-cmd" | "elastic" | "jupyter" | "kestrel" | "openc2-http"
            | "sigma" | "yara" => {
                let why = match kind {
                    "bash" | "powershell" => format!(
                        "Run this {kind} command on the targets below; phasegate runs commands only on its own host."
                    ),
                    "ssh" => {
                        "Run this command over SSH on the targets below; phasegate opens no SSH sessions.".to_string()
                    }
                    other => {
                        format!("Run this {other} command with the tool it is written for; phasegate cannot run it.")
                    }
                };
                self.warn(
                    Code::KeptManual,
                    at,
                    command.mark,
                    format!(
                        "the {kind} command is kept as a manual step: {}",
                        why.split(';').nth(1).unwrap_or(&why).trim()
                    ),
                );
                manual(self, Some(why))
            }
            "" => manual(self, None),
            other => {
                let mut problem = Problem::warning(
                    Code::UnknownCommandType,
                    &pointer(at, "type"),
                    command.get("type").map_or(command.mark, |t| t.mark),
                    format!("`{other}` is not a CACAO 2.0 command type; it is kept as a manual step with its text"),
                );
                if let Some(near) = crate::spelling::did_you_mean(other, COMMAND_TYPES.iter().copied()) {
                    problem = problem.with_help(format!("did you mean `{near}`?"));
                }
                self.problems.push(problem);
                manual(
                    self,
                    Some(format!("The CACAO command type `{other}` is not one phasegate knows; carry it out by hand.")),
                )
            }
        };
        if let Yaml::Map(pairs) = action {
            step.extend(pairs);
        }
        Yaml::Map(step)
    }

    /// The command's text: `command`, or `command_b64` decoded.
    pub(super) fn command_text(&mut self, command: &Json, at: &str) -> Option<String> {
        if let Some(text) = command.get("command").and_then(Json::as_str) {
            return Some(text.to_string());
        }
        let encoded = command.get("command_b64")?;
        let decoded = encoded
            .as_str()
            .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if decoded.is_none() {
            self.error(
                Code::Command,
                &pointer(at, "command_b64"),
                encoded.mark,
                "`command_b64` is not base64 of UTF-8 text",
            );
        }
        decoded
    }

    pub(super) fn http(
        &mut self,
        i: usize,
        command: &Json,
        at: &str,
        text: Option<&str>,
        targets: &[(String, &'static str, Json)],
    ) -> Option<Yaml> {
        let mark = command.get("command").map_or(command.mark, |c| c.mark);
        let Some(text) = text else {
            self.error(
                Code::Command,
                at,
                command.mark,
                "the http-api command has no `command` (`METHOD /path HTTP/1.1`)",
            );
            return None;
        };
        let mut words = text.split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            self.error(
                Code::Command,
                &pointer(at, "command"),
                mark,
                format!("`{text}` is not `METHOD /path HTTP/1.1`"),
            );
            return None;
        };
        let method = method.to_ascii_uppercase();
        if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            self.error(
                Code::Command,
                &pointer(at, "command"),
                mark,
                format!("phasegate's http steps send GET, HEAD, POST, PUT, PATCH or DELETE, not `{method}`"),
            );
            return None;
        }
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            let base = targets.iter().find_map(|(_, _, t)| base_url(t));
            let Some(base) = base else {
                self.error(Code::Command, &pointer(at, "command"), mark, format!("`{path}` has no host: no target of the step gives an address (`url`, `dname`, `ipv4` or `ipv6`)"))
                    .help = Some("give the step a target with an address, or write the command with a whole URL".into());
                return None;
            };
            format!("{base}{}{path}", if path.starts_with('/') { "" } else { "/" })
        };
        let url = self.interpolate(&url, i, &pointer(at, "command"), mark);
        let mut http = vec![("method".to_string(), Yaml::str(method)), ("url".to_string(), Yaml::str(url))];
        let mut headers: Vec<(String, Yaml)> = Vec::new();
        for (name, header_mark, values) in object_members(command.get("headers")) {
            let here = pointer(&pointer(at, "headers"), name);
            let joined = match &values.value {
                Value::Array(items) => items.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(", "),
                Value::String(text) => text.clone(),
                _ => {
                    self.error(Code::WrongType, &here, values.mark, "a header's values are a list of strings");
                    continue;
                }
            };
            if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                let secret = format!("{}_{}", slug(self.phase_of[i].as_deref().unwrap_or("cacao"), "cacao"), name)
                    .to_ascii_uppercase()
                    .replace('-', "_");
                self.warn(Code::Credential, &here, *header_mark, format!("the `{name}` header's value is a credential; it was not copied: configuration gives it as the secret `{secret}`"));
                self.notes.push(format!(
                    "Secret `{secret}`: the whole value of the `{name}` header of phase `{}` (it was written in the CACAO file, and left out).",
                    self.phase_of[i].as_deref().unwrap_or("")
                ));
                headers.push((name.clone(), Yaml::map([("secret", Yaml::str(secret))])));
                continue;
            }
            let value = self.interpolate(&joined, i, &here, values.mark);
            headers.push((name.clone(), Yaml::str(value)));
        }
        for (target_id, _, target) in targets {
            if let Some(secret) = self.authentication(target_id, target) {
                if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("authorization")) {
                    headers.push(("Authorization".into(), secret));
                }
                break;
            }
        }
        if !headers.is_empty() {
            http.push(("headers".into(), Yaml::Map(headers)));
        }
        let content = match (command.get("content"), command.get("content_b64")) {
            (Some(content), _) => content.as_str().map(|c| (c.to_string(), content.mark, "content")),
            (None, Some(encoded)) => {
                let decoded = encoded
                    .as_str()
                    .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e.trim()).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                if decoded.is_none() {
                    self.error(
                        Code::Command,
                        &pointer(at, "content_b64"),
                        encoded.mark,
                        "`content_b64` is not base64 of UTF-8 text",
                    );
                }
                decoded.map(|d| (d, encoded.mark, "content_b64"))
            }
            (None, None) => None,
        };
        if let Some((content, content_mark, field)) = content
            && !content.trim().is_empty()
        {
            match serde_json::from_str::<serde_json::Value>(&content) {
                Ok(body) => {
                    let body = self.interpolate_json(&body, i, &pointer(at, field), content_mark);
                    http.push(("body".into(), body));
                }
                Err(_) => {
                    self.error(
                        Code::Command,
                        &pointer(at, field),
                        content_mark,
                        "the command's content is not JSON; phasegate's http steps send JSON bodies",
                    )
                    .help = Some("write the body as JSON, or keep this call as a manual step".into());
                    return None;
                }
            }
        }
        Some(Yaml::map([("http", Yaml::Map(http))]))
    }

    pub(super) fn interpolate_json(&mut self, value: &serde_json::Value, i: usize, at: &str, mark: Mark) -> Yaml {
        match value {
            serde_json::Value::String(text) => Yaml::Str(self.interpolate(text, i, at, mark)),
            serde_json::Value::Array(items) => {
                Yaml::List(items.iter().map(|v| self.interpolate_json(v, i, at, mark)).collect())
            }
            serde_json::Value::Object(members) => {
                Yaml::Map(members.iter().map(|(k, v)| (k.clone(), self.interpolate_json(v, i, at, mark))).collect())
            }
            other => Yaml::from_serde(other),
        }
    }

    /// The `Authorization` header of a target's authentication information, as a named secret.
    pub(super) fn authentication(&mut self, target_id: &str, target: &Json) -> Option<Yaml> {
        let reference = target.get("authentication_info").and_then(Json::as_str)?;
        let definitions = self.playbook.get("authentication_info_definitions");
        let Some((_, mark, definition)) = object_members(definitions).iter().find(|(k, _, _)| k == reference) else {
            let at = format!("{}/authentication_info", self.definition_pointer(target_id));
            self.error(
                Code::UnknownReference,
                &at,
                target.get("authentication_info").map_or(target.mark, |a| a.mark),
                format!("no entry of `authentication_info_definitions` has the id `{reference}`"),
            );
            return None;
        };
        let at = pointer("/authentication_info_definitions", reference);
        let kind = definition.get("type").and_then(Json::as_str).unwrap_or("");
        let name = definition.get("name").and_then(Json::as_str).unwrap_or("");
        let secret =
            slug(if name.is_empty() { reference } else { name }, "cacao-auth").to_ascii_uppercase().replace('-', "_");
        for field in ["password", "token", "private_key", "oauth_header"] {
            // A value that only names a playbook variable (`__name__:value`) holds no credential.
            let credential = |text: &str| !text.is_empty() && !is_variable_reference(text);
            if let Some(value) = definition.get(field).filter(|v| v.as_str().is_some_and(credential)) {
                self.warn(Code::Credential, &pointer(&at, field), value.mark, format!("`{field}` holds a credential; it was not copied: configuration gives it as the secret `{secret}`"))
                    .help = Some("remove credentials from playbooks you share".into());
            }
        }
        let prefix = match kind {
            "http-basic" => "Basic ",
            "oauth2" => "Bearer ",
            other => {
                self.warn(
                    Code::Credential,
                    &at,
                    *mark,
                    format!("`{other}` authentication is not for HTTP; the request goes without it"),
                );
                return None;
            }
        };
        self.notes.push(format!(
            "Secret `{secret}`: the `Authorization` value after `{}` for CACAO authentication `{reference}` ({kind}{}).",
            prefix.trim(),
            if kind == "http-basic" { ": base64 of `user:password`" } else { "" }
        ));
        Some(Yaml::map([("secret", Yaml::str(secret)), ("prefix", Yaml::str(prefix))]))
    }

    pub(super) fn definition_pointer(&self, id: &str) -> String {
        let key = if object_members(self.playbook.get("target_definitions")).iter().any(|(k, _, _)| k == id) {
            "target_definitions"
        } else {
            "agent_definitions"
        };
        pointer(&format!("/{key}"), id)
    }

    pub(super) fn sub_playbook(&mut self, i: usize) -> Vec<Yaml> {
        let step = &self.graph.steps[i];
        let (json, at) = (step.json, step.pointer.clone());
        let Some(id) = json.get("playbook_id").and_then(Json::as_str) else {
            self.error(Code::MissingField, &at, step_mark(json), "the playbook-action has no `playbook_id`");
            return Vec::new();
        };
        let version =
            json.get("playbook_version").and_then(Json::as_str).map(|v| format!(" (version {v})")).unwrap_or_default();
        self.warn(
            Code::SubPlaybook,
            &at,
            step_mark(json),
            format!("the playbook-action runs `{id}`, which is not in this file; it is kept as a manual step"),
        )
        .help = Some("import that playbook too, and start an incident from it when this step comes".into());
        let agent = self.agent(json, &at);
        let mut manual = vec![(
            "instructions".to_string(),
            Yaml::str(format!(
                "Run the CACAO playbook `{id}`{version} (imported separately as its own runbook), and mark this step done when it has finished."
            )),
        )];
        if let Some(role) = agent {
            manual.push(("assignee".into(), Yaml::str(role)));
        }
        vec![Yaml::Map(vec![("id".into(), Yaml::str("run-playbook")), ("manual".into(), Yaml::Map(manual))])]
    }
}

/// A target's address, for people to read.
pub(super) fn address(target: &Json) -> Option<String> {
    let address = target.get("address")?;
    let mut parts = Vec::new();
    for (kind, _, values) in object_members(Some(address)) {
        if let Value::Array(items) = &values.value {
            for item in items.iter().filter_map(Json::as_str) {
                parts.push(format!("{kind} {item}"));
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The scheme, host and port to send a target's HTTP requests to.
pub(super) fn base_url(target: &Json) -> Option<String> {
    let address = target.get("address")?;
    let first = |kind: &str| match address.get(kind).map(|v| &v.value) {
        Some(Value::Array(items)) => items.first().and_then(Json::as_str).map(str::to_string),
        _ => None,
    };
    if let Some(url) = first("url") {
        let scheme_end = url.find("://")? + 3;
        let host_end = url[scheme_end..].find('/').map_or(url.len(), |n| scheme_end + n);
        return Some(url[..host_end].to_string());
    }
    let host = first("dname").or_else(|| first("ipv4")).or_else(|| first("ipv6").map(|a| format!("[{a}]")))?;
    let port = target.get("port").and_then(|p| match &p.value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.clone()),
        _ => None,
    });
    Some(match port.as_deref() {
        None | Some("443") => format!("https://{host}"),
        Some("80") => format!("http://{host}"),
        Some(port) => format!("https://{host}:{port}"),
    })
}

/// `__name__:value`, the whole text: a reference to a playbook variable, not a value.
fn is_variable_reference(text: &str) -> bool {
    text.strip_prefix("__").and_then(|rest| rest.strip_suffix("__:value")).is_some_and(|name| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}
