//! The phases and the control relaxations drawn over time as inline SVG.
//!
//! Three columns: names on the left, time in the middle, each row's state in words on the right.
//! A phase's row has a light bar while it waited for its entry gates and a bar in its status's
//! colour while it ran, up to its end or (unfinished, outlined with a dashed line) to the last
//! event. Below the phases, each relaxation has a row of its own: a bar from when the control was
//! relaxed to when it was reinstated (or, outlined with a dashed line, to the last event), in light red
//! where it ran past its expiry, and a mark at the expiry. The time axis is UTC.
//!
//! Labels never share a spot: every one is in its own row and column, wrapped to the room it has
//! by [`text::wrap`]'s estimate (the whole name is in the row's tooltip and in the tables), and the
//! axis and the legend are laid out from the same estimate. The legend draws each style the way
//! the chart does.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use super::facts::{Exposure, Facts};
use super::phases::Phase;
use super::text::{self, escape};
use super::{span, time};
use crate::engine::state::PhaseStatus;

const WIDTH: f64 = 1000.0;
/// The labels' font size, and the distance between the lines of a label.
const SIZE: f64 = 11.0;
const LINE: f64 = 14.0;
/// Room kept clear at the chart's edges and between columns.
const PAD: f64 = 8.0;
/// The column of names on the left, up to where the time axis begins.
const NAMES: f64 = 230.0;
/// The column of states in words on the right.
const STATES: f64 = 140.0;
const PLOT_LEFT: f64 = NAMES;
const PLOT_RIGHT: f64 = WIDTH - STATES - 2.0 * PAD;
const MIN_ROW: f64 = 24.0;
/// A heading row ("Phases", "Controls relaxed").
const HEADING: f64 = 22.0;
const BAR: f64 = 14.0;
/// Lines a name may take before it is cut short with `…`.
const NAME_LINES: usize = 2;

/// Tick spacings to choose from, in seconds: the first that leaves room between the ticks' labels.
const STEPS: &[i64] =
    &[1, 5, 10, 15, 30, 60, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800];

const INK: &str = "#1a1a1a";
const MUTED: &str = "#666666";
const WAITING: &str = "#a9bcd9";
const RUNNING: &str = "#0b5cad";
const DONE: &str = "#1b7f3b";
const FAILED: &str = "#b3261e";
const RELAXED: &str = "#e8a317";
const RELAXED_OPACITY: f64 = 0.55;
/// Where a relaxation ran past its expiry: a light red, unlike a failed phase's full red.
const OVERDUE: &str = "#b3261e";
const OVERDUE_OPACITY: f64 = 0.45;
/// The outline of what had not finished by the last event, phase or relaxation alike.
const UNFINISHED: &str = " stroke=\"#1a1a1a\" stroke-dasharray=\"3 2\"";

/// The time axis: where a moment falls across the plot.
struct Scale {
    start: DateTime<Utc>,
    seconds: i64,
}

impl Scale {
    fn x(&self, at: DateTime<Utc>) -> f64 {
        let offset = (at - self.start).num_seconds().clamp(0, self.seconds);
        PLOT_LEFT + offset as f64 * (PLOT_RIGHT - PLOT_LEFT) / self.seconds as f64
    }
}

/// One row's words: its name on the left and its state on the right, each in lines that fit.
struct Row {
    tooltip: String,
    name: Vec<String>,
    state: Vec<String>,
    state_colour: &'static str,
}

impl Row {
    /// `state` is in parts (a word and a duration): on one line when they fit, else each on lines
    /// of its own, so that a duration is not broken.
    fn new(tooltip: String, name: &str, state: &[String], state_colour: &'static str) -> Row {
        let name = text::wrap(name, NAMES - 2.0 * PAD, SIZE, NAME_LINES);
        let room = STATES - PAD;
        let joined = state.join(", ");
        let state = if text::width(&joined, SIZE) <= room {
            vec![joined]
        } else {
            state.iter().flat_map(|part| text::wrap(part, room, SIZE, NAME_LINES)).collect()
        };
        Row { tooltip, name, state, state_colour }
    }

    fn height(&self) -> f64 {
        let lines = self.name.len().max(self.state.len()) as f64;
        (lines * LINE + 10.0).max(MIN_ROW)
    }

