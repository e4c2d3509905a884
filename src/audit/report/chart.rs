//! The phases drawn over time as inline SVG: one row per phase, a light bar while it waited for
//! its entry gates and a bar in its status's colour while it ran, up to its end or (unfinished,
//! outlined with a dashed line) to the last event; each control relaxation is a band across all
//! rows. The time axis is UTC.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::facts::Facts;
use super::html::escape;
use super::{span, time};
use crate::engine::state::PhaseStatus;

const WIDTH: f64 = 1000.0;
/// The column of phase names on the left.
const LABELS: f64 = 210.0;
const RIGHT: f64 = 24.0;
/// Room above the rows for the relaxations' labels.
const TOP: f64 = 24.0;
const ROW: f64 = 24.0;
const BAR: f64 = 14.0;
/// Room below the rows for the axis, its labels and the legend.
const BELOW: f64 = 62.0;
/// Longest phase name drawn, in characters; the full name is in the row's tooltip.
const MAX_LABEL: usize = 30;

/// Tick spacings to choose from, in seconds: the first that gives at most [`MAX_TICKS`] ticks.
const STEPS: &[i64] = &[60, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800];
const MAX_TICKS: i64 = 8;

const WAITING: &str = "#a9bcd9";
const RUNNING: &str = "#0b5cad";
const DONE: &str = "#1b7f3b";
const FAILED: &str = "#b3261e";
const RELAXED: &str = "#e8a317";

pub(super) fn svg(facts: &Facts) -> String {
    let start = facts.started_at;
    let end = facts.as_of;
    let total = (end - start).num_seconds().max(1) as f64;
    let plot = WIDTH - LABELS - RIGHT;
    let x = |at: DateTime<Utc>| LABELS + (at - start).num_seconds().clamp(0, total as i64) as f64 * plot / total;
    let bottom = TOP + facts.phases.len().max(1) as f64 * ROW;
    let height = bottom + BELOW;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Phases of {} over time\" \
         font-family=\"system-ui, sans-serif\" font-size=\"11\">",
        escape(&facts.incident)
    );
    let _ = writeln!(out, "<title>Phases of {} from {} to {}</title>", escape(&facts.incident), time(start), time(end));

    for exposure in &facts.exposures {
        let (from, to) = (x(exposure.relaxed_at), x(exposure.reinstated.as_ref().map_or(end, |r| r.at)));
        let open = exposure.reinstated.is_none();
        let outline = if open { format!(" stroke=\"{FAILED}\" stroke-dasharray=\"4 3\"") } else { String::new() };
        let state = if open { "still relaxed" } else { "relaxed" };
        let _ = writeln!(
            out,
            "<g><title>{} {state} for {}</title><rect x=\"{from:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"{RELAXED}\" fill-opacity=\"0.2\"{outline}/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#7a5200\">{} \
             {state}</text></g>",
            escape(&exposure.control),
            span(exposure.window(end)),
            TOP - 6.0,
            (to - from).max(1.0),
            bottom - TOP + 6.0,
            from + 2.0,
            TOP - 10.0,
            escape(&exposure.control),
        );
    }

    for exposure in facts.exposures.iter().filter(|e| e.expires_at <= end) {
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{bottom:.1}\" stroke=\"{FAILED}\" \
             stroke-dasharray=\"4 3\"><title>{2} expired at {3}</title></line>",
            x(exposure.expires_at),
            TOP - 6.0,
            escape(&exposure.control),
            time(exposure.expires_at),
        );
    }
    axis(&mut out, start, end, bottom, &x);
    for (index, phase) in facts.phases.iter().enumerate() {
        let top = TOP + index as f64 * ROW;
        let bar_top = top + (ROW - BAR) / 2.0;
        let name = phase.title.clone().unwrap_or_else(|| phase.id.clone());
        let full = match &phase.title {
            Some(title) => format!("{title} ({})", phase.id),
            None => phase.id.clone(),
        };
        let label = if name.chars().count() > MAX_LABEL {
            format!("{}…", name.chars().take(MAX_LABEL - 1).collect::<String>())
        } else {
            name.clone()
        };
        let _ = writeln!(
            out,
            "<g><title>{}: {}, took {}</title>\n<line x1=\"{LABELS}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" \
             stroke=\"#e4e4e4\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            escape(&full),
            phase.status.as_str(),
            phase.took(end),
            top + ROW,
            WIDTH - RIGHT,
            top + ROW,
            LABELS - 8.0,
            top + ROW / 2.0 + 4.0,
            escape(&label),
        );
        let unfinished = phase.ended_at.is_none();
        let dashed = |yes: bool| if yes { " stroke=\"#1a1a1a\" stroke-dasharray=\"3 2\"" } else { "" };
        match (phase.status, phase.entered_at) {
            (PhaseStatus::Skipped, Some(at)) => {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#666666\"/><text x=\"{:.1}\" y=\"{:.1}\" \
                     fill=\"#666666\">skipped</text>",
                    x(at),
                    top + ROW / 2.0,
                    x(at) + 6.0,
                    top + ROW / 2.0 + 4.0
                );
            }
            (_, Some(entered)) => {
                let waited_until = phase.started_at.or(phase.ended_at).unwrap_or(end);
                if x(waited_until) > x(entered) {
                    let _ = write!(
                        out,
                        "<rect x=\"{:.1}\" y=\"{bar_top:.1}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{WAITING}\"{}/>",
                        x(entered),
                        x(waited_until) - x(entered),
                        dashed(unfinished && phase.started_at.is_none()),
                    );
                }
                if let Some(started) = phase.started_at {
                    let colour = match phase.status {
                        PhaseStatus::Done => DONE,
                        PhaseStatus::Failed => FAILED,
                        _ => RUNNING,
                    };
                    let to = x(phase.ended_at.unwrap_or(end));
                    let _ = write!(
                        out,
                        "<rect x=\"{:.1}\" y=\"{bar_top:.1}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{colour}\"{}/>",
                        x(started),
                        (to - x(started)).max(2.0),
                        dashed(unfinished),
                    );
                }
            }
            (_, None) => {
                let _ = write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666666\">not reached</text>",
                    LABELS + 4.0,
                    top + ROW / 2.0 + 4.0
                );
            }
        }
        let _ = writeln!(out, "</g>");
    }
    legend(&mut out, bottom + 48.0);
    out.push_str("</svg>\n");
    out
}

