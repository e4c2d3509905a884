//! The phases as a graph, laid out on the server: each phase in the column of its depth (the
//! longest chain of `needs` before it), in the order written within a column, with an edge from
//! each need. The template draws it as SVG; states are words on each node as well as colours.
//! A phase's title is wrapped onto as many lines as it needs (up to [`MAX_LINES`]), every node
//! as tall as the tallest, so that long titles read whole on the graph; the width of a line is
//! estimated as the report's chart estimates it (`audit::report::wrap`), from above.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::Incident;
use crate::runbook::Runbook;

const NODE_WIDTH: u32 = 176;
const COLUMN_GAP: u32 = 36;
const ROW_GAP: u32 = 14;
const MARGIN: u32 = 4;
/// Room for the text inside a node: its width less the padding on each side.
const PADDING: u32 = 10;
/// The label's size in pixels (`.node-label` in `app.css`), and how much wider its bold weight
/// draws than the regular one the width estimate is made for.
const LABEL_SIZE: f64 = 13.0;
const BOLD: f64 = 1.12;
/// How far apart the lines of text are, in pixels.
const LINE: u32 = 16;
/// Lines a title may take; past them its last line ends in `…` (the full title is the node's
/// `<title>` and part of the graph's own).
pub const MAX_LINES: usize = 4;

#[derive(Debug, Serialize)]
pub struct Graph {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Serialize)]
pub struct Node {
    pub id: String,
    /// The title wrapped to the node's width, each line with where it sits.
    pub lines: Vec<Line>,
    pub title: String,
    /// `pending`, `ready`, `running`, `done`, `skipped`, `failed`, or `planned` (a runbook's plan).
    pub state: &'static str,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// Where the label's lines and the state's word sit.
    pub text_x: u32,
    pub state_y: u32,
}

#[derive(Debug, Serialize)]
pub struct Line {
    pub text: String,
    pub y: u32,
}

#[derive(Debug, Serialize)]
pub struct Edge {
    /// An SVG path from the need's right side to the phase's left side.
    pub path: String,
    /// Whether the need is done or skipped.
    pub met: bool,
}