    /// Opens the row's group at `top` (the caller draws its marks and closes it with `</g>`).
    fn open(&self, out: &mut String, top: f64) {
        let bottom = top + self.height();
        let _ = writeln!(
            out,
            "<g><title>{}</title>\n<line x1=\"{PAD}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" \
             stroke=\"#e4e4e4\"/>",
            escape(&self.tooltip),
            WIDTH - PAD,
        );
        let middle = top + self.height() / 2.0;
        lines(out, &self.name, NAMES - PAD, middle, " text-anchor=\"end\"", INK);
        lines(out, &self.state, WIDTH - STATES, middle, "", self.state_colour);
    }
}

/// Lines of text centred on `middle`, at `x` (their start, or their end with `text-anchor`).
fn lines(out: &mut String, lines: &[String], x: f64, middle: f64, anchor: &str, colour: &str) {
    let first = middle - (lines.len() as f64 - 1.0) * LINE / 2.0 + 4.0;
    for (index, line) in lines.iter().enumerate() {
        let _ = write!(
            out,
            "<text x=\"{x:.1}\" y=\"{:.1}\"{anchor} fill=\"{colour}\">{}</text>",
            first + index as f64 * LINE,
            escape(line)
        );
    }
    let _ = writeln!(out);
}

pub(super) fn svg(facts: &Facts) -> String {
    let (start, end) = (facts.started_at, facts.as_of);
    let scale = Scale { start, seconds: (end - start).num_seconds().max(1) };
    let mut body = String::new();
    let mut y = PAD;
    heading(&mut body, y, "Phases");
    y += HEADING;
    for phase in &facts.phases {
        y += phase_row(&mut body, phase, y, end, &scale);
    }
    if !facts.exposures.is_empty() {
        heading(&mut body, y, "Controls relaxed");
        y += HEADING;
        for exposure in &facts.exposures {
            y += exposure_row(&mut body, exposure, y, end, &scale);
        }
    }
    let grid = axis(start, end, PAD + HEADING, y, &scale);
    y += 44.0;
    let (legend, legend_height) = legend(y, !facts.exposures.is_empty());
    let height = y + legend_height + PAD;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {height:.1}\" role=\"img\" aria-label=\"Phases of {} over time\" \
         font-family=\"system-ui, sans-serif\" font-size=\"{SIZE}\">",
        escape(&facts.incident)
    );
    let _ = writeln!(out, "<title>Phases of {} from {} to {}</title>", escape(&facts.incident), time(start), time(end));
    out.push_str(&grid);
    out.push_str(&body);
    out.push_str(&legend);
    out.push_str("</svg>\n");
    out
}

fn heading(out: &mut String, top: f64, title: &str) {
    let _ = writeln!(
        out,
        "<text x=\"{PAD}\" y=\"{:.1}\" font-weight=\"bold\" fill=\"{MUTED}\">{title}</text>",
        top + HEADING - 7.0
    );
}

