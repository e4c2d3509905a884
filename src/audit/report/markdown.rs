//! The report as Markdown (GitHub-flavoured tables). Text from the log is escaped so that it
//! cannot end a table cell, start a link or open an HTML tag.

use std::fmt::Write as _;

use super::facts::Facts;
use super::{Integrity, span, time};

pub(super) fn write(facts: &Facts, integrity: &Integrity) -> String {
    let mut out = String::new();
    summary(&mut out, facts);
    timeline(&mut out, facts);
    phases(&mut out, facts);
    approvals(&mut out, facts);
    recoveries(&mut out, facts);
    exposure(&mut out, facts);
    updates(&mut out, facts);
    super::campaigns::markdown(&mut out, &facts.campaigns, text, code);
    verification(&mut out, facts, integrity);
    out
}

fn summary(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "# Post-incident report: {}\n", text(&facts.incident));
    let _ = writeln!(out, "Generated from the incident's log alone, as of {} (its last event).\n", time(facts.as_of));
    if let (true, Some((at, by, reason))) = (facts.abandoned, &facts.closed) {
        let _ = writeln!(
            out,
            "> **ABANDONED.** The incident was closed at {} by {} before every phase was done or skipped. \
             Reason on record: {}\n",
            time(*at),
            text(by),
            reason.as_deref().map(text).unwrap_or_else(|| "none".to_string())
        );
    }
    if let Some(problem) = &facts.runbook_problem {
        let _ = writeln!(out, "> **Note:** {}.\n", text(problem));
    }
    let _ = writeln!(out, "## Summary\n\n| | |\n|---|---|");
    let title = facts.runbook_title.as_deref().map(|t| format!("{} ", text(t))).unwrap_or_default();
    let version = facts.runbook_version.as_deref().map(|v| format!(", version {}", text(v))).unwrap_or_default();
    let _ = writeln!(out, "| Runbook | {title}({}){version} |", code(&facts.runbook_id));
    let matches = if facts.hash_matches { "matches the pinned text" } else { "**does not match the pinned text**" };
    let _ = writeln!(out, "| Runbook hash | {} ({matches}) |", code(&format!("sha256:{}", facts.runbook_sha256)));
    let _ = writeln!(out, "| Started | {} by {} |", time(facts.started_at), text(&facts.started_by));
    if let Some(key) = &facts.key {
        let _ = writeln!(out, "| Trigger key | {} |", code(key));
    }
    if !facts.inputs.is_empty() {
        let inputs: Vec<String> =
            facts.inputs.iter().map(|(name, value)| format!("{} = {}", code(name), code(value))).collect();
        let _ = writeln!(out, "| Inputs | {} |", inputs.join("<br>"));
    }
    let _ = writeln!(out, "| Duration | {} |", facts.duration());
    let _ = writeln!(out, "| Outcome | {} |", text(&facts.outcome()));
    if let Some((_, _, Some(note))) = &facts.closed {
        let label = if facts.abandoned { "Why abandoned" } else { "Closing note" };
        let _ = writeln!(out, "| {label} | {} |", text(note));
    }
    let _ = writeln!(out, "| Events | {} |", facts.events);
}

fn timeline(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "\n## Timeline\n\n| # | Time | Actor | Event | Reason |\n|---:|---|---|---|---|");
    for entry in &facts.timeline {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            entry.number,
            time(entry.at),
            text(&entry.actor),
            text(&entry.what),
            entry.reason.as_deref().map(text).unwrap_or_default(),
        );
    }
    if let Some(line) = facts.left_out_line() {
        let _ = writeln!(out, "\n*{line}*");
    }
}

fn phases(out: &mut String, facts: &Facts) {
    let _ = writeln!(
        out,
        "\n## Phases\n\n| Phase | Status | Entered | Started | Ended | Took | Note |\n|---|---|---|---|---|---|---|"
    );
    for phase in &facts.phases {
        let name = match &phase.title {
            Some(title) => format!("{} ({})", text(title), code(&phase.id)),
            None => code(&phase.id),
        };
        let at = |at: Option<chrono::DateTime<chrono::Utc>>| at.map(time).unwrap_or_else(|| "-".to_string());
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            phase.status.as_str(),
            at(phase.entered_at),
            at(phase.started_at),
            at(phase.ended_at),
            phase.took(facts.as_of),
            phase.note.as_deref().map(text).unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "\n### Gates\n\nEntry gates wait from when their phase is entered, exit gates from when it starts.\n\n\
         | Gate | Waited from | Passed | Waited | Satisfied by |\n|---|---|---|---|---|"
    );
    for phase in &facts.phases {
        for gate in &phase.gates {
            let passed = gate.passed_at.map_or("**not passed**".to_string(), time);
            let waited = gate.waited(facts.as_of);
            let missed = if gate.deadline_missed { " **(deadline missed)**" } else { "" };
            let _ = writeln!(
                out,
                "| {} | {} | {passed} | {waited}{missed} | {} |",
                code(&format!("{}/{}", phase.id, gate.id)),
                gate.from.map(time).unwrap_or_default(),
                text(&gate.by),
            );
        }
    }
}