/// The runbook's phases laid out, each in `incident`'s state (or `planned` without one).
pub fn layout(runbook: &Runbook, incident: Option<&Incident>) -> Graph {
    let phases = runbook.phases();
    let mut depth: BTreeMap<&str, u32> = BTreeMap::new();
    // Phases are in an order where needs come first (validation checks it), so one pass does.
    for phase in phases {
        let own = phase.needs.iter().filter_map(|need| depth.get(need.as_str())).map(|d| d + 1).max().unwrap_or(0);
        depth.insert(&phase.id, own);
    }
    let room = f64::from(NODE_WIDTH - 2 * PADDING);
    let wrapped: Vec<(String, Vec<String>)> = phases
        .iter()
        .map(|phase| {
            let title = phase.title.clone().unwrap_or_else(|| phase.id.clone());
            let lines = crate::audit::report::wrap(&title, room, LABEL_SIZE * BOLD, MAX_LINES);
            (title, lines)
        })
        .collect();
    // Every node is as tall as the one with the most lines: rows stay aligned across columns.
    let most = wrapped.iter().map(|(_, lines)| lines.len()).max().unwrap_or(1).max(1) as u32;
    let node_height = most * LINE + LINE + 14;
    let mut rows_used: BTreeMap<u32, u32> = BTreeMap::new();
    let mut place: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(phases.len());
    for (phase, (title, lines)) in phases.iter().zip(wrapped) {
        let column = depth[phase.id.as_str()];
        let row = rows_used.entry(column).or_insert(0);
        let (x, y) = (MARGIN + column * (NODE_WIDTH + COLUMN_GAP), MARGIN + *row * (node_height + ROW_GAP));
        *row += 1;
        place.insert(&phase.id, (x, y));
        let lines: Vec<Line> =
            lines.into_iter().zip(0..).map(|(text, index)| Line { text, y: y + 19 + index * LINE }).collect();
        let state = incident.map_or("planned", |incident| incident.phase(&phase.id).status.as_str());
        nodes.push(Node {
            id: phase.id.clone(),
            lines,
            title,
            state,
            x,
            y,
            width: NODE_WIDTH,
            height: node_height,
            text_x: x + PADDING,
            state_y: y + 19 + most * LINE + 1,
        });
    }
    let mut edges = Vec::new();
    for phase in phases {
        let (x, y) = place[phase.id.as_str()];
        for need in &phase.needs {
            let Some(&(from_x, from_y)) = place.get(need.as_str()) else { continue };
            let (x1, y1) = (from_x + NODE_WIDTH, from_y + node_height / 2);
            let (x2, y2) = (x, y + node_height / 2);
            let middle = (x1 + x2) / 2;
            let met = incident.is_some_and(|incident| incident.phase(need).status.is_finished());
            edges.push(Edge { path: format!("M{x1} {y1} C{middle} {y1} {middle} {y2} {x2} {y2}"), met });
        }
    }
    let columns = depth.values().max().map_or(0, |d| d + 1);
    let rows = rows_used.values().max().copied().unwrap_or(0);
    Graph {
        width: 2 * MARGIN + columns * NODE_WIDTH + columns.saturating_sub(1) * COLUMN_GAP,
        height: 2 * MARGIN + rows * node_height + rows.saturating_sub(1) * ROW_GAP,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long phase titles were cut at 20 characters (`Notify loyalty membe…`): they now wrap onto
    /// lines that each fit the node, every word kept, and every node is as tall as the tallest.
    #[test]
    fn long_titles_wrap_inside_their_nodes_and_nodes_share_one_height() {
        let yaml = r#"apiVersion: phasegate/v1
kind: Runbook
id: long-titles
title: Long titles
roles:
  commander: {}
phases:
  - id: triage
    steps:
      - { id: look, manual: { instructions: Look } }
  - id: notify-customers
    title: Notify loyalty members with an apology and a goodwill offer
    needs: [triage]
    steps:
      - { id: tell, manual: { instructions: Tell } }
  - id: reinstate
    title: Reinstate MFA and every relaxed control, stronger
    needs: [triage]
    steps:
      - { id: back, manual: { instructions: Back } }
"#;
        let runbook = crate::runbook::parse(yaml, &crate::render::Catalog::built_in()).unwrap();
        let graph = layout(&runbook, None);
        let room = f64::from(NODE_WIDTH - 2 * PADDING);
        for node in &graph.nodes {
            let shown: Vec<&str> = node.lines.iter().map(|line| line.text.as_str()).collect();
            assert_eq!(shown.join(" "), node.title, "every word of `{}` is on the node", node.title);
            for line in &shown {
                let drawn = crate::audit::report::width(line, LABEL_SIZE * BOLD);
                assert!(drawn <= room, "`{line}` is {drawn} wide, the node has {room}");
            }
            assert!(node.lines.windows(2).all(|pair| pair[1].y == pair[0].y + LINE), "lines follow each other");
            let last = node.lines.last().unwrap().y;
            assert!(last < node.state_y && node.state_y < node.y + node.height, "the state's word is below, inside");
        }
        let notify = graph.nodes.iter().find(|node| node.id == "notify-customers").unwrap();
        assert!(notify.lines.len() >= 3, "{:?}", notify.lines);
        assert!(graph.nodes.iter().all(|node| node.height == notify.height), "one height for all");
        let triage = &graph.nodes[0];
        assert_eq!(triage.lines.len(), 1);
        // Two nodes in the second column, one below the other, and the graph holds them.
        let (first, second) = (&graph.nodes[1], &graph.nodes[2]);
        assert_eq!((first.x, second.y), (second.x, first.y + first.height + ROW_GAP));
        assert!(graph.height >= second.y + second.height);
    }

    /// A title past [`MAX_LINES`] lines ends in `…`; the whole title stays the node's `<title>`.
    #[test]
    fn a_title_too_long_for_the_lines_ends_in_an_ellipsis() {
        let words = "word ".repeat(60);
        let yaml = format!(
            "apiVersion: phasegate/v1\nkind: Runbook\nid: longer\ntitle: Longer\nroles:\n  commander: {{}}\nphases:\n  - id: only\n    \
             title: {}\n    steps:\n      - {{ id: look, manual: {{ instructions: Look }} }}\n",
            words.trim()
        );
        let runbook = crate::runbook::parse(&yaml, &crate::render::Catalog::built_in()).unwrap();
        let graph = layout(&runbook, None);
        let node = &graph.nodes[0];
        assert_eq!(node.lines.len(), MAX_LINES);
        assert!(node.lines.last().unwrap().text.ends_with('…'));
        assert_eq!(node.title, words.trim());
    }
}