/// Draws a phase's row at `top`; returns its height.
fn phase_row(out: &mut String, phase: &Phase, top: f64, end: DateTime<Utc>, scale: &Scale) -> f64 {
    let name = phase.title.clone().unwrap_or_else(|| phase.id.clone());
    let full = match &phase.title {
        Some(title) => format!("{title} ({})", phase.id),
        None => phase.id.clone(),
    };
    let (state, colour) = match phase.status {
        PhaseStatus::Pending => ("not reached", MUTED),
        PhaseStatus::Ready => ("waiting for gates", INK),
        PhaseStatus::Running => ("running", INK),
        PhaseStatus::Done => ("done", INK),
        PhaseStatus::Skipped => ("skipped", MUTED),
        PhaseStatus::Failed => ("failed", FAILED),
    };
    let mut words = vec![state.to_string()];
    if let (Some(entered), PhaseStatus::Ready | PhaseStatus::Running | PhaseStatus::Done | PhaseStatus::Failed) =
        (phase.entered_at, phase.status)
    {
        words.push(span(phase.ended_at.unwrap_or(end) - entered));
    }
    let row = Row::new(format!("{full}: {state}, took {}", phase.took(end)), &name, &words, colour);
    row.open(out, top);
    let bar_top = top + (row.height() - BAR) / 2.0;
    let unfinished = phase.ended_at.is_none();
    let dashed = |yes: bool| if yes { UNFINISHED } else { "" };
    match (phase.status, phase.entered_at) {
        (PhaseStatus::Skipped, Some(at)) => {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{MUTED}\"/>",
                scale.x(at),
                top + row.height() / 2.0
            );
        }
        (_, Some(entered)) => {
            let waited_until = phase.started_at.or(phase.ended_at).unwrap_or(end);
            if scale.x(waited_until) > scale.x(entered) {
                bar(out, scale.x(entered), scale.x(waited_until), bar_top, WAITING, 1.0, "");
                if unfinished && phase.started_at.is_none() {
                    bar(out, scale.x(entered), scale.x(waited_until), bar_top, "none", 1.0, UNFINISHED);
                }
            }
            if let Some(started) = phase.started_at {
                let colour = match phase.status {
                    PhaseStatus::Done => DONE,
                    PhaseStatus::Failed => FAILED,
                    _ => RUNNING,
                };
                let to = scale.x(phase.ended_at.unwrap_or(end));
                bar(out, scale.x(started), to, bar_top, colour, 1.0, dashed(unfinished));
            }
        }
        (_, None) => {}
    }
    let _ = writeln!(out, "</g>");
    row.height()
}

/// Draws a relaxation's row at `top`; returns its height.
fn exposure_row(out: &mut String, exposure: &Exposure, top: f64, end: DateTime<Utc>, scale: &Scale) -> f64 {
    let name = exposure.title.clone().unwrap_or_else(|| exposure.control.clone());
    let until = exposure.reinstated.as_ref().map_or(end, |r| r.at);
    let late = until > exposure.expires_at;
    let window = span(exposure.window(end));
    let (state, detail, colour) = match (&exposure.reinstated, late) {
        (Some(_), false) => ("reinstated", format!("after {window}"), INK),
        (Some(_), true) => ("reinstated late", format!("after {window}"), FAILED),
        (None, false) => ("still relaxed", format!("{window} so far"), FAILED),
        (None, true) => ("still relaxed", format!("overdue by {}", span(end - exposure.expires_at)), FAILED),
    };
    let ended = match &exposure.reinstated {
        Some(back) => format!("reinstated at {} in {}", time(back.at), back.step),
        None => format!("not reinstated by {}", time(end)),
    };
    let tooltip = format!(
        "{} ({}): relaxed at {} in {}, expires {}, {ended}; {state}, {detail}",
        exposure.title.as_deref().unwrap_or(&exposure.control),
        exposure.control,
        time(exposure.relaxed_at),
        exposure.relaxed_in,
        time(exposure.expires_at),
    );
    let row = Row::new(tooltip, &name, &[state.to_string(), detail], colour);
    row.open(out, top);
    let bar_top = top + (row.height() - BAR) / 2.0;
    let (from, to) = (scale.x(exposure.relaxed_at), scale.x(until));
    let expiry = scale.x(exposure.expires_at);
    bar(out, from, to.min(expiry).max(from), bar_top, RELAXED, RELAXED_OPACITY, "");
    if late {
        bar(out, expiry.max(from), to, bar_top, OVERDUE, OVERDUE_OPACITY, "");
    }
    if exposure.reinstated.is_none() {
        bar(out, from, to, bar_top, "none", 1.0, UNFINISHED);
    }
    if exposure.expires_at <= end {
        expiry_mark(out, expiry, bar_top);
    }
    let _ = writeln!(out, "</g>");
    row.height()
}

/// A bar from `from` to `to` (at least 2 wide, so that an instant shows).
fn bar(out: &mut String, from: f64, to: f64, top: f64, fill: &str, opacity: f64, outline: &str) {
    let opacity = if opacity < 1.0 { format!(" fill-opacity=\"{opacity}\"") } else { String::new() };
    let _ = write!(
        out,
        "<rect x=\"{from:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{fill}\"{opacity}{outline}/>",
        (to - from).max(2.0)
    );
}

