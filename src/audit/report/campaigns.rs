//! The report's campaign section: for each campaign step, the list it read (and its SHA-256),
//! what reading it found, what was sent and failed (by reason), how long it took and how fast,
//! who paused, resumed or cancelled it, the batches that may have gone twice, and the Merkle
//! root that proves each recipient's outcome (`phasegate audit prove`).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::text::escape;
use super::{span, time};
use crate::engine::effect::CampaignTotals;
use crate::engine::event::{Event, EventKind};

pub(super) struct Campaign {
    /// `PHASE/STEP`.
    pub step: String,
    pub list: String,
    pub list_sha256: String,
    pub started_at: DateTime<Utc>,
    pub recipients: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub suppressed: u64,
    pub batches: u32,
    /// Who paused, resumed or cancelled it: what, who, when, why.
    pub steering: Vec<(&'static str, String, DateTime<Utc>, Option<String>)>,
    pub finished: Option<(DateTime<Utc>, CampaignTotals)>,
}

/// Every campaign the log records, in the order they started.
pub(super) fn gather(events: &[Event]) -> Vec<Campaign> {
    let mut found: Vec<Campaign> = Vec::new();
    for event in events {
        let find = |found: &mut Vec<Campaign>, phase: &str, step: &str| {
            let key = format!("{phase}/{step}");
            found.iter().rposition(|c| c.step == key)
        };
        match &event.kind {
            EventKind::CampaignStarted {
                phase,
                step,
                list,
                list_sha256,
                recipients,
                rejected,
                duplicates,
                suppressed,
                batches,
            } => {
                found.push(Campaign {
                    step: format!("{phase}/{step}"),
                    list: list.clone(),
                    list_sha256: list_sha256.clone(),
                    started_at: event.at,
                    recipients: *recipients,
                    rejected: *rejected,
                    duplicates: *duplicates,
                    suppressed: *suppressed,
                    batches: *batches,
                    steering: Vec::new(),
                    finished: None,
                });
            }
            EventKind::CampaignLaunched { phase, step }
            | EventKind::CampaignPaused { phase, step }
            | EventKind::CampaignResumed { phase, step }
            | EventKind::CampaignCancelled { phase, step } => {
                if let Some(index) = find(&mut found, phase, step) {
                    let what = match event.kind.name() {
                        "campaign_launched" => "launched",
                        "campaign_paused" => "paused",
                        "campaign_resumed" => "resumed",
                        _ => "cancelled",
                    };
                    found[index].steering.push((what, event.actor.clone(), event.at, event.reason.clone()));
                }
            }
            EventKind::CampaignFinished { phase, step, totals, .. } => {
                if let Some(index) = find(&mut found, phase, step) {
                    found[index].finished = Some((event.at, totals.clone()));
                }
            }
            _ => {}
        }
    }
    found
}

/// The rows of a campaign's table, as (label, value) with values already escaped by `text` and
/// `code`, so that Markdown and HTML show the same facts.
fn rows(campaign: &Campaign, text: fn(&str) -> String, code: fn(&str) -> String) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Recipient list", format!("{} (SHA-256 {})", code(&campaign.list), code(&campaign.list_sha256))),
        ("Started", time(campaign.started_at)),
        (
            "Read from the list",
            format!(
                "{} recipients in {} batches; {} lines set aside (rejects file), {} repeated ids, {} suppressed",
                campaign.recipients, campaign.batches, campaign.rejected, campaign.duplicates, campaign.suppressed
            ),
        ),
    ];
    for (what, by, at, reason) in &campaign.steering {
        let reason = reason.as_deref().map(|r| format!(": {}", text(r))).unwrap_or_default();
        rows.push(("Steered", format!("{what} by {} at {}{reason}", text(by), time(*at))));
    }
    match &campaign.finished {
        None => rows.push(("Finished", "**not yet**".to_string())),
        Some((at, totals)) => {
            let took = *at - campaign.started_at;
            let seconds = took.num_milliseconds() as f64 / 1000.0;
            let rate = if seconds > 0.0 {
                format!(", {:.0} messages a second", (totals.sent + totals.failed) as f64 / seconds)
            } else {
                String::new()
            };
            let ended = if totals.cancelled { "ended, cancelled" } else { "finished" };
            rows.push(("Finished", format!("{ended} at {} after {}{rate}", time(*at), span(took))));
            rows.push(("Sent", format!("{} of {}", totals.sent, totals.recipients)));
            let reasons: Vec<String> =
                totals.failed_by_reason.iter().map(|(reason, count)| format!("{count} × {}", text(reason))).collect();
            let reasons = if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join("; ")) };
            rows.push(("Failed", format!("{}{reasons}", totals.failed)));
            let repeats = match totals.possible_repeats.as_slice() {
                [] => "none".to_string(),
                batches => format!(
                    "batches {} (in flight when the sender stopped, or tried again; sent again with the same idempotency key)",
                    batches.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ),
            };
            rows.push(("Possible repeats", repeats));
            rows.push((
                "Merkle root",
                format!("{} over {} recipients' outcomes", code(&totals.merkle_root), totals.leaves),
            ));
        }
    }
    rows
}

const PROOF_NOTE: &str = "The Merkle root is in the hash-chained log, so a signed checkpoint covers it: \
     `phasegate audit prove INCIDENT PHASE/STEP RECIPIENT` prints the proof of one recipient's outcome and \
     message digest, which `scripts/verify-export.py EXPORT KEY --proof PROOF` checks offline.";

pub(super) fn markdown(out: &mut String, campaigns: &[Campaign], text: fn(&str) -> String, code: fn(&str) -> String) {
    if campaigns.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Customer campaigns\n");
    for campaign in campaigns {
        let _ = writeln!(out, "### {}\n\n| | |\n|---|---|", code(&campaign.step));
        for (label, value) in rows(campaign, text, code) {
            let _ = writeln!(out, "| {label} | {value} |");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{PROOF_NOTE}");
}

pub(super) fn html(out: &mut String, campaigns: &[Campaign]) {
    if campaigns.is_empty() {
        return;
    }
    let _ = writeln!(out, "<section>\n<h2>Customer campaigns</h2>");
    for campaign in campaigns {
        let _ = writeln!(out, "<h3><code>{}</code></h3>\n<table>\n<tbody>", escape(&campaign.step));
        for (label, value) in rows(campaign, escape, |s| format!("<code>{}</code>", escape(s))) {
            let value = value.replace("**not yet**", "<strong>not yet</strong>");
            let _ = writeln!(out, "<tr><th scope=\"row\">{label}</th><td>{value}</td></tr>");
        }
        let _ = writeln!(out, "</tbody>\n</table>");
    }
    // The note's commands, written between backticks for the Markdown report, as code here.
    let note: String = escape(PROOF_NOTE)
        .split('`')
        .enumerate()
        .map(|(n, part)| if n % 2 == 1 { format!("<code>{part}</code>") } else { part.to_string() })
        .collect();
    let _ = writeln!(out, "<p>{note}</p>\n</section>");
}
