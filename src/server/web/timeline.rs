//! The timeline on an incident's page: one page of its events, newest first, of one type or
//! all, with how many events of each type the log holds. Read from the store a page at a time
//! ([`store::Page`], the query the API's timeline pages with too) and counted by the runtime,
//! which keeps the counts and reads only the types of the events appended since: a request
//! decodes the fifty events it shows, not the log.

use serde_json::{Value, json};

use super::incident::when;
use crate::engine::Event;
use crate::runbook::Templates;
use crate::runtime::Runtime;
use crate::store::{self, Counts, Store};

/// Timeline entries on one page of the incident's page.
pub const TIMELINE_PAGE: usize = 50;

/// What the timeline shows: events of one kind (or all), a page of them, newest first.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub kind: Option<String>,
    pub page: usize,
}

impl View {
    /// From the query: `kind=EVENT_TYPE` and `page=N` (from 1).
    pub fn parse(query: &[(String, String)]) -> Result<View, String> {
        let mut view = View { kind: None, page: 1 };
        for (name, value) in query {
            match name.as_str() {
                "kind" if value.is_empty() || value == "all" => view.kind = None,
                "kind" => view.kind = Some(crate::server::view::event_kind(value)?.to_string()),
                "page" => {
                    view.page = value
                        .parse::<usize>()
                        .ok()
                        .filter(|page| (1..=1_000_000).contains(page))
                        .ok_or_else(|| "`page` must be a whole number from 1".to_string())?;
                }
                _ => return Err("this page takes `kind` and `page` only".into()),
            }
        }
        Ok(view)
    }
}

/// One page of an incident's timeline as read, at one version of its log.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The version read: how many events the log held.
    pub version: u64,
    /// How many events of each type those hold, by type name in order.
    pub counts: Counts,
    /// The page shown: the one asked for, or the last there is.
    pub page: usize,
    /// The page's events, newest first, each with its position in the log (from 1).
    pub events: Vec<(u64, Event)>,
}

impl Timeline {
    /// The page `view` asks for of the first `version` events of `incident`'s log (the version
    /// of the state the rest of the page shows, so that both agree).
    pub async fn read<S: Store, T: Templates + Send + Sync>(
        runtime: &Runtime<S, T>,
        incident: &str,
        version: u64,
        view: &View,
    ) -> Result<Timeline, crate::runtime::Error> {
        let counts = runtime.event_counts(incident, version).await?;
        let page = view.page.min(pages(total(&counts, version, view)));
        let skip = ((page - 1) * TIMELINE_PAGE) as u64;
        let wanted = store::Page::before(version + 1, TIMELINE_PAGE).of(view.kind.as_deref()).skipping(skip);
        let events = runtime.store().events_page(incident, &wanted).await?;
        Ok(Timeline { version, counts, page, events })
    }

    /// The timeline's part of the page's context.
    pub fn context(&self, view: &View) -> Value {
        let total = total(&self.counts, self.version, view);
        let (page, pages) = (self.page, pages(total));
        let entries: Vec<Value> = self
            .events
            .iter()
            .map(|(seq, event)| {
                json!({
                    "seq": seq, "at": when(event.at), "actor": event.actor, "kind": event.kind.name(),
                    "summary": event.summary(),
                })
            })
            .collect();
        let link = |page: usize| {
            let kind = view.kind.as_deref().map(|kind| format!("kind={kind}&")).unwrap_or_default();
            format!("?{kind}page={page}#timeline")
        };
        let kinds: Vec<Value> =
            self.counts.iter().map(|(kind, count)| json!({ "kind": kind, "count": count })).collect();
        json!({
            "entries": entries, "page": page, "pages": pages, "total": total, "all": self.version,
            "kind": view.kind, "kinds": kinds,
            "newer": (page > 1).then(|| link(page - 1)), "older": (page < pages).then(|| link(page + 1)),
        })
    }
}

/// How many events the view's filter lets through.
fn total(counts: &Counts, version: u64, view: &View) -> u64 {
    match view.kind.as_deref() {
        None => version,
        Some(kind) => counts.iter().find(|(counted, _)| counted == kind).map_or(0, |(_, count)| *count),
    }
}

fn pages(total: u64) -> usize {
    (total as usize).div_ceil(TIMELINE_PAGE).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_view_takes_a_kind_and_a_page_and_nothing_else() {
        let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        };
        let view = View::parse(&pairs(&[("kind", "approval_given"), ("page", "3")])).unwrap();
        assert_eq!((view.kind.as_deref(), view.page), (Some("approval_given"), 3));
        assert_eq!(View::parse(&pairs(&[("kind", "all")])).unwrap().kind, None);
        for bad in [("page", "0"), ("page", "x"), ("kind", "<script>"), ("other", "1")] {
            assert!(View::parse(&pairs(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_page_past_the_last_and_a_kind_no_event_has_count_as_they_should() {
        let counts: Counts = vec![("note_added".into(), 120), ("phase_started".into(), 3)];
        let all = View { kind: None, page: 1 };
        let notes = View { kind: Some("note_added".into()), page: 1 };
        let none = View { kind: Some("closed_by_hand".into()), page: 1 };
        assert_eq!(total(&counts, 130, &all), 130, "every event, whatever the counts say");
        assert_eq!(total(&counts, 130, &notes), 120);
        assert_eq!(total(&counts, 130, &none), 0);
        assert_eq!([pages(0), pages(50), pages(51), pages(120)], [1, 1, 2, 3]);
    }
}