fn recoveries(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "\n## Recoveries and abandonment\n");
    if facts.recoveries.is_empty() {
        let _ = writeln!(
            out,
            "No failed step was retried, skipped or marked done by hand, and the incident was not abandoned."
        );
        return;
    }
    let _ = writeln!(out, "| # | Time | Who | Did | What | Reason or evidence |\n|---:|---|---|---|---|---|");
    for recovery in &facts.recoveries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            recovery.number,
            time(recovery.at),
            text(&recovery.actor),
            recovery.action,
            if recovery.what.contains('/') { code(&recovery.what) } else { text(&recovery.what) },
            recovery.reason.as_deref().map(text).unwrap_or_default(),
        );
    }
}

fn approvals(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "\n## Approvals\n");
    if facts.approvals.is_empty() {
        let _ = writeln!(out, "No approvals were given.");
        return;
    }
    let _ = writeln!(out, "| # | Time | Gate | Approver | Role | Note |\n|---:|---|---|---|---|---|");
    for approval in &facts.approvals {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            approval.number,
            time(approval.at),
            code(&format!("{}/{}", approval.phase, approval.gate)),
            text(&approval.approver),
            text(&approval.role),
            approval.note.as_deref().map(text).unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "\n### Four-eyes evidence\n\n| Gate | Required | Approvers | Distinct | Starter ({}) among them | Four-eyes |\n\
         |---|---|---|---|---|---|",
        text(&facts.started_by)
    );
    for gate in &facts.approval_gates {
        let approvers: Vec<String> = gate.approvers.iter().map(|a| text(a)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            code(&format!("{}/{}", gate.phase, gate.gate)),
            text(&gate.required),
            approvers.join(", "),
            if gate.distinct { "yes" } else { "**no**" },
            if gate.starter_among { "**yes**" } else { "no" },
            gate.four_eyes,
        );
    }
}

fn exposure(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "\n## Control exposure\n");
    if facts.exposures.is_empty() {
        let _ = writeln!(out, "No control was relaxed.");
    }
    for (index, exposure) in facts.exposures.iter().enumerate() {
        let title = exposure.title.as_deref().map(|t| format!(": {}", text(t))).unwrap_or_default();
        let gap = if index > 0 { "\n" } else { "" };
        let _ = writeln!(out, "{gap}### {}{title}\n", code(&exposure.control));
        let window = span(exposure.window(facts.as_of));
        match &exposure.reinstated {
            Some(_) => {
                let _ = writeln!(out, "- **Exposure window: {window}**");
            }
            None => {
                let _ = writeln!(out, "- **Exposure window: {window}, still relaxed** (measured to the last event)");
            }
        }
        if let Some(overdue) = exposure.overdue(facts.as_of) {
            let _ = writeln!(out, "- **Overdue:** {}", text(&overdue));
        }
        let _ = writeln!(
            out,
            "- Relaxed: {} by {} in {}",
            time(exposure.relaxed_at),
            text(&exposure.relaxed_by),
            code(&exposure.relaxed_in)
        );
        let approvers: Vec<String> = exposure
            .approved_by
            .iter()
            .map(|a| format!("{} ({}) at {}", text(&a.person), text(&a.role), time(a.at)))
            .collect();
        let approvers = if approvers.is_empty() { "nobody recorded".to_string() } else { approvers.join("; ") };
        let _ = writeln!(out, "- Approved by: {approvers}");
        let _ = writeln!(out, "- Reason: {}", text(&exposure.reason));
        let _ = writeln!(out, "- Compensating measures: {}", list(&exposure.compensating));
        let _ = writeln!(out, "- Expires: {}", time(exposure.expires_at));
        match &exposure.reinstated {
            Some(back) => {
                let _ = writeln!(out, "- Reinstated: {} by {} in {}", time(back.at), text(&back.by), code(&back.step));
                let _ = writeln!(out, "- Strengthened: {}", list(&back.strengthened));
            }
            None => {
                let _ = writeln!(out, "- Reinstated: **not yet, still relaxed** as of {}", time(facts.as_of));
            }
        }
    }
}