fn axis(out: &mut String, start: DateTime<Utc>, end: DateTime<Utc>, bottom: f64, x: &dyn Fn(DateTime<Utc>) -> f64) {
    let _ = writeln!(
        out,
        "<line x1=\"{LABELS}\" y1=\"{bottom}\" x2=\"{:.1}\" y2=\"{bottom}\" stroke=\"#1a1a1a\"/>",
        WIDTH - RIGHT
    );
    let total = (end - start).num_seconds().max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|step| total / step <= MAX_TICKS)
        .unwrap_or_else(|| (total / MAX_TICKS / 86_400 + 1) * 86_400);
    let format = if step >= 86_400 {
        "%m-%d"
    } else if start.date_naive() != end.date_naive() {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    let mut tick = (start.timestamp() + step - 1).div_euclid(step) * step;
    while tick <= end.timestamp() {
        let Some(at) = DateTime::from_timestamp(tick, 0) else { break };
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#d0d0d0\" stroke-dasharray=\"2 3\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(at),
            bottom + 4.0,
            bottom + 16.0,
            at.format(format)
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        "<text x=\"{LABELS}\" y=\"{:.1}\" fill=\"#666666\">UTC, from {} to {} ({})</text>",
        bottom + 32.0,
        time(start),
        time(end),
        span(end - start)
    );
}

fn legend(out: &mut String, y: f64) {
    let items = [
        (WAITING, "waiting for entry gates"),
        (RUNNING, "running"),
        (DONE, "done"),
        (FAILED, "failed"),
        (RELAXED, "control relaxed"),
    ];
    let mut left = LABELS;
    for (colour, label) in items {
        let _ = write!(
            out,
            "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\" fill-opacity=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{label}</text>",
            y - 9.0,
            if colour == RELAXED { 0.4 } else { 1.0 },
            left + 14.0
        );
        left += 24.0 + label.len() as f64 * 6.0;
    }
    let _ = writeln!(
        out,
        "<line x1=\"{left:.1}\" y1=\"{0:.1}\" x2=\"{left:.1}\" y2=\"{1:.1}\" stroke=\"{FAILED}\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{2:.1}\" y=\"{y:.1}\">relaxation expired</text><text x=\"{3:.1}\" y=\"{y:.1}\" fill=\"#666666\">\
         dashed outline: not finished</text>",
        y - 10.0,
        y + 1.0,
        left + 6.0,
        left + 130.0,
    );
}
