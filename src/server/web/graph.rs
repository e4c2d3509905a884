//! The phases as a graph, laid out on the server: each phase in the column of its depth (the
//! longest chain of `needs` before it), in the order written within a column, with an edge from
//! each need. The template draws it as SVG; states are words on each node as well as colours.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::Incident;
use crate::runbook::Runbook;

const NODE_WIDTH: u32 = 168;
const NODE_HEIGHT: u32 = 46;
const COLUMN_GAP: u32 = 36;
const ROW_GAP: u32 = 14;
const MARGIN: u32 = 4;
/// Characters of a title that fit a node.
const TITLE_CHARS: usize = 20;

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
    /// The title cut to fit (the full one is the node's `<title>`).
    pub label: String,
    pub title: String,
    /// `pending`, `ready`, `running`, `done`, `skipped`, `failed`, or `planned` (a runbook's plan).
    pub state: &'static str,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// Where the label and the state's word sit.
    pub text_x: u32,
    pub label_y: u32,
    pub state_y: u32,
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
    let mut rows_used: BTreeMap<u32, u32> = BTreeMap::new();
    let mut place: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(phases.len());
    for phase in phases {
        let column = depth[phase.id.as_str()];
        let row = rows_used.entry(column).or_insert(0);
        let (x, y) = (MARGIN + column * (NODE_WIDTH + COLUMN_GAP), MARGIN + *row * (NODE_HEIGHT + ROW_GAP));
        *row += 1;
        place.insert(&phase.id, (x, y));
        let title = phase.title.clone().unwrap_or_else(|| phase.id.clone());
        let label = if title.chars().count() > TITLE_CHARS {
            format!("{}…", title.chars().take(TITLE_CHARS - 1).collect::<String>().trim_end())
        } else {
            title.clone()
        };
        let state = incident.map_or("planned", |incident| incident.phase(&phase.id).status.as_str());
        nodes.push(Node {
            id: phase.id.clone(),
            label,
            title,
            state,
            x,
            y,
            width: NODE_WIDTH,
            height: NODE_HEIGHT,
            text_x: x + 10,
            label_y: y + 19,
            state_y: y + 36,
        });
    }
    let mut edges = Vec::new();
    for phase in phases {
        let (x, y) = place[phase.id.as_str()];
        for need in &phase.needs {
            let Some(&(from_x, from_y)) = place.get(need.as_str()) else { continue };
            let (x1, y1) = (from_x + NODE_WIDTH, from_y + NODE_HEIGHT / 2);
            let (x2, y2) = (x, y + NODE_HEIGHT / 2);
            let middle = (x1 + x2) / 2;
            let met = incident.is_some_and(|incident| incident.phase(need).status.is_finished());
            edges.push(Edge { path: format!("M{x1} {y1} C{middle} {y1} {middle} {y2} {x2} {y2}"), met });
        }
    }
    let columns = depth.values().max().map_or(0, |d| d + 1);
    let rows = rows_used.values().max().copied().unwrap_or(0);
    Graph {
        width: 2 * MARGIN + columns * NODE_WIDTH + columns.saturating_sub(1) * COLUMN_GAP,
        height: 2 * MARGIN + rows * NODE_HEIGHT + rows.saturating_sub(1) * ROW_GAP,
        nodes,
        edges,
    }
}
