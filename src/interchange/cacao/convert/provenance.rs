//! Where the playbook came from, kept in the runbook's description: its metadata, markings,
//! signatures, references and extensions, and what `workflow_exception` becomes.

use super::*;

impl Cx<'_, '_> {
    pub(super) fn exception(&mut self) {
        let Some(reference) = self.playbook.get("workflow_exception") else { return };
        let Some(id) = reference.as_str() else {
            self.error(Code::WrongType, "/workflow_exception", reference.mark, "`workflow_exception` is a step id");
            return;
        };
        match self.graph.index(id) {
            None => {
                self.error(Code::UnknownStep, "/workflow_exception", reference.mark, format!("no workflow step has the id `{id}`"));
            }
            Some(i) if self.graph.steps[i].kind == "end" => self.notes.push(
                "CACAO `workflow_exception` ends the workflow; in phasegate a step that fails for good stops its phase until a person retries, skips or completes it.".into(),
            ),
            Some(_) => {
                self.error(Code::Unsupported, "/workflow_exception", reference.mark, "`workflow_exception` leads to steps that run when anything fails; phasegate stops at a failed step until a person recovers it")
                    .help = Some("point `workflow_exception` at an end step, or give the steps that may fail `on_failure`".into());
            }
        }
    }

    /// The runbook's description: the playbook's own, then where it came from.
    pub(super) fn description(&mut self) -> String {
        let p = self.playbook;
        let mut lines = Vec::new();
        if let Some(d) = p.get("description").and_then(Json::as_str) {
            lines.push(d.trim().to_string());
            lines.push(String::new());
        }
        let id = p.get("id").and_then(Json::as_str).unwrap_or("(no id)");
        lines.push(format!("Imported from CACAO 2.0 playbook `{id}`."));
        for (key, label) in [
            ("created_by", "Created by"),
            ("created", "Created"),
            ("modified", "Modified"),
            ("valid_from", "Valid from"),
            ("valid_until", "Valid until"),
            ("revoked", "Revoked"),
            ("priority", "Priority"),
            ("severity", "Severity"),
            ("impact", "Impact"),
        ] {
            if let Some(value) = p.get(key) {
                let text = match &value.value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.clone(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                lines.push(format!("{label}: {text}."));
            }
        }
        for (key, label) in [
            ("playbook_types", "Playbook types"),
            ("playbook_activities", "Activities"),
            ("labels", "Labels"),
            ("industry_sectors", "Industry sectors"),
            ("derived_from", "Derived from"),
            ("related_to", "Related to"),
        ] {
            if let Some(Value::Array(items)) = p.get(key).map(|v| &v.value) {
                let texts: Vec<&str> = items.iter().filter_map(Json::as_str).collect();
                if !texts.is_empty() {
                    lines.push(format!("{label}: {}.", texts.join(", ")));
                }
            }
        }
        if let Some(markings) = p.get("markings") {
            let Value::Array(items) = &markings.value else { return lines.join("\n") };
            let mut shown = Vec::new();
            for (n, item) in items.iter().enumerate() {
                let Some(id) = item.as_str() else { continue };
                match object_members(p.get("data_marking_definitions")).iter().find(|(k, _, _)| k == id) {
                    Some((_, _, marking)) => shown.push(marking_text(id, marking)),
                    None => {
                        self.error(
                            Code::UnknownReference,
                            &format!("/markings/{n}"),
                            item.mark,
                            format!("no entry of `data_marking_definitions` has the id `{id}`"),
                        );
                    }
                }
            }
            if !shown.is_empty() {
                lines.push(format!("Markings: {}.", shown.join("; ")));
            }
        }
        if let Some(Value::Array(signatures)) = p.get("signatures").map(|s| &s.value) {
            lines.push(format!(
                "The CACAO file carried {} signature(s); they sign the JSON, not this runbook, and were not checked.",
                signatures.len()
            ));
        }
        if let Some(Value::Array(references)) = p.get("external_references").map(|r| &r.value) {
            for reference in references {
                let name = reference.get("name").and_then(Json::as_str).unwrap_or("reference");
                let url = reference.get("url").and_then(Json::as_str).unwrap_or("");
                lines.push(format!("Reference: {name} {url}").trim_end().to_string());
            }
        }
        let extensions = object_members(p.get("playbook_extensions"));
        if !extensions.is_empty() {
            let names: Vec<&str> = extensions.iter().map(|(k, _, _)| k.as_str()).collect();
            let mark = p.get("playbook_extensions").map_or(p.mark, |e| e.mark);
            self.warn(
                Code::Extension,
                "/playbook_extensions",
                mark,
                format!(
                    "the playbook's extensions ({}) are not acted on; they are named in the description",
                    names.join(", ")
                ),
            );
            lines.push(format!("Extensions not acted on: {}.", names.join(", ")));
        }
        lines.append(&mut self.notes);
        lines.join("\n")
    }
}

/// External references of a step, into its description.
pub(super) fn references(json: &Json, description: &mut String) {
    if let Some(Value::Array(references)) = json.get("external_references").map(|r| &r.value) {
        for reference in references {
            let name = reference.get("name").and_then(Json::as_str).unwrap_or("reference");
            let url = reference.get("url").and_then(Json::as_str).unwrap_or("");
            description.push_str(&format!("\nReference: {name} {url}"));
        }
    }
}

pub(super) fn marking_text(id: &str, marking: &Json) -> String {
    let kind = marking.get("type").and_then(Json::as_str).unwrap_or("marking");
    let detail = ["tlpv2_level", "tlp", "statement", "name"].iter().find_map(|k| marking.get(k).and_then(Json::as_str));
    match detail {
        Some(detail) => format!("{detail} ({kind} `{id}`)"),
        None => format!("{kind} `{id}`"),
    }
}