fn updates(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "\n## Status updates and notices\n");
    if facts.updates.is_empty() {
        let _ = writeln!(out, "No status update was sent.");
        return;
    }
    let _ = writeln!(out, "| # | Time | Audience | Delivered to | Occasion | Text |\n|---:|---|---|---|---|---|");
    for update in &facts.updates {
        let audience = match &update.audience_title {
            Some(title) => format!("{} ({})", text(title), code(&update.audience)),
            None => code(&update.audience),
        };
        let delivered = match &update.error {
            Some(error) => format!("**failed:** {}", text(error)),
            None => update.channels.iter().map(|c| code(c)).collect::<Vec<_>>().join(", "),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {audience} | {delivered} | {} | {} |",
            update.number,
            time(update.at),
            text(&update.occasion),
            update.text(text, code)
        );
    }
    let _ = writeln!(
        out,
        "\nThe text is as the log recorded it when the update went out (its plain-text variant where the \
         template has one). Where a log has no text for an update, rendering the template again now would not \
         show what was sent."
    );
}

fn verification(out: &mut String, facts: &Facts, integrity: &Integrity) {
    let _ = writeln!(out, "\n## Verification\n");
    let verdict = if integrity.unsigned() {
        "**UNSIGNED**: the hash chain verifies, but no key signed the log, so nothing vouches for its end"
    } else if integrity.verified {
        "the hash chain and every checkpoint verify"
    } else {
        "**NOT verified**: the log or its checkpoints do not verify"
    };
    let _ = writeln!(out, "- Result: {verdict}");
    let _ = writeln!(out, "- Events: {}{}", integrity.events, facts.count_mismatch(integrity));
    let _ = writeln!(out, "- Signed checkpoints: {}", integrity.checkpoints);
    let _ = writeln!(out, "- Signed through: event {} of {}", integrity.signed_through, integrity.events);
    let fingerprint = integrity.fingerprint.as_deref().map_or("none".to_string(), code);
    let _ = writeln!(out, "- Key fingerprint: {fingerprint}");
    let problem = integrity.problem.as_deref().map_or("none".to_string(), |p| format!("**{}**", text(p)));
    let _ = writeln!(out, "- First problem: {problem}");
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items.iter().map(|item| text(item)).collect::<Vec<_>>().join("; ")
}

/// Text from the log, safe in a table cell: no pipe ends the cell, no newline ends the row, no
/// bracket starts a link and no angle bracket opens a tag.
fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut lines = raw.trim().lines().peekable();
    while let Some(line) = lines.next() {
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '|' => out.push_str("\\|"),
                '[' => out.push_str("\\["),
                ']' => out.push_str("\\]"),
                '\\' => out.push_str("\\\\"),
                // Only `<` before a letter, `/`, `!` or `?` can open a tag; `a < b` stays as written.
                '<' if chars.peek().is_some_and(|next| next.is_ascii_alphabetic() || "/!?".contains(*next)) => {
                    out.push_str("&lt;");
                }
                _ => out.push(c),
            }
        }
        if lines.peek().is_some() {
            out.push_str("<br>");
        }
    }
    out
}

/// An identifier as code, unless it holds what a code span cannot (or what a careless renderer
/// might take for a tag even there).
fn code(raw: &str) -> String {
    if raw.contains(['`', '\n', '\r', '<']) || raw.is_empty() {
        return text(raw);
    }
    format!("`{}`", raw.replace('|', "\\|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_break_a_table() {
        let table = [
            ("a | b", "a \\| b"),
            ("one\ntwo\r\nthree", "one<br>two<br>three"),
            ("<script>alert(1)</script>", "&lt;script>alert(1)&lt;/script>"),
            ("a < b > c", "a < b > c"),
            ("[click](javascript:x)", "\\[click\\](javascript:x)"),
            ("back\\slash", "back\\\\slash"),
        ];
        for (raw, expected) in table {
            assert_eq!(text(raw), expected);
        }
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("a`b"), "a`b");
    }
}