fn expiry_mark(out: &mut String, x: f64, bar_top: f64) {
    let _ = write!(
        out,
        "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{FAILED}\" stroke-width=\"2\"/>",
        bar_top - 3.0,
        bar_top + BAR + 3.0
    );
}

/// The time axis under the rows, with grid lines from `top` down to `bottom`.
fn axis(start: DateTime<Utc>, end: DateTime<Utc>, top: f64, bottom: f64, scale: &Scale) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{bottom:.1}\" x2=\"{PLOT_RIGHT:.1}\" y2=\"{bottom:.1}\" stroke=\"{INK}\"/>"
    );
    let total = scale.seconds;
    let format = |step: i64| {
        if step >= 86_400 {
            "%m-%d"
        } else if start.date_naive() != end.date_naive() {
            if step < 60 { "%m-%d %H:%M:%S" } else { "%m-%d %H:%M" }
        } else if step < 60 {
            "%H:%M:%S"
        } else {
            "%H:%M"
        }
    };
    // The widest label a step would draw, with room between neighbours: as many ticks as fit.
    let fits = |step: i64| {
        let label = (start + Duration::seconds(step)).format(format(step)).to_string();
        let room = (PLOT_RIGHT - PLOT_LEFT) * step as f64 / total as f64;
        room >= text::width(&label, SIZE) + 2.0 * PAD
    };
    let step = STEPS.iter().copied().find(|&step| fits(step)).unwrap_or_else(|| {
        (1..).map(|weeks| weeks * 604_800).find(|&step| fits(step)).expect("some number of weeks fits")
    });
    let mut tick = (start.timestamp() + step - 1).div_euclid(step) * step;
    while tick <= end.timestamp() {
        let Some(at) = DateTime::from_timestamp(tick, 0) else { break };
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{top:.1}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#d0d0d0\" \
             stroke-dasharray=\"2 3\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            scale.x(at),
            bottom + 4.0,
            bottom + 16.0,
            at.format(format(step))
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        "<text x=\"{PLOT_LEFT}\" y=\"{:.1}\" fill=\"{MUTED}\">UTC, from {} to {} ({})</text>",
        bottom + 32.0,
        time(start),
        time(end),
        span(end - start)
    );
    out
}

/// The legend from `top`, in as many lines as it needs; returns it and its height. Each swatch
/// is drawn with the chart's own style.
fn legend(top: f64, relaxations: bool) -> (String, f64) {
    let box_ = |fill: &str, opacity: f64, outline: &str| {
        let opacity = if opacity < 1.0 { format!(" fill-opacity=\"{opacity}\"") } else { String::new() };
        format!("<rect x=\"0\" y=\"-9\" width=\"12\" height=\"10\" fill=\"{fill}\"{opacity}{outline}/>")
    };
    let mut items = vec![
        (box_(WAITING, 1.0, ""), "waiting for entry gates"),
        (box_(RUNNING, 1.0, ""), "running"),
        (box_(DONE, 1.0, ""), "done"),
        (box_(FAILED, 1.0, ""), "failed"),
        (format!("<circle cx=\"6\" cy=\"-4\" r=\"3\" fill=\"{MUTED}\"/>"), "skipped"),
        (box_("none", 1.0, UNFINISHED), "not finished"),
    ];
    if relaxations {
        items.push((box_(RELAXED, RELAXED_OPACITY, ""), "control relaxed"));
        items.push((box_(OVERDUE, OVERDUE_OPACITY, ""), "relaxed past its expiry"));
        let mark = format!("<line x1=\"6\" y1=\"-11\" x2=\"6\" y2=\"3\" stroke=\"{FAILED}\" stroke-width=\"2\"/>");
        items.push((mark, "expiry"));
    }
    let mut out = String::new();
    let (mut x, mut y) = (PAD, top + 10.0);
    for (swatch, label) in items {
        let item = 16.0 + text::width(label, SIZE);
        if x + item > WIDTH - PAD {
            (x, y) = (PAD, y + LINE + 4.0);
        }
        let _ = writeln!(
            out,
            "<g transform=\"translate({x:.1} {y:.1})\">{swatch}<text x=\"16\" y=\"0\">{label}</text></g>"
        );
        x += item + 2.0 * PAD;
    }
    (out, y - top + 6.0)
}
