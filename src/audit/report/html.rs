//! The report as one self-contained, printable HTML file: the style is inline, the chart is inline
//! SVG, and nothing is fetched from anywhere. Every piece of text from the log goes through
//! [`escape`].

use std::fmt::Write as _;

use super::facts::{Facts, Update};
use super::text::escape;
use super::{Integrity, chart, span, time};

/// An update longer than this many lines or characters is shown as its first lines (the browser
/// shows two of them) until it is opened.
const PREVIEW_LINES: usize = 2;
const PREVIEW_CHARS: usize = 200;

const STYLE: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       color: #1a1a1a; max-width: 1100px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #c8c8c8; padding-bottom: 4px; margin-top: 28px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
.said { white-space: pre-wrap; }
details.said { white-space: normal; }
details.said > summary { cursor: pointer; list-style: none; }
details.said > summary::-webkit-details-marker { display: none; }
.first { white-space: pre-wrap; display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2;
         overflow: hidden; }
.more { color: #0b5cad; font-size: 12px; }
.more::after { content: \" \\25B8  show the whole text\"; }
details[open] .more::after { content: \" \\25BE  hide it\"; }
details[open] .first { display: none; }
td { overflow-wrap: anywhere; }  /* a long condition or id wraps instead of widening the page */
th, td { border: 1px solid #d0d0d0; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.n { text-align: right; white-space: nowrap; }
.t { white-space: nowrap; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f2f2f2; padding: 0 2px; }
.bad { color: #b3261e; font-weight: bold; }
.good { color: #1b7f3b; font-weight: bold; }
.muted { color: #666666; }
.note { border-left: 4px solid #b3261e; padding: 4px 10px; background: #fdf0ef; }
.abandoned { border: 2px solid #b3261e; padding: 6px 12px; background: #fdf0ef; font-size: 15px; }
.exposure { border: 1px solid #d0d0d0; border-left: 4px solid #e8a317; padding: 4px 12px; margin: 10px 0; }
.exposure.open { border-left-color: #b3261e; }
.chart svg { width: 100%; height: auto; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .keep, .exposure, .chart { break-inside: avoid; page-break-inside: avoid; }
  tr { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  section.break { break-before: page; page-break-before: always; }
  details.said::details-content { content-visibility: visible; display: block; }
  .more { display: none; }
}
@supports selector(::details-content) { @media print { .first { display: none; } } }
";

pub(super) fn write(facts: &Facts, integrity: &Integrity) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Post-incident report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&facts.incident)
    );
    summary(&mut out, facts);
    let _ = writeln!(out, "<section class=\"chart\">\n<h2>Phases over time</h2>\n{}</section>", chart::svg(facts));
    timeline(&mut out, facts);
    phases(&mut out, facts);
    approvals(&mut out, facts);
    recoveries(&mut out, facts);
    exposure(&mut out, facts);
    updates(&mut out, facts);
    super::campaigns::html(&mut out, &facts.campaigns);
    verification(&mut out, facts, integrity);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn summary(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "<header class=\"keep\">\n<h1>Post-incident report: {}</h1>", escape(&facts.incident));
    let _ = writeln!(
        out,
        "<p class=\"muted\">Generated from the incident's log alone, as of {} (its last event).</p>",
        time(facts.as_of)
    );
    if let (true, Some((at, by, reason))) = (facts.abandoned, &facts.closed) {
        let _ = writeln!(
            out,
            "<p class=\"abandoned\"><strong>ABANDONED.</strong> The incident was closed at {} by {} before every \
             phase was done or skipped. Reason on record: {}</p>",
            time(*at),
            escape(by),
            reason.as_deref().map(escape).unwrap_or_else(|| "none".to_string())
        );
    }
    if let Some(problem) = &facts.runbook_problem {
        let _ = writeln!(out, "<p class=\"note\">{}.</p>", escape(problem));
    }
    // The header is the page's banner; everything after it is its one main landmark.
    let _ = writeln!(out, "</header>\n<main>\n<section class=\"keep\">\n<h2>Summary</h2>\n<table>");
    let title = facts.runbook_title.as_deref().map(|t| format!("{} ", escape(t))).unwrap_or_default();
    let version = facts.runbook_version.as_deref().map(|v| format!(", version {}", escape(v))).unwrap_or_default();
    row(out, "Runbook", &format!("{title}(<code>{}</code>){version}", escape(&facts.runbook_id)));
    let matches = if facts.hash_matches {
        "matches the pinned text"
    } else {
        "<span class=\"bad\">does not match the pinned text</span>"
    };
    row(out, "Runbook hash", &format!("<code>sha256:{}</code> ({matches})", escape(&facts.runbook_sha256)));
    row(out, "Started", &format!("{} by {}", time(facts.started_at), escape(&facts.started_by)));
    if let Some(key) = &facts.key {
        row(out, "Trigger key", &format!("<code>{}</code>", escape(key)));
    }
    if !facts.inputs.is_empty() {
        let inputs: Vec<String> = facts
            .inputs
            .iter()
            .map(|(name, value)| format!("<code>{}</code> = <code>{}</code>", escape(name), escape(value)))
            .collect();
        row(out, "Inputs", &inputs.join("<br>"));
    }
    row(out, "Duration", &facts.duration());
    row(out, "Outcome", &escape(&facts.outcome()));
    if let Some((_, _, Some(note))) = &facts.closed {
        row(out, if facts.abandoned { "Why abandoned" } else { "Closing note" }, &escape(note));
    }
    row(out, "Events", &facts.events.to_string());
    let _ = writeln!(out, "</table>\n</section>");
}

/// A row of a two-column table; `value` is HTML already.
fn row(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
}

fn timeline(out: &mut String, facts: &Facts) {
    let _ = writeln!(
        out,
        "<section class=\"break\">\n<h2>Timeline</h2>\n<table>\n\
         <thead><tr><th>#</th><th>Time</th><th>Actor</th><th>Event</th><th>Reason</th></tr></thead>\n<tbody>"
    );
    for entry in &facts.timeline {
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            entry.number,
            time(entry.at),
            escape(&entry.actor),
            with_code(&entry.what),
            entry.reason.as_deref().map(escape).unwrap_or_default(),
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>");
    if let Some(line) = facts.left_out_line() {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(&line));
    }
    let _ = writeln!(out, "</section>");
}

fn phases(out: &mut String, facts: &Facts) {
    let _ = writeln!(
        out,
        "<section>\n<h2>Phases</h2>\n<table>\n<thead><tr><th>Phase</th><th>Status</th><th>Entered</th>\
         <th>Started</th><th>Ended</th><th>Took</th><th>Note</th></tr></thead>\n<tbody>"
    );
    let at = |at: Option<chrono::DateTime<chrono::Utc>>| at.map(time).unwrap_or_else(|| "-".to_string());
    for phase in &facts.phases {
        let name = match &phase.title {
            Some(title) => format!("{} (<code>{}</code>)", escape(title), escape(&phase.id)),
            None => format!("<code>{}</code>", escape(&phase.id)),
        };
        let status = phase.status.as_str();
        let class = if status == "failed" { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td{class}>{status}</td><td class=\"t\">{}</td><td class=\"t\">{}</td>\
             <td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td></tr>",
            at(phase.entered_at),
            at(phase.started_at),
            at(phase.ended_at),
            phase.took(facts.as_of),
            phase.note.as_deref().map(with_code).unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n</table>\n<h3>Gates</h3>\n\
         <p class=\"muted\">Entry gates wait from when their phase is entered, exit gates from when it starts.</p>\n\
         <table>\n<thead><tr><th>Gate</th><th>Waited from</th><th>Passed</th><th>Waited</th>\
         <th>Satisfied by</th></tr></thead>\n<tbody>"
    );
    for phase in &facts.phases {
        for gate in &phase.gates {
            let passed = gate.passed_at.map_or("<span class=\"bad\">not passed</span>".to_string(), time);
            let waited = gate.waited(facts.as_of);
            let missed = if gate.deadline_missed { " <span class=\"bad\">(deadline missed)</span>" } else { "" };
            let _ = writeln!(
                out,
                "<tr><td><code>{}/{}</code></td><td class=\"t\">{}</td><td class=\"t\">{passed}</td>\
                 <td class=\"t\">{waited}{missed}</td><td>{}</td></tr>",
                escape(&phase.id),
                escape(&gate.id),
                gate.from.map(time).unwrap_or_default(),
                with_code(&gate.by),
            );
        }
    }
    let _ = writeln!(out, "</tbody>\n</table>\n</section>");
}

fn recoveries(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "<section>\n<h2>Recoveries and abandonment</h2>");
    if facts.recoveries.is_empty() {
        let _ = writeln!(
            out,
            "<p>No failed step was retried, skipped or marked done by hand, and the incident was not abandoned.</p>\n\
             </section>"
        );
        return;
    }
    let _ = writeln!(
        out,
        "<table>\n<thead><tr><th>#</th><th>Time</th><th>Who</th><th>Did</th><th>What</th>\
         <th>Reason or evidence</th></tr></thead>\n<tbody>"
    );
    for recovery in &facts.recoveries {
        let what = if recovery.what.contains('/') {
            format!("<code>{}</code>", escape(&recovery.what))
        } else {
            escape(&recovery.what)
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{what}</td><td>{}</td></tr>",
            recovery.number,
            time(recovery.at),
            escape(&recovery.actor),
            recovery.action,
            recovery.reason.as_deref().map(escape).unwrap_or_default(),
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>\n</section>");
}

fn approvals(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "<section>\n<h2>Approvals</h2>");
    if facts.approvals.is_empty() {
        let _ = writeln!(out, "<p>No approvals were given.</p>\n</section>");
        return;
    }
    let _ = writeln!(
        out,
        "<table>\n<thead><tr><th>#</th><th>Time</th><th>Gate</th><th>Approver</th><th>Role</th><th>Note</th>\
         </tr></thead>\n<tbody>"
    );
    for approval in &facts.approvals {
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"t\">{}</td><td><code>{}/{}</code></td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            approval.number,
            time(approval.at),
            escape(&approval.phase),
            escape(&approval.gate),
            escape(&approval.approver),
            escape(&approval.role),
            approval.note.as_deref().map(escape).unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n</table>\n<h3>Four-eyes evidence</h3>\n<table>\n<thead><tr><th>Gate</th><th>Required</th>\
         <th>Approvers</th><th>Distinct</th><th>Starter ({}) among them</th><th>Four-eyes</th></tr></thead>\n<tbody>",
        escape(&facts.started_by)
    );
    for gate in &facts.approval_gates {
        let approvers: Vec<String> = gate.approvers.iter().map(|a| escape(a)).collect();
        let four_eyes = if gate.four_eyes.contains("NOT") {
            format!("<span class=\"bad\">{}</span>", escape(&gate.four_eyes))
        } else {
            escape(&gate.four_eyes)
        };
        let _ = writeln!(
            out,
            "<tr><td><code>{}/{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{four_eyes}</td></tr>",
            escape(&gate.phase),
            escape(&gate.gate),
            escape(&gate.required),
            approvers.join(", "),
            if gate.distinct { "yes" } else { "<span class=\"bad\">no</span>" },
            if gate.starter_among { "<span class=\"bad\">yes</span>" } else { "no" },
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>\n</section>");
}

fn exposure(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "<section>\n<h2>Control exposure</h2>");
    if facts.exposures.is_empty() {
        let _ = writeln!(out, "<p>No control was relaxed.</p>");
    }
    for exposure in &facts.exposures {
        let open = if exposure.reinstated.is_none() { " open" } else { "" };
        let title = exposure.title.as_deref().map(|t| format!(": {}", escape(t))).unwrap_or_default();
        let _ = writeln!(
            out,
            "<div class=\"exposure{open}\">\n<h3><code>{}</code>{title}</h3>\n<table>",
            escape(&exposure.control)
        );
        let window = span(exposure.window(facts.as_of));
        let window = match exposure.reinstated {
            Some(_) => format!("<strong>{window}</strong>"),
            None => format!(
                "<strong>{window}</strong> <span class=\"bad\">still relaxed</span> (measured to the last event)"
            ),
        };
        row(out, "Exposure window", &window);
        if let Some(overdue) = exposure.overdue(facts.as_of) {
            row(out, "Overdue", &format!("<span class=\"bad\">{}</span>", escape(&overdue)));
        }
        let relaxed = format!(
            "{} by {} in <code>{}</code>",
            time(exposure.relaxed_at),
            escape(&exposure.relaxed_by),
            escape(&exposure.relaxed_in)
        );
        row(out, "Relaxed", &relaxed);
        let approvers: Vec<String> = exposure
            .approved_by
            .iter()
            .map(|a| format!("{} ({}) at {}", escape(&a.person), escape(&a.role), time(a.at)))
            .collect();
        let approvers = if approvers.is_empty() { "nobody recorded".to_string() } else { approvers.join("<br>") };
        row(out, "Approved by", &approvers);
        row(out, "Reason", &escape(&exposure.reason));
        row(out, "Compensating measures", &list(&exposure.compensating));
        row(out, "Expires", &time(exposure.expires_at));
        match &exposure.reinstated {
            Some(back) => {
                let text = format!("{} by {} in <code>{}</code>", time(back.at), escape(&back.by), escape(&back.step));
                row(out, "Reinstated", &text);
                row(out, "Strengthened", &list(&back.strengthened));
            }
            None => {
                let text = format!("<span class=\"bad\">not yet, still relaxed</span> as of {}", time(facts.as_of));
                row(out, "Reinstated", &text);
            }
        }
        let _ = writeln!(out, "</table>\n</div>");
    }
    let _ = writeln!(out, "</section>");
}

fn updates(out: &mut String, facts: &Facts) {
    let _ = writeln!(out, "<section>\n<h2>Status updates and notices</h2>");
    if facts.updates.is_empty() {
        let _ = writeln!(out, "<p>No status update was sent.</p>\n</section>");
        return;
    }
    let _ = writeln!(
        out,
        "<table>\n<thead><tr><th>#</th><th>Time</th><th>Audience</th><th>Delivered to</th><th>Occasion</th>\
         <th>Text</th></tr></thead>\n<tbody>"
    );
    for update in &facts.updates {
        let audience = match &update.audience_title {
            Some(title) => format!("{} (<code>{}</code>)", escape(title), escape(&update.audience)),
            None => format!("<code>{}</code>", escape(&update.audience)),
        };
        let delivered = match &update.error {
            Some(error) => format!("<span class=\"bad\">failed:</span> {}", escape(error)),
            None => {
                update.channels.iter().map(|c| format!("<code>{}</code>", escape(c))).collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"t\">{}</td><td>{audience}</td><td>{delivered}</td><td>{}</td>\
             <td>{}</td></tr>",
            update.number,
            time(update.at),
            with_code(&update.occasion),
            said(update),
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n</table>\n<p class=\"muted\">The text is as the log recorded it when the update went out (its \
         plain-text variant where the template has one). Where a log has no text for an update, rendering the \
         template again now would not show what was sent.</p>\n</section>"
    );
}

/// An update's text: a short one whole; a longer one as its first lines, with the whole text a
/// click away (`<details>`, no script) and printed whole.
fn said(update: &Update) -> String {
    let whole = update.text(escape, |raw| format!("<code>{}</code>", escape(raw)));
    let Some(said) = &update.said else { return format!("<div class=\"said\">{whole}</div>") };
    let lines: Vec<&str> = said.lines().collect();
    if lines.len() <= PREVIEW_LINES && said.chars().count() <= PREVIEW_CHARS {
        return format!("<div class=\"said\">{whole}</div>");
    }
    let mut first: String = lines.iter().take(PREVIEW_LINES).copied().collect::<Vec<_>>().join("\n");
    if first.chars().count() > PREVIEW_CHARS {
        first = first.chars().take(PREVIEW_CHARS).collect();
    }
    let count = if lines.len() == 1 {
        format!("{} characters", said.chars().count())
    } else {
        format!("{} lines", lines.len())
    };
    format!(
        "<details class=\"said\"><summary><span class=\"first\">{}</span><span class=\"more\">({count})</span>\
         </summary><div class=\"said\">{whole}</div></details>",
        escape(&first)
    )
}

fn verification(out: &mut String, facts: &Facts, integrity: &Integrity) {
    let _ = writeln!(out, "<section class=\"keep\">\n<h2>Verification</h2>\n<table>");
    let verdict = if integrity.unsigned() {
        "<span class=\"bad\">UNSIGNED</span>: the hash chain verifies, but no key signed the log, so nothing vouches \
         for its end"
    } else if integrity.verified {
        "<span class=\"good\">verified</span>: the hash chain and every checkpoint verify"
    } else {
        "<span class=\"bad\">NOT verified</span>: the log or its checkpoints do not verify"
    };
    row(out, "Result", verdict);
    row(out, "Events", &format!("{}{}", integrity.events, escape(&facts.count_mismatch(integrity))));
    row(out, "Signed checkpoints", &integrity.checkpoints.to_string());
    row(out, "Signed through", &format!("event {} of {}", integrity.signed_through, integrity.events));
    let fingerprint =
        integrity.fingerprint.as_deref().map_or("none".to_string(), |f| format!("<code>{}</code>", escape(f)));
    row(out, "Key fingerprint", &fingerprint);
    let problem = integrity
        .problem
        .as_deref()
        .map_or("none".to_string(), |p| format!("<span class=\"bad\">{}</span>", escape(p)));
    row(out, "First problem", &problem);
    let _ = writeln!(out, "</table>\n</section>");
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items.iter().map(|item| escape(item)).collect::<Vec<_>>().join("<br>")
}

/// Escaped text whose `backticked` parts (ids and conditions in summaries) are shown as code.
fn with_code(raw: &str) -> String {
    let escaped = escape(raw);
    if !escaped.matches('`').count().is_multiple_of(2) {
        return escaped;
    }
    escaped
        .split('`')
        .enumerate()
        .map(|(index, part)| if index % 2 == 1 { format!("<code>{part}</code>") } else { part.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticks_become_code() {
        assert_eq!(with_code("phase `a<b` done"), "phase <code>a&lt;b</code> done");
        assert_eq!(with_code("odd ` tick"), "odd ` tick");
    }
}
